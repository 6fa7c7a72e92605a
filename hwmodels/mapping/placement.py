"""Placement of partitioned cores onto the core slots of one or more chips (registry PLACEMENTS), the traffic
a trace puts between cores, and the spike-weighted hop distance the communication-aware placement minimises.

A slot is a global core position: chip c, tile t = (x, y) on its mesh, core k in the tile; slot id =
(c * tiles_per_chip + t) * cores_per_tile + k. Chips sit chips_per_row to a row, so the global tile of a slot
is (chip column * mesh_width + x, chip row * mesh_height + y) and XY routing in global coordinates crosses one
chip-to-chip link per chip boundary. On a chip with core types (ChipSpec.core_types, ChipSpec.slot_types) a core
goes only to a slot of its own type (Partition.core_type): each strategy's slot order is then filled type by
type, and comm_aware's swaps stay within a type.
"""
from __future__ import annotations

from typing import Callable

import networkx as nx
import numpy as np
import scipy.sparse as sp

from hwmodels.mapping.connectivity import PAID_COUNT, core_fanout, spike_counts
from hwmodels.mapping.partition import Partition
from hwmodels.chip.spec import ChipSpec
from hwmodels.trace import EventTrace, NetworkGraph

_REFINE_BUDGET = 4e9  # multiply-adds the swap refinement may spend (bounds its sweeps; deterministic)
_MAX_SLOTS = 3000  # largest candidate-slot set with a dense distance matrix (3000^2 float64 = 72 MB)


