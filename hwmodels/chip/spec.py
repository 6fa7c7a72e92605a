"""Chip description as frozen, validated parameter records: CoreSpec, RouterSpec and ChipSpec (pydantic v2).

Behaviour (mapping, simulation) lives elsewhere; these records only hold numbers, in SI units named by suffix
(_j, _s, _bits, _w). Construction errors are ValueErrors with a one-line message naming the field and its bounds;
every number must be finite (NaN and inf are refused, naming the field).
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer,
                      model_validator)

_Energy = Field(ge=0.0, description="energy per event in J")
_Latency = Field(ge=0.0, description="latency per event in s")


def _accepted_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) model that `loc` points into; [] when loc leaves the model tree."""
    for part in loc:
        info = model.model_fields.get(str(part))
        ann = info.annotation if info is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


class ReadOnlyDict(dict):
    """A dict whose items cannot be changed in place: the tables of a frozen spec record (barrier_sync_s,
    read_j_per_bit, write_j_per_bit), so `chip.barrier_sync_s[1] = -1.0` raises TypeError instead of bypassing
    validation (a negative latency) or leaving a hwmodels.SimCache keyed on the chip stale. Copies (copy, deepcopy,
    pickle, dict(table)) work; a changed chip is made with hwmodels.apply_overrides or load_preset(..., overrides)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("chip spec tables are read-only (the spec is frozen); make a changed chip with "
                        "hwmodels.load_preset(name, overrides) or hwmodels.apply_overrides(chip, overrides)")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple:
        return type(self), (dict(self),)

    def __copy__(self) -> "ReadOnlyDict":
        return self

    def __deepcopy__(self, memo: dict) -> "ReadOnlyDict":
        return self


class SpecError(ValueError):
    """A one-line validation error of a spec record: '<Model>.<field path>: <problem>'."""

    def __init__(self, model_name: str, fields: tuple, problem: str):
        self.fields, self.problem = tuple(str(f) for f in fields), problem
        super().__init__(f"{'.'.join((model_name,) + self.fields)}: {problem}")


def one_line_error(model: type[BaseModel], err: ValidationError) -> SpecError:
    """Summarise a pydantic ValidationError as one SpecError naming the full field path and its bounds.

    Errors raised by nested records (which pydantic wraps as 'Value error, ...') are unwrapped so the message
    names the path from the outermost record, e.g. 'ChipSpec.core.synapse_memory_bits: ...'.
    """
    errors = err.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    inner = (first.get("ctx") or {}).get("error")
    if isinstance(inner, SpecError):
        loc, problem = loc + inner.fields, inner.problem
    elif first["type"] == "extra_forbidden":
        problem = f"unknown field; accepted: {', '.join(_accepted_fields(model, loc[:-1]))}"
    else:
        got = repr(first.get("input"))
        problem = f"{first['msg']} (got {got if len(got) <= 80 else got[:77] + '...'})"
    more = f" [+{len(errors) - 1} more]" if len(errors) > 1 else ""
    return SpecError(model.__name__, loc, problem + more)


class _Spec(BaseModel):
    """Base of all spec records: frozen, unknown fields rejected, NaN and inf refused, one-line ValueError on bad
    input."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info) -> Any:
        """Refuse true/false for a field that holds no bool (pydantic's lax mode would read true as 1: a 1-wide
        mesh from `mesh_width: true`)."""
        if isinstance(value, (bool, np.bool_)) and "bool" not in str(cls.model_fields[info.field_name].annotation):
            raise ValueError("true/false is not a value of this field (YAML reads yes/no/on/off as booleans too)")
        return value

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise one_line_error(type(self), err) from None


class FormatCosts(_Spec):
    """One cost per synaptic storage format (see hwmodels.trace.STORAGE_FORMATS); unit given by the owner field.

    bitmap: optional; None means "as sparse" (a bitmap-indexed synapse unit visits only the non-zero weights,
        as a compressed sparse one does, so it reuses the sparse cost unless a chip publishes its own).
    """

    dense: float = Field(ge=0.0)
    sparse: float = Field(ge=0.0)
    conv: float = Field(ge=0.0)
    bitmap: float | None = Field(default=None, ge=0.0)

    def of(self, storage: str) -> float:
        """Cost of storage format `storage` (a field name; 'bitmap' falls back to 'sparse' when unset).

        Raises ValueError for any other name.
        """
        if storage not in type(self).model_fields:
            raise ValueError(f"storage: {storage!r} is not one of {', '.join(type(self).model_fields)}")
        value = getattr(self, storage)
        return float(self.sparse if value is None else value)


