"""Compiled kernel of the DES network play (hwmodels.timing.des_vector): the channel grants and releases of every
node, decided one at a time in time order with a heap of candidate grants (one numba call for a whole group).

The equations are those of hwmodels.timing.des_vector's module docstring, which also proves the order of
decisions: each queue grants its users in (request Q, flow) order at G = max(Q, release of the previous
holder); a child's request is fl(G + hop); a release is the closed form of hwmodels.timing.des (as
hwmodels.timing.des_simpy evaluates it) once all the grants it needs are known. Candidates are popped in time
order; the least one is always certain (an unknown request comes from an undecided grant at a time >= it, plus
a hop latency > 0), so every grant is the simpy engine's, with the same floating-point operations. Binary heaps
as in Cormen et al., "Introduction to Algorithms", ch. 6.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels import threads


@njit(cache=True, inline="always")
def _before(a: int, b: int, qv: np.ndarray, key: np.ndarray) -> bool:
    """Node a comes before node b in (request time, flow) order."""
    return qv[a] < qv[b] or (qv[a] == qv[b] and key[a] < key[b])


@njit(cache=True, inline="always")
def _wait_push(heap, start, size, qu, node, qv, key) -> None:
    """Add `node` to queue qu's waiting heap (heap[start[qu]:start[qu] + size[qu]])."""
    base, i = start[qu], size[qu]
    size[qu] += 1
    while i > 0:
        p = (i - 1) // 2
        if not _before(node, heap[base + p], qv, key):
            break
        heap[base + i] = heap[base + p]
        i = p
    heap[base + i] = node


