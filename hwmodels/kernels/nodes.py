"""Compiled fills of channel arrays: the channel nodes of hwmodels.timing.des_nodes.Nodes and their queues (fill:
one pass over the flows instead of a dozen numpy gathers over every node and a sort of the queue keys, with the
same values: copies and one integer addition per parent index; costs: the hop latencies alone)."""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux


def fill(off, flow_route, flow_step, t_off, links, parent, hop_s, before_s, blocking, n_links):
    """Per-node arrays and queue numbering of flows with off int64 (n_flows + 1,) node offsets (node off[f] + c
    is channel c of flow f), flow_route / flow_step int64 (n_flows,) (steps sorted, >= 0), the trees' channels
    laid end to end (t_off int64 (n_trees + 1,) first channel of each tree; links (< n_links), parent
    (tree-local, -1 at a root, parents before children) int64, hop_s, before_s float64 s, blocking bool).

    Returns (flow, hop, before, blocking, parent (node index, -1 at a root), first_child (lowest child node, -1:
    none), queue) per node ((n,) each, n = off[-1]; flow, parent, first_child and queue of dtype index_dtype(n,
    n_flows, n_links)), single_child (no node has two children), then per step node_ptr, queue_ptr int64
    (n_steps + 1,) (step k holds nodes node_ptr[k]..node_ptr[k+1]-1 and queues queue_ptr[k]..queue_ptr[k+1]-1;
    n_steps = 1 + the last step with a node, 0 without nodes) and start int64 (n_queues + 1,) the cumulative
    users of the queues. A queue is one (step, link) with users; queue ids follow sorted (step, link) order, as
    np.unique(step * n_links + link, return_inverse=True) numbers them, found step by step with a table over
    the links (no node-sized key array, no sort of the nodes).

    The node arrays are allocated by numpy, which asks the kernel for transparent huge pages on large arrays
    (numpy's madvise hugepage setting), and filled by a compiled pass (_fill): arrays allocated inside numba
    come in 4 KiB pages, whose first-touch faults cost several times the fill itself (a 74 MB array: 33 ms
    against 8-10 ms on this project's 2-core machine, measured)."""
    n, nf = int(off[-1]), len(off) - 1
    if nf and (flow_step[0] < 0 or np.any(flow_step[1:] < flow_step[:-1])):
        raise ValueError("fill: flow steps must be sorted and >= 0")
    full = np.flatnonzero(off[1:] > off[:-1])
    n_steps = int(flow_step[full[-1]]) + 1 if len(full) else 0
    idx = index_dtype(n, nf, n_links)
    out = (np.empty(n, idx), np.empty(n), np.empty(n), np.empty(n, np.bool_), np.empty(n, idx), np.empty(n, idx),
           np.empty(n, idx))
    node_ptr, queue_ptr = np.empty(n_steps + 1, np.int64), np.empty(n_steps + 1, np.int64)
    start = np.empty(n + 1, np.int64)  # n_queues + 1 <= n + 1 entries written
    count, rank, distinct = np.zeros(n_links, np.int64), np.empty(n_links, idx), np.empty(n_links, idx)
    single = _fill(off, flow_route, flow_step, t_off, links, parent, hop_s, before_s, blocking, *out, node_ptr,
                   queue_ptr, start, count, rank, distinct)
    return (*out, single, node_ptr, queue_ptr, start[:queue_ptr[-1] + 1].copy())


def index_dtype(*sizes: int) -> type:
    """np.int32 when every size (counts of nodes, flows, links) is below 2^31 - 1, else np.int64: the dtype of
    the node arrays that hold such indices (half the memory traffic of int64)."""
    return np.int32 if max(sizes, default=0) < np.iinfo(np.int32).max else np.int64