class MemoryAccess(_Spec):
    """Energy of accessing one memory of a core (synapse memory or neuron-state memory), per bit accessed.

    read_j_per_bit: {capacity in bits: J per bit read}, piecewise linear in the memory's capacity and constant
        outside the table (one entry: a constant), e.g. Horowitz (ISSCC 2014) SRAM reads of 10 / 20 / 100 pJ per
        64 bits at 8 KB / 32 KB / 1 MB, as Lemaire et al. (2022) interpolate them; {} when folded.
    write_j_per_bit: the same for writes; None = as read.
    capacity: which capacity the table is read at: "physical" (the core's memory size: synapse_memory_bits, or
        neuron_memory_bits / neurons_per_core x state bits) or "used" (the bits the mapping stores on that core,
        as Lemaire et al. size a buffer by the data it holds).
    folded: True when a measured per-event cost already includes this access (e.g. a chip-level energy per
        synaptic op that covers the weight read): the bits are still counted, no energy is charged for them.
    location: "core" (on-core SRAM) or "dram" (off-chip: every access goes to DRAM at read_j_per_bit).
    reason: why the memory is folded, or where its table comes from (provenance, shown by `codesign presets show`).
    Raises SpecError when an unfolded memory has no read table, or a folded one has one.
    """

    read_j_per_bit: dict[int, float] = Field(default_factory=dict, validate_default=True)
    write_j_per_bit: dict[int, float] | None = None
    capacity: Literal["physical", "used"] = "physical"
    folded: bool = True
    location: Literal["core", "dram"] = "core"
    reason: str = ""

    @field_validator("read_j_per_bit", "write_j_per_bit")
    @classmethod
    def _check_table(cls, table: dict[int, float] | None) -> dict[int, float] | None:
        if table is None:
            return None
        if any(k < 0 for k in table) or any(not v >= 0.0 for v in table.values()):
            raise ValueError("must be a map {capacity bits >= 0: J per bit >= 0}")
        return ReadOnlyDict(sorted(table.items()))

    @model_validator(mode="after")
    def _check_folded(self) -> "MemoryAccess":
        if not self.folded and not self.read_j_per_bit:
            raise SpecError("MemoryAccess", ("read_j_per_bit",), "needed when folded is false")
        if self.folded and (self.read_j_per_bit or self.write_j_per_bit):
            raise SpecError("MemoryAccess", ("folded",), "a folded memory charges nothing; drop its energy table")
        return self

    def energy_per_bit(self, capacity_bits: np.ndarray, write: bool = False) -> np.ndarray:
        """J per bit read (or written) at each capacity (bits), float array shaped like `capacity_bits`; 0 when
        folded."""
        table = self.read_j_per_bit if not write or self.write_j_per_bit is None else self.write_j_per_bit
        cap = np.asarray(capacity_bits, float)
        if self.folded or not table:
            return np.zeros(cap.shape)
        return np.interp(cap, np.array(list(table), float), np.array(list(table.values()), float))


