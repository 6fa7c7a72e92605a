"""User chip files: a path wherever a preset name is taken, sources optional (and reported missing), bad files
refused with one line naming the file, `sanafe:PATH` dispatch, and derived chip files that round-trip."""
import sys
import types
from pathlib import Path

import pytest
import yaml

import hwmodels
from hwmodels.chip.chipfile import CHIP_FILE_MAX_BYTES
from hwmodels.chip.derive import write_derived
from hwmodels.chip.presets import (PRESET_DIR, chip_file_digest, preset_kind, preset_leaves, strip_sources,
                              unsourced_keys)
from hwmodels.chip.signatures import mapping_signature, timing_signature

#: ChipSpec fields that hold provenance, not numbers the models use
PROVENANCE = {"name", "description", "sources", "notes", "derived_from"}


def _raw(name: str) -> dict:
    return yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())


def _write(path, tree) -> str:
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return str(path)


def _bare(name: str) -> dict:
    """Shipped preset `name` with every {value, source, note} leaf replaced by its bare number, no sources."""
    raw = _raw(name)
    tree = strip_sources({k: v for k, v in raw.items() if k != "sources"}, raw["sources"])
    return {**tree, "name": f"{name}-bare"}


def _same_numbers(a: hwmodels.ChipSpec, b: hwmodels.ChipSpec) -> bool:
    return a.model_dump(exclude=PROVENANCE) == b.model_dump(exclude=PROVENANCE)


@pytest.mark.parametrize("name", ["loihi", "generic-45nm", "speck"])
def test_a_sourced_chip_file_loads_as_the_shipped_preset(tmp_path, name):
    path = _write(tmp_path / "chip.yaml", _raw(name))
    chip = hwmodels.load_preset(path)
    assert chip == hwmodels.load_preset(name)  # name, sources and notes included
    assert unsourced_keys(path) == [] and preset_leaves(path) == preset_leaves(name)


@pytest.mark.parametrize("name", ["loihi", "truenorth", "lemaire-45nm"])
def test_a_chip_file_without_sources_loads_and_reports_every_number_unsourced(tmp_path, name):
    path = _write(tmp_path / "bare.yml", _bare(name))
    chip = hwmodels.load_preset(path, {"core.neurons_per_core": 7})
    assert _same_numbers(chip, hwmodels.load_preset(name, {"core.neurons_per_core": 7}))
    assert chip.name == f"{name}-bare" and chip.sources == {}
    leaves = preset_leaves(path)
    assert [leaf["key"] for leaf in leaves] == [leaf["key"] for leaf in preset_leaves(name)]
    assert {leaf["source"] for leaf in leaves} == {""} and unsourced_keys(path) == [leaf["key"] for leaf in leaves]


def test_leaves_without_a_source_mix_with_sourced_ones(tmp_path):
    raw = _raw("loihi")
    raw["mesh_width"] = 8  # bare
    raw["core"]["neurons_per_core"] = {"value": 1024, "note": "no source given"}  # leaf without source
    path = _write(tmp_path / "mixed.yaml", raw)
    assert hwmodels.load_preset(path) == hwmodels.load_preset("loihi")
    assert unsourced_keys(path) == ["mesh_width", "core.neurons_per_core"]


def test_a_chip_file_without_a_name_is_named_by_its_stem(tmp_path):
    tree = _bare("loihi")
    del tree["name"]
    assert hwmodels.load_preset(_write(tmp_path / "my-chip.yaml", tree)).name == "my-chip"