@njit(cache=True, nogil=True)
def _fill(off, flow_route, flow_step, t_off, links, parent, hop_s, before_s, blocking, flow, hop, before, block,
          par, first, queue, node_ptr, queue_ptr, start, count, rank, distinct) -> bool:
    """fill's pass into its arrays, step by step: the nodes of the step's flows (queue: their link), then the
    step's distinct links (count: users per link, zeros on entry and exit) sorted into queue ids (rank) and
    the nodes' links replaced by them; returns single_child. Releases the GIL."""
    single, nf, f, q = True, len(off) - 1, 0, 0
    start[0] = 0
    for k in range(len(node_ptr) - 1):
        node_ptr[ux(k)], queue_ptr[ux(k)], d = off[ux(f)], q, 0
        while f < nf and flow_step[ux(f)] == k:
            base, t0 = off[ux(f)], t_off[ux(flow_route[ux(f)])]
            for c in range(off[ux(f + 1)] - base):
                z, t = base + c, t0 + c
                lk = links[ux(t)]
                flow[ux(z)], hop[ux(z)], before[ux(z)] = f, hop_s[ux(t)], before_s[ux(t)]
                block[ux(z)], first[ux(z)] = blocking[ux(t)], -1
                queue[ux(z)] = lk
                if count[ux(lk)] == 0:
                    distinct[ux(d)] = lk
                    d += 1
                count[ux(lk)] += 1
                p = parent[ux(t)]
                if p >= 0:
                    p += base
                    if first[ux(p)] < 0:
                        first[ux(p)] = z
                    else:
                        single = False
                par[ux(z)] = p
            f += 1
        d = rank_links(count, distinct, d, rank, start, q)
        for z in range(node_ptr[ux(k)], off[ux(f)]):
            queue[ux(z)] = rank[ux(queue[ux(z)])]
        q += d
    node_ptr[-1], queue_ptr[-1] = off[ux(f)], q
    return single


@njit(cache=True, nogil=True, inline="always")
def rank_links(count, distinct, d, rank, start, q) -> int:
    """Number the d distinct links distinct[:d] of a step (count: users of each link, > 0 exactly there) as queues
    q, q + 1, ... in ascending link order: rank[link] = its queue, start[queue + 1] = start[queue] + its users
    (start[q] set by the caller); count is left all zeros. Sorts the d links when they are few against the table,
    else reads them in order off it. Returns d."""
    if 16 * d < len(count):
        distinct[:d].sort()
    else:  # many distinct links: read them in order off the table
        d = 0
        for lk in range(len(count)):
            if count[ux(lk)] > 0:
                distinct[ux(d)] = lk
                d += 1
    for j in range(d):
        lk = distinct[ux(j)]
        rank[ux(lk)] = q + j
        start[ux(q + j + 1)] = start[ux(q + j)] + count[ux(lk)]
        count[ux(lk)] = 0
    return d


@njit(cache=True, nogil=True)
def fill_records(k0, k1, flow_ptr, off, flow_route, t_off, links, parent, hop_s, before_s, blocking, ready, tail, cm,
                 nodes, count, distinct, rank, queue_ptr, start) -> int:
    """The channel nodes of steps k0..k1-1 (step k: flows flow_ptr[k]..flow_ptr[k+1]-1; fill's inputs, plus
    ready / tail / cm float64 (n_flows,) s) as hwmodels.kernels.grants.NODE records, step after step from
    nodes[0] (step k's from off[flow_ptr[k]] - off[flow_ptr[k0]]), with the values fill and
    hwmodels.kernels.grants.play_steps give them: tb = tail + before; key, parent, fc and of numbered from 0 in
    the step (key = flow - the step's first flow); no slot terms (missing = 1 + blocking). Each step's queues are
    numbered as fill numbers them (rank_links), from queue_ptr[k - k0] in `start` (queue j has users
    start[j]..start[j + 1] - 1; start[0] = 0). count, rank, distinct: work arrays of n_links entries, count all
    zeros on entry and exit. Returns the queues of all the steps, or -1 when a channel has two children (the
    records are then unusable). Releases the GIL."""
    base0, q = off[ux(flow_ptr[k0])], 0
    start[0] = 0
    for k in range(k0, k1):
        f0, f1 = flow_ptr[k], flow_ptr[k + 1]
        s0, d = off[ux(f0)] - base0, 0
        queue_ptr[ux(k - k0)] = q
        for f in range(f0, f1):
            base, t0 = off[ux(f)] - off[ux(f0)], t_off[ux(flow_route[ux(f)])]
            for c in range(off[ux(f + 1)] - off[ux(f)]):
                u, t = base + c, t0 + c
                lk = links[ux(t)]
                nd = nodes[ux(s0 + u)]
                nd.g, nd.hop, nd.tb, nd.cm = np.nan, hop_s[ux(t)], tail[ux(f)] + before_s[ux(t)], cm[ux(f)]
                nd.key, nd.of, nd.blocking, nd.fc, nd.missing = f - f0, lk, blocking[ux(t)], -1, 1 + blocking[ux(t)]
                if count[ux(lk)] == 0:
                    distinct[ux(d)] = lk
                    d += 1
                count[ux(lk)] += 1
                p = parent[ux(t)]
                nd.parent, nd.qv = (p + base, np.nan) if p >= 0 else (-1, ready[ux(f)])
                if p >= 0:
                    if nodes[ux(s0 + p + base)].fc >= 0:
                        count[:] = 0
                        return -1
                    nodes[ux(s0 + p + base)].fc = u
        d = rank_links(count, distinct, d, rank, start, q)
        for u in range(off[ux(f1)] - off[ux(f0)]):
            nodes[ux(s0 + u)].of = rank[ux(nodes[ux(s0 + u)].of)] - q
        q += d
    queue_ptr[ux(k1 - k0)] = q
    return q