class CoreSpec(_Spec):
    """One neuromorphic core: capacity limits and per-event energy (J) and latency (s).

    neurons_per_core: neurons (compartments) a core holds.
    synapse_memory_bits: synapse memory per core; weights are stored per storage format (hwmodels.mapping.storage).
    max_fan_in: largest number of synapses (as the storage format stores them) into one neuron; None = no limit.
    max_axons: largest number of distinct source neurons with at least one stored synapse into the core (input
        axons, as Loihi and SANA-FE count them); None = no limit.
    neuron_memory_bits: neuron-state memory per core; every neuron holds its population's state_bits (or
        stored_state_bits); None = state is not limited (or not separate from other memory).
    max_bias_entries: entries of the core's bias memory: a population fed by a projection with a bias stores one
        entry per output channel (conv) or neuron (dense) on the core (DYNAP-CNN/Speck: 1024, sinabs
        LayerConstraints.bias_memory); None = biases are not limited (or not stored separately).
    stored_weight_bits / stored_state_bits: fixed width of a stored weight / neuron state on this chip (e.g. a
        1-bit crossbar, 8-bit kernel entries); None = the projection's weight_bits / population's state_bits.
    memory_layout: "packed" (bits add up exactly) or "pow2" (DYNAP-CNN addressing: kernel and neuron memories
        are padded to powers of two, sinabs DynapcnnLayer.memory_summary); see hwmodels.mapping.storage.
    synop_*: one synaptic operation (one stored synapse visited when a spike arrives), per storage format: the
        compute (and, when synapse_memory.folded, the weight read) of the synapse unit.
    neuron_access_*: one access of a neuron by the core's neuron loop (SANA-FE's soma access), charged per
        neuron_access_rule; 0 when the chip folds it into the update.
    neuron_active_* / neuron_inactive_*: one neuron update in a hardware step in which the neuron spiked (update
        + spike out) / did not spike.
    neuron_access_rule: "window" (every neuron of a population is accessed in each hardware step of its
        timestep window) or "every_step" (every mapped non-input neuron in every hardware step, pipeline fill
        and drain included, as SANA-FE and Loihi's time-multiplexed neuron loop do).
    neuron_update_rule: "all" (every accessed neuron of a population in its window is updated) or "active"
        (only neurons the trace records as updated: input, bias or a non-zero potential, hwmodels.activity,
        including those left with a potential after their window; traces without activity fall back to "all").
    message_out_*: injecting one spike message into the router; message_in_*: receiving one message at a core.
    receive_mode: "overlap" (reading the next message in overlaps the synapse unit's work on the previous one, as
    on Loihi) or "serial" (each message is read in, then processed; SANA-FE's timing model).
    dendrite_*: one dendritic accumulation per synaptic event (0 when the chip folds it into the synaptic op).
    accumulator_bits: bits of the target neuron's dendritic accumulator read and written (read-modify-write) per
        synaptic event, costed by state_memory; 0 = not charged (folded into the synaptic op).
    synapse_memory / state_memory: per-bit access energy of the weight memory (bits read per synaptic event:
        hwmodels.mapping.storage.read_bits) and of the neuron-state memory (state bits read and written per update).
    static_power_w: leakage power per powered core; sram_static_w_per_bit: leakage per bit of the core's
        synapse and neuron-state memory (physical size); see ChipSpec.power_gating.
    """

    neurons_per_core: int = Field(gt=0)
    synapse_memory_bits: int = Field(gt=0)
    max_fan_in: int | None = Field(default=None, gt=0)
    max_axons: int | None = Field(default=None, gt=0)
    neuron_memory_bits: int | None = Field(default=None, gt=0)
    max_bias_entries: int | None = Field(default=None, gt=0)
    stored_weight_bits: int | None = Field(default=None, ge=1, le=64)
    stored_state_bits: int | None = Field(default=None, ge=1, le=64)
    memory_layout: Literal["packed", "pow2"] = "packed"
    synop_energy_j: FormatCosts
    synop_latency_s: FormatCosts
    neuron_access_energy_j: float = Field(default=0.0, ge=0.0)
    neuron_access_latency_s: float = Field(default=0.0, ge=0.0)
    neuron_active_energy_j: float = _Energy
    neuron_inactive_energy_j: float = _Energy
    neuron_active_latency_s: float = _Latency
    neuron_inactive_latency_s: float = _Latency
    neuron_access_rule: Literal["window", "every_step"] = "window"
    neuron_update_rule: Literal["all", "active"] = "all"
    message_out_energy_j: float = _Energy
    message_out_latency_s: float = _Latency
    message_in_energy_j: float = _Energy
    message_in_latency_s: float = _Latency
    receive_mode: Literal["overlap", "serial"] = "overlap"
    dendrite_energy_j: float = Field(default=0.0, ge=0.0)
    dendrite_latency_s: float = Field(default=0.0, ge=0.0)
    accumulator_bits: int = Field(default=0, ge=0, le=64)
    synapse_memory: MemoryAccess = Field(default_factory=MemoryAccess)
    state_memory: MemoryAccess = Field(default_factory=MemoryAccess)
    static_power_w: float = Field(ge=0.0)
    sram_static_w_per_bit: float = Field(default=0.0, ge=0.0)


