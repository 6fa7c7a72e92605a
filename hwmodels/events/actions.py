"""Per-hardware-timestep action counts (spikes, neuron updates, message flows and their deliveries, synaptic
events) shared by the DES and the analytic model, under a timestep semantics (SEMANTICS registry).

Fan-out tables are built once per (graph, mapping) and reused for every batch of samples. With multicast, a
spike is one message to the set of cores it has synapses on; without, one message per destination core.
"""
from __future__ import annotations

from collections.abc import Mapping as _MappingABC
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import scipy.sparse as sp

from hwmodels import activity
from hwmodels.mapping.connectivity import (COUNT_KINDS, PAID_COUNT, FanoutStore, fanout, source_classes,
                                           stored_core_fanout)
from hwmodels.mapping.map import Mapping
from hwmodels.chip.spec import CoreSpec
from hwmodels.kernels import threads
from hwmodels.kernels.arrays import truncated
from hwmodels.kernels.count import count_rows, dst_major, multicast_flows, unicast_flows
from hwmodels.kernels.stack import stack_rows
from hwmodels.kernels.unique import dense_unique, distinct_rows, distinct_valued_rows, first_of_classes
from hwmodels.mapping.storage import read_bits
from hwmodels.trace import STORAGE_FORMATS, EventTrace, NetworkGraph, Projection


def pipelined(graph: NetworkGraph, n_timesteps: int) -> tuple[int, dict[str, np.ndarray]]:
    """Layer-pipelined timesteps, as on Loihi (Davies et al. 2018): a population at depth d emits its
    timestep-t spikes at hardware step h = t + d, so every layer adds one step of delay; T + L hardware steps
    per inference (L = graph.n_layers). Returns (n_steps, {population: h[t]})."""
    return n_timesteps + graph.n_layers, {p: np.arange(n_timesteps) + graph.depth(p) for p in graph.populations}


def layer_serial(graph: NetworkGraph, n_timesteps: int) -> tuple[int, dict[str, np.ndarray]]:
    """Layer-serial timesteps: timestep t runs its layers one after another, one barrier-closed hardware step
    per layer: population at depth d acts at h = t * L + d (L = max(n_layers, 1)). The output layer's update
    of timestep t shares its step with the input's spikes of t + 1 (they do not depend on each other), so an
    inference takes T * L + 1 steps (T steps when the graph has no projection)."""
    n_l = max(graph.n_layers, 1)
    steps = (n_timesteps - 1) * n_l + graph.n_layers + 1
    return steps, {p: np.arange(n_timesteps) * n_l + graph.depth(p) for p in graph.populations}


#: timestep semantics name -> fn(graph, T) -> (hardware steps, {population: hardware step of each timestep t})
SEMANTICS: dict[str, Callable[[NetworkGraph, int], tuple[int, dict[str, np.ndarray]]]] = {
    "pipelined": pipelined, "layer_serial": layer_serial}