def test_shipped_names_win_and_paths_are_recognised(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loihi").write_text("not a chip")  # a file named like a shipped preset does not shadow it
    _write(tmp_path / "plainname", _bare("speck"))
    assert preset_kind("loihi") == "shipped" and hwmodels.load_preset("loihi").name == "loihi"
    assert [preset_kind(p) for p in ("a.yaml", "b.YML", "dir/c", "plainname", "sanafe:x.yaml", "nochip")] == \
        ["file", "file", "file", "file", "sanafe", "unknown"]
    assert hwmodels.load_preset("plainname").name == "speck-bare"  # an existing file without a .yaml ending


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg"))


def _loihi_with(**edits):
    """Text of loihi.yaml with top-level or core keys replaced (a value of None deletes the key)."""
    raw = _raw("loihi")
    for key, value in edits.items():
        node, leaf = (raw["core"], key[5:]) if key.startswith("core_") else (raw, key)
        node[leaf] = value
    return yaml.safe_dump(raw)


@pytest.mark.parametrize("make, needle", [
    (lambda p: None, "chip file '{p}' does not exist"),
    (lambda p: p.mkdir(), "chip file '{p}' is a directory"),
    (lambda p: p.write_text("[1, 2, 3]\n"), "chip file '{p}': must hold a mapping of chip fields"),
    (lambda p: p.write_text(""), "chip file '{p}' is empty"),
    (lambda p: p.write_text("name: [unclosed\n"), "chip file '{p}': not valid YAML"),
    (lambda p: p.write_bytes(b"name: \xff\xfe\n"), "chip file '{p}': not UTF-8 text"),
    (lambda p: p.write_text("x" * (CHIP_FILE_MAX_BYTES + 1)), "chip file '{p}' is 1,000,001 bytes; at most 1,000,000"),
    (lambda p: p.write_text(BOMB), "chip file '{p}': expands to more than 100,000 values"),
    (lambda p: p.write_text(_loihi_with(core_static_power_w={"value": float("nan"), "source": "davies2018"})),
     "chip file '{p}': core.static_power_w.value: nan is not a finite number"),
    (lambda p: p.write_text(_loihi_with(mesh_width=float("inf"))), "chip file '{p}': mesh_width: inf is not a finite"),
    (lambda p: p.write_text(_loihi_with(core_leak_j=1e-12)),
     "chip file '{p}': ChipSpec.core.leak_j: unknown field; accepted: neurons_per_core"),
    (lambda p: p.write_text(_loihi_with(cooling={"value": 1, "source": "davies2018"})),
     "chip file '{p}': ChipSpec.cooling: unknown field; accepted: name"),
    (lambda p: p.write_text(_loihi_with(core_neurons_per_core={"value": 0, "source": "davies2018"})),
     "chip file '{p}': ChipSpec.core.neurons_per_core: Input should be greater than 0"),
    (lambda p: p.write_text(_loihi_with(mesh_width={"value": 8, "source": "davis2018"})),
     "chip file '{p}': mesh_width.source: 'davis2018' is not one of blouw2019, davies2018"),
    (lambda p: p.write_text(_loihi_with(mesh_width={"value": "8", "source": "davies2018"})),
     "chip file '{p}': mesh_width.value: '8' is not a number"),
    (lambda p: p.write_text(_loihi_with(sources=["davies2018"])), "chip file '{p}': sources: must be a mapping"),
])
def test_bad_chip_files_are_refused_on_one_line_naming_the_file(tmp_path, monkeypatch, make, needle):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.yaml"
    make(path)
    for name in ("bad.yaml", str(path)):  # relative to the working directory, and absolute
        with pytest.raises(ValueError) as err:
            hwmodels.load_preset(name)
        text = str(err.value)
        shown = name if len(name) <= 78 else "..." + name[-75:]  # 80 characters quoted, a long path's tail kept
        assert needle.format(p=shown) in text and "\n" not in text, text


def test_shipped_presets_stay_strict():
    with pytest.raises(ValueError, match=r"preset core\.x: number 3 has no source"):
        strip_sources({"core": {"x": 3}}, {"a": "A"})
    with pytest.raises(ValueError, match=r"preset core\.x: a leaf needs keys value, source"):
        strip_sources({"core": {"x": {"value": 3}}}, {"a": "A"})
    assert strip_sources({"core": {"x": 3, "y": {"value": 4}}}, {}, strict=False) == {"core": {"x": 3, "y": 4}}
    with pytest.raises(ValueError, match=r"chip file c.yaml: core\.x: a leaf needs keys value, source .*got "
                                         r"\['note', 'source'\]"):  # was "Input should be a valid integer"
        strip_sources({"core": {"x": {"source": "a", "note": "n"}}}, {"a": "A"}, where="chip file c.yaml:",
                      strict=False)
    with pytest.raises(ValueError, match="'truenorth9' is not one of .*loihi.*or a chip file path"):
        hwmodels.load_preset("truenorth9")


def test_sanafe_prefix_dispatches_to_the_sanafe_import(tmp_path, monkeypatch):
    seen = []

    def from_sanafe(path):
        seen.append(path)
        return hwmodels.load_preset("loihi-sanafe")
    monkeypatch.setitem(sys.modules, "hwmodels.chip.sanafe", types.SimpleNamespace(from_sanafe=from_sanafe))
    chip = hwmodels.load_preset("sanafe:arch/loihi.yaml", {"core.neurons_per_core": 8})
    assert seen == ["arch/loihi.yaml"] and chip.core.neurons_per_core == 8
    # shown and derived like a chip file: its numbers come without sources
    assert unsourced_keys("sanafe:arch/loihi.yaml") == [leaf["key"] for leaf in preset_leaves("sanafe:arch/loihi.yaml")]
    assert "core.neurons_per_core" in unsourced_keys("sanafe:arch/loihi.yaml")
    write_derived(tmp_path / "s.yaml", "sanafe:arch/loihi.yaml", {"core.neurons_per_core": 8}, "2026-01-02")
    assert _same_numbers(hwmodels.load_preset(str(tmp_path / "s.yaml")), chip)
    monkeypatch.setitem(sys.modules, "hwmodels.chip.sanafe", None)  # the import fails
    with pytest.raises(ValueError) as err:
        hwmodels.load_preset("sanafe:arch/loihi.yaml")
    assert "preset 'sanafe:arch/loihi.yaml': SANA-FE architecture import is not available" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="give the SANA-FE architecture file after 'sanafe:'"):
        hwmodels.load_preset("sanafe:")