@njit(cache=True, inline="always")
def _wait_pop(heap, start, size, qu, qv, key) -> int:
    """Remove and return the (Q, flow)-least waiting node of queue qu."""
    base = start[qu]
    top = heap[base]
    size[qu] -= 1
    n = size[qu]
    last = heap[base + n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _before(heap[base + c + 1], heap[base + c], qv, key):
            c += 1
        if not _before(heap[base + c], last, qv, key):
            break
        heap[base + i] = heap[base + c]
        i = c
    if n > 0:
        heap[base + i] = last
    return top


@njit(cache=True, inline="always")
def _cand_push(ct, cq, cv, hsize, t, qu, ver) -> int:
    """Push candidate (time t, queue qu, version) on the time heap of hsize entries; returns the new size."""
    i = hsize
    while i > 0:
        p = (i - 1) // 2
        if ct[p] <= t:
            break
        ct[i], cq[i], cv[i] = ct[p], cq[p], cv[p]
        i = p
    ct[i], cq[i], cv[i] = t, qu, ver
    return hsize + 1


@njit(cache=True, inline="always")
def _cand_pop(ct, cq, cv, hsize) -> int:
    """Drop the least candidate (kept at index 0 by the caller before the call); returns the new size."""
    n = hsize - 1
    t, qu, ver = ct[n], cq[n], cv[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and ct[c + 1] < ct[c]:
            c += 1
        if ct[c] >= t:
            break
        ct[i], cq[i], cv[i] = ct[c], cq[c], cv[c]
        i = c
    if n > 0:
        ct[i], cq[i], cv[i] = t, qu, ver
    return n


@njit(cache=True, inline="always")
def _tail_start(z, g, cm, tail, before, key, tm_ptr, term_node, term_const) -> float:
    """s[m, z] of hwmodels.timing.des: the tail's start on channel z from the grants g; cm = (m - 1) L and tail
    (s) of z's flow key[z], before (s) of z, slot terms (tm_ptr, term_node, term_const s) of
    hwmodels.timing.des_nodes.Nodes."""
    f = key[z]
    v = max(g[z] + cm[f], tail[f] + before[z])
    for k in range(tm_ptr[z], tm_ptr[z + 1]):
        v = max(v, g[term_node[k]] + term_const[k])
    return v


@njit(cache=True, inline="always")
def _release(x, g, cm, tail, before, key, hop, blocking, first_child, tm_ptr, term_node, term_const, link_s) -> float:
    """Release time (s) of node x: when the tail has crossed it and left its far buffer (hwmodels.timing.des)."""
    tx = _tail_start(x, g, cm, tail, before, key, tm_ptr, term_node, term_const)
    if blocking[x]:
        return max(tx + link_s, _tail_start(first_child[x], g, cm, tail, before, key, tm_ptr, term_node, term_const))
    return tx + max(link_s, hop[x])


def play(ready, tail, key, of, node_ptr, queue_ptr, start, hop, before, cm, blocking, parent, first_child, ch_ptr,
         child, tm_ptr, term_node, term_const, dp_ptr, dependent, need, link_s, workers: int = 1, out=None):
    """Grant and release (s) of every node, one step at a time (steps are independent: step k holds nodes
    node_ptr[k]..node_ptr[k+1]-1 and queues queue_ptr[k]..queue_ptr[k+1]-1). ready / tail / cm: float (n_flows,)
    time the first / last message of each flow is ready at its source router and (m - 1) L, s; key: int (n,)
    flow of each node (ties of Q); of: queue of each node; start: int64 (n_queues + 1,) cumulative users of the
    queues; hop / before: float (n,) s; parent: -1 at a root (requested at its flow's ready time). Children:
    first_child when ch_ptr is empty (at most one child per channel), else the CSR (ch_ptr, child); release
    dependencies: the node and its blocking parent when dp_ptr is empty (no slot terms), else the CSR (dp_ptr,
    dependent) with need int64 (n,) the grants each release needs (hwmodels.timing.des_nodes.Nodes). workers:
    threads that play disjoint ranges of whole steps at once (hwmodels.kernels.threads; every array a step
    touches is its own, so the result does not depend on it). out: (g, rel) float64 (n,) arrays to fill (every
    entry of a granted node is written), or None for new ones. Returns (g, rel, nodes granted, children whose
    request fl(G + hop) is not after their parent's grant G: the proof's precondition,
    hwmodels.timing.des_vector). The node-sized work arrays (request times, grants missing, waiting heaps) are
    allocated here by numpy (transparent huge pages: hwmodels.kernels.nodes.fill) and set step by step."""
    n, n_queues = len(key), int(queue_ptr[-1])
    g, rel = (np.full(n, np.nan), np.full(n, np.nan)) if out is None else out
    qv, missing, heap = np.empty(n), np.empty(n, key.dtype), np.empty(n, key.dtype)
    size, free, busy, ver = (np.empty(n_queues, np.int64), np.empty(n_queues), np.empty(n_queues, np.bool_),
                             np.empty(n_queues, np.int64))
    args = (ready, tail, key, of, node_ptr, queue_ptr, hop, before, cm, blocking, parent, first_child, ch_ptr, child,
            tm_ptr, term_node, term_const, dp_ptr, dependent, need, float(link_s), g, rel, qv, missing, heap, start,
            size, free, busy, ver)
    parts = threads.run(lambda k0, k1: play_steps(k0, k1, *args), threads.split(node_ptr, workers))
    return g, rel, sum(p[0] for p in parts), sum(p[1] for p in parts)


@njit(cache=True, nogil=True)
def play_steps(k0, k1, ready, tail, key, of, node_ptr, queue_ptr, hop, before, cm, blocking, parent, first_child,
               ch_ptr, child, tm_ptr, term_node, term_const, dp_ptr, dependent, need, link_s, g, rel, qv, missing,
               heap, start, size, free, busy, ver):
    """play() of steps k0..k1-1 into g, rel (float (n,)), with the work arrays of play: request times qv (float
    (n,), NaN until known), grants missing and the waiting heaps heap[start[q]:...] ((n,) each), the queue
    states size, free, busy, ver ((n_queues,) each), all set here for each step; releases the GIL. Returns
    (nodes granted, early children)."""
    most, plain = 0, len(dp_ptr) == 0
    for k in range(k0, k1):
        most = max(most, (queue_ptr[k + 1] - queue_ptr[k]) + 2 * (node_ptr[k + 1] - node_ptr[k]) + 1)
    ct, cq, cv = np.empty(most), np.empty(most, np.int64), np.empty(most, np.int64)
    granted, early = 0, np.zeros(1, np.int64)
    for k in range(k0, k1):
        for qu in range(queue_ptr[k], queue_ptr[k + 1]):
            size[qu], free[qu], busy[qu], ver[qu] = 0, -np.inf, False, 0
        for u in range(node_ptr[k], node_ptr[k + 1]):
            qv[u] = ready[key[u]] if parent[u] < 0 else np.nan
            missing[u] = 1 + blocking[u] if plain else need[u]
            if not np.isnan(qv[u]):
                _wait_push(heap, start, size, of[u], u, qv, key)
        hsize = 0
        for qu in range(queue_ptr[k], queue_ptr[k + 1]):
            if size[qu] > 0:
                hsize = _cand_push(ct, cq, cv, hsize, max(free[qu], qv[heap[start[qu]]]), qu, ver[qu])
        granted += _run(hsize, ct, cq, cv, heap, start, size, free, busy, ver, qv, key, of, g, rel, hop, before, cm,
                        tail, blocking, parent, first_child, ch_ptr, child, tm_ptr, term_node, term_const, dp_ptr,
                        dependent, missing, link_s, early)
    return granted, early[0]


@njit(cache=True, nogil=True)
def _run(hsize, ct, cq, cv, heap, start, size, free, busy, ver, qv, key, of, g, rel, hop, before, cm, tail, blocking,
         parent, first_child, ch_ptr, child, tm_ptr, term_node, term_const, dp_ptr, dependent, missing, link_s,
         early) -> int:
    """Pop candidates in time order until none is left: grant, derive the children's requests and every
    release now known; returns the grants made and adds to early[0] the children requested at their parent's
    grant instant."""
    granted, single, plain = 0, len(ch_ptr) == 0, len(dp_ptr) == 0
    while hsize > 0:
        qu, v = cq[0], cv[0]
        hsize = _cand_pop(ct, cq, cv, hsize)
        if v != ver[qu]:
            continue
        u = _wait_pop(heap, start, size, qu, qv, key)
        gt = max(free[qu], qv[u])
        g[u] = gt
        busy[qu] = True
        ver[qu] += 1
        granted += 1
        lo, hi = (0, int(first_child[u] >= 0)) if single else (ch_ptr[u], ch_ptr[u + 1])
        for j in range(lo, hi):
            c = first_child[u] if single else child[j]
            qv[c] = gt + hop[u]
            if qv[c] <= gt:
                early[0] += 1
            kq = of[c]
            _wait_push(heap, start, size, kq, c, qv, key)
            if not busy[kq] and heap[start[kq]] == c:
                ver[kq] += 1
                hsize = _cand_push(ct, cq, cv, hsize, max(free[kq], qv[c]), kq, ver[kq])
        p = parent[u]
        lo, hi = (0, 1 + int(p >= 0 and blocking[p])) if plain else (dp_ptr[u], dp_ptr[u + 1])
        for j in range(lo, hi):
            x = (u if j == 0 else p) if plain else dependent[j]
            missing[x] -= 1
            if missing[x] == 0:
                r = _release(x, g, cm, tail, before, key, hop, blocking, first_child, tm_ptr, term_node, term_const,
                             link_s)
                rel[x] = r
                xq = of[x]
                free[xq], busy[xq] = r, False
                if size[xq] > 0:
                    ver[xq] += 1
                    hsize = _cand_push(ct, cq, cv, hsize, max(r, qv[heap[start[xq]]]), xq, ver[xq])
    return granted
