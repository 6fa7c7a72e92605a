"""hwmodels.chip.sanafe.from_sanafe: SANA-FE architecture files imported as ChipSpecs.

The loihi.yaml shipped with the sanafe package (an optional peer; those tests skip without it) must give our
hand-written `loihi-sanafe` preset field by field, except for these deliberate differences:
- name, description: the import names the chip as the file does ('loihi_chip') and describes the import;
- sources, notes: the import cites the file itself (path + sha256) and notes where each number comes from;
- core.synapse_memory_bits: SANA-FE sets no synapse-memory limit, the import stands in 2**32 bits for none; the
  preset takes Loihi's 128 KB per core from Davies et al. 2018;
- router.link_bandwidth_msgs_per_s: SANA-FE has no link bandwidth, the import stands in 1e18 messages/s for none;
  the preset takes Loihi's 3.44 Gspikes/s (Davies et al. 2018);
- core.static_power_w: SANA-FE models no static power (0 W); the preset charges Loihi's idle power (Blouw 2019);
- power_gating: the import keeps ChipSpec's default "cores" (irrelevant at 0 W); the preset powers every core.
Small hand-written files check each attribute's mapping with distinct numbers and the one-line refusals.
"""
import hashlib
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hwmodels import load_preset
from hwmodels.chip.sanafe import from_sanafe, sanafe_leaves

#: dotted field -> (imported value, why it differs from the preset); see the module docstring
DELIBERATE = {
    "name": ("loihi_chip", "the file's architecture name"),
    "description": (None, "describes the import"),
    "sources": (None, "cites the file (path, sha256)"),
    "notes": (None, "provenance of each number"),
    "core.synapse_memory_bits": (2 ** 32, "SANA-FE has no synapse-memory limit (preset: Davies 2018, 128 KB)"),
    "router.link_bandwidth_msgs_per_s": (1e18, "SANA-FE has no link bandwidth (preset: Davies 2018)"),
    "core.static_power_w": (0.0, "SANA-FE models no static power (preset: Blouw 2019 idle power)"),
    "power_gating": ("cores", "ChipSpec default, irrelevant at 0 W (preset: none)"),
}


def _sanafe_example(name: str) -> Path:
    """An architecture file shipped with the sanafe package (located without importing it)."""
    spec = importlib.util.find_spec("sanafe")
    if spec is None or spec.origin is None:
        pytest.skip("sanafe (SANA-FE, an optional peer: pip install sanafe==2.2.9) is not installed")
    return Path(spec.origin).parent / "examples" / name