def test_the_digest_follows_the_file_content(tmp_path):
    path = tmp_path / "chip.yaml"
    _write(path, _raw("loihi"))
    first = chip_file_digest(str(path))
    assert chip_file_digest("loihi") is None and len(first) == 64
    assert chip_file_digest(str(path)) == first
    path.write_text(path.read_text().replace("value: 1024", "value: 512"))
    assert chip_file_digest(str(path)) != first
    with pytest.raises(ValueError, match="chip file '.*nope.yaml' does not exist"):
        chip_file_digest(str(tmp_path / "nope.yaml"))


OVERRIDES = {"core.neurons_per_core": 512, "router.buffer_depth": 4, "power_gating": "cores",
             "barrier_sync_s": {1: 1e-7, 8: 2e-7}, "core.max_fan_in": 64, "mesh_width": 8}


def test_derive_round_trip(tmp_path):
    path = tmp_path / "mychip.yaml"
    tree = write_derived(path, "loihi", OVERRIDES, "2026-01-02")
    chip, expected = hwmodels.load_preset(str(path)), hwmodels.load_preset("loihi", OVERRIDES)
    assert _same_numbers(chip, expected) and chip.name == "mychip" and chip.notes == expected.notes
    # provenance: the block, the `derived` source, and the changed leaves (unchanged mesh_width keeps its source)
    made = chip.derived_from
    assert (made.preset, made.date) == ("loihi", "2026-01-02")
    assert made.changed["core.neurons_per_core"] == {"from": 1024, "to": 512}
    assert made.changed["core.max_fan_in"] == {"from": None, "to": 64} and "mesh_width" not in made.changed
    assert chip.sources["derived"].startswith("derived from loihi on 2026-01-02; changed: core.neurons_per_core "
                                              "1024 -> 512, router.buffer_depth None -> 4")
    assert set(chip.sources) == set(hwmodels.load_preset("loihi").sources) | {"derived"}
    leaves = {leaf["key"]: leaf for leaf in preset_leaves(str(path))}
    assert leaves["core.neurons_per_core"]["source"] == "derived"
    assert "1024 (davies2018: 1,024 neural compartments per core)" in leaves["core.neurons_per_core"]["note"]
    assert leaves["barrier_sync_s.8"]["value"] == 2e-7 and leaves["barrier_sync_s.8"]["source"] == "derived"
    assert leaves["mesh_width"]["source"] == "davies2018" and unsourced_keys(str(path)) == []
    assert tree["derived_from"]["changed"] == made.model_dump()["changed"]
    # every other value is the base's leaf, source and note included
    base = {leaf["key"]: leaf for leaf in preset_leaves("loihi")}
    assert [k for k in base if leaves.get(k) != base[k]] == ["core.neurons_per_core", "barrier_sync_s.1",
                                                                  "barrier_sync_s.32"]
    assert [p.name for p in tmp_path.iterdir()] == ["mychip.yaml"]  # no temporary file left
    # provenance changes no signature, and the spec round-trips with it
    assert mapping_signature(chip) == mapping_signature(chip.model_copy(update={"derived_from": None}))
    assert timing_signature(chip) == timing_signature(chip.model_copy(update={"derived_from": None}))
    assert hwmodels.ChipSpec(**chip.model_dump()) == chip


