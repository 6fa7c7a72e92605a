"""The grant kernel (hwmodels.kernels.grants) fed straight from the route table: each step's channel nodes are
written as NODE records from the flows and their trees (hwmodels.kernels.nodes.fill_records: the work of
hwmodels.kernels.nodes.fill, step by step), played (grants.play_step), and their head-down and held times written
out (grants.step_out), without the node-sized arrays of hwmodels.timing.des_nodes.Nodes. For a group whose nodes
are built once and dropped (more channel nodes than hwmodels.timing.des.CHUNK_NODES) this skips writing those
arrays and reading them back: about 30 bytes a node and their fresh pages (Spikformer-4-384, 4 samples: 9.3 M
nodes).

It covers the plain case: unbounded router buffers (no slot terms) and at most one child per channel (unicast
paths, or trees without forks); play() says when a tree forks, and the caller falls back to Nodes. Every value is
the same floating-point operation as on the Nodes path, so the results are the same bit for bit
(tests/hwmodels/test_route_play.py). The steps are driven from Python, one compiled call per stage of a step
(each releases the GIL): a compiled function calling one of another module would be cached by numba without
noticing when that module changes.
"""
from __future__ import annotations

import numpy as np

from hwmodels.kernels import grants, threads
from hwmodels.kernels.nodes import fill_records, index_dtype


def play(off, flow_route, flow_step, t_off, links, parent, hop_s, before_s, blocking, n_links, ready, tail, cm,
         link_s, down, held, workers: int = 1) -> tuple[int, int] | None:
    """Play the flows with node offsets off int64 (n_flows + 1,) (node off[f] + c is channel c of flow f),
    flow_route / flow_step int64 (n_flows,) (steps sorted, >= 0) on the trees laid end to end (t_off int64
    (n_trees + 1,); per channel links (< n_links), tree-local parent (parents first), hop_s, before_s (s),
    blocking); ready / tail / cm float64 (n_flows,): first and last message ready at the source router (s) and
    (m - 1) L (s); link_s: link time L (s). Writes down (head down = grant + hop, s) and held (release - grant,
    s) of every node into the float64 (off[-1],) arrays given, on `workers` threads over disjoint ranges of
    whole steps. Returns (nodes granted, children requested at their parent's grant instant:
    hwmodels.timing.des_vector's precondition), or None when some channel has two children (what was written
    is then unusable). Raises ValueError when a step has 2^31 nodes or more."""
    n_steps = int(flow_step[-1]) + 1 if len(flow_step) else 0
    step_nodes = np.bincount(flow_step, weights=np.diff(off), minlength=n_steps).astype(np.int64)
    if int(step_nodes.max(initial=0)) >= 2 ** 31:
        raise ValueError("route_play: a step has 2**31 nodes or more")
    flow_ptr = np.searchsorted(flow_step, np.arange(n_steps + 1)).astype(np.int64)
    node_ptr = np.concatenate([[0], np.cumsum(step_nodes)]).astype(np.int64)
    trees = (off, flow_route, t_off, links, parent, hop_s, before_s, blocking, ready, tail, cm)
    parts = threads.run(lambda k0, k1: _steps(k0, k1, flow_ptr, step_nodes, trees, int(n_links), float(link_s),
                                              down, held), threads.split(node_ptr, workers))
    return None if any(p is None for p in parts) else (sum(p[0] for p in parts), sum(p[1] for p in parts))


def _steps(k0: int, k1: int, flow_ptr: np.ndarray, step_nodes: np.ndarray, trees: tuple, n_links: int,
           link_s: float, down: np.ndarray, held: np.ndarray) -> tuple[int, int] | None:
    """Steps k0..k1-1 of play() on work arrays the size of their largest step (NODE and QUEUE records, waiting
    heaps, the candidate heap, the link tables of fill_records); (grants, early children) or None."""
    most = int(step_nodes[k0:k1].max(initial=0))
    nodes, heap = np.empty(most, grants.NODE), np.empty(most, np.int32)
    qs, start = np.empty(min(most, n_links), grants.QUEUE), np.empty(min(most, n_links) + 1, np.int64)
    idx = index_dtype(most, n_links)
    count, rank, distinct = np.zeros(n_links, np.int64), np.empty(n_links, idx), np.empty(n_links, idx)
    ct, cv = np.empty(3 * most + 1), np.empty(3 * most + 1, np.int64)
    none, early, granted = np.zeros(0, np.int64), np.zeros(1, np.int64), 0
    off = trees[0]
    for k in range(k0, k1):
        f0, f1 = int(flow_ptr[k]), int(flow_ptr[k + 1])
        if f1 == f0 or off[f1] == off[f0]:
            continue
        n_queues = fill_records(f0, f1, *trees, nodes, count, distinct, rank, start)
        if n_queues < 0:
            return None
        b, n = int(off[f0]), int(step_nodes[k])
        granted += grants.play_step(nodes, n, heap, qs, start, 0, n_queues, ct, cv, b, held, none, none, none, none,
                                    none, none, none, link_s, early)
        grants.step_out(nodes, n, b, down, held)
    return granted, int(early[0])
