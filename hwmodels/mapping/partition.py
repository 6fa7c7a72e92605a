"""Partition a NetworkGraph into core-sized chunks under every per-core limit of a CoreSpec: neurons, synapse
memory (per storage format, hwmodels.mapping.storage), neuron-state memory, fan-in and input axons.

Each population is cut, in graph order, into contiguous chunks of its C-order neurons; each chunk is the
longest prefix that fits (every limit grows monotonically with the chunk). On a chip with several core types
(ChipSpec.core_types) every population goes, whole, onto cores of one type it fits: an exact search over the
populations (memoised on the cores of each type left) picks, population by population, the type needing the
fewest cores, then the smallest one, that still lets the rest fit, on one chip if it can, else on the fewest
of chip.n_chips chips that can. A network that does not fit raises MappingError naming the population and the
shortfall.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from hwmodels.mapping.connectivity import PAID_COUNT, axons_per_core, fan_in, range_counter
from hwmodels.chip.signatures import partition_signature
from hwmodels.chip.spec import ChipSpec, CoreSpec
from hwmodels.mapping.storage import bias_channel_neurons, chunk_state_bits, chunk_synapse_bits, memory_terms
from hwmodels.trace import NetworkGraph, conv_output_shape


#: Partition.core_type / Mapping.core_type of the input port's pseudo-core (ChipSpec.input_location "port")
PORT_TYPE = -1
#: keep(key, make, pins) -> the value stored under key, made by make() on first use (hwmodels.SimCache.keep)
Keep = Callable[[tuple, Callable[[], Any], tuple], Any]


def make_now(key: tuple, make: Callable[[], Any], pins: tuple = ()) -> Any:
    """A Keep that keeps nothing: make() on every call."""
    return make()


class MappingError(ValueError):
    """The network does not fit the chip; the message names the population and the shortfall."""


@dataclass(frozen=True, eq=False)
class Partition:
    """Cores before placement, numbered 0..n-1 in graph order.

    core_population: population name per core; core_neurons / core_synapse_bits / core_state_bits / core_axons:
    int64 arrays (n_cores,) (neurons, synapse-memory bits, neuron-state bits, distinct input axons);
    core_of_neuron: {population: int64 array (size,)} core id of every neuron (C-order);
    core_type: int64 (n_cores,) index into ChipSpec.core_types of every core (None: all 0, a homogeneous chip);
        PORT_TYPE (-1) for the input port's pseudo-core on a chip whose input_location is "port" (it holds a whole
        input population, occupies no core slot and no memory).
    """

    core_population: tuple[str, ...]
    core_neurons: np.ndarray
    core_synapse_bits: np.ndarray
    core_of_neuron: dict[str, np.ndarray]
    core_state_bits: np.ndarray | None = None
    core_axons: np.ndarray | None = None
    core_type: np.ndarray | None = None

    @property
    def n_cores(self) -> int:
        """Number of cores of the partition."""
        return len(self.core_population)


@dataclass(frozen=True, eq=False)
class _PopCosts:
    """Per-population inputs of the chunker: cumulative synapse bits, (per-channel bits, neurons per channel) of
    every in-projection with per-channel bits (MemoryTerms), neurons per bias channel (a conv's output plane if an
    in-projection is a conv, else 1), one input-axon counter per source population (fn(start, end) -> bool mask
    over its neurons), and whether an in-projection has a bias (stored per channel in the core's bias memory,
    CoreSpec.max_bias_entries)."""

    csum: np.ndarray
    channel_terms: list[tuple[int, int]]
    channel_neurons: int
    axon_sources: list[Callable[[int, int], np.ndarray]]
    has_bias: bool = False

    def axons(self, start: int, end: int) -> int:
        """Distinct source neurons with a stored synapse into targets [start, end)."""
        return int(sum(np.count_nonzero(hits(start, end)) for hits in self.axon_sources))


def _union(counters: list[Callable]) -> Callable[[int, int], np.ndarray]:
    return lambda start, end: np.logical_or.reduce([c(start, end) > 0 for c in counters])


def _pop_costs(graph: NetworkGraph, name: str, chip: ChipSpec, core: CoreSpec) -> _PopCosts:
    """Costs of population `name` from its in-projections on `core`. Raises MappingError when a neuron's fan-in
    (in the count its storage format stores) exceeds core.max_fan_in."""
    pop = graph.populations[name]
    per_neuron, channel_terms, channel_neurons = np.zeros(pop.size, np.int64), [], 1
    paid_fan_in = np.zeros(pop.size, np.int64)
    by_source: dict[str, list[Callable]] = {}
    for proj in graph.in_projections(name):
        src_shape = graph.populations[proj.source].shape
        if proj.kind == "conv":
            out = conv_output_shape(proj, src_shape)
            channel_neurons = out[1] * out[2]
        terms = memory_terms(proj, src_shape, core)
        per_neuron += terms.per_neuron
        channel_terms += [(terms.per_channel, terms.channel_neurons)] if terms.per_channel else []
        paid = PAID_COUNT[proj.storage]
        paid_fan_in += fan_in(proj, src_shape, paid)
        by_source.setdefault(proj.source, []).append(range_counter(proj, src_shape, paid))
    if core.max_fan_in is not None and pop.size and paid_fan_in.max() > core.max_fan_in:
        raise MappingError(f"network does not fit chip {chip.name!r}: population {name!r} neuron has fan-in "
                           f"{int(paid_fan_in.max()):,} but a core accepts at most {core.max_fan_in:,}")
    return _PopCosts(np.concatenate([[0], np.cumsum(per_neuron)]), channel_terms, channel_neurons,
                     [_union(c) for c in by_source.values()],
                     any(p.bias is not None for p in graph.in_projections(name)))


def bias_entries(start: int, ends: np.ndarray, channel_neurons: int) -> np.ndarray:
    """Bias-memory entries of chunks [start, end) of a population with channel_neurons neurons per output channel
    (1 for a dense population): one per channel the chunk touches, int64 like `ends`."""
    ends = np.asarray(ends, np.int64)
    return (ends - 1) // channel_neurons - start // channel_neurons + 1


def _memory_fit(name: str, costs: _PopCosts, chip: ChipSpec, core: CoreSpec, graph: NetworkGraph,
                start: int) -> tuple:
    """(candidate ends, synapse bits, state bits, how many leading ends fit both memories) for a chunk at start."""
    pop = graph.populations[name]
    ends = np.arange(start + 1, min(start + core.neurons_per_core, pop.size) + 1)
    syn = chunk_synapse_bits(costs.csum, costs.channel_terms, start, ends, core.memory_layout)
    state = chunk_state_bits(pop, core, start, ends)
    ok = syn <= core.synapse_memory_bits
    if core.neuron_memory_bits is not None:
        ok &= state <= core.neuron_memory_bits
    if core.max_bias_entries is not None and costs.has_bias:
        ok &= bias_entries(start, ends, costs.channel_neurons) <= core.max_bias_entries
    fits = len(ok) if ok.all() else int(np.argmin(ok))
    if fits == 0:
        what, need, have = ("synapse", syn[0], core.synapse_memory_bits) if syn[0] > core.synapse_memory_bits \
            else ("neuron-state", state[0], core.neuron_memory_bits)
        raise MappingError(f"network does not fit chip {chip.name!r}: population {name!r} neuron needs "
                           f"{int(need):,} bits of {what} memory but a core has {int(have):,}")
    return ends, syn, state, fits


def _axon_fit(name: str, costs: _PopCosts, core: CoreSpec, chip_name: str, start: int, ends: np.ndarray,
              fits: int) -> int:
    """Largest count of leading `ends` whose chunk has at most core.max_axons input axons (binary search)."""
    limit = core.max_axons
    if limit is None or costs.axons(start, int(ends[fits - 1])) <= limit:
        return fits
    if costs.axons(start, int(ends[0])) > limit:
        raise MappingError(f"network does not fit chip {chip_name!r}: population {name!r} neuron has "
                           f"{costs.axons(start, int(ends[0])):,} input axons but a core accepts at most {limit:,}")
    lo, hi = 1, fits - 1  # ends[lo - 1] fits, ends[hi] does not
    while lo <= hi:
        mid = (lo + hi) // 2
        if costs.axons(start, int(ends[mid])) <= limit:
            lo = mid + 1
        else:
            hi = mid - 1
    return lo


def _chunks(graph: NetworkGraph, name: str, chip: ChipSpec, core: CoreSpec) -> list[tuple[int, int, int, int, int]]:
    """Greedy chunks [(start, end, synapse bits, state bits, axons)] of population `name` on cores `core`."""
    costs = _pop_costs(graph, name, chip, core)
    out, start, n = [], 0, graph.populations[name].size
    while start < n:
        ends, syn, state, fits = _memory_fit(name, costs, chip, core, graph, start)
        k = _axon_fit(name, costs, core, chip.name, start, ends, fits) - 1
        end = int(ends[k])
        out.append((start, end, int(syn[k]), int(state[k])))
        start = end
    return [(*c, axons) for c, axons in zip(out, _chunk_axons(graph, name, [e - s for s, e, *_ in out]))]


def _chunk_axons(graph: NetworkGraph, name: str, sizes: list[int]) -> list[int]:
    """Distinct source neurons with a stored synapse into each of the consecutive chunks of `sizes` (> 0) neurons
    that cover population `name`: _PopCosts.axons of every chunk (hwmodels.mapping.connectivity.axons_per_core
    with the chunks as cores)."""
    return axons_per_core(graph, name, np.repeat(np.arange(len(sizes)), sizes), len(sizes)).tolist()


def _type_options(graph: NetworkGraph, name: str, chip: ChipSpec) -> dict[int, list]:
    """{core type index: chunks} for every core type population `name` fits (within max_cores_per_population).
    Raises MappingError naming the population and the largest core type (most synapse memory, then neuron
    memory, then neurons) with its shortfall when it fits none."""
    options, reasons = {}, {}
    for t, core in enumerate(chip.core_specs):
        try:
            chunks = _chunks(graph, name, chip, core)
        except MappingError as err:
            reasons[t] = str(err).split(": ", 1)[1]
            continue
        if chip.max_cores_per_population is not None and len(chunks) > chip.max_cores_per_population:
            reasons[t] = _too_many_cores(graph, name, chip, core, len(chunks))
            continue
        options[t] = chunks
    if not options:
        specs = chip.core_specs
        big = max(range(len(specs)), key=lambda t: (specs[t].synapse_memory_bits, specs[t].neuron_memory_bits or 0,
                                                     specs[t].neurons_per_core, -t))
        raise MappingError(f"network does not fit chip {chip.name!r}: population {name!r} fits no core type; on "
                           f"the largest, {chip.core_type_names[big]!r} ({_describe(specs[big])}): {reasons[big]}")
    return options


def _bias_channels(graph: NetworkGraph, name: str) -> int:
    """Bias-memory entries population `name` needs in all (one per output channel, or neuron of a population with
    no conv in-projection; as hwmodels.mapping.check counts them); 0 when no in-projection has a bias."""
    pop = graph.populations[name]
    per_entry = bias_channel_neurons(graph.in_projections(name), pop)
    return 0 if per_entry is None else pop.size // per_entry


def _too_many_cores(graph: NetworkGraph, name: str, chip: ChipSpec, core: CoreSpec, n: int) -> str:
    """Why population `name`, cut into n chunks on cores `core`, exceeds chip.max_cores_per_population: its bias
    memory when its bias entries alone need more cores than that, else the count of cores."""
    limit, entries = chip.max_cores_per_population, _bias_channels(graph, name)
    if core.max_bias_entries is not None and entries > limit * core.max_bias_entries:
        spread = f" (its {entries:,} on at most {limit} cores)" if limit > 1 else ""
        return (f"population {name!r} needs {-(-entries // limit):,} bias entries per core{spread} but a core "
                f"holds {core.max_bias_entries:,}")
    return f"population {name!r} needs {n} cores but the chip holds a population on at most {limit}"


def _describe(core: CoreSpec) -> str:
    """The capacity of a core type in one phrase."""
    state = f", {core.neuron_memory_bits:,} neuron-memory bits" if core.neuron_memory_bits is not None else ""
    return f"{core.neurons_per_core:,} neurons, {core.synapse_memory_bits:,} synapse-memory bits{state}"


def _assign_types(names: list[str], options: list[dict[int, list]], chip: ChipSpec) -> list[int]:
    """A core type per population such that no type is used by more cores than k chips have of it, for the
    smallest k in 1..chip.n_chips that allows one (`_search_types`), so that placement, which fills a type's
    slots chip by chip, spills to a later chip only when the earlier chips cannot hold the network. Raises
    MappingError naming the furthest population that could not be given cores on all chip.n_chips chips."""
    specs = chip.core_specs
    size = [s.synapse_memory_bits + (s.neuron_memory_bits or 0) + s.neurons_per_core for s in specs]
    order = [sorted(o, key=lambda t: (len(o[t]), size[t], t)) for o in options]
    for chips in range(1, chip.n_chips + 1):
        found, furthest = _search_types(options, order, chip.core_type_counts, chips)
        if found is not None:
            return found
    i = min(furthest, len(names) - 1)
    wants = ", ".join(f"{len(options[i][t])} x {chip.core_type_names[t]!r}" for t in order[i])
    has = ", ".join(f"{c} x {n!r}" for c, n in zip(chip.core_type_counts, chip.core_type_names))
    raise MappingError(f"network does not fit chip {chip.name!r} x {chip.n_chips}: population {names[i]!r} "
                       f"needs cores of a type it fits ({wants}) but the populations before it leave too few "
                       f"(the chip has {has})")


def _search_types(options: list[dict[int, list]], order: list[list[int]], counts: tuple, chips: int) -> tuple:
    """(a core type per population with no type used by more cores than `chips` chips of `counts` cores of each
    type have, or None; the furthest population reached): depth-first in graph order, each population's types
    tried by cores needed, then the chip its last core lands on (a type's cores fill chip 0, then chip 1, ...,
    as placement fills them), then `order` (cores needed, memory size, index); failures memoised on
    (population, cores of each type left)."""
    failed: set = set()
    furthest = [0]

    def chip_of_last(t: int, need: int, left: tuple) -> int:
        return (counts[t] * chips - left[t] + need - 1) // counts[t]

    def place(i: int, left: tuple) -> list[int] | None:
        furthest[0] = max(furthest[0], i)
        if i == len(options):
            return []
        if (i, left) in failed:
            return None
        for t in sorted(order[i], key=lambda t: (len(options[i][t]), chip_of_last(t, len(options[i][t]), left))):
            need = len(options[i][t])
            if need <= left[t]:
                rest = place(i + 1, left[:t] + (left[t] - need,) + left[t + 1:])
                if rest is not None:
                    return [t] + rest
        failed.add((i, left))
        return None

    return place(0, tuple(c * chips for c in counts)), furthest[0]


def _typed_chunks(graph: NetworkGraph, chip: ChipSpec, names: list[str]) -> tuple[dict[str, list], dict[str, int]]:
    """({population: chunks}, {population: core type}) of populations `names` on a chip with several core types."""
    options = [_type_options(graph, name, chip) for name in names]
    types = _assign_types(names, options, chip)
    return {n: o[t] for n, o, t in zip(names, options, types)}, dict(zip(names, types))


def _check_room(graph: NetworkGraph, chip: ChipSpec, name: str, n: int, left: int, needed: int) -> None:
    """MappingError when population `name` needs more than chip.max_cores_per_population cores (naming its bias
    memory when that is why, `_too_many_cores`) or more than the `left` free cores (of chip.n_cores_total; the
    whole network needs `needed`)."""
    if chip.max_cores_per_population is not None and n > chip.max_cores_per_population:
        raise MappingError(f"network does not fit chip {chip.name!r}: "
                           f"{_too_many_cores(graph, name, chip, chip.core, n)}")
    if n > left:
        raise MappingError(f"network does not fit chip {chip.name!r} x {chip.n_chips}: population {name!r} needs "
                           f"{n} cores but only {left} of {chip.n_cores_total} are left (the network needs "
                           f"{needed} cores: {-(-needed // chip.n_cores)} chips of {chip.n_cores} cores)")


def _chunked(graph: NetworkGraph, chip: ChipSpec, on_chip: list[str]) -> tuple[dict[str, list], dict[str, int]]:
    """({population: chunks}, {population: core type}) of the populations `on_chip` (all but the input port's)."""
    if chip.core_types is None:
        return {name: _chunks(graph, name, chip, chip.core) for name in on_chip}, {name: 0 for name in on_chip}
    return _typed_chunks(graph, chip, on_chip)


def partition(graph: NetworkGraph, chip: ChipSpec, keep: Keep = make_now) -> Partition:
    """Split every population, in graph order, into contiguous chunks of its C-order neurons, one per core.

    The cores of all chip.n_chips chips are available. Raises MappingError naming the population when a neuron
    does not fit a core (memory, fan-in or axons), when a population needs more than
    chip.max_cores_per_population cores (naming the bias memory when its bias entries are why), or when the
    chips run out of cores ("population 'lif2' needs 40 cores but only 12 of 128 are left ...", with the number
    of chips that would hold the network). On a chip with core_types, a population that fits no type is refused
    naming the largest type, and one left without cores of a type it fits names the types it would take (module
    docstring); the types are those of the fewest chips that hold the network. On a chip whose input_location
    is "port", every input population is one port pseudo-core (core_type PORT_TYPE) outside these limits.
    keep: where the chunks are kept, by graph and hwmodels.chip.signatures.partition_signature
    (hwmodels.SimCache.keep: chips that differ only in mesh, cores per tile or chips share them).
    """
    ports = {n for n in graph.populations if chip.input_location == "port" and graph.populations[n].is_input}
    on_chip = [n for n in graph.populations if n not in ports]
    chunks_of, pop_type = keep(("chunks", id(graph), partition_signature(chip)),
                               lambda: _chunked(graph, chip, on_chip), (graph,))
    chunks_of, pop_type = dict(chunks_of), dict(pop_type)
    for name in ports:  # the input port: one pseudo-core outside the chip's cores (ChipSpec.input_location)
        chunks_of[name], pop_type[name] = [(0, graph.populations[name].size, 0, 0, 0)], PORT_TYPE
    all_chunks = {name: chunks_of[name] for name in graph.populations}
    needed = sum(len(c) for n, c in all_chunks.items() if n not in ports)
    total = chip.n_cores_total
    pops, core_of, rows, types = [], {}, [], []
    for name, chunks in all_chunks.items():
        if name not in ports:
            _check_room(graph, chip, name, len(chunks), total - sum(t != PORT_TYPE for t in types), needed)
        sizes = [e - s for s, e, *_ in chunks]
        core_of[name] = np.repeat(np.arange(len(pops), len(pops) + len(chunks)), sizes).astype(np.int64)
        pops += [name] * len(chunks)
        types += [pop_type[name]] * len(chunks)
        rows += [(e - s, syn, st, ax) for s, e, syn, st, ax in chunks]
    cols = np.array(rows, np.int64).reshape(-1, 4).T
    return Partition(tuple(pops), cols[0], cols[1], core_of, cols[2], cols[3], np.array(types, np.int64))