def _proj_fanout(proj: Projection, src_shape: tuple, target_core: np.ndarray, n_cores: int, count: str,
                 fanouts: FanoutStore | None = None, rows: np.ndarray | None = None,
                 classes: np.ndarray | None = None):
    """Core-level fan-out (n_source, n_cores) of one projection; dense structural without a dense ones matrix;
    the others through `fanouts` (hwmodels.mapping.connectivity.stored_core_fanout). rows: only these source
    neurons (len(rows) rows); classes: the projection's source_classes when already made."""
    if proj.kind == "dense" and count == "structural":
        per_core = np.bincount(target_core, minlength=n_cores).astype(np.int64)
        cols = np.flatnonzero(per_core)
        n_src = int(np.prod(src_shape)) if rows is None else len(rows)
        rows = np.repeat(np.arange(n_src), len(cols))
        return sp.csr_matrix((np.tile(per_core[cols], n_src), (rows, np.tile(cols, n_src))),
                             shape=(n_src, n_cores), dtype=np.int64)
    f, cores = stored_core_fanout(fanouts, proj, src_shape, target_core, count, rows, classes)
    f.sort_indices()  # cores is sorted, so the renumbered columns stay sorted
    return sp.csr_matrix((f.data, cores[f.indices], f.indptr), shape=(f.shape[0], n_cores), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class FanoutTables:
    """Fan-out of every source population over destination cores, built once per (graph, mapping).

    formats: storage formats present in the graph (STORAGE_FORMATS order).
    stack: {population: CSR int64 (n_source, n_cores * (1 + len(formats) [+ 1]))}: block 0 holds 1 where neuron
        i sends a message to core k (it has >= 1 synapse there that the storage format stores, i.e. a paid count
        > 0, union over its out-projections); block 1 + j the synaptic events paid in format formats[j]; when
        bits_per_event is None, a last block with the synapse-memory bits its spike reads on core k
        (hwmodels.mapping.storage.read_bits).
    bits_per_event: int64 (n_cores, n_formats): the synapse-memory bits one synaptic event of each format sent
        from a neuron of core c reads, when that is one number per (source core, format) (every format but
        bitmap, all out-projections of a population reading the same width); None otherwise (the stack then
        carries the bits block).
    structural / nonzero: {population: int64 (n_source,)} total fan-out per neuron, for reporting.
    routes: None (unicast) or the multicast destination sets: route id -> sorted int64 destination cores, ids in
        lexicographic order of the sets; dest_set: {population: int64 (n_source,)} route id per neuron (-1: none).
    classes / class_stack: the stack factorised: {population: int64 (n_source,)} a class per neuron, neurons of
        one class having equal stack rows and equal structural and nonzero totals (the classes of
        hwmodels.mapping.connectivity.source_classes of every out-projection, merged where those are equal), and
        {population: CSR int64 (n_classes, ...)} the stack row of each class: stack[p] = class_stack[p][
        classes[p]] (made from them on first access; count_actions multiplies spike counts per class instead).
    """

    formats: tuple[str, ...]
    n_cores: int
    stack: dict[str, sp.csr_matrix]
    structural: dict[str, np.ndarray]
    nonzero: dict[str, np.ndarray]
    routes: tuple[np.ndarray, ...] | None = None
    dest_set: dict[str, np.ndarray] | None = None
    bits_per_event: np.ndarray | None = None
    classes: dict[str, np.ndarray] | None = None
    class_stack: dict[str, sp.csr_matrix] | None = None
    class_first: dict[str, np.ndarray] | None = None

    def factors(self, name: str) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
        """(class of every neuron, stack row of every class, first neuron of every class) of population `name`
        (identity classes when the tables were made without them)."""
        if self.classes is None:
            ids = np.arange(self.stack[name].shape[0])
            return ids, self.stack[name], ids
        return self.classes[name], self.class_stack[name], self.class_first[name]

    @property
    def blocks(self) -> int:
        """Value blocks after the message block: the formats, plus the bits block when there is one."""
        return len(self.formats) + (self.bits_per_event is None)

    @cached_property
    def joint(self) -> JointClasses:
        """The class stacks of every sending population as one CSR (made on first use, kept with the tables)."""
        return JointClasses.of(self)


@dataclass(frozen=True, eq=False)
class JointClasses:
    """Every sending population's class stack (FanoutTables.factors) stacked into one int64 CSR, a population's
    classes numbered from its offset, in the order of FanoutTables.stack.

    offsets: {population: id of its class 0}; stack: the stacked CSR regrouped by destination core
    (hwmodels.kernels.count.dst_major: ptr, dst, values (., 1 + blocks)); totals: (structural, nonzero) int64
    (n_classes,) fan-out totals of a neuron of each class; route: int64 (n_classes,) the multicast destination set
    of each class (FanoutTables.dest_set: a class's neurons have equal stack rows, hence one set; -1: none), or
    None without destination sets.
    """

    offsets: dict[str, int]
    stack: tuple[np.ndarray, np.ndarray, np.ndarray]
    totals: tuple[np.ndarray, np.ndarray]
    route: np.ndarray | None = None

    @classmethod
    def of(cls, tables: FanoutTables) -> JointClasses:
        """The joint classes of `tables`: each population's class stack regrouped by destination on its own
        (hwmodels.kernels.count.dst_major reads its CSR arrays in place, on hwmodels.kernels.threads.count()
        threads when the stacks hold >= 2 * MIN_ITEMS entries; only the smaller results are joined)."""
        offsets, ptr, dst, val, struct, nonzero = {}, [np.zeros(1, np.int64)], [], [], [], []
        n_cls, width = 0, 1 + tables.blocks
        factors = [(name, *tables.factors(name)) for name in tables.stack]
        nnz = sum(per_class.nnz for _, _, per_class, _ in factors)
        workers = threads.count() if nnz >= 2 * threads.MIN_ITEMS else 1
        regrouped = threads.map_items(lambda c: dst_major(c.indptr, c.indices, np.asarray(c.data, np.int64),
                                                          tables.n_cores, width),
                                      [(per_class,) for _, _, per_class, _ in factors], workers)
        for (name, _, per_class, first), (p, d, v) in zip(factors, regrouped):
            offsets[name] = n_cls
            ptr.append(p[1:] + ptr[-1][-1])
            dst.append(d), val.append(v)
            struct.append(np.asarray(tables.structural[name][first], np.int64))
            nonzero.append(np.asarray(tables.nonzero[name][first], np.int64))
            n_cls += per_class.shape[0]
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0, np.int64)
        stack = (cat(ptr), cat(dst), np.concatenate(val) if val else np.zeros((0, width), np.int64))
        route = None if tables.dest_set is None else \
            cat([np.asarray(tables.dest_set[name][first], np.int64) for name, _, _, first in factors])
        return cls(offsets, stack, (cat(struct), cat(nonzero)), route)


def _per_event_bits(graph: NetworkGraph, mapping: Mapping, formats: tuple[str, ...],
                    core: CoreSpec | None) -> np.ndarray | None:
    """FanoutTables.bits_per_event, or None when a population's events of one format read different widths or a
    format reads bits that do not scale with its paid events (bitmap: presence bits of every structural
    synapse)."""
    out = np.zeros((mapping.cores_used, len(formats)), np.int64)
    for name, pop in graph.populations.items():
        widths: dict[str, set] = {}
        for proj in graph.out_projections(name):
            per_struct, per_nonzero = read_bits(proj, pop.shape, core)
            if proj.storage == "bitmap":
                return None
            widths.setdefault(proj.storage, set()).add(per_struct if PAID_COUNT[proj.storage] == "structural"
                                                       else per_nonzero)
        for f, w in widths.items():
            if len(w) > 1:
                return None
            out[np.unique(mapping.core_of_neuron[name]), formats.index(f)] = w.pop()
    return out


