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

QUEUE = np.dtype([("free", np.float64), ("start", np.int64), ("size", np.int64), ("ver", np.int64)])
"""State of a queue in the kernel: free, release (s) of its last holder (NaN while held: releases are numbers);
start, size: its waiting heap heap[start:start + size]; ver: queue << 32 plus a count of its candidates made
stale (a candidate is current while it carries its queue's ver)."""


@njit(cache=True, inline="always")
def _before(a: int, b: int, qv: np.ndarray, key: np.ndarray) -> bool:
    """Node a comes before node b in (request time, flow) order."""
    return qv[a] < qv[b] or (qv[a] == qv[b] and key[a] < key[b])


@njit(cache=True, inline="always")
def _wait_push(heap, qs, qu, node, qv, key) -> None:
    """Add `node` to queue qu's waiting heap (heap[qs[qu].start:qs[qu].start + qs[qu].size])."""
    base, i = qs[qu].start, qs[qu].size
    qs[qu].size = i + 1
    while i > 0:
        p = (i - 1) // 2
        if not _before(node, heap[base + p], qv, key):
            break
        heap[base + i] = heap[base + p]
        i = p
    heap[base + i] = node


@njit(cache=True, inline="always")
def _wait_pop(heap, qs, qu, qv, key) -> int:
    """Remove and return the (Q, flow)-least waiting node of queue qu."""
    base = qs[qu].start
    top = heap[base]
    n = qs[qu].size - 1
    qs[qu].size = n
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
def _cand_push(ct, cv, hsize, t, ver) -> int:
    """Push candidate (time t, version ver of its queue, which holds the queue) on the time heap of hsize
    entries; returns the new size."""
    i = hsize
    while i > 0:
        p = (i - 1) // 2
        if ct[p] <= t:
            break
        ct[i], cv[i] = ct[p], cv[p]
        i = p
    ct[i], cv[i] = t, ver
    return hsize + 1


@njit(cache=True, inline="always")
def _cand_pop(ct, cv, hsize) -> int:
    """Drop the least candidate (kept at index 0 by the caller before the call); returns the new size: the last
    entry takes its place (_cand_replace on the heap one shorter)."""
    n = hsize - 1
    if n > 0:
        _cand_replace(ct, cv, n, ct[n], cv[n])
    return n


@njit(cache=True, inline="always")
def _cand_replace(ct, cv, hsize, t, ver) -> None:
    """Put candidate (time t, version ver) in place of the least one (index 0) of the heap of hsize entries."""
    i = 0
    while True:
        c = 2 * i + 1
        if c >= hsize:
            break
        if c + 1 < hsize and ct[c + 1] < ct[c]:
            c += 1
        if ct[c] >= t:
            break
        ct[i], cv[i] = ct[c], cv[c]
        i = c
    ct[i], cv[i] = t, ver


@njit(cache=True, inline="always")
def _renew(ct, cv, hsize, top, qs, qu, t) -> int:
    """Make (time t, a new version of queue qu) the queue's current candidate (its older ones turn stale): in
    place of the granted candidate still at the heap top when `top`, else pushed. Returns the heap's size."""
    w = qs[qu].ver + 1
    qs[qu].ver = w
    if top:
        _cand_replace(ct, cv, hsize, t, w)
        return hsize
    return _cand_push(ct, cv, hsize, t, w)


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
    if n_queues >= 2 ** 31:
        raise ValueError("grants kernel: more than 2**31 queues")
    g, rel = (np.full(n, np.nan), np.full(n, np.nan)) if out is None else out
    qv, missing, heap = np.empty(n), np.empty(n, key.dtype), np.empty(n, key.dtype)
    qs = np.empty(n_queues, QUEUE)
    args = (ready, tail, key, of, node_ptr, queue_ptr, hop, before, cm, blocking, parent, first_child, ch_ptr, child,
            tm_ptr, term_node, term_const, dp_ptr, dependent, need, float(link_s), g, rel, qv, missing, heap, start,
            qs)
    parts = threads.run(lambda k0, k1: play_steps(k0, k1, *args), threads.split(node_ptr, workers))
    return g, rel, sum(p[0] for p in parts), sum(p[1] for p in parts)