def test_derive_a_chip_without_its_core_types(tmp_path):
    # a tuple of the base (speck's core types) is recorded as the YAML list it reads back as
    tree = write_derived(tmp_path / "s.yaml", "speck", {"core_types": None, "mesh_width": 4}, "2026-01-02")
    chip = hwmodels.load_preset(str(tmp_path / "s.yaml"))
    assert chip.core_types is None and chip.mesh_width == 4
    was = chip.derived_from.changed["core_types"]["from"]
    assert isinstance(was, list) and len(was) == len(hwmodels.load_preset("speck").core_types)
    assert tree["derived_from"]["changed"] == chip.derived_from.model_dump()["changed"]


def test_derive_from_a_derived_file_keeps_the_history(tmp_path):
    first = tmp_path / "a.yaml"
    write_derived(first, "loihi", {"core.neurons_per_core": 512}, "2026-01-02")
    write_derived(tmp_path / "b.yml", str(first), {"core.neurons_per_core": 256}, "2026-01-03", name="bee")
    chip = hwmodels.load_preset(str(tmp_path / "b.yml"))
    assert chip.name == "bee" and chip.core.neurons_per_core == 256
    assert chip.derived_from.changed == {"core.neurons_per_core": {"from": 512, "to": 256}}
    assert chip.sources["derived"].endswith("before that: derived from loihi on 2026-01-02; changed: "
                                            "core.neurons_per_core 1024 -> 512")


