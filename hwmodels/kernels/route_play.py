"""The grant kernel (hwmodels.kernels.grants) fed straight from the route table: the channel nodes of a run of
steps are written as NODE records from the flows and their trees (hwmodels.kernels.nodes.fill_records: the work
of hwmodels.kernels.nodes.fill, step by step), then played step by step with their head-down and held times
written out (grants.play_records), without the node-sized arrays of hwmodels.timing.des_nodes.Nodes: about 30
bytes a node and their fresh pages are never written or read back (Spikformer-4-384, 4 samples: 9.3 M nodes).

It covers the plain case: unbounded router buffers (no slot terms) and at most one child per channel (unicast
paths, or trees without forks); play() says when a tree forks, and the caller falls back to Nodes. Every value is
the same floating-point operation as on the Nodes path, so the results are the same bit for bit
(tests/hwmodels/test_route_play.py). Runs of steps of up to RUN_NODES nodes (or one larger step) are filled and
played by one compiled call each, driven from Python: a compiled function that called one of another module
would be cached by numba without noticing when that module changes.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hwmodels.kernels import grants, threads
from hwmodels.kernels.nodes import fill_records, index_dtype

#: channel nodes whose records are filled before they are played (512 KB of NODE records, within a core's L2 cache:
#: filled records are still cached when played). Measured, medians of 7: the MNIST conv net's 898 steps of ~46
#: nodes 3.1 ms at 2^13 against 4.4 ms at 2^8 (compiled calls per run); Spikformer-4-384 on two threads 0.46 s
#: at 2^10 against 0.59 s at 2^18 (records of several large steps outgrow the caches before they are played)
RUN_NODES = 1 << 13


def play(off, flow_route, flow_step, t_off, links, parent, hop_s, before_s, blocking, n_links, ready, tail, cm,
         link_s, down, held, workers: int = 1, per_flow: bool = False) -> tuple[int, int] | None:
    """Play the flows with node offsets off int64 (n_flows + 1,) (node off[f] + c is channel c of flow f),
    flow_route / flow_step int64 (n_flows,) (steps sorted, >= 0) on the trees laid end to end (t_off int64
    (n_trees + 1,); per channel links (< n_links), tree-local parent (parents first), hop_s, before_s (s),
    blocking); ready / tail / cm float64 (n_flows,): first and last message ready at the source router (s) and
    (m - 1) L (s); link_s: link time L (s). Writes down (head down = grant + hop, s) and held (release - grant,
    s) of every node into the float64 (off[-1],) arrays given, on `workers` threads over disjoint ranges of
    whole steps (hwmodels.kernels.threads.guided: large ranges first, small ones last; the two equal halves of
    Spikformer-4-384's steps used to finish 0-50 ms apart); per_flow: down is float64 (n_flows,) instead and gets
    each flow's last channel's head down time (a unicast path's eject channel: node-sized down values are never
    written; flows of no channel are left as they are). Returns (nodes granted, children requested at their
    parent's grant instant: hwmodels.timing.des_vector's precondition), or None when some channel has two
    children (what was written is then unusable). Raises ValueError when a step has 2^31 nodes or more."""
    n_steps = int(flow_step[-1]) + 1 if len(flow_step) else 0
    step_nodes = np.bincount(flow_step, weights=np.diff(off), minlength=n_steps).astype(np.int64)
    if int(step_nodes.max(initial=0)) >= 2 ** 31:
        raise ValueError("route_play: a step has 2**31 nodes or more")
    flow_ptr = np.searchsorted(flow_step, np.arange(n_steps + 1)).astype(np.int64)
    node_ptr = np.concatenate([[0], np.cumsum(step_nodes)]).astype(np.int64)
    trees = (off, flow_route, t_off, links, parent, hop_s, before_s, blocking, ready, tail, cm)
    most_step = int(step_nodes.max(initial=0))
    sizes = (min(max(RUN_NODES, most_step), int(node_ptr[-1])), most_step, n_steps, int(n_links))
    parts = threads.guided(lambda work, k0, k1: _steps(work, k0, k1, flow_ptr, node_ptr, trees, float(link_s), down,
                                                       held, per_flow), node_ptr, workers, lambda: _Work.of(*sizes))
    return None if any(p is None for p in parts) else (sum(p[0] for p in parts), sum(p[1] for p in parts))


def _runs(node_ptr: np.ndarray, k0: int, k1: int) -> list[tuple[int, int]]:
    """Steps k0..k1-1 cut into runs [a, b) of consecutive steps with at most RUN_NODES nodes, or one step."""
    cuts, a = [], k0
    while a < k1:
        b = int(np.searchsorted(node_ptr, node_ptr[a] + RUN_NODES, side="right")) - 1
        b = min(max(b, a + 1), k1)
        cuts.append((a, b))
        a = b
    return cuts


class _Work(NamedTuple):
    """A thread's work arrays for _steps, sized for any range of steps: NODE records of the largest run
    (_runs: at most max(RUN_NODES, the largest step) nodes) and their queue numbering (queue_ptr per step of a run,
    start per node), the largest step's waiting heaps, QUEUE records and candidate heap (ct, cv), and
    fill_records's link tables (count all zeros between runs); early: children requested at their parent's grant
    instant, counted over every range the thread plays."""

    nodes: np.ndarray
    heap: np.ndarray
    qs: np.ndarray
    queue_ptr: np.ndarray
    start: np.ndarray
    count: np.ndarray
    rank: np.ndarray
    distinct: np.ndarray
    ct: np.ndarray
    cv: np.ndarray
    early: np.ndarray

    @classmethod
    def of(cls, most_run: int, most_step: int, n_steps: int, n_links: int) -> _Work:
        """Arrays for runs of up to most_run nodes, steps of up to most_step nodes, n_steps steps, n_links links."""
        idx = index_dtype(most_run, n_links)
        return cls(np.empty(most_run, grants.NODE), np.empty(most_step, np.int32),
                   np.empty(min(most_step, n_links), grants.QUEUE), np.empty(n_steps + 1, np.int64),
                   np.empty(most_run + 1, np.int64), np.zeros(n_links, np.int64), np.empty(n_links, idx),
                   np.empty(n_links, idx), np.empty(3 * most_step + 1), np.empty(3 * most_step + 1, np.int64),
                   np.zeros(1, np.int64))


def _steps(w: _Work, k0: int, k1: int, flow_ptr: np.ndarray, node_ptr: np.ndarray, trees: tuple, link_s: float,
           down: np.ndarray, held: np.ndarray, per_flow: bool) -> tuple[int, int] | None:
    """Steps k0..k1-1 of play() in runs (_runs) on the thread's work arrays `w`; (grants, early children of these
    steps) or None."""
    granted, early0 = 0, int(w.early[0])
    for a, b in _runs(node_ptr, k0, k1):
        if fill_records(a, b, flow_ptr, *trees, w.nodes, w.count, w.distinct, w.rank, w.queue_ptr, w.start) < 0:
            return None
        granted += grants.play_records(a, b, flow_ptr, trees[0], w.nodes, w.queue_ptr, w.start, w.heap, w.qs, w.ct,
                                       w.cv, down, held, link_s, w.early, per_flow)
    return granted, int(w.early[0]) - early0