#: most core slots a ChipSpec may have over all its chips (2^31 - 1; Intel's Hala Point, 1,152 Loihi 2 chips of
#: 128 cores, has ~147,000)
MAX_CORES_TOTAL = 2**31 - 1
#: CoreSpec fields a CoreType may override (the capacity limits; every per-event cost stays the chip's core's)
CORE_TYPE_FIELDS = ("neurons_per_core", "synapse_memory_bits", "neuron_memory_bits", "max_fan_in", "max_axons")


class CoreType(_Spec):
    """One kind of core of a heterogeneous chip: `count` cores of every chip whose capacity limits differ from
    ChipSpec.core (e.g. DYNAP-CNN/Speck cores 3-4 hold 32 Ki kernel entries, cores 0-2 16 Ki).

    name: a label for messages (default: "type <index>"); count: cores of this type on one chip.
    neurons_per_core, synapse_memory_bits, neuron_memory_bits, max_fan_in, max_axons: as in CoreSpec, in place of
        the core's value (which may be lower or higher); None = the core's value. Per-event costs are the core's.
    """

    name: str = ""
    count: int = Field(gt=0)
    neurons_per_core: int | None = Field(default=None, gt=0)
    synapse_memory_bits: int | None = Field(default=None, gt=0)
    neuron_memory_bits: int | None = Field(default=None, gt=0)
    max_fan_in: int | None = Field(default=None, gt=0)
    max_axons: int | None = Field(default=None, gt=0)

    def spec(self, core: CoreSpec) -> CoreSpec:
        """`core` with this type's limits in place of its own."""
        update = {f: getattr(self, f) for f in CORE_TYPE_FIELDS if getattr(self, f) is not None}
        return core.model_copy(update=update)


class RouterSpec(_Spec):
    """Mesh router and links: XY dimension-ordered routing between tiles.

    hop_*_ew / hop_*_ns: energy (J) and latency (s) of one message crossing one tile hop east-west / north-south.
    link_bandwidth_msgs_per_s: messages per second one directed link carries (per-message link time = 1/value).
    buffer_depth: router input-buffer depth in messages; None = unbounded.
    chip_link_energy_j / chip_link_latency_s: one message crossing one chip-to-chip link (replacing the tile hop
        at a chip boundary); None = not given, which ChipSpec accepts only when n_chips == 1. No shipped preset
        publishes a chip-to-chip cost, so multi-chip runs must set both (a modelling assumption of the user).
    congestion_model: how the DES delays messages in the network. "links" (hwmodels.timing.des): flows contend for
        directed links of link_bandwidth_msgs_per_s and for router buffers of buffer_depth, and a core sends
        its messages after its whole neuron loop. "density" (hwmodels.timing.des_density): SANA-FE's detailed timing
        model (Boyle et al., IEEE TCAD 2025): a neuron's messages leave right after its own soma work, each is
        delayed by max(contention-free route latency, messages in flight on its route x their mean receive
        time / (hops + 1)), and blocks its sender above (hops + 1) x buffer_depth messages in flight; the link
        bandwidth then only enters through the contention-free latency (one link time to eject). The analytic
        model ignores this field (it has no contention either way).
    """

    hop_energy_ew_j: float = _Energy
    hop_energy_ns_j: float = _Energy
    hop_latency_ew_s: float = _Latency
    hop_latency_ns_s: float = _Latency
    link_bandwidth_msgs_per_s: float = Field(gt=0.0)
    buffer_depth: int | None = Field(default=None, gt=0)
    chip_link_energy_j: float | None = Field(default=None, ge=0.0)
    chip_link_latency_s: float | None = Field(default=None, ge=0.0)
    congestion_model: Literal["links", "density"] = "links"

    @property
    def link_time_s(self) -> float:
        """Time one message occupies a directed link, s (1 / link_bandwidth_msgs_per_s)."""
        return 1.0 / self.link_bandwidth_msgs_per_s


class Derivation(_Spec):
    """Provenance of a chip file written by `codesign presets derive` (hwmodels.chip.derive); not used by the models.

    preset: the base it was derived from (a preset name or chip file path, as given).
    date: ISO date of the derivation.
    changed: {dotted override key: {"from": the base's value, "to": the new value}}.
    """

    preset: str = Field(min_length=1)
    date: str = ""
    changed: dict[str, dict[Literal["from", "to"], Any]] = Field(default_factory=dict)