def slot_coords(slots: np.ndarray, chip: ChipSpec) -> tuple[np.ndarray, np.ndarray]:
    """(global tile (x, y), chip grid (x, y)) of every slot id, two int64 arrays (n, 2)."""
    slots = np.asarray(slots, np.int64)
    chip_i, local = np.divmod(slots, chip.n_cores)
    tile = local // chip.cores_per_tile
    per_row = chip.chip_grid[0]
    cxy = np.stack([chip_i % per_row, chip_i // per_row], axis=1)
    txy = np.stack([tile % chip.mesh_width + cxy[:, 0] * chip.mesh_width,
                    tile // chip.mesh_width + cxy[:, 1] * chip.mesh_height], axis=1)
    return txy.astype(np.int64), cxy.astype(np.int64)


def _snake_slots(n: int, chip: ChipSpec) -> np.ndarray:
    """In-order slots with odd mesh rows of every chip run right to left (boustrophedon)."""
    chip_i, local = np.divmod(np.arange(n), chip.n_cores)
    tile, k = np.divmod(local, chip.cores_per_tile)
    y, x = np.divmod(tile, chip.mesh_width)
    x = np.where(y % 2 == 1, chip.mesh_width - 1 - x, x)
    return (chip_i * chip.n_tiles + y * chip.mesh_width + x) * chip.cores_per_tile + k


def _typed(order: np.ndarray, part: Partition, chip: ChipSpec) -> np.ndarray:
    """Cores in turn onto the first free slot of their own type in slot `order` (all slots of all chips)."""
    kinds = chip.slot_types()[order]
    out = np.empty(part.n_cores, np.int64)
    for t in np.unique(part.core_type).tolist():
        cores = np.flatnonzero(part.core_type == t)
        out[cores] = order[kinds == t][:len(cores)]
    return out


def _is_typed(part: Partition, chip: ChipSpec) -> bool:
    return chip.core_types is not None and part.core_type is not None


def in_order(part: Partition, chip: ChipSpec, traffic: np.ndarray | None, seed: int) -> np.ndarray:
    """Core k in slot k: tiles filled row by row, chip after chip (typed: the k-th core of a type in that type's
    k-th slot)."""
    if _is_typed(part, chip):
        return _typed(np.arange(chip.n_cores_total, dtype=np.int64), part, chip)
    return np.arange(part.n_cores, dtype=np.int64)


def snake(part: Partition, chip: ChipSpec, traffic: np.ndarray | None, seed: int) -> np.ndarray:
    """As in_order, but odd mesh rows run right to left, so consecutive tiles stay adjacent."""
    if _is_typed(part, chip):
        return _typed(_snake_slots(chip.n_cores_total, chip), part, chip)
    return _snake_slots(part.n_cores, chip)


def _candidate_slots(n: int, chip: ChipSpec) -> tuple[np.ndarray, np.ndarray]:
    """Slots comm_aware may use: the in_order and snake slots plus a near-square block of tiles on chip 0
    (or every slot of the chips needed when one chip is not enough). Returns (sorted slots, block slots)."""
    if n > chip.n_cores:
        block = np.arange(-(-n // chip.n_cores) * chip.n_cores)
    else:
        tiles = -(-n // chip.cores_per_tile)
        bw = min(chip.mesh_width, int(np.ceil(np.sqrt(tiles))))
        bh = -(-tiles // bw)
        if bh > chip.mesh_height:
            bh, bw = chip.mesh_height, -(-tiles // chip.mesh_height)
        t = (np.arange(bh)[:, None] * chip.mesh_width + np.arange(bw)[None, :]).ravel()
        block = (t[:, None] * chip.cores_per_tile + np.arange(chip.cores_per_tile)[None, :]).ravel()
    return np.unique(np.concatenate([np.arange(n), _snake_slots(n, chip), block])), block


def _bisect(graph: nx.Graph, cores: list, slots: np.ndarray, xy: np.ndarray, seed: int, out: dict) -> None:
    """Recursive bisection: split the slots along their longer extent and the cores with Kernighan-Lin
    (networkx), larger core half into the larger slot half, until a part sits in one tile."""
    if not cores:
        return
    if len(cores) == 1 or (xy == xy[0]).all():
        out.update(zip(cores, slots[:len(cores)]))
        return
    axis = int(np.ptp(xy[:, 1]) > np.ptp(xy[:, 0]))
    order = np.argsort(xy[:, axis], kind="stable")
    half = len(slots) // 2
    a, b = nx.algorithms.community.kernighan_lin_bisection(graph.subgraph(cores), weight="weight", seed=seed)
    small, big = sorted((sorted(a), sorted(b)), key=len)
    _bisect(graph, small, slots[order[:half]], xy[order[:half]], seed, out)
    _bisect(graph, big, slots[order[half:]], xy[order[half:]], seed, out)


def refine_swaps(w: np.ndarray, d: np.ndarray, perm: np.ndarray, sweeps: int,
            kinds: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Swap local search on the quadratic assignment cost 1/2 sum_ij w_ij d[perm_i, perm_j]: each core in turn
    moves to the slot (free or occupied, then swapped) that lowers the cost most; stops after a sweep with no
    gain. Only improving moves are taken, so the result is never worse than `perm`. kinds: (type of every
    core, type of every slot): a core moves only to a slot of its type."""
    n, m = len(perm), len(d)
    perm = perm.copy()
    occ = np.full(m, -1, np.int64)
    occ[perm] = np.arange(n)
    q = d[:, perm]  # q[s, k]: distance from slot s to core k
    tol = 1e-9 * max(1.0, float(w.sum()))
    for _ in range(sweeps):
        r = np.where(occ >= 0, (w[occ.clip(0)] * q).sum(axis=1), 0.0)
        improved = False
        for a in np.flatnonzero(w.any(axis=1)):
            sa, b = perm[a], occ
            wab = np.where(b >= 0, w[a, b.clip(0)], 0.0)
            delta = q @ w[a] - q[sa] @ w[a] + wab * d[sa]
            delta += np.where(b >= 0, (w @ q[sa])[b.clip(0)] - r + wab * d[sa], 0.0)
            delta[sa] = 0.0
            if kinds is not None:
                delta[kinds[1] != kinds[0][a]] = np.inf
            t = int(np.argmin(delta))
            if delta[t] >= -tol:
                continue
            other = occ[t]
            perm[a], occ[t], occ[sa] = t, a, other
            q[:, a] = d[:, t]
            if other >= 0:
                perm[other] = sa
                q[:, other] = d[:, sa]
            r = np.where(occ >= 0, (w[occ.clip(0)] * q).sum(axis=1), 0.0)
            improved = True
        if not improved:
            break
    return perm


def comm_aware(part: Partition, chip: ChipSpec, traffic: np.ndarray | None, seed: int) -> np.ndarray:
    """Communication-aware placement: minimise the spike-weighted hop distance sum_ij traffic_ij x hops(i, j).

    Candidates: in_order, snake and a recursive Kernighan-Lin bisection (networkx) of the core-to-core traffic
    graph onto a near-square block of tiles; the cheapest is refined by improving swaps (`refine_swaps`). The result
    is never worse than in_order on `traffic`. Above _MAX_SLOTS candidate slots (thousands of cores) it only
    picks the better of in_order and snake. traffic: (n_cores, n_cores) messages; seed: for Kernighan-Lin.
    Raises ValueError when traffic is None.
    """
    if traffic is None:
        raise ValueError("traffic: placement 'comm_aware' needs traffic, an (n_cores x n_cores) message-count "
                         "matrix or an EventTrace")
    n = part.n_cores
    if _is_typed(part, chip):
        return _comm_aware_typed(part, chip, traffic)
    cand, block = _candidate_slots(n, chip)
    if len(cand) > _MAX_SLOTS:
        cand, block = np.unique(np.concatenate([np.arange(n), _snake_slots(n, chip)])), None
    w = np.asarray(traffic, np.float64)
    w = w + w.T
    np.fill_diagonal(w, 0.0)
    if len(cand) > _MAX_SLOTS:  # too large for a dense slot-distance matrix: best of in_order and snake
        options = [np.arange(n), _snake_slots(n, chip)]
        costs = [spike_weighted_hops(w, slot_coords(p, chip)[0]) for p in options]
        return options[int(np.argmin(costs))].astype(np.int64)
    xy = slot_coords(cand, chip)[0]
    d = (np.abs(xy[:, None, 0] - xy[None, :, 0]) + np.abs(xy[:, None, 1] - xy[None, :, 1])).astype(np.float64)
    starts = [np.searchsorted(cand, np.arange(n)), np.searchsorted(cand, _snake_slots(n, chip))]
    if n <= 1024 and block is not None:
        g = nx.Graph()
        g.add_nodes_from(range(n))
        i, j = np.nonzero(np.triu(w, 1))
        g.add_weighted_edges_from(zip(i.tolist(), j.tolist(), w[i, j].tolist()))
        out: dict = {}
        _bisect(g, list(range(n)), np.searchsorted(cand, block), slot_coords(block, chip)[0], seed, out)
        starts.append(np.array([out[k] for k in range(n)], np.int64))
    costs = [0.5 * float((w * d[p][:, p]).sum()) for p in starts]
    best = starts[int(np.argmin(costs))]
    sweeps = int(max(1, min(10, _REFINE_BUDGET // max(1, n * (len(cand) * n + n * n)))))
    return cand[refine_swaps(w, d, best, sweeps)]


def _comm_aware_typed(part: Partition, chip: ChipSpec, traffic: np.ndarray) -> np.ndarray:
    """comm_aware on a chip with core types: the cheaper of typed in_order and snake, refined by swaps within a
    type over all slots (only the cheaper start above _MAX_SLOTS slots)."""
    w = np.asarray(traffic, np.float64)
    w = w + w.T
    np.fill_diagonal(w, 0.0)
    options = [in_order(part, chip, None, 0), snake(part, chip, None, 0)]
    costs = [spike_weighted_hops(w, slot_coords(p, chip)[0]) for p in options]
    best = options[int(np.argmin(costs))]
    m = chip.n_cores_total
    if m > _MAX_SLOTS:
        return best
    xy = slot_coords(np.arange(m), chip)[0]
    d = (np.abs(xy[:, None, 0] - xy[None, :, 0]) + np.abs(xy[:, None, 1] - xy[None, :, 1])).astype(np.float64)
    n = part.n_cores
    sweeps = int(max(1, min(10, _REFINE_BUDGET // max(1, n * (m * n + n * n)))))
    return refine_swaps(w, d, best, sweeps, (part.core_type, chip.slot_types()))


#: placement name -> fn(partition, chip, traffic (n_cores x n_cores) or None, seed) -> int64 slot id per core
PLACEMENTS: dict[str, Callable[[Partition, ChipSpec, np.ndarray | None, int], np.ndarray]] = {
    "in_order": in_order, "snake": snake, "comm_aware": comm_aware}
#: placements that read the traffic (map_network computes it from an EventTrace only for these)
USES_TRAFFIC = ("comm_aware",)


def traffic_matrix(graph: NetworkGraph, core_of_neuron: dict[str, np.ndarray], n_cores: int,
                   trace: EventTrace) -> np.ndarray:
    """Messages sent from core i to core j over the whole trace, float64 (n_cores, n_cores).

    A spike of neuron s sends one message to every core holding a target with a synapse of s that its storage
    format stores (paid count > 0, hwmodels.mapping.connectivity.PAID_COUNT), as hwmodels.events.actions counts flows.
    Raises ValueError when a population with out-projections is missing from the trace or has a spike index
    outside the population.
    """
    total = sp.csr_matrix((n_cores, n_cores))
    for name, pop in graph.populations.items():
        outs = graph.out_projections(name)
        if not outs:
            continue
        if name not in trace.populations:
            raise ValueError(f"trace.populations: {name!r} is missing; trace has {', '.join(trace.populations)}")
        flags = sp.csr_matrix((pop.size, n_cores))
        for proj in outs:
            f, cores = core_fanout(proj, pop.shape, core_of_neuron[proj.target], PAID_COUNT[proj.storage])
            c = f.tocoo()
            flags = flags + sp.csr_matrix((np.ones(c.nnz), (c.row, cores[c.col])), shape=(pop.size, n_cores))
        spikes = spike_counts(trace, name, pop.size)
        if len(spikes) > pop.size:
            raise ValueError(f"trace.indices: population {name!r} has a spike index outside 0..{pop.size - 1}")
        sent = sp.csr_matrix((spikes.astype(float),
                              (core_of_neuron[name], np.arange(pop.size))), shape=(n_cores, pop.size))
        total = total + sent @ (flags > 0).astype(float)
    return total.toarray()


def spike_weighted_hops(traffic: np.ndarray, tile_xy: np.ndarray) -> float:
    """sum_ij traffic_ij x hops(i, j): messages times XY hops (tile hops plus chip-to-chip links) between cores."""
    i, j = np.nonzero(traffic)
    return float((traffic[i, j] * np.abs(tile_xy[i] - tile_xy[j]).sum(axis=1)).sum())
