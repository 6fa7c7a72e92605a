"""Chip specs and presets: every preset loads, every YAML number is sourced, overrides and bounds are validated."""
import numpy as np
import pydantic
import pytest
import yaml

from hwmodels import apply_overrides, list_presets, load_preset, override_keys
from hwmodels.chip.presets import PRESET_DIR, preset_leaves, strip_sources
from hwmodels.chip.spec import ChipSpec


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_loads(name):
    chip = load_preset(name)
    assert isinstance(chip, ChipSpec) and chip.name == name
    assert chip.n_cores == chip.mesh_width * chip.mesh_height * chip.cores_per_tile


def _numeric_leaves(node, path=""):
    """Yield (path, parent dict or None) for every number in a raw YAML tree (independent of the loader)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                yield f"{path}.{k}", node
            else:
                yield from _numeric_leaves(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numeric_leaves(v, f"{path}[{i}]")


@pytest.mark.parametrize("name", list_presets())
def test_every_number_has_a_resolvable_source(name):
    raw = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
    leaves = list(_numeric_leaves(raw))
    assert len(leaves) >= 25
    for path, parent in leaves:
        assert path.endswith(".value"), f"{path} is a bare number"
        assert parent["source"] in raw["sources"], path
        assert len(raw["sources"][parent["source"]]) > 20


def test_loihi_numbers_are_the_papers():
    """Davies et al. 2018, as listed in the issue brief."""
    c = load_preset("loihi")
    assert (c.mesh_width, c.mesh_height, c.cores_per_tile, c.n_cores) == (8, 4, 4, 128)
    assert (c.core.neurons_per_core, c.core.synapse_memory_bits) == (1024, 128 * 1024 * 8)
    assert (c.core.message_out_energy_j, c.core.message_out_latency_s) == (1.7e-12, 2.1e-9)
    assert (c.router.hop_energy_ew_j, c.router.hop_energy_ns_j) == (3.0e-12, 4.0e-12)
    assert (c.router.hop_latency_ew_s, c.router.hop_latency_ns_s) == (4.1e-9, 6.5e-9)
    assert c.core.synop_energy_j.of("sparse") == 23.6e-12 and c.core.synop_latency_s.of("conv") == 3.5e-9
    # Davies' inactive compartment update (52 pJ, 5.3 ns) is the access of every compartment in every step; an
    # updated compartment adds active - inactive (81 - 52 pJ, 8.4 - 5.3 ns)
    assert (c.core.neuron_access_energy_j, c.core.neuron_access_latency_s) == (52e-12, 5.3e-9)
    assert c.core.neuron_access_energy_j + c.core.neuron_active_energy_j == pytest.approx(81e-12, rel=1e-12)
    assert c.core.neuron_access_latency_s + c.core.neuron_inactive_latency_s == pytest.approx(8.4e-9, rel=1e-12)
    assert (c.core.neuron_access_rule, c.core.neuron_update_rule) == ("every_step", "active")
    assert c.router.link_time_s == 1 / 3.44e9
    # Blouw et al. 2019: Loihi idle power 0.029 W, spread over 128 cores, none gated
    assert c.core.static_power_w * 128 == pytest.approx(0.029, rel=1e-3) and c.power_gating == "none"
    assert c.core.synapse_memory.folded and c.core.state_memory.folded
    assert "Loihi" in c.sources["davies2018"] and "IEEE Micro" in c.sources["davies2018"]


def test_barrier_interpolates_linearly_in_tiles():
    c = load_preset("loihi")
    assert c.barrier_latency_s(1) == 113e-9 and c.barrier_latency_s(32) == 465e-9
    assert c.barrier_latency_s(16) == pytest.approx(113e-9 + (465e-9 - 113e-9) * 15 / 31, rel=1e-12)
    assert c.barrier_latency_s(64) == 465e-9


def test_loader_rejects_unsourced_or_unknown_sources():
    with pytest.raises(ValueError, match=r"core\.x: number 3 has no source"):
        strip_sources({"core": {"x": 3}}, {"a": "A"})
    with pytest.raises(ValueError, match=r"core\.x\.source: 'b' is not one of a"):
        strip_sources({"core": {"x": {"value": 3, "source": "b"}}}, {"a": "A"})
    with pytest.raises(ValueError, match="is not a number"):
        strip_sources({"x": {"value": "1e-9", "source": "a"}}, {"a": "A"})
    assert strip_sources({"t": {1: {"value": 2.0, "source": "a", "note": "n"}}, "s": "k"}, {"a": "A"}) == \
        {"t": {1: 2.0}, "s": "k"}


def test_overrides_apply_and_validate():
    c = load_preset("loihi", {"core.synapse_memory_bits": 65536, "router.hop_energy_ns_j": 1e-12,
                              "barrier_sync_s": {1: 1e-7}})
    assert c.core.synapse_memory_bits == 65536 and c.router.hop_energy_ns_j == 1e-12
    assert c.barrier_latency_s(7) == 1e-7
    assert load_preset("loihi").core.synapse_memory_bits == 1048576  # the preset itself is unchanged
    with pytest.raises(ValueError) as err:
        load_preset("loihi", {"core.synapse_bits": 1})
    msg = str(err.value)
    assert "'core.synapse_bits'" in msg and "core.synapse_memory_bits" in msg and "router.buffer_depth" in msg
    assert set(override_keys()) >= {"mesh_width", "core.synop_energy_j.dense", "router.link_bandwidth_msgs_per_s"}


#: what the note of a zero-cost leaf must say: the cost is inside another number, or the chip does not do it
ZERO_REASONS = ("folded", "inside", "not performed")


@pytest.mark.parametrize("name", list_presets())
def test_no_zero_cost_action_without_a_cited_reason(name):
    """Issue 10: no preset charges 0 J or 0 s for an action its chip performs unless its (cited) note says the
    cost is folded into another number or the action is not performed (memory tables may start at capacity 0)."""
    raw = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
    for path, parent in _numeric_leaves(raw):
        if parent.get("value") == 0 and not path.endswith("_per_bit.0.value"):
            assert any(r in parent.get("note", "") for r in ZERO_REASONS), f"{name}{path}: {parent.get('note')!r}"


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_has_a_static_term_or_says_where_it_is(name):
    """Static power is charged (per core, per SRAM bit or per chip), or the preset cites it as inside another
    number (TrueNorth's whole-chip energy per synaptic event)."""
    chip = load_preset(name)
    static = chip.core.static_power_w + chip.core.sram_static_w_per_bit + chip.static_power_chip_w
    leaves = {leaf["key"]: leaf for leaf in preset_leaves(name)}
    assert static > 0 or "inside" in leaves["core.static_power_w"]["note"], name


@pytest.mark.parametrize("name", list_presets())
def test_every_memory_is_charged_or_folded_with_a_reason(name):
    for mem in (load_preset(name).core.synapse_memory, load_preset(name).core.state_memory):
        assert len(mem.reason) > 20 and (mem.folded or mem.read_j_per_bit)


@pytest.mark.parametrize("key,value,needle", [
    ("core.synapse_memory_bits", -5, "ChipSpec.core.synapse_memory_bits: Input should be greater than 0"),
    ("core.synop_energy_j.dense", "abc", "ChipSpec.core.synop_energy_j.dense: Input should be a valid number"),
    ("router.link_bandwidth_msgs_per_s", 0, "ChipSpec.router.link_bandwidth_msgs_per_s: Input should be greater"),
    ("mesh_width", 2.5, "ChipSpec.mesh_width:"),
    ("barrier_sync_s", {0: 1e-9}, "ChipSpec.barrier_sync_s:"),
])
def test_bad_override_value_names_the_field_on_one_line(key, value, needle):
    with pytest.raises(ValueError) as err:
        load_preset("loihi", {key: value})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_unknown_preset_lists_presets():
    with pytest.raises(ValueError, match="preset: 'truenorth9' is not one of .*loihi"):
        load_preset("truenorth9")


def test_specs_are_frozen_and_reject_unknown_fields():
    c = load_preset("loihi")
    with pytest.raises(pydantic.ValidationError):
        c.mesh_width = 3
    data = c.model_dump()
    data["core"]["leak_j"] = 1.0
    with pytest.raises(ValueError, match=r"ChipSpec\.core\.leak_j: unknown field; accepted: neurons_per_core"):
        ChipSpec(**data)
    assert ChipSpec(**c.model_dump()) == c
    assert np.isclose(c.router.link_time_s * c.router.link_bandwidth_msgs_per_s, 1.0)


def test_truenorth_numbers_are_the_papers():
    """Merolla et al. 2014 / Akopyan et al. 2015: 4,096 cores on a 64 x 64 mesh, 256 x 256 binary crossbar."""
    c = load_preset("truenorth")
    assert (c.mesh_width, c.mesh_height, c.cores_per_tile, c.n_cores) == (64, 64, 1, 4096)
    k = c.core
    assert (k.neurons_per_core, k.max_axons, k.max_fan_in, k.stored_weight_bits) == (256, 256, 256, 1)
    assert k.synapse_memory_bits == 256 * 256 and k.synop_energy_j.of("dense") == 26e-12
    assert c.barrier_latency_s(1) == c.barrier_latency_s(4096) == 1e-3
    assert "Science 345" in c.sources["merolla2014"] and "IEEE" in c.sources["akopyan2015"]


def test_spinnaker2_numbers_are_the_papers():
    c = load_preset("spinnaker2")
    assert c.n_cores == 152 and c.cores_per_tile == 4  # 38 QPEs of 4 PEs
    assert c.core.synapse_memory_bits == 128 * 1024 * 8 and c.core.synop_energy_j.of("sparse") == 10e-12
    assert "2401.04491" in c.sources["gonzalez2024"] and "1187252" in c.sources["tang2023"]


def test_speck_memory_limits_are_sinabs_constraints():
    """sinabs get_constraints, cores 0-2: 16 Ki kernel entries x 8 bits, 64 Ki neuron entries x 16 bits."""
    c = load_preset("speck")
    assert c.n_cores == 9 and c.max_cores_per_population == 1 and c.core.memory_layout == "pow2"
    assert (c.core.synapse_memory_bits, c.core.neuron_memory_bits) == (16 * 1024 * 8, 64 * 1024 * 16)
    assert (c.core.stored_weight_bits, c.core.stored_state_bits) == (8, 16)
    assert c.core.static_power_w == pytest.approx(0.42e-3 / 9, rel=1e-3)


def test_a_layer_too_big_for_one_speck_core_is_rejected():
    """Conv 64 -> 128 channels, 3x3: kernel memory 64 x 2^(4 + 7) = 131,072 entries, 2x the largest core's 64 Ki
    (and 8x the 16 Ki of cores 0-2)."""
    from hwmodels.mapping.map import MappingError, map_network
    from hwmodels.trace import NetworkGraph, NeuronModel, Population, Projection
    g = NetworkGraph([Population("in", (64, 16, 16), NeuronModel(kind="input")), Population("c", (128, 16, 16))],
                     [Projection("conv", "in", "c", "conv", np.ones((128, 64, 3, 3)), padding=(1, 1))])
    with pytest.raises(MappingError, match="population 'c' fits no core type; on the largest, 'cores 5-6' "):
        map_network(g, load_preset("speck"))


@pytest.mark.parametrize("name", ["truenorth", "spinnaker2", "speck"])
def test_assumptions_are_marked_in_their_notes(name):
    """A leaf whose source is the 'assumption' key must say so in its note (convention of these presets)."""
    raw = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
    for path, parent in _numeric_leaves(raw):
        if parent.get("source") == "assumption":
            assert "ASSUMPTION" in parent.get("note", ""), path


@pytest.mark.parametrize("key,value,needle", [
    ("core.memory_layout", "tiled", "ChipSpec.core.memory_layout: Input should be 'packed' or 'pow2'"),
    ("core.max_axons", 0, "ChipSpec.core.max_axons: Input should be greater than 0"),
    ("core.stored_weight_bits", 99, "ChipSpec.core.stored_weight_bits: Input should be less than or equal to 64"),
    ("n_chips", 2, "ChipSpec.router.chip_link_energy_j: required when n_chips > 1"),
])
def test_new_override_keys_are_validated(key, value, needle):
    with pytest.raises(ValueError) as err:
        load_preset("loihi", {key: value})
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert {"core.max_axons", "core.neuron_memory_bits", "n_chips", "router.chip_link_energy_j",
            "core.synop_energy_j.bitmap"} <= set(override_keys())


def test_bitmap_cost_falls_back_to_sparse():
    c = load_preset("loihi", {"core.synop_energy_j.sparse": 2e-12})
    assert c.core.synop_energy_j.of("bitmap") == 2e-12
    assert load_preset("loihi", {"core.synop_energy_j.bitmap": 5e-12}).core.synop_energy_j.of("bitmap") == 5e-12


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("key", ["core.synop_energy_j.dense", "router.link_bandwidth_msgs_per_s",
                                 "core.static_power_w", "barrier_sync_s", "core.synapse_memory.read_j_per_bit"])
def test_non_finite_costs_are_refused_naming_the_key(key, value):
    tables = ("barrier_sync_s", "core.synapse_memory.read_j_per_bit")
    with pytest.raises(ValueError) as err:
        load_preset("loihi-sanafe" if "synapse_memory" in key else "loihi",
                    {key: {1: value} if key in tables else value})
    text = str(err.value)
    assert text.startswith(f"ChipSpec.{key}") and "finite number" in text and "\n" not in text, text


def test_non_finite_preset_numbers_are_refused_naming_the_yaml_path():
    with pytest.raises(ValueError, match=r"preset core\.x\.value: nan is not a finite number"):
        strip_sources({"core": {"x": {"value": float("nan"), "source": "a"}}}, {"a": "A"})
    with pytest.raises(ValueError, match=r"preset t\.1\.value: inf is not a finite number"):
        strip_sources({"t": {1: {"value": float("inf"), "source": "a"}}}, {"a": "A"})


@pytest.mark.parametrize("key, value", [("mesh_width", True), ("core.neurons_per_core", False),
                                        ("router.buffer_depth", True), ("power_gating", False),
                                        ("core.static_power_w", True)])
def test_a_boolean_is_refused_where_the_field_holds_no_boolean(key, value):
    # pydantic's lax mode would read true as 1 (a 1-wide mesh) and false as 0
    with pytest.raises(ValueError, match=r"true/false is not a value of this field.*\(got (True|False)\)"):
        load_preset("loihi", {key: value})
    assert load_preset("loihi", {"core.synapse_memory.folded": True}).core.synapse_memory.folded is True


def test_a_loaded_chip_s_tables_cannot_be_changed_in_place():
    """chip.barrier_sync_s[k] = -1.0 used to be taken: a negative latency that no validation saw, and a SimCache
    keyed on the chip object kept the old timing. The tables are read-only; copies and overrides still work."""
    import copy
    import pickle
    chip = load_preset("generic-45nm")
    tables = (chip.barrier_sync_s, chip.core.synapse_memory.read_j_per_bit, load_preset("loihi").core.state_memory
              .read_j_per_bit)
    for table in tables:
        for change in (lambda t: t.__setitem__(1, -1.0), lambda t: t.update({1: -1.0}), lambda t: t.clear(),
                       lambda t: t.pop(next(iter(t), 1)), lambda t: t.setdefault(7, 1.0)):
            with pytest.raises(TypeError, match="chip spec tables are read-only"):
                change(table)
    assert chip.barrier_sync_s == {1: 0.0}
    assert pickle.loads(pickle.dumps(chip)) == chip == copy.deepcopy(chip) == chip.model_copy(deep=True)
    assert type(chip.model_dump()["barrier_sync_s"]) is dict  # plain dicts out (YAML, JSON)
    changed = apply_overrides(chip, {"barrier_sync_s": {1: 2e-6, 4: 3e-6}})
    assert changed.barrier_sync_s == {1: 2e-6, 4: 3e-6} and chip.barrier_sync_s == {1: 0.0}


def test_a_chip_file_given_as_a_path_object_loads_and_bad_argument_types_are_named(tmp_path):
    """load_preset(pathlib.Path(...)) and overrides given as a list or a "key=value" string used to fail with
    AttributeError ('PosixPath' / 'list' object has no attribute ...)."""
    import pathlib
    from hwmodels.chip.presets import chip_file_digest
    path = tmp_path / "mychip.yaml"
    path.write_text(yaml.safe_dump(load_preset("loihi", {"core.neurons_per_core": 256}).model_dump(mode="json")))
    chip = load_preset(path, {"mesh_width": 2})
    assert chip.core.neurons_per_core == 256 and chip.mesh_width == 2 and chip.name == "loihi"
    assert chip_file_digest(path) == chip_file_digest(str(path)) is not None
    assert load_preset(pathlib.Path("loihi")) == load_preset("loihi")
    for bad in (None, 123):
        with pytest.raises(TypeError, match=f"preset: got {type(bad).__name__} {bad}, expected a preset name"):
            load_preset(bad)
    for bad in ([("core.neurons_per_core", 4)], "core.neurons_per_core=4"):
        with pytest.raises(TypeError, match="overrides: got .*expected a dict"):
            load_preset("loihi", bad)
    with pytest.raises(TypeError, match="chip: got str, expected a hwmodels.ChipSpec"):
        apply_overrides("loihi", {"mesh_width": 2})


def test_nested_overrides_equal_dotted_ones():
    """Overrides written nested (a YAML mapping, --set hardware.overrides.core.neurons_per_core=512) are the
    dotted ones; a table-valued field takes its dict whole; a key given both ways is refused naming it."""
    base = load_preset("loihi")
    dotted = apply_overrides(base, {"core.neurons_per_core": 512, "router.hop_latency_ew_s": 2e-9,
                                    "barrier_sync_s": {1: 1e-7, 4: 3e-7}})
    nested = apply_overrides(base, {"core": {"neurons_per_core": 512}, "router": {"hop_latency_ew_s": 2e-9},
                                    "barrier_sync_s": {1: 1e-7, 4: 3e-7}})
    assert nested == dotted and nested.core.neurons_per_core == 512 and dotted != base
    assert dict(nested.barrier_sync_s) == {1: 1e-7, 4: 3e-7}
    with pytest.raises(ValueError, match=r"^override key 'core.neurons_per_core' is given twice"):
        apply_overrides(base, {"core.neurons_per_core": 512, "core": {"neurons_per_core": 256}})
    with pytest.raises(ValueError, match=r"^override key 'core.neurons_per_cor' is not one of "):
        apply_overrides(base, {"core": {"neurons_per_cor": 512}})