def test_derive_refuses_overwrites_and_bad_keys_writing_nothing(tmp_path):
    path = tmp_path / "c.yaml"
    write_derived(path, "speck", {}, "2026-01-02")
    assert hwmodels.load_preset(str(path)).derived_from.changed == {}
    before = path.read_text()
    with pytest.raises(ValueError, match=r"chip file '.*c\.yaml' exists; refusing to overwrite it"):
        write_derived(path, "loihi", {}, "2026-01-02")
    assert path.read_text() == before
    write_derived(path, "loihi", {"core.neurons_per_core": 8}, "2026-01-02", force=True)
    assert hwmodels.load_preset(str(path)).core.neurons_per_core == 8
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "link.yaml"
    link.symlink_to(tmp_path / "missing.yaml")  # never replaced, even with force
    with pytest.raises(ValueError, match=r"chip file '.*link\.yaml' is a symbolic link; refusing to replace it"):
        write_derived(link, "loihi", {}, "2026-01-02", force=True)
    assert link.is_symlink() and not (tmp_path / "missing.yaml").exists()
    for overrides, needle in [({"core.neurons": 1}, "override key 'core.neurons' is not one of name, description, "
                                                    "mesh_width"),
                              ({"core.neurons_per_core": 0}, "ChipSpec.core.neurons_per_core: Input should be greater"),
                              ({"name": "x"}, "override key 'name' cannot be set when deriving")]:
        with pytest.raises(ValueError, match=needle):
            write_derived(tmp_path / "d.yaml", "loihi", overrides, "2026-01-02")
    for bad in ("d.txt", ".yaml"):
        with pytest.raises(ValueError, match="must be a name ending .yaml or .yml"):
            write_derived(tmp_path / bad, "loihi", {}, "2026-01-02")
    with pytest.raises(ValueError, match="folder .* does not exist"):
        write_derived(tmp_path / "no" / "d.yaml", "loihi", {}, "2026-01-02")
    with pytest.raises(ValueError, match=r"name: 'a\\x01b' holds a control character"):
        write_derived(tmp_path / "d.yaml", "loihi", {}, "2026-01-02", name="a\x01b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "links"]


def test_sanafe_prefix_loads_a_real_sanafe_architecture():
    arch = pytest.importorskip("hwmodels.chip.sanafe")
    sanafe = pytest.importorskip("sanafe")
    path = Path(sanafe.__file__).parent / "examples" / "loihi.yaml"
    if not path.is_file():
        pytest.skip("SANA-FE's example loihi.yaml is not installed")
    name = f"sanafe:{path}"
    assert hwmodels.load_preset(name) == arch.from_sanafe(path)
    assert preset_leaves(name) == arch.sanafe_leaves(path) and unsourced_keys(name) == []
    assert len(chip_file_digest(name)) == 64


def test_a_sanafe_architecture_that_is_a_device_a_fifo_or_too_large_is_refused_in_one_line(tmp_path):
    # /dev/zero used to be read until memory ran out, a FIFO blocked forever
    import os
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big.yaml").write_text(" " * (CHIP_FILE_MAX_BYTES + 1))
    for path, reason in (("/dev/zero", "is not a regular file"), (tmp_path / "fifo", "is not a regular file"),
                         (tmp_path / "big.yaml", f"is over {CHIP_FILE_MAX_BYTES:,} bytes")):
        with pytest.raises(ValueError, match=f"sanafe arch .*: {reason}") as err:
            hwmodels.load_preset(f"sanafe:{path}")
        assert "\n" not in str(err.value)


def test_a_sanafe_architecture_that_expands_past_the_value_cap_is_refused(tmp_path):
    # 40,000 tiles aliasing one list of 40,000 cores took minutes of CPU from a 400 KB file
    lines = ["l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 6)]
    path = tmp_path / "arch.yaml"
    path.write_text("\n".join(lines) + "\narchitecture: {name: x, attributes: {}, tile: *l5}\n")
    with pytest.raises(ValueError, match="sanafe arch .*: content: expands to more than 100,000 values"):
        hwmodels.load_preset(f"sanafe:{path}")


def test_a_long_chip_file_path_keeps_its_file_name_in_the_message(tmp_path):
    deep = tmp_path / ("a-long-folder-name-" * 6)
    deep.mkdir()
    path = deep / "my-chip.yaml"
    with pytest.raises(ValueError) as err:
        hwmodels.load_preset(str(path))
    text = str(err.value)
    assert text.startswith("chip file '...") and text.endswith("a-long-folder-name-/my-chip.yaml' does not exist"), text
    with pytest.raises(ValueError) as err:
        hwmodels.load_preset(str(deep / "gone" / "my-chip.yaml"))
    assert str(err.value).endswith("/gone/my-chip.yaml' does not exist"), str(err.value)


@pytest.mark.parametrize("overrides", [{"mesh_width": 2**63}, {"mesh_width": 10**18},
                                       {"mesh_width": 40_000, "mesh_height": 40_000, "cores_per_tile": 2}])
def test_a_chip_of_more_core_slots_than_the_mapping_numbers_is_refused_in_one_line(overrides):
    # mesh_width 2^63 was accepted and crashed the mapping with numpy's OverflowError traceback
    with pytest.raises(ValueError, match=r"^ChipSpec.mesh_width: mesh_width x mesh_height x cores_per_tile x n_chips "
                                         r"= .* core slots; at most 2,147,483,647 \(2\^31 - 1\)$"):
        hwmodels.load_preset("loihi", overrides)
    assert hwmodels.load_preset("loihi", {"mesh_width": 1000}).n_cores_total == 1000 * 4 * 4