@njit(cache=True, nogil=True)
def play_steps(k0, k1, ready, tail, key, of, node_ptr, queue_ptr, hop, before, cm, blocking, parent, first_child,
               ch_ptr, child, tm_ptr, term_node, term_const, dp_ptr, dependent, need, link_s, g, rel, qv, missing,
               heap, start, qs):
    """play() of steps k0..k1-1 into g, rel (float (n,)), with the work arrays of play: request times qv (float
    (n,), NaN until known), grants missing and the waiting heaps heap[start[q]:...] ((n,) each), the queue
    records qs ((n_queues,) of QUEUE), all set here for each step; releases the GIL. Returns (nodes
    granted, early children)."""
    most, plain = 0, len(dp_ptr) == 0
    for k in range(k0, k1):
        most = max(most, (queue_ptr[k + 1] - queue_ptr[k]) + 2 * (node_ptr[k + 1] - node_ptr[k]) + 1)
    ct, cv = np.empty(most), np.empty(most, np.int64)
    granted, early = 0, np.zeros(1, np.int64)
    for k in range(k0, k1):
        for qu in range(queue_ptr[k], queue_ptr[k + 1]):
            qs[qu].free, qs[qu].start, qs[qu].size, qs[qu].ver = -np.inf, start[qu], 0, qu << 32
        for u in range(node_ptr[k], node_ptr[k + 1]):
            qv[u] = ready[key[u]] if parent[u] < 0 else np.nan
            missing[u] = 1 + blocking[u] if plain else need[u]
            if not np.isnan(qv[u]):
                _wait_push(heap, qs, of[u], u, qv, key)
        hsize = 0
        for qu in range(queue_ptr[k], queue_ptr[k + 1]):
            if qs[qu].size > 0:
                hsize = _cand_push(ct, cv, hsize, max(qs[qu].free, qv[heap[qs[qu].start]]), qs[qu].ver)
        granted += _run(hsize, ct, cv, heap, qs, qv, key, of, g, rel, hop, before, cm, tail,
                        blocking, parent, first_child, ch_ptr, child, tm_ptr, term_node, term_const, dp_ptr,
                        dependent, missing, link_s, early)
    return granted, early[0]


@njit(cache=True, nogil=True)
def _run(hsize, ct, cv, heap, qs, qv, key, of, g, rel, hop, before, cm, tail, blocking, parent,
         first_child, ch_ptr, child, tm_ptr, term_node, term_const, dp_ptr, dependent, missing, link_s, early) -> int:
    """Pop candidates in time order until none is left: grant, derive the children's requests and every
    release now known; returns the grants made and adds to early[0] the children requested at their parent's
    grant instant. A candidate is current while its version equals its queue's ver (queue cv >> 32); a
    queue is held while its free is NaN. A granted candidate stays at the top of the
    heap until the first push takes its place (one sift-down instead of a pop and a push); equal times of
    different queues may thus pop in another order than a pop-then-push heap's, which does not change any
    grant: every least candidate is certain (module docstring), and a queue has one current candidate."""
    granted, single, plain = 0, len(ch_ptr) == 0, len(dp_ptr) == 0
    n_early = 0
    while hsize > 0:
        v = cv[0]
        qu = v >> 32
        if v != qs[qu].ver:
            hsize = _cand_pop(ct, cv, hsize)
            continue
        # the candidate stays at the top until the first push replaces it (or it is popped at the end)
        top = True
        u = _wait_pop(heap, qs, qu, qv, key)
        gt = max(qs[qu].free, qv[u])
        g[u] = gt
        qs[qu].free = np.nan
        qs[qu].ver = v + 1
        granted += 1
        lo, hi = (0, int(first_child[u] >= 0)) if single else (ch_ptr[u], ch_ptr[u + 1])
        for j in range(lo, hi):
            c = first_child[u] if single else child[j]
            qc = gt + hop[u]
            qv[c] = qc
            if qc <= gt:
                n_early += 1
            kq = of[c]
            _wait_push(heap, qs, kq, c, qv, key)
            fk = qs[kq].free
            if not np.isnan(fk) and heap[qs[kq].start] == c:
                hsize, top = _renew(ct, cv, hsize, top, qs, kq, max(fk, qc)), False
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
                qs[xq].free = r
                if qs[xq].size > 0:
                    hsize, top = _renew(ct, cv, hsize, top, qs, xq, max(r, qv[heap[qs[xq].start]])), False
        if top:
            hsize = _cand_pop(ct, cv, hsize)
    early[0] += n_early
    return granted