class _ExpandedStack(_MappingABC):
    """{population: CSR stack (n_source, ...)} = class_stack[p][classes[p]], each made on first access."""

    def __init__(self, class_stack: dict[str, sp.csr_matrix], classes: dict[str, np.ndarray]) -> None:
        self._class_stack, self._classes, self._made = class_stack, classes, {}

    def __getitem__(self, name: str) -> sp.csr_matrix:
        if name not in self._made:
            self._made[name] = self._class_stack[name][self._classes[name]]
        return self._made[name]

    def __contains__(self, name: object) -> bool:
        return name in self._class_stack

    def __iter__(self):
        return iter(self._class_stack)

    def __len__(self) -> int:
        return len(self._class_stack)


def _dest_sets(stack: dict[str, sp.csr_matrix], n: int,
               classes: dict[str, np.ndarray]) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:
    """Multicast destination sets: the distinct rows of every block-0 pattern, numbered in sorted order. stack:
    the class stacks (one row per class), classes: the class of every neuron. Each stack's distinct block-0 rows
    are found by one compiled pass (hwmodels.kernels.unique.distinct_rows; Spikformer-4-384's 125,749 classes
    hold 613 sets), and only those are made tuples and sorted, where a tuple per class took ~140 ms."""
    local = []
    for name, st in stack.items():
        st = st if st.has_sorted_indices else st.sorted_indices()
        ptr, ind = np.asarray(st.indptr), np.asarray(st.indices)
        ids, first = distinct_rows(ptr, ind, n)
        rows = [ind[ptr[f]:ptr[f + 1]] for f in first.tolist()]
        local.append((name, ids, [tuple(r[:np.searchsorted(r, n)].tolist()) for r in rows]))
    sets = sorted({key for _, _, keys in local for key in keys})
    at = {key: i for i, key in enumerate(sets)}
    dest = {}
    for name, ids, keys in local:
        to_set = np.array([at[key] for key in keys] + [-1], np.int64)  # id -1 (no message) -> -1
        dest[name] = to_set[ids][classes[name]]
    return tuple(np.array(key, np.int64) for key in sets), dest