def costs(off: np.ndarray, flow_route: np.ndarray, t_off: np.ndarray, hop_s: np.ndarray,
          before_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hop, before) float64 (off[-1],) s of every node (fill's layout) from the trees' hop_s / before_s (s): the
    same values as fill's, for recosted routes (numpy-allocated, filled by a compiled pass)."""
    n = int(off[-1])
    hop, before = np.empty(n), np.empty(n)
    _costs(off, flow_route, t_off, hop_s, before_s, hop, before)
    return hop, before


@njit(cache=True, nogil=True)
def _costs(off, flow_route, t_off, hop_s, before_s, hop, before) -> None:
    """costs' pass into hop and before."""
    for f in range(len(off) - 1):
        base, t0 = off[ux(f)], t_off[ux(flow_route[ux(f)])]
        for c in range(off[ux(f + 1)] - base):
            hop[ux(base + c)], before[ux(base + c)] = hop_s[ux(t0 + c)], before_s[ux(t0 + c)]


def dependencies(off, flow_route, m1, max_depth, blocking, first_child, parent,
                 depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The release dependencies of channel nodes with buffers of `depth` messages (hwmodels.timing.des_nodes.Nodes;
    arguments as slot_terms', parent (n,) node index, -1 at a root): node x's release needs the grants of x, of
    its slot terms and, when blocking, of its child and the child's terms, each once. The terms run down x's
    chain of blocking channels (slot_terms), so that set is x and its first min(K + 1, D) chain descendants (K
    of x's flow, D the length of x's chain: 0 when x is not blocking), and the nodes whose release needs j's
    grant are j and its first min(K + 1, L) ancestors up through blocking channels.

    Returns (dp_ptr int64 (n + 1,), dependent int64, need int64 (n,)): the CSR node j -> the nodes whose release
    needs j's grant, in increasing order (ancestors first, j last), and how many grants each release needs. Two
    compiled passes (count, fill) along each node's own chain, where numpy built every (grant, release) pair and
    sorted them twice."""
    n = int(off[-1])
    dp_ptr, need = np.zeros(n + 1, np.int64), np.zeros(n, np.int64)
    _count_dependencies(off, flow_route, m1, max_depth, blocking, first_child, parent, depth, dp_ptr, need)
    dependent = np.empty(int(dp_ptr[-1]), np.int64)
    _fill_dependencies(off, flow_route, m1, max_depth, blocking, parent, depth, dp_ptr, dependent)
    return dp_ptr, dependent, need


@njit(cache=True, inline="always")
def _reach(f, flow_route, m1, max_depth, depth) -> int:
    """K + 1 of flow f: how far down its blocking chain a release waits (its slot terms' K, plus its child)."""
    return min(m1[ux(f)] // depth, max_depth[ux(flow_route[ux(f)])]) + 1


@njit(cache=True, nogil=True)
def _count_dependencies(off, flow_route, m1, max_depth, blocking, first_child, parent, depth, dp_ptr, need) -> None:
    """dependencies' first pass: need[x], and dp_ptr as the cumulative number of dependents of each node."""
    for f in range(len(off) - 1):
        reach = _reach(f, flow_route, m1, max_depth, depth)
        for x in range(off[ux(f)], off[ux(f + 1)]):
            d, y = 0, x
            while d < reach and blocking[ux(y)]:
                y = first_child[ux(y)]
                d += 1
            need[ux(x)] = 1 + d
            u, a = 0, parent[ux(x)]
            while u < reach and a >= 0 and blocking[ux(a)]:
                a = parent[ux(a)]
                u += 1
            dp_ptr[ux(x + 1)] = dp_ptr[ux(x)] + 1 + u


@njit(cache=True, nogil=True)
def _fill_dependencies(off, flow_route, m1, max_depth, blocking, parent, depth, dp_ptr, dependent) -> None:
    """dependencies' second pass: each node's row, its ancestors from the farthest down, then itself."""
    for f in range(len(off) - 1):
        reach = _reach(f, flow_route, m1, max_depth, depth)
        for j in range(off[ux(f)], off[ux(f + 1)]):
            q = dp_ptr[ux(j + 1)] - 1
            dependent[ux(q)] = j
            u, a = 0, parent[ux(j)]
            while u < reach and a >= 0 and blocking[ux(a)]:
                q -= 1
                dependent[ux(q)] = a
                a = parent[ux(a)]
                u += 1


def slot_terms(off, flow_route, m1, max_depth, blocking, first_child, depth: int):
    """The slot terms of channel nodes with router buffers of `depth` messages (hwmodels.timing.des_nodes.Nodes):
    for node x of flow f, the nodes i reached from x down its chain of blocking channels (a blocking channel has
    one child), i at u = 1, 2, ... channels below x, for u <= K = min((m - 1) // depth, max_depth[tree of f]),
    with (m - 1 - depth x u) link times each. off int64 (n_flows + 1,) node offsets; flow_route, m1 (messages - 1),
    int64 (n_flows,); max_depth int64 per tree; blocking bool (n,), first_child (n,) (-1: none).

    Returns (tm_ptr int64 (n + 1,), term_node int64, term_links int64): node x's terms term_node[tm_ptr[x]:
    tm_ptr[x + 1]] in increasing u. Two compiled passes (count, fill) down the nodes' own chains, where numpy
    listed every (descendant, blocking ancestor) pair of the route table and kept those of each node's K."""
    n = int(off[-1])
    tm_ptr = np.zeros(n + 1, np.int64)
    _count_terms(off, flow_route, m1, max_depth, blocking, first_child, depth, tm_ptr)
    term_node, term_links = np.empty(int(tm_ptr[-1]), np.int64), np.empty(int(tm_ptr[-1]), np.int64)
    _fill_terms(off, blocking, first_child, depth, m1, tm_ptr, term_node, term_links)
    return tm_ptr, term_node, term_links


@njit(cache=True, nogil=True)
def _count_terms(off, flow_route, m1, max_depth, blocking, first_child, depth, tm_ptr) -> None:
    """slot_terms' first pass: tm_ptr[x + 1] = x's number of terms, then the cumulative sums."""
    for f in range(len(off) - 1):
        cap = _reach(f, flow_route, m1, max_depth, depth) - 1  # K
        for x in range(off[ux(f)], off[ux(f + 1)]):
            k, y = 0, x
            while k < cap and blocking[ux(y)]:
                y = first_child[ux(y)]
                k += 1
            tm_ptr[ux(x + 1)] = k
    for x in range(len(tm_ptr) - 1):
        tm_ptr[ux(x + 1)] += tm_ptr[ux(x)]


@njit(cache=True, nogil=True)
def _fill_terms(off, blocking, first_child, depth, m1, tm_ptr, term_node, term_links) -> None:
    """slot_terms' second pass: each node's terms down its chain, as many as the first pass counted."""
    for f in range(len(off) - 1):
        for x in range(off[ux(f)], off[ux(f + 1)]):
            y = x
            for q in range(tm_ptr[ux(x)], tm_ptr[ux(x + 1)]):
                y = first_child[ux(y)]
                term_node[ux(q)] = y
                term_links[ux(q)] = m1[ux(f)] - depth * (q - tm_ptr[ux(x)] + 1)