def _flat(node: dict, prefix: str = "") -> dict:
    """{dotted key: value} of a model_dump, descending nested records and tables; sources and notes stay whole."""
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and key not in ("sources", "notes"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_loihi_yaml_is_the_loihi_sanafe_preset_field_by_field():
    ours, preset = _flat(from_sanafe(_sanafe_example("loihi.yaml")).model_dump()), _flat(
        load_preset("loihi-sanafe").model_dump())
    assert ours.keys() == preset.keys()
    for key in ours:
        if key in DELIBERATE:
            assert ours[key] != preset[key], key
            want = DELIBERATE[key][0]
            assert want is None or ours[key] == want, key
        else:  # exact: the import sums energy_update_neuron + energy_spike_out in decimal, as the preset writes it
            assert ours[key] == preset[key], key


def test_loihi_yaml_every_number_has_its_provenance():
    path = _sanafe_example("loihi.yaml")
    chip, leaves = from_sanafe(path), sanafe_leaves(path)
    flat = _flat(chip.model_dump())
    assert hashlib.sha256(path.read_bytes()).hexdigest() in chip.sources["sanafe_file"]
    assert str(path.resolve()) in chip.sources["sanafe_file"]
    for leaf in leaves:
        assert flat[leaf["key"]] == leaf["value"], leaf
        assert leaf["source"] in chip.sources, leaf
        assert chip.notes[leaf["key"]] == f"{leaf['source']}: {leaf['note']}"
    numbers = {k for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numbers == {leaf["key"] for leaf in leaves}
    assert chip.notes["core.synop_energy_j.conv"] == \
        "sanafe_file: tile[0].core[0].synapse 'loihi_conv_synapse' energy_process_spike"
    assert chip.notes["barrier_sync_s.28"].startswith("sanafe_file: repeats latency_sync[4] up to 28 tiles")
    assert "'loihi_dendrites_delay' (accumulator_with_delay)" in chip.notes["dropped"]


@pytest.mark.parametrize("name, error", [
    ("loihi.yaml", None),
    ("truenorth.yaml", "tile[0].core[0].soma 'core_soma': model 'truenorth' has no ChipSpec equivalent"),
    ("example_chip.yaml", "tile[0]: attribute 'energy_west_hop' = 1.8e-12 differs from 'energy_east_hop' = 2.5e-12"),
    ("tutorial_arch.yaml", "architecture: declares 1 tile(s) but width x height = 2 x 1 = 2"),
])
def test_every_shipped_sanafe_architecture_imports_or_is_refused_in_one_line(name, error):
    path = _sanafe_example(name)
    if error is None:
        assert from_sanafe(path).n_cores == 128
        return
    with pytest.raises(ValueError) as info:
        from_sanafe(path)
    assert error in str(info.value) and name in str(info.value) and "\n" not in str(info.value)


def _minimal() -> dict:
    """A 3 x 2 mesh, 2 cores per tile, one unit of each kind, every cost a different number."""
    core = {"name": "c[0..1]", "attributes": {"buffer_position": "soma", "max_neurons_supported": 64},
            "axon_in": [{"name": "in", "attributes": {"energy_message_in": 1e-12, "latency_message_in": 2e-9}}],
            "synapse": [{"name": "syn", "attributes": {"model": "current_based", "energy_process_spike": 3e-12,
                                                       "latency_process_spike": 4e-9}}],
            "dendrite": [{"name": "den", "attributes": {"model": "accumulator", "energy_update": 5e-12,
                                                        "latency_update": 6e-9}}],
            "soma": [{"name": "lif", "attributes": {
                "model": "leaky_integrate_fire", "energy_access_neuron": 7e-12, "latency_access_neuron": 8e-9,
                "energy_update_neuron": 9e-12, "latency_update_neuron": 10e-9, "energy_spike_out": 11e-12,
                "latency_spike_out": 12e-9}}],
            "axon_out": [{"name": "out", "attributes": {"energy_message_out": 13e-12, "latency_message_out": 14e-9}}]}
    hops = {"energy_east_hop": 15e-12, "energy_west_hop": 15e-12, "latency_east_hop": 16e-9,
            "latency_west_hop": 16e-9, "energy_north_hop": 17e-12, "energy_south_hop": 17e-12,
            "latency_north_hop": 18e-9, "latency_south_hop": 18e-9}
    return {"architecture": {"name": "mini", "attributes": {"width": 3, "height": 2, "link_buffer_size": 4},
                             "tile": [{"name": "t[0..5]", "attributes": hops, "core": [core]}]}}


def _core(tree: dict, j: int = 0) -> dict:
    return tree["architecture"]["tile"][0]["core"][j]


def _write(tmp_path: Path, tree, name: str = "arch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(tree if isinstance(tree, str) else yaml.safe_dump(tree, sort_keys=False))
    return path


def test_minimal_arch_maps_every_attribute(tmp_path):
    chip = from_sanafe(_write(tmp_path, _minimal()))
    c, r = chip.core, chip.router
    assert (chip.name, chip.mesh_width, chip.mesh_height, chip.cores_per_tile, chip.n_chips) == ("mini", 3, 2, 2, 1)
    assert (c.neurons_per_core, r.buffer_depth, chip.barrier_sync_s) == (64, 4, {1: 0.0})  # fixed, 0.0 by default
    assert (c.message_in_energy_j, c.message_in_latency_s) == (1e-12, 2e-9)
    assert c.synop_energy_j.model_dump() == {"dense": 3e-12, "sparse": 3e-12, "conv": 3e-12, "bitmap": None}
    assert c.synop_latency_s.model_dump() == {"dense": 4e-9, "sparse": 4e-9, "conv": 4e-9, "bitmap": None}
    assert (c.dendrite_energy_j, c.dendrite_latency_s) == (5e-12, 6e-9)
    assert (c.neuron_access_energy_j, c.neuron_access_latency_s) == (7e-12, 8e-9)
    assert (c.neuron_inactive_energy_j, c.neuron_inactive_latency_s) == (9e-12, 10e-9)
    assert (c.neuron_active_energy_j, c.neuron_active_latency_s) == (20e-12, 22e-9)  # update + spike out
    assert (c.message_out_energy_j, c.message_out_latency_s) == (13e-12, 14e-9)
    assert (r.hop_energy_ew_j, r.hop_latency_ew_s, r.hop_energy_ns_j, r.hop_latency_ns_s) == (15e-12, 16e-9,
                                                                                              17e-12, 18e-9)
    assert (c.neuron_access_rule, c.neuron_update_rule, c.receive_mode, r.congestion_model) == (
        "every_step", "active", "serial", "density")
    assert c.synapse_memory.folded and c.state_memory.folded
    assert (c.synapse_memory_bits, r.link_bandwidth_msgs_per_s, c.static_power_w) == (2 ** 32, 1e18, 0.0)


def test_numbers_as_sanafe_writes_them(tmp_path):
    """'5e-12' (no dot) is a string to PyYAML's YAML 1.1 but a number to SANA-FE's YAML 1.2 reader."""
    text = yaml.safe_dump(_minimal(), sort_keys=False).replace("5.0e-12", "5e-12")
    assert "energy_update: 5e-12\n" in text
    assert from_sanafe(_write(tmp_path, text)).core.dendrite_energy_j == 5e-12


def _sanafe_sync(table: dict[int, float], tiles: int) -> float:
    """SANA-FE's table sync model (measured with sanafe 2.2.9): the entry of the largest key <= tiles, the
    smallest entry below every key."""
    keys = [k for k in table if k <= tiles]
    return table[max(keys)] if keys else table[min(table)]


@pytest.mark.parametrize("latency_sync, want", [
    ({1: 1e-6, 3: 2e-6, 10: 5e-6}, {1: 1e-6, 2: 1e-6, 3: 2e-6, 9: 2e-6, 10: 5e-6}),
    ({2: 1e-6, 5: 3e-6}, {2: 1e-6, 4: 1e-6, 5: 3e-6}),
    ({0: 4e-6, 1: 1e-6, 2: 2e-6}, {1: 1e-6, 2: 2e-6}),
    ([4e-6, 1e-6, 2e-6], {1: 1e-6, 2: 2e-6}),
    ({0: 4e-6, 6: 4e-6}, {1: 4e-6, 6: 4e-6}),
    (7e-7, {1: 7e-7}),
])
def test_sync_table_becomes_points_that_interpolate_to_sanafe_steps(tmp_path, latency_sync, want):
    tree = _minimal()
    tree["architecture"]["attributes"].update(sync_model="table", latency_sync=latency_sync)
    chip = from_sanafe(_write(tmp_path, tree))
    assert chip.barrier_sync_s == want
    table = dict(enumerate(latency_sync)) if isinstance(latency_sync, list) else \
        latency_sync if isinstance(latency_sync, dict) else {0: latency_sync}
    for tiles in range(1, 16):
        assert math.isclose(chip.barrier_latency_s(tiles), _sanafe_sync(table, tiles), rel_tol=1e-12), tiles


def test_fixed_sync_latency(tmp_path):
    tree = _minimal()
    tree["architecture"]["attributes"].update(sync_model="fixed", latency_sync=2.5e-7)
    assert from_sanafe(_write(tmp_path, tree)).barrier_sync_s == {1: 2.5e-7}


def test_synapse_units_serve_storage_formats_by_name(tmp_path):
    tree = _minimal()
    _core(tree)["synapse"] = [
        {"name": f"x_{fmt}_syn" if fmt else "default_syn",
         "attributes": {"model": "current_based", "energy_process_spike": e, "latency_process_spike": e * 1e3}}
        for fmt, e in (("dense", 1e-12), ("conv", 2e-12), ("bitmap", 3e-12), (None, 4e-12))]
    chip = from_sanafe(_write(tmp_path, tree))
    assert chip.core.synop_energy_j.model_dump() == {"dense": 1e-12, "sparse": 4e-12, "conv": 2e-12,
                                                     "bitmap": 3e-12}
    assert chip.notes["core.synop_latency_s.sparse"].endswith("synapse 'default_syn' latency_process_spike")
    units = _core(tree)["synapse"]  # names with the format word inside another word, in any case
    units[0]["name"], units[1]["name"], units[2]["name"] = "DenseSynapse", "conv2d", "BitmapUnit"
    assert from_sanafe(_write(tmp_path, tree)).core.synop_energy_j.model_dump() == {
        "dense": 1e-12, "sparse": 4e-12, "conv": 2e-12, "bitmap": 3e-12}
    units.insert(0, {"name": "x_sparse", "attributes": dict(units[3]["attributes"], energy_process_spike=5e-12)})
    del units[3]  # no bitmap unit: it takes sparse's cost
    chip = from_sanafe(_write(tmp_path, tree))  # every format named: the unnamed unit serves none, and says so
    assert chip.core.synop_energy_j.model_dump() == {"dense": 1e-12, "sparse": 5e-12, "conv": 2e-12, "bitmap": None}
    assert "synapse 'default_syn': every storage format has a unit named for it" in chip.notes["dropped"]


def test_identical_core_entries_collapse_into_one_core_type(tmp_path):
    tree = _minimal()
    second = yaml.safe_load(yaml.safe_dump(_core(tree)))
    second["name"], second["soma"][0]["name"] = "other_core", "other_lif"
    tree["architecture"]["tile"][0]["core"].append(second)
    chip = from_sanafe(_write(tmp_path, tree))
    assert chip.cores_per_tile == 3 and chip.core == from_sanafe(_write(tmp_path, _minimal(), "a.yaml")).core


def _set(path: tuple, value):
    """A mutation of _minimal(): set the value at `path` (keys and list positions)."""
    def apply(tree):
        node = tree
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return apply


CORE = ("architecture", "tile", 0, "core", 0)
SOMA = CORE + ("soma", 0, "attributes")


def _second_core(**costs):
    """A mutation of _minimal(): a second core entry whose synapse costs differ."""
    def apply(tree):
        other = yaml.safe_load(yaml.safe_dump(_core(tree)))
        other["synapse"][0]["attributes"].update(costs)
        tree["architecture"]["tile"][0]["core"].append(other)
    return apply


def _second_tile(tree):
    other = yaml.safe_load(yaml.safe_dump(tree["architecture"]["tile"][0]))
    other["name"] = "u"
    other["attributes"].update(energy_north_hop=1e-9, energy_south_hop=1e-9)
    tree["architecture"]["tile"][0]["name"] = "t[0..4]"
    tree["architecture"]["tile"].append(other)


@pytest.mark.parametrize("mutate, message", [
    (_set(SOMA + ("bar",), 1), "tile[0].core[0].soma 'lif': attribute 'bar' has no ChipSpec equivalent"),
    (_set(SOMA + ("threshold",), 1.0), "tile[0].core[0].soma 'lif': attribute 'threshold' has no ChipSpec "
                                       "equivalent"),
    (_set(CORE + ("synapse", 0, "attributes", "plugin"), "x.so"),
     "tile[0].core[0].synapse 'syn': attribute 'plugin' has no ChipSpec equivalent"),
    (_set(CORE + ("dendrite", 0, "attributes", "model"), "taps"),
     "tile[0].core[0].dendrite 'den': model 'taps' has no ChipSpec equivalent (accepted: accumulator, "
     "accumulator_with_delay)"),
    (_set(SOMA + ("energy_spike_out",), -1e-12), "tile[0].core[0].soma 'lif': attribute 'energy_spike_out' = "
                                                 "-1e-12 is not a finite number >= 0"),
    (_set(SOMA + ("latency_spike_out",), float("nan")), "attribute 'latency_spike_out' = nan is not a finite"),
    (lambda t: _core(t)["soma"][0]["attributes"].pop("energy_update_neuron"),
     "tile[0].core[0].soma 'lif': attribute 'energy_update_neuron' is missing"),
    (_set(CORE + ("attributes", "buffer_position"), "dendrite"), "tile[0].core[0]: attributes buffer_position = "
                                                                 "'dendrite'"),
    (_second_core(energy_process_spike=9e-12), "tile[0].core[1].synapse 'syn' energy_process_spike = 9e-12 "
                                               "differs from tile[0].core[0].synapse 'syn' energy_process_spike = "
                                               "3e-12: ChipSpec has one core type"),
    (_second_tile, "tile[1] energy_north_hop = energy_south_hop = 1e-09 differs from tile[0] energy_north_hop = "
                   "energy_south_hop = 1.7e-11: ChipSpec has one tile type"),
    (_set(("architecture", "tile", 0, "attributes", "latency_west_hop"), 1e-9),
     "tile[0]: attribute 'latency_west_hop' = 1e-09 differs from 'latency_east_hop' = 1.6e-08"),
    (_set(("architecture", "attributes", "width"), 4), "architecture: declares 6 tile(s) but width x height = "
                                                       "4 x 2 = 8; ChipSpec needs a full mesh"),
    (_set(("architecture", "attributes", "topology"), "cmesh"), "attribute 'topology' = 'cmesh' has no ChipSpec"),
    (lambda t: t["architecture"]["attributes"].pop("link_buffer_size"),
     "architecture: attribute 'link_buffer_size' is missing"),
    (_set(("architecture", "attributes", "height"), 0), "architecture: attribute 'height' = 0 is not an integer"),
    (_set(("architecture", "attributes", "sync_model"), "table"), "attribute 'latency_sync' is missing"),
    (_set(("architecture", "tile", 0, "name"), "t[0..x]"), "tile[0]: name 't[0..x]' is not of the form"),
    (lambda t: _core(t)["soma"].append({"name": "inputs[0..3]", "attributes": {
        **_core(t)["soma"][0]["attributes"], "model": "input"}}),
     "tile[0].core[0].soma 'inputs[0..3]': attribute 'energy_access_neuron' = 7e-12, but ChipSpec charges input "
     "neurons no soma cost"),
    (lambda t: _core(t)["soma"].append({"name": "lif2", "attributes": {
        **_core(t)["soma"][0]["attributes"], "energy_access_neuron": 1e-12}}),
     "tile[0].core[0].soma 'lif2': attribute 'energy_access_neuron' = 1e-12 differs from soma 'lif' (7e-12); "
     "ChipSpec has one soma unit per core"),
    (lambda t: _core(t)["synapse"].append({"name": "syn_sparse", "attributes": {
        "model": "current_based", "energy_process_spike": 1e-12, "latency_process_spike": 1e-9}}) or
     _core(t)["synapse"][0].update(name="syn_dense"),
     "tile[0].core[0].synapse: no unit for storage format 'conv'"),
    (lambda t: _core(t).pop("axon_out"), "tile[0].core[0]: no 'axon_out' section (SANA-FE requires one)"),
    (_set(CORE + ("neurons",), 3), "tile[0].core[0]: key 'neurons' has no ChipSpec equivalent"),
])
def test_what_chipspec_cannot_represent_is_one_line_naming_unit_and_attribute(tmp_path, monkeypatch, mutate,
                                                                             message):
    monkeypatch.chdir(tmp_path)
    tree = _minimal()
    mutate(tree)
    _write(tmp_path, tree)
    with pytest.raises(ValueError) as info:
        from_sanafe("arch.yaml")
    text = str(info.value)
    assert text.startswith("sanafe arch 'arch.yaml': ") and message in text and "\n" not in text, text


def test_exact_message_of_an_unknown_attribute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tree = _minimal()
    _core(tree)["soma"][0]["attributes"]["bar"] = 1
    _write(tmp_path, tree)
    with pytest.raises(ValueError, match=r"^sanafe arch 'arch\.yaml': tile\[0\]\.core\[0\]\.soma 'lif': attribute "
                                         r"'bar' has no ChipSpec equivalent$"):
        from_sanafe("arch.yaml")


@pytest.mark.parametrize("text, message", [
    (None, "no such file"),
    ("- architecture\n", "must hold a mapping with an 'architecture' section, got list"),
    ("architecture: [\n", "is not valid YAML: "),
    ("network: {}\n", "has no 'architecture' mapping"),
    ("", "must hold a mapping with an 'architecture' section, got NoneType"),
])
def test_file_that_is_missing_or_not_an_architecture_is_one_line_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError) as info:
        from_sanafe(path)
    assert "bad.yaml" in str(info.value) and message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="is a directory"):
        from_sanafe(tmp_path)


def test_sanafe_arch_imports_neither_sanafe_nor_torch():
    code = ("import sys, hwmodels.chip.sanafe; bad = {'sanafe', 'sanafecpp', 'torch', 'workloads', 'codesign'} & "
            "{m.split('.')[0] for m in sys.modules}; print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