def _population_classes(graph: NetworkGraph, mapping: Mapping,
                        name: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(class of every neuron of `name`, first neuron of every class, {out-projection: its source_classes}):
    neurons with the same source_classes in every out-projection, hence equal rows of every count and bits
    table build_fanout adds up."""
    size = graph.populations[name].size
    of, per_proj = np.zeros(size, np.int64), {}
    for proj in graph.out_projections(name):
        cls = per_proj[proj.name] = source_classes(proj, graph.populations[name].shape,
                                                   mapping.core_of_neuron[proj.target])
        key = of * (int(cls.max(initial=0)) + 1) + cls
        of = dense_unique(key, int(key.max(initial=-1)) + 1)[1]  # classes 0..k-1 in key order
    first = first_of_classes(of, int(of.max(initial=-1)) + 1)  # the first neuron of every class
    return of, first, per_proj


def _population_tables(graph: NetworkGraph, mapping: Mapping, name: str, formats: tuple[str, ...],
                       core: CoreSpec | None, per_event, fanouts: FanoutStore | None) -> tuple:
    """build_fanout's tables of population `name` (which has out-projections): (its class stack (messages,
    paid events per format, bits when per_event is None), structural and nonzero fan-out per neuron, class of
    every neuron, first neuron of every class)."""
    pop, n = graph.populations[name], mapping.cores_used
    # one row per class of neurons with equal rows (_population_classes), expanded by FanoutTables.stack
    of, reps, per_proj = _population_classes(graph, mapping, name)
    st, nz = np.zeros(len(reps), np.int64), np.zeros(len(reps), np.int64)
    parts = []  # (core fan-out, format index of the count it pays or -1, bits per event of its count)
    for proj in graph.out_projections(name):
        tgt = mapping.core_of_neuron[proj.target]
        per_count = dict(zip(COUNT_KINDS, read_bits(proj, pop.shape, core))) if per_event is None else {}
        needed = {PAID_COUNT[proj.storage]} | {c for c, per in per_count.items() if per}
        f_counts = {c: _proj_fanout(proj, pop.shape, tgt, n, c, fanouts, reps, per_proj[proj.name])
                    for c in COUNT_KINDS if c in needed}
        st += _fanout_totals(proj, pop.shape, "structural", reps, f_counts)
        nz += _fanout_totals(proj, pop.shape, "nonzero", reps, f_counts)
        parts += [(f_counts[c], formats.index(proj.storage) if c == PAID_COUNT[proj.storage] else -1,
                   per_count.get(c, 0)) for c in f_counts]
    args = (len(reps), n, len(formats), per_event is None, parts)
    stack = class_stack_of(*args)
    return _merged_classes(class_stack_scipy(*args) if stack is None else stack, st, nz, of)


def _merged_classes(stack: sp.csr_matrix, st: np.ndarray, nz: np.ndarray, of: np.ndarray) -> tuple:
    """_population_tables' result from the stack of its classes of neurons (CSR int64 (n_classes, ...)), their
    structural and nonzero fan-out totals st / nz (int64 (n_classes,)) and the class of every neuron `of`, with
    the classes whose stack rows and totals are equal merged (hwmodels.kernels.unique.distinct_valued_rows): the
    coarsest classes count_actions can multiply spike counts by. source_classes keeps a conv projection's input
    channels apart (their nonzero counts may differ), but a stack of structural counts is often the same for all
    of them (Spikformer-4-384: 125,749 classes -> 3,385, VGG-11: 20,966 -> 342), so a (sample, step, core) row
    of spikes touches fewer classes, each adding its fan-out once (the flows' integer sums are the same)."""
    if not stack.has_sorted_indices:
        stack = stack.sorted_indices()  # equal rows hold their columns in one order
    ids, keep = distinct_valued_rows(stack.indptr, stack.indices, np.asarray(stack.data, np.int64),
                                     np.stack([st, nz], axis=1))
    merged = ids[of]
    if len(keep) < stack.shape[0]:
        stack = stack[keep]
    return stack, st[of], nz[of], merged, first_of_classes(merged, len(keep))


def class_stack_scipy(n_rows: int, n: int, n_formats: int, with_bits: bool, parts: list) -> sp.csr_matrix:
    """class_stack_of by scipy's sparse sums, indicator, element-wise product and hstack, for parts that are not
    canonical with positive entries."""
    zero = lambda: sp.csr_matrix((n_rows, n), dtype=np.int64)
    paid, bits = {}, None
    for f, j, per in parts:
        if j >= 0:
            paid[j] = paid[j] + f if j in paid else f
        if per:
            bits = per * f if bits is None else bits + per * f
    msgs = _indicator(sum(paid.values()))
    # a core a neuron sends no message to reads none of its bits (a bitmap row of zero weights there)
    bits_block = [(zero() if bits is None else bits).multiply(msgs).tocsr()] if with_bits else []
    blocks = [msgs] + [paid[j] if j in paid else zero() for j in range(n_formats)] + bits_block
    return sp.hstack(blocks, format="csr", dtype=np.int64)


def class_stack_of(n_rows: int, n: int, n_formats: int, with_bits: bool, parts: list) -> sp.csr_matrix | None:
    """The class stack of _population_tables (CSR int64 (n_rows, n * (1 + n_formats [+ 1]))): block 0 holds 1
    where the paid counts sum to > 0, block 1 + j the sum of the parts that pay format j, the last (with_bits)
    the sum of bits per event x count where block 0 is 1; from `parts` [(core fan-out CSR int64 (n_rows, n),
    format index of the count it pays or -1, bits per event of its count)], assembled by
    hwmodels.kernels.stack.stack_rows (the entries of class_stack_scipy, without its intermediate sparse matrices:
    Spikformer-4-384's build_fanout -20 ms, VGG-11's -2 ms); None without parts or unless every part is canonical
    with positive entries, as fan-out counts are."""
    if not parts or not all(f.has_canonical_format and bool((f.data > 0).all()) for f, _, _ in parts):
        return None
    width = 1 + n_formats + with_bits
    nnz = sum(f.nnz for f, _, _ in parts)
    idx = np.int32 if max(width * n, width * nnz, n_rows) < 2 ** 31 else np.int64
    ptr = np.zeros((len(parts), n_rows + 1), np.int64)
    for k, (f, _, _) in enumerate(parts):
        ptr[k] = f.indptr
    off = np.concatenate([[0], np.cumsum([f.nnz for f, _, _ in parts])]).astype(np.int64)
    cat = lambda arrays: arrays[0] if len(arrays) == 1 else np.concatenate(arrays)  # one part: no copy
    out_ptr, out_idx, out_val = np.empty(n_rows + 1, idx), np.empty(width * nnz, idx), np.empty(width * nnz, np.int64)
    m = stack_rows(n_rows, n, ptr, cat([f.indices for f, _, _ in parts]),
                   cat([np.asarray(f.data, np.int64) for f, _, _ in parts]), off[:-1].copy(),
                   np.array([p[1] for p in parts], np.int64), np.array([p[2] for p in parts], np.int64), n_formats,
                   with_bits, out_ptr, out_idx, out_val)
    return sp.csr_matrix((truncated(out_val, m), truncated(out_idx, m), out_ptr), shape=(n_rows, width * n))


def _indicator(counts: sp.csr_matrix) -> sp.csr_matrix:
    """CSR int64 of 1 where the int64 CSR `counts` is > 0 (its own structure when canonical with positive
    entries only, as fan-out counts are)."""
    if counts.has_canonical_format and bool((counts.data > 0).all()):
        return sp.csr_matrix((np.ones(counts.nnz, np.int64), counts.indices, counts.indptr), shape=counts.shape)
    return sp.csr_matrix((counts > 0).astype(np.int64))


def _fanout_totals(proj: Projection, src_shape: tuple, count: str, reps: np.ndarray, per_core: dict) -> np.ndarray:
    """int64 (len(reps),): the `count` fan-out of the source neurons `reps` (hwmodels.mapping.connectivity.fanout):
    the row sums of their per-core counts when per_core (count kind -> CSR (len(reps), n_cores), every target
    on a core) holds that count (integer sums, exact), else counted."""
    if count in per_core:  # row sums of the CSR as differences of the running sum of its values (exact: int64)
        f = per_core[count]
        run = np.concatenate([[0], np.cumsum(f.data, dtype=np.int64)])
        return run[f.indptr[1:]] - run[f.indptr[:-1]]
    return fanout(proj, src_shape, count, reps)


#: source neurons per thread below which build_fanout's tables are built on one thread: measured on 2 cores
#: (benchmarks workloads), VGG-11 (186k source neurons) 33 ms on one thread against 38 ms on two, Spikformer-4-384
#: (1.65M) 266 ms against 232 ms
FANOUT_NEURONS_PER_THREAD = 1 << 18


def build_fanout(graph: NetworkGraph, mapping: Mapping, multicast: bool = False,
                 core: CoreSpec | None = None, fanouts: FanoutStore | None = None) -> FanoutTables:
    """Fan-out tables of `graph` on `mapping` (hwmodels.mapping.connectivity.core_fanout with the paid count);
    `multicast` adds the destination sets (FanoutTables.routes). core: the chip's CoreSpec, whose
    stored_weight_bits decide the bits a spike reads (None: every projection's own weight_bits). fanouts: core
    fan-outs already counted on this assignment (e.g. by hwmodels.mapping.check.check_mapping), reused. The
    populations' tables are independent and built on up to hwmodels.kernels.threads.count() threads."""
    formats = tuple(f for f in STORAGE_FORMATS if any(p.storage == f for p in graph.projections))
    n = mapping.cores_used
    per_event = _per_event_bits(graph, mapping, formats, core)
    names = [name for name in graph.populations if graph.out_projections(name)]
    # the populations' tables on threads (numpy and scipy work, part of which holds the GIL) when there are
    # enough source neurons to pay for them (FANOUT_NEURONS_PER_THREAD each)
    neurons = sum(graph.populations[name].size for name in names)
    workers = max(1, min(threads.count(), neurons // FANOUT_NEURONS_PER_THREAD))
    built = threads.map_items(lambda name: _population_tables(graph, mapping, name, formats, core, per_event,
                                                              fanouts), [(name,) for name in names], workers)
    stack, structural, nonzero, classes, first = ({name: b[k] for name, b in zip(names, built)} for k in range(5))
    routes, dest = _dest_sets(stack, n, classes) if multicast else (None, None)
    return FanoutTables(formats, n, _ExpandedStack(stack, classes), structural, nonzero, routes, dest, per_event,
                        classes, stack, first)


@dataclass(frozen=True, eq=False)
class Actions:
    """Action counts of a batch of samples on one mapping.

    spikes: int64 (n_samples, n_steps, n_cores): spikes emitted by each core's neurons at each hardware step
        (properties active / inactive: updates of neurons that spiked / did not spike under the "window" rule).
    window: bool (n_steps, n_cores): the core's population is in its timestep window at that step (non-input).
    state_neurons: int64 (n_cores,) non-input neurons per core (input neurons hold no state).
    recorded: int64 (n_samples, n_steps, n_cores): neurons updated under the "active" rule: the trace's
        activity (hwmodels.activity: input, bias or a non-zero potential; spikes included) in the window steps,
        and the neurons left with a potential in every step after the window; populations the trace records no
        activity for count as under the window rule.
    flow_*: one entry per flow = the messages one source core sends along one route in one step, sorted by
        (sample, step, src, route). Unicast: route = destination core; multicast: route = id into `routes`.
        flow_messages: int64 messages (one per spike with synapses on the route's cores).
    deliv_*: one entry per (flow, destination core), sorted by (flow, dst): deliv_flow (flow index), deliv_dst,
        deliv_messages (messages that core receives), deliv_events int64 (n_deliv, n_formats) synaptic events
        paid per storage format in `formats`, deliv_bits int64 (n_deliv,) synapse-memory bits they read
        (hwmodels.mapping.storage.read_bits). Unicast: exactly one delivery per flow.
    routes: None (unicast) or the multicast destination sets (FanoutTables.routes).
    synops_structural / synops_nonzero: int64 (n_samples,) totals of the two reporting counts.
    """

    formats: tuple[str, ...]
    n_samples: int
    n_steps: int
    n_cores: int
    spikes: np.ndarray
    window: np.ndarray
    state_neurons: np.ndarray
    recorded: np.ndarray
    flow_sample: np.ndarray
    flow_step: np.ndarray
    flow_src: np.ndarray
    flow_route: np.ndarray
    flow_messages: np.ndarray
    deliv_flow: np.ndarray
    deliv_dst: np.ndarray
    deliv_messages: np.ndarray
    deliv_events: np.ndarray
    deliv_bits: np.ndarray
    routes: tuple[np.ndarray, ...] | None
    synops_structural: np.ndarray
    synops_nonzero: np.ndarray

    @property
    def active(self) -> np.ndarray:
        """Window-rule updates of neurons that spiked, int64 (n_samples, n_steps, n_cores): every non-input neuron
        is updated once in every hardware step in which its population is active; input neurons never."""
        return self.spikes * self.window

    @property
    def inactive(self) -> np.ndarray:
        """Window-rule updates of neurons that did not spike, int64 (n_samples, n_steps, n_cores)."""
        return (self.state_neurons[None, None, :] - self.spikes) * self.window

    @cached_property
    def flow_src_key(self) -> np.ndarray:
        """int64 (n_flows,): the sending core of every flow in one step, (sample * n_steps + step) * n_cores + src."""
        return (self.flow_sample * self.n_steps + self.flow_step) * self.n_cores + self.flow_src

    @cached_property
    def messages_before(self) -> np.ndarray:
        """int64 (n_flows,): messages the flow's core sent earlier in the same step (flows leave in flow order)."""
        key, m = self.flow_src_key, self.flow_messages
        csum = np.cumsum(m)
        first = np.flatnonzero(run_starts(key))
        base = np.repeat(csum[first] - m[first], np.diff(np.append(first, len(csum))))
        return csum - m - base

    @cached_property
    def messages_sent(self) -> np.ndarray:
        """float (n_samples, n_steps, n_cores): messages each core sends in each step."""
        shape = (self.n_samples, self.n_steps, self.n_cores)
        return np.bincount(self.flow_src_key, weights=self.flow_messages, minlength=int(np.prod(shape))).reshape(shape)

    @cached_property
    def deliv_keys(self) -> np.ndarray:
        """int64 (n_deliv,): the synapse unit of every delivery, (sample * n_steps + step) * n_cores + dst
        (computed once per Actions: every latency model and design point reads it)."""
        f = self.deliv_flow
        return (self.flow_sample[f] * self.n_steps + self.flow_step[f]) * self.n_cores + self.deliv_dst

    @cached_property
    def deliv_groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distinct deliv_keys sorted, the deliveries' stable order by key, start of each key's run in that order
        followed by n_deliv), int64 each (hwmodels.timing.core_times.destination_finish)."""
        return key_groups(self.deliv_keys)

    def route_cores(self, flow: int) -> tuple[int, ...]:
        """Destination cores of flow `flow`'s route."""
        r = int(self.flow_route[flow])
        return (r,) if self.routes is None else tuple(int(c) for c in self.routes[r])


def run_starts(keys: np.ndarray) -> np.ndarray:
    """bool (n,): True at the first element of every run of equal values in `keys`."""
    first = np.ones(len(keys), bool)
    first[1:] = keys[1:] != keys[:-1]
    return first


def key_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct keys sorted, stable argsort of `keys`, start of each key's run in that order followed by n),
    int64 each."""
    order = np.argsort(keys, kind="stable")
    key = keys[order]
    starts = np.flatnonzero(run_starts(key))
    return key[starts], order, np.append(starts, len(key))


def gather_spikes(trace: EventTrace, samples: range, pop_i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neuron indices, sample - samples.start, timestep) of every spike of population pop_i in `samples`."""
    n_t, n_p = trace.n_timesteps, len(trace.populations)
    s, t = np.meshgrid(np.arange(samples.start, samples.stop), np.arange(n_t), indexing="ij")
    rows = ((s * n_t + t) * n_p + pop_i).ravel()
    lo, hi = np.asarray(trace.offsets[rows]), np.asarray(trace.offsets[rows + 1])
    lengths = hi - lo
    pos = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    return (np.asarray(trace.indices[pos], np.int64), np.repeat((s - samples.start).ravel(), lengths),
            np.repeat(t.ravel(), lengths))


def count_actions(graph: NetworkGraph, trace: EventTrace, mapping: Mapping, tables: FanoutTables,
                  samples: range, semantics: str = "pipelined") -> Actions:
    """Action counts of `samples` of `trace` (see Actions), under timestep `semantics` (SEMANTICS key);
    multicast when `tables` holds destination sets. Every trace event is one spike of its neuron, whatever its
    value: a ternary -1 or a graded spike sends the same messages and synaptic events as a +1 (values unread).

    Raises ValueError when a graph population is missing from the trace or a spike index is out of range.
    """
    n_steps, step_of = SEMANTICS[semantics](graph, trace.n_timesteps)
    nb, n = len(samples), tables.n_cores
    n_rows = nb * n_steps * n
    spikes, window = np.zeros(n_rows, np.int64), np.zeros((n_steps, n), bool)
    recorded = np.zeros((nb, n_steps, n), np.int64)
    left = np.zeros((nb, n_steps + 1, n), np.int64)  # neurons left with a potential from each step on
    events = _batch_events(trace, samples)
    grouped = _Grouped.empty(n_rows, len(events[0]))
    for name in graph.populations:
        _check_population(trace, name)
    cores = {name: _distinct(mapping.core_of_neuron[name]) for name in graph.populations}
    items = [(spikes, trace, samples, name, pop.size, pop.is_input, mapping,
              (events[0], *_segments(events, trace.populations.index(name), step_of[name] * n, n_steps * n)),
              grouped.args(tables, name, cores[name]))
             for name, pop in graph.populations.items()]
    # populations on threads: each writes only the rows of its own cores and the slots of its own events, and
    # counts its updated neurons per core (added here in population order)
    workers = threads.count() if len(events[0]) >= 2 * threads.MIN_ITEMS else 1
    for (name, pop), counts in zip(graph.populations.items(), threads.map_items(_count_population, items, workers)):
        if not pop.is_input:
            window[np.ix_(step_of[name], cores[name])] = True
            _add_recorded(recorded, left, step_of[name], *counts)
    recorded += np.cumsum(left[:, :n_steps], axis=1)
    (flows, deliv), struct, nonzero = _flows(tables, grouped, n_steps * n)
    if deliv[4] is None:  # bits = events x bits per event of their source core and format
        src = (flows[0] % n)[deliv[0]]
        deliv = (*deliv[:4], np.einsum("ij,ij->i", deliv[3], tables.bits_per_event[src]))
    spikes = spikes.reshape(nb, n_steps, n)
    state = _state_neurons(graph, mapping)
    row = flows[0]
    return Actions(tables.formats, nb, n_steps, n, spikes, window, state, recorded, row // (n_steps * n),
                   (row // n) % n_steps, row % n, flows[1], flows[2],
                   *deliv, tables.routes, struct, nonzero)


def _batch_events(trace: EventTrace, samples: range) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neuron indices of every event of `samples` (one slice of trace.indices, dtype kept), lo, hi): int64
    (n_samples, n_timesteps, n_populations), the events of (sample samples.start + s, t, population p) are
    indices[lo[s, t, p]:hi[s, t, p]] (the events of a sample range are contiguous in the trace)."""
    per = trace.n_timesteps * len(trace.populations)
    off = np.asarray(trace.offsets[samples.start * per:samples.stop * per + 1], np.int64)
    shape = (len(samples), trace.n_timesteps, len(trace.populations))
    lo, hi = (off[:-1] - off[0]).reshape(shape), (off[1:] - off[0]).reshape(shape)
    return np.asarray(trace.indices[int(off[0]):int(off[-1])]), lo, hi


def _distinct(values: np.ndarray) -> np.ndarray:
    """np.unique(values) of an int array, read off its runs first (a population's cores come in runs)."""
    values = np.asarray(values)
    return np.unique(values[np.r_[True, values[1:] != values[:-1]]]) if len(values) else np.unique(values)


def _segments(events: tuple, pop_i: int, step_base: np.ndarray,
              step_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, seg_base) int64 (n_samples * n_timesteps,) of population pop_i (hwmodels.kernels.count):
    segment g = s * T + t holds the events lo[g]:hi[g] of _batch_events' `events` and its rows start at
    seg_base[g] = s * step_rows + step_base[t]."""
    _, lo, hi = events
    seg_base = np.arange(lo.shape[0])[:, None] * step_rows + step_base[None, :]
    return lo[:, :, pop_i].ravel(), hi[:, :, pop_i].ravel(), seg_base.ravel().astype(np.int64)


def _check_population(trace: EventTrace, name: str) -> None:
    """Raise ValueError when graph population `name` is missing from `trace`."""
    if name not in trace.populations:
        raise ValueError(f"trace.populations: graph population {name!r} is missing; trace has "
                         f"{', '.join(trace.populations)}")


def _count_population(spikes: np.ndarray, trace: EventTrace, samples: range, name: str, size: int, is_input: bool,
                      mapping: Mapping, walk: tuple, group: tuple) -> tuple[np.ndarray, bool] | None:
    """Add the spikes of population `name` to `spikes` (int64 (n_rows,)); return its neurons updated under the
    "active" rule per core (_recorded_counts, with the spikes its activity record does not mark), None for an
    input population. walk: (batch indices, lo, hi, seg_base) (_segments); group: the grouping arguments of
    hwmodels.kernels.count.count_rows (_Grouped.args). Raises ValueError for an index out of range."""
    idx, lo, hi, seg_base = walk
    has = name in trace.activity
    packed = np.asarray(trace.activity[name][samples.start:samples.stop]) if has else np.zeros((0, 0, 1), np.uint8)
    n_t = trace.n_timesteps
    bad, seg, neuron = count_rows(lo, hi, idx, seg_base, np.asarray(mapping.core_of_neuron[name], np.int64),
                                  spikes, packed.reshape(packed.shape[0] * packed.shape[1], packed.shape[2]), n_t,
                                  group)
    if bad >= 0:
        raise ValueError(f"trace.indices: population {name!r} has a spike index outside 0..{size - 1}")
    if is_input:
        return None
    return _recorded_counts(trace, samples, name, size, mapping, (seg // n_t, seg % n_t, neuron) if has else None)


@dataclass(frozen=True)
class _Grouped:
    """The spikes of a batch grouped by row (hwmodels.kernels.count.count_rows): row r's spike classes (ids of
    FanoutTables.joint) are ev_cls[row_lo[r]:row_hi[r]], int64 each (row_lo / row_hi (n_rows,), ev_cls one per
    event of the batch)."""

    row_lo: np.ndarray
    row_hi: np.ndarray
    ev_cls: np.ndarray

    @classmethod
    def empty(cls, n_rows: int, n_events: int) -> _Grouped:
        """No row holding a spike yet."""
        return cls(np.zeros(n_rows, np.int64), np.zeros(n_rows, np.int64), np.empty(n_events, np.int64))

    @staticmethod
    def none() -> tuple:
        """count_rows' group argument that groups nothing."""
        return (np.zeros(0, np.int64), 0, *[np.zeros(0, np.int64)] * 4)

    def args(self, tables: FanoutTables, name: str, cores: np.ndarray) -> tuple:
        """count_rows' group argument for population `name` on `cores` (none() when it sends nothing)."""
        if name not in tables.joint.offsets:
            return self.none()
        return (tables.factors(name)[0], tables.joint.offsets[name], cores, self.row_lo, self.row_hi, self.ev_cls)


def _flows(tables: FanoutTables, grouped: _Grouped, rows_per_sample: int) -> tuple:
    """(((row, route, messages) of the flows, (flow, dst, messages, events, bits or None) of their deliveries),
    synops_structural, synops_nonzero) of the grouped spikes, rows_per_sample rows per sample. Unicast (no
    destination sets): one flow per (row, destination core), its route the core, one delivery per flow
    (hwmodels.kernels.count.unicast_flows). Multicast: one flow per (row, destination set) carrying one message
    per spike, one delivery per core of its set (hwmodels.kernels.count.multicast_flows: each row's classes
    grouped by their set, JointClasses.route). Both on ranges of rows with equal shares of the spikes on
    hwmodels.kernels.threads.count() threads, joined in order: the same entries in the same order; the per-sample
    sums of two ranges that share a sample are added, integers, exact in any order. Ranges of rows rather than
    of whole samples: a batch of few samples split at samples left one thread most of the work (Spikformer-4-384,
    4 samples: 3 against 1). Raises RuntimeError when a value block has an entry without messages, which
    build_fanout never makes (a core a neuron sends no message to reads none of its bits)."""
    joint, rps, n = tables.joint, rows_per_sample, tables.n_cores
    lo, hi = grouped.row_lo, grouped.row_hi
    ptr = np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64)
    ranges = threads.split(ptr, threads.count())
    if tables.routes is None:
        parts = threads.run(lambda r0, r1: _unicast_part(unicast_flows(
            lo[r0:r1], hi[r0:r1], grouped.ev_cls, joint.stack, n, rps, joint.totals, r0)), ranges)
    else:
        parts = threads.run(lambda r0, r1: multicast_flows(lo[r0:r1], hi[r0:r1], grouped.ev_cls, joint.route,
                                                           joint.stack, n, rps, joint.totals, r0), ranges)
    if any(p[9] for p in parts):
        raise RuntimeError("fan-out tables: synaptic events or bits on a core without a message")
    join = lambda k: parts[0][k] if len(parts) == 1 else np.concatenate([p[k] for p in parts])
    first_flow = np.cumsum([0] + [len(p[0]) for p in parts])
    row = np.concatenate([p[0] + r0 for p, (r0, _) in zip(parts, ranges)])
    route, spikes, values = join(1), join(2), join(6)
    if tables.routes is None:  # each flow its own delivery: the same arrays, joined once (Spikformer: 12 MB less)
        flow, dst, msgs = np.arange(len(row), dtype=np.int64), route, spikes
    else:
        flow = np.concatenate([p[3] + f0 for p, f0 in zip(parts, first_flow)])
        dst, msgs = join(4), join(5)
    struct, nonzero = np.zeros(len(lo) // rps, np.int64), np.zeros(len(lo) // rps, np.int64)
    for p, (r0, _) in zip(parts, ranges):
        struct[r0 // rps:r0 // rps + len(p[7])] += p[7]
        nonzero[r0 // rps:r0 // rps + len(p[8])] += p[8]
    nf = len(tables.formats)
    bits = values[:, nf] if tables.bits_per_event is None else None
    return ((row, route, spikes), (flow, dst, msgs, values[:, :nf], bits)), struct, nonzero


def _unicast_part(part: tuple) -> tuple:
    """unicast_flows' output in multicast_flows' form: each (row, dst) entry is a flow to route dst with one
    delivery of its own."""
    row, dst, msgs, values, struct, nonzero, orphan = part
    return row, dst, msgs, np.arange(len(row)), dst, msgs, values, struct, nonzero, orphan


def _state_neurons(graph: NetworkGraph, mapping: Mapping) -> np.ndarray:
    """Non-input neurons per core, int64 (n_cores,)."""
    inputs = np.array([graph.populations[p].is_input for p in mapping.core_population], bool)
    return np.where(inputs, 0, mapping.core_neurons).astype(np.int64)


def _recorded_counts(trace: EventTrace, samples: range, name: str, size: int, mapping: Mapping,
                     spiked: tuple | None) -> tuple[np.ndarray, bool]:
    """Neurons of population `name` updated under the "active" rule per core (see Actions.recorded) and whether
    they come from its activity record: int64 (n_samples, n_timesteps + 1, n_cores) by
    hwmodels.activity.window_counts (the spikes the record does not mark, `spiked`, added), True; or every
    neuron, int64 (1, 1, n_cores), False, when the trace has no activity for it (the window rule)."""
    cores, n = mapping.core_of_neuron[name], mapping.cores_used
    if name not in trace.activity:
        return np.bincount(cores, minlength=n)[None, None, :], False
    packed = np.asarray(trace.activity[name][samples.start:samples.stop])
    return activity.window_counts(packed, size, cores, n, spiked), True


def _add_recorded(out: np.ndarray, left: np.ndarray, steps: np.ndarray, counts: np.ndarray, recorded: bool) -> None:
    """Add a population's _recorded_counts (counts, recorded) to `out` (n_samples, n_steps, n_cores) at its window
    steps, and when recorded its last row (neurons left with a potential), due at every step after the window,
    to `left` (n_samples, n_steps + 1, n_cores) at the first of them: the caller adds left's running sum over
    the steps to `out` once, instead of each population adding its row to every later step (the same integer
    sums). The population's cores hold no other population, so adding is assigning. Consecutive steps (a
    population's window) are added through a slice: numpy's basic indexing, ~8x faster than its fancy indexing
    on the middle axis."""
    at = slice(int(steps[0]), int(steps[-1]) + 1) if len(steps) and np.all(np.diff(steps) == 1) else steps
    if not recorded:
        out[:, at, :] += counts
        return
    out[:, at, :] += counts[:, :-1, :]
    left[:, steps[-1] + 1, :] += counts[:, -1, :]