class ChipSpec(_Spec):
    """A chip: a mesh_width x mesh_height mesh of tiles, each with a router and cores_per_tile cores.

    n_chips: identical chips joined by chip-to-chip links, laid out chips_per_row per row (None = one row);
        global tile (x, y) = (chip column * mesh_width + x, chip row * mesh_height + y), and an XY route that
        crosses a chip boundary uses a chip-to-chip link for that hop (hwmodels.mapping.map.Mapping.hop_counts).
        n_chips > 1 needs router.chip_link_energy_j and router.chip_link_latency_s.
    max_cores_per_population: most cores one population may be split over (DYNAP-CNN/Speck: 1, a layer is one
        core); None = no limit.
    barrier_sync_s: {tiles in use: seconds} of the end-of-timestep barrier, interpolated linearly in the number
        of tiles in use and held constant outside the table (see `barrier_latency_s`).
    sources: {key: full citation} for the numbers of a preset (kept for provenance; not used by the models).
    static_power_chip_w: leakage of one powered chip outside its cores (routers, clocking, I/O), W.
    power_gating: "cores" (only the cores the mapping uses, and the chips holding them, leak) or "none" (every
        core of all n_chips chips leaks for the whole inference). Static energy = static power x latency.
    notes: {topic: text} of a preset (what is folded into what, remaining assumptions); provenance only.
    derived_from: how a derived chip file was made from its base (Derivation); None for a preset; provenance only.
    core_types: None (every core is `core`: a homogeneous chip) or the chip's kinds of core (CoreType), laid over
        the core slots of every chip in order (slot = tile index x cores_per_tile + core in tile, tiles row by
        row): the first type's `count` slots, then the next type's; the counts must add up to n_cores. Each
        population is mapped onto cores of one type it fits (hwmodels.mapping.partition). Left out of model_dump when
        None, so a homogeneous chip dumps, signs and maps as before.
    input_location: where the network's input spikes come from. "core" (default): input populations are mapped
        onto cores like any other population (SANA-FE maps input neurons onto cores; Loihi's spike generators
        are on-chip). "port": the chip takes input events through an interface outside its cores (Speck's DVS /
        host input, which sinabs' DynapcnnNetwork keeps out of the nine layer cores): input populations occupy
        no core, leak nothing, count against no core limit, and their events enter the mesh at the router of
        tile (0, 0) of chip 0, paying the core's message-out energy and latency and the hops from there
        (hwmodels.mapping.partition, hwmodels.mapping.map). Left out of model_dump when "core", so such chips sign as before.
    """

    name: str = Field(min_length=1)
    description: str = ""
    mesh_width: int = Field(gt=0)
    mesh_height: int = Field(gt=0)
    cores_per_tile: int = Field(gt=0)
    core: CoreSpec
    router: RouterSpec
    barrier_sync_s: dict[int, float]
    sources: dict[str, str] = Field(default_factory=dict)
    n_chips: int = Field(default=1, gt=0)
    chips_per_row: int | None = Field(default=None, gt=0)
    max_cores_per_population: int | None = Field(default=None, gt=0)
    static_power_chip_w: float = Field(default=0.0, ge=0.0)
    power_gating: Literal["cores", "none"] = "cores"
    notes: dict[str, str] = Field(default_factory=dict)
    derived_from: Derivation | None = None
    core_types: tuple[CoreType, ...] | None = None
    input_location: Literal["core", "port"] = "core"

    @field_validator("barrier_sync_s")
    @classmethod
    def _check_barrier(cls, table: dict[int, float]) -> dict[int, float]:
        if not table or any(k < 1 for k in table) or any(not v >= 0.0 for v in table.values()):
            raise ValueError("must be a non-empty map {tiles >= 1: seconds >= 0}")
        return ReadOnlyDict(sorted(table.items()))

    @model_validator(mode="after")
    def _check_chip_links(self) -> "ChipSpec":
        if self.n_chips > 1:
            for name in ("chip_link_energy_j", "chip_link_latency_s"):
                if getattr(self.router, name) is None:
                    raise SpecError("ChipSpec", ("router", name),
                                    f"required when n_chips > 1 (n_chips={self.n_chips}); no shipped preset "
                                    "publishes a chip-to-chip cost, give it as an override")
        return self

    @model_validator(mode="after")
    def _check_core_count(self) -> "ChipSpec":
        """At most MAX_CORES_TOTAL core slots over all chips (mesh_width x mesh_height x cores_per_tile x
        n_chips): the mapping numbers slots and tiles in int64 arrays and divides them by these products, which a
        mesh_width of 2^63 overflowed with a numpy traceback."""
        total = self.mesh_width * self.mesh_height * self.cores_per_tile * self.n_chips
        if total > MAX_CORES_TOTAL:
            raise SpecError("ChipSpec", ("mesh_width",),
                            f"mesh_width x mesh_height x cores_per_tile x n_chips = {total:.3g} core slots; at most "
                            f"{MAX_CORES_TOTAL:,} (2^31 - 1)")
        return self

    @model_validator(mode="after")
    def _check_core_types(self) -> "ChipSpec":
        if self.core_types is None:
            return self
        if not self.core_types:
            raise SpecError("ChipSpec", ("core_types",), "give at least one core type, or leave core_types out")
        total = sum(t.count for t in self.core_types)
        if total != self.n_cores:
            raise SpecError("ChipSpec", ("core_types",),
                            f"counts add up to {total} cores but the chip has {self.n_cores} (mesh_width x "
                            "mesh_height x cores_per_tile)")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict:
        data = handler(self)
        if isinstance(data, dict):
            if self.core_types is None:
                data.pop("core_types", None)
            if self.input_location == "core":
                data.pop("input_location", None)
        return data

    @property
    def core_specs(self) -> tuple[CoreSpec, ...]:
        """The CoreSpec of every core type, in core_types order; (core,) on a homogeneous chip."""
        return (self.core,) if self.core_types is None else tuple(t.spec(self.core) for t in self.core_types)

    @property
    def core_type_names(self) -> tuple[str, ...]:
        """A label per core type (its name, or "type <index>")."""
        return ("core",) if self.core_types is None else tuple(t.name or f"type {i}"
                                                                for i, t in enumerate(self.core_types))

    @property
    def core_type_counts(self) -> tuple[int, ...]:
        """Cores of each type on one chip; (n_cores,) on a homogeneous chip."""
        return (self.n_cores,) if self.core_types is None else tuple(t.count for t in self.core_types)

    def slot_types(self) -> np.ndarray:
        """Core type of every core slot of all n_chips chips (slot ids as hwmodels.mapping.placement numbers them),
        int64 (n_cores_total,)."""
        one = np.repeat(np.arange(len(self.core_type_counts)), self.core_type_counts)
        return np.tile(one, self.n_chips).astype(np.int64)

    def port_cores(self, graph_populations: dict, core_population: tuple) -> np.ndarray:
        """bool (n_cores,): the cores of `core_population` (population name per core) that are the input port
        rather than chip cores: those holding an input population when input_location is "port" (all False
        otherwise). graph_populations: {name: Population} (NetworkGraph.populations)."""
        if self.input_location != "port":
            return np.zeros(len(core_population), bool)
        return np.array([graph_populations[p].is_input for p in core_population], bool)

    @property
    def chip_grid(self) -> tuple[int, int]:
        """(chips per row, chip rows) of the multi-chip layout."""
        per_row = min(self.chips_per_row or self.n_chips, self.n_chips)
        return per_row, -(-self.n_chips // per_row)

    @property
    def n_cores_total(self) -> int:
        """Cores on all n_chips chips."""
        return self.n_cores * self.n_chips

    @property
    def n_tiles(self) -> int:
        """Tiles on the chip (mesh_width * mesh_height)."""
        return self.mesh_width * self.mesh_height

    @property
    def n_cores(self) -> int:
        """Cores on the chip (tiles * cores_per_tile)."""
        return self.n_tiles * self.cores_per_tile

    def barrier_latency_s(self, tiles: int) -> float:
        """Barrier-sync latency (s) with `tiles` tiles in use: linear interpolation of `barrier_sync_s`."""
        keys = np.array(list(self.barrier_sync_s), dtype=float)
        vals = np.array(list(self.barrier_sync_s.values()), dtype=float)
        return float(np.interp(float(tiles), keys, vals))
