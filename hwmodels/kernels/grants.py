"""Compiled kernel of the DES network play (hwmodels.timing.des_vector): the channel grants and releases of every
node, decided one at a time in time order with a heap of candidate grants (one numba call for a whole group).

The equations are those of hwmodels.timing.des_vector's module docstring, which also proves the order of
decisions: each queue grants its users in (request Q, flow) order at G = max(Q, release of the previous
holder); a child's request is fl(G + hop); a release is the closed form of hwmodels.timing.des (as
hwmodels.timing.des_simpy evaluates it) once all the grants it needs are known. Candidates are popped in time
order; the least one is always certain (an unknown request comes from an undecided grant at a time >= it, plus
a hop latency > 0), so every grant is the simpy engine's, with the same floating-point operations. Binary
waiting heaps and a 4-ary candidate heap as in Cormen et al., "Introduction to Algorithms", ch. 6 and problem
6-2. Each step is played on NODE records (play_steps copies them from hwmodels.timing.des_nodes.Nodes;
hwmodels.kernels.route_play fills them from the route table and calls play_records).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels import threads
from hwmodels.kernels.index import ux

QUEUE = np.dtype([("free", np.float64), ("ver", np.int64), ("start", np.int32), ("size", np.int32), ("head", np.int32),
                  ("pad", np.int32)])
"""State of a queue in the kernel (32 bytes): free, release (s) of its last holder (NaN while held: releases are
numbers); ver: queue << 32 plus a count of its candidates made stale (a candidate is current while it carries its
queue's ver); size: its waiting nodes, the (Q, flow)-least of them in head and the other size - 1 in the binary
heap heap[start:start + size - 1]. Most waits touch the queue's record only: of Spikformer-4-384's 8.5 M
channel requests, 8.1 M come first in a free queue, and a request joins 0.4 other waiting nodes on average (its
network play 7-13% faster on one thread than with the whole heap in `heap`, same-process A/B). Queues are numbered
from 0 in each step; start and size fit int32 as a step's nodes do (play and route_play check)."""

NODE = np.dtype([("g", np.float64), ("hop", np.float64), ("tb", np.float64), ("cm", np.float64), ("qv", np.float64),
                 ("key", np.int32), ("of", np.int32), ("parent", np.int32), ("fc", np.int32), ("missing", np.int32),
                 ("blocking", np.int8)], align=True)
"""A channel node while its step is played, in one 64-byte record (a grant reads and writes the node, its child and its
parent: one cache line each instead of one per array, which halves the time of the large steps whose arrays outgrow
the caches): g grant (s, NaN until granted), hop (s), tb = tail + before (s: the flow's tail ready time plus the hop
latencies before the channel, the second term of the tail start, added once here as the kernel used to add it at
each use), cm = (m - 1) L (s) of its flow, qv request time (s, NaN until known; on the route-table path, once the
node is granted and released, its release: its request is read no more after its grant); key (flow), of (queue),
parent and fc (first child; -1: none) numbered from 0 in the step; missing: grants its release still needs;
blocking."""

#: children per node of the candidate heap (a d-ary heap as in Cormen et al., ch. 6, problem 6-2: half the levels
#: of a binary heap for a few more comparisons per level, 10% faster on Spikformer's steps, measured)
ARITY = 4


@njit(cache=True, inline="always")
def _before(a: int, b: int, nodes) -> bool:
    """Node a comes before node b in (request time, flow) order."""
    na, nb = nodes[ux(a)], nodes[ux(b)]
    return na.qv < nb.qv or (na.qv == nb.qv and na.key < nb.key)


@njit(cache=True, inline="always")
def _rest_push(heap, base, i, node, nodes) -> None:
    """Add `node` to the binary heap heap[base:base + i] (i entries before the push)."""
    while i > 0:
        p = (i - 1) // 2
        if not _before(node, heap[ux(base + p)], nodes):
            break
        heap[ux(base + i)] = heap[ux(base + p)]
        i = p
    heap[ux(base + i)] = node


@njit(cache=True, inline="always")
def _wait_push(heap, qs, qu, node, nodes) -> None:
    """Add `node` to queue qu's waiting nodes: its least one in the queue record (head), the others in the binary
    heap heap[qs[qu].start:qs[qu].start + qs[qu].size - 1]."""
    q = qs[ux(qu)]
    n = q.size
    q.size = n + 1
    if n == 0:
        q.head = node
        return
    h = q.head
    if _before(node, h, nodes):
        q.head = node
        node = h
    _rest_push(heap, q.start, n - 1, node, nodes)


@njit(cache=True, inline="always")
def _wait_pop(heap, qs, qu, nodes) -> int:
    """Remove and return the (Q, flow)-least waiting node of queue qu."""
    q = qs[ux(qu)]
    top = q.head
    n = q.size - 1
    q.size = n
    if n == 0:
        return top
    base = q.start
    q.head = heap[ux(base)]
    m = n - 1  # entries left in the rest heap
    last = heap[ux(base + m)]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= m:
            break
        if c + 1 < m and _before(heap[ux(base + c + 1)], heap[ux(base + c)], nodes):
            c += 1
        if not _before(heap[ux(base + c)], last, nodes):
            break
        heap[ux(base + i)] = heap[ux(base + c)]
        i = c
    if m > 0:
        heap[ux(base + i)] = last
    return top


@njit(cache=True, inline="always")
def _cand_push(ct, cv, hsize, t, ver) -> int:
    """Push candidate (time t, version ver of its queue, which holds the queue) on the time heap (ARITY children
    per entry) of hsize entries; returns the new size."""
    i = hsize
    while i > 0:
        p = (i - 1) // ARITY
        if ct[ux(p)] <= t:
            break
        ct[ux(i)], cv[ux(i)] = ct[ux(p)], cv[ux(p)]
        i = p
    ct[ux(i)], cv[ux(i)] = t, ver
    return hsize + 1


@njit(cache=True, inline="always")
def _cand_pop(ct, cv, hsize) -> int:
    """Drop the least candidate (kept at index 0 by the caller before the call); returns the new size: the last
    entry takes its place (_cand_replace on the heap one shorter)."""
    n = hsize - 1
    if n > 0:
        _cand_replace(ct, cv, n, ct[ux(n)], cv[ux(n)])
    return n


@njit(cache=True, inline="always")
def _cand_replace(ct, cv, hsize, t, ver) -> None:
    """Put candidate (time t, version ver) in place of the least one (index 0) of the heap of hsize entries."""
    i = 0
    while True:
        c = ARITY * i + 1
        if c >= hsize:
            break
        least, lt = c, ct[ux(c)]
        for j in range(c + 1, min(c + ARITY, hsize)):
            if ct[ux(j)] < lt:
                least, lt = j, ct[ux(j)]
        if lt >= t:
            break
        ct[ux(i)], cv[ux(i)] = lt, cv[ux(least)]
        i = least
    ct[ux(i)], cv[ux(i)] = t, ver


@njit(cache=True, inline="always")
def _renew(ct, cv, hsize, top, qs, qu, t) -> int:
    """Make (time t, a new version of queue qu) the queue's current candidate (its older ones turn stale): in
    place of the granted candidate still at the heap top when `top`, else pushed. Returns the heap's size."""
    q = qs[ux(qu)]
    w = q.ver + 1
    q.ver = w
    if top:
        _cand_replace(ct, cv, hsize, t, w)
        return hsize
    return _cand_push(ct, cv, hsize, t, w)


@njit(cache=True, inline="always")
def _tail_start(z, nodes, b, tm_ptr, term_node, term_const) -> float:
    """s[m, z] of hwmodels.timing.des: the tail's start on channel z (numbered from 0 in the step whose first
    node is b) from the grants; slot terms (tm_ptr, term_node, term_const s) of hwmodels.timing.des_nodes.Nodes,
    indexed by the nodes' numbers in the group (none when term_node is empty)."""
    nz = nodes[ux(z)]
    v = max(nz.g + nz.cm, nz.tb)
    if len(term_node):  # slot terms (tm_ptr may be empty without them)
        for k in range(tm_ptr[ux(b + z)], tm_ptr[ux(b + z + 1)]):
            v = max(v, nodes[ux(term_node[ux(k)] - b)].g + term_const[ux(k)])
    return v


@njit(cache=True, inline="always")
def _release(x, nodes, b, tm_ptr, term_node, term_const, link_s) -> float:
    """Release time (s) of node x: when the tail has crossed it and left its far buffer (hwmodels.timing.des)."""
    tx = _tail_start(x, nodes, b, tm_ptr, term_node, term_const)
    nx = nodes[ux(x)]
    if nx.blocking:
        return max(tx + link_s, _tail_start(nx.fc, nodes, b, tm_ptr, term_node, term_const))
    return tx + max(link_s, nx.hop)


def play(ready, tail, key, of, node_ptr, queue_ptr, start, hop, before, cm, blocking, parent, first_child, ch_ptr,
         child, tm_ptr, term_node, term_const, dp_ptr, dependent, need, link_s, workers: int = 1, out=None):
    """Grant and release (s) of every node, one step at a time (steps are independent: step k holds nodes
    node_ptr[k]..node_ptr[k+1]-1 and queues queue_ptr[k]..queue_ptr[k+1]-1). ready / tail / cm: float (n_flows,)
    time the first / last message of each flow is ready at its source router and (m - 1) L, s; key: int (n,)
    flow of each node (ties of Q; the flows of a step are consecutive); of: queue of each node; start: int64
    (n_queues + 1,) cumulative users of the queues; hop / before: float (n,) s; parent: -1 at a root (requested
    at its flow's ready time). Children: first_child when ch_ptr is empty (at most one child per channel), else
    the CSR (ch_ptr, child); release dependencies: the node and its blocking parent when dp_ptr is empty (no slot
    terms), else the CSR (dp_ptr, dependent) with need int64 (n,) the grants each release needs
    (hwmodels.timing.des_nodes.Nodes). workers: threads that play disjoint ranges of whole steps at once
    (hwmodels.kernels.threads; each has its own work arrays, so the result does not depend on it). out: (g, rel)
    float64 (n,) arrays to fill (every entry of a step's nodes in g, NaN where never granted; rel where
    released), or None for new ones. Returns (g, rel, nodes granted, children whose request fl(G + hop) is not
    after their parent's grant G: the proof's precondition, hwmodels.timing.des_vector). Each thread plays its
    steps on work arrays the size of its largest step (NODE records, waiting heaps, QUEUE records), allocated
    here by numpy (transparent huge pages: hwmodels.kernels.nodes.fill). Raises ValueError when a step has 2^31
    nodes or queues or more (the records hold int32 numbers)."""
    n = len(key)
    step_nodes, step_queues = np.diff(node_ptr), np.diff(queue_ptr)
    if max(int(step_nodes.max(initial=0)), int(step_queues.max(initial=0))) >= 2 ** 31:
        raise ValueError("grants kernel: a step has 2**31 nodes or queues or more")
    g, rel = (np.full(n, np.nan), np.full(n, np.nan)) if out is None else out
    args = (ready, tail, key, of, node_ptr, queue_ptr, hop, before, cm, blocking, parent, first_child, ch_ptr, child,
            tm_ptr, term_node, term_const, dp_ptr, dependent, need, float(link_s), g, rel, start)

    def steps(k0: int, k1: int) -> tuple[int, int]:
        most_nodes, most_queues = int(step_nodes[k0:k1].max(initial=0)), int(step_queues[k0:k1].max(initial=0))
        return play_steps(k0, k1, *args, np.empty(most_nodes, NODE), np.empty(most_nodes, np.int32),
                          np.empty(most_queues, QUEUE))
    parts = threads.run(steps, threads.split(node_ptr, workers))
    return g, rel, sum(p[0] for p in parts), sum(p[1] for p in parts)


@njit(cache=True, nogil=True)
def play_steps(k0, k1, ready, tail, key, of, node_ptr, queue_ptr, hop, before, cm, blocking, parent, first_child,
               ch_ptr, child, tm_ptr, term_node, term_const, dp_ptr, dependent, need, link_s, g, rel, start, nodes,
               heap, qs):
    """play() of steps k0..k1-1 into g, rel (float (n,)), each step copied into the work arrays first: its nodes
    as NODE records (nodes, numbered from 0 in the step), its queues' waiting heaps (heap) and QUEUE records
    (qs), each at least the size of the largest step; the grants are copied out after the step. Releases the
    GIL. Returns (nodes granted, early children)."""
    most, plain = 0, len(dp_ptr) == 0
    for k in range(k0, k1):
        most = max(most, (queue_ptr[k + 1] - queue_ptr[k]) + 2 * (node_ptr[k + 1] - node_ptr[k]) + 1)
    ct, cv = np.empty(most), np.empty(most, np.int64)
    granted, early = 0, np.zeros(1, np.int64)
    for k in range(k0, k1):
        b, qb = node_ptr[k], queue_ptr[k]
        fb = key[b] if node_ptr[k + 1] > b else 0
        for u in range(node_ptr[k + 1] - b):
            z, f = b + u, key[ux(b + u)]
            nd = nodes[ux(u)]
            nd.g, nd.hop, nd.tb, nd.cm = np.nan, hop[ux(z)], tail[ux(f)] + before[ux(z)], cm[ux(f)]
            nd.key, nd.of, nd.blocking = f - fb, of[ux(z)] - qb, blocking[ux(z)]
            nd.parent = parent[ux(z)] - b if parent[ux(z)] >= 0 else -1
            nd.fc = first_child[ux(z)] - b if first_child[ux(z)] >= 0 else -1
            nd.missing = 1 + blocking[ux(z)] if plain else need[ux(z)]
            nd.qv = ready[ux(f)] if parent[ux(z)] < 0 else np.nan
        granted += play_step(nodes, node_ptr[k + 1] - b, heap, qs, start, qb, queue_ptr[k + 1] - qb, ct, cv, b, rel,
                             ch_ptr, child, tm_ptr, term_node, term_const, dp_ptr, dependent, link_s, early)
        for u in range(node_ptr[k + 1] - b):
            g[ux(b + u)] = nodes[ux(u)].g
    return granted, early[0]


@njit(cache=True, nogil=True)
def play_records(k0, k1, flow_ptr, off, nodes, queue_ptr, start, heap, qs, ct, cv, down, held, link_s, early,
                 per_flow) -> int:
    """Play steps k0..k1-1 (step k: flows flow_ptr[k]..flow_ptr[k+1]-1, nodes off[...] of the group) whose NODE
    records and queues hwmodels.kernels.nodes.fill_records wrote into nodes, queue_ptr and start, without slot
    terms and with one child per channel at most (empty CSR arguments for _run); each step's releases are kept
    in its records (an empty rel for _run), then its head down and held times written out (step_out): the
    output arrays are written once per node (one pass less over them: Spikformer-4-384's play 4-6% faster).
    per_flow: down holds one entry per flow, its last channel's (step_out). heap, qs, ct, cv: the work arrays
    of play_step for the largest step. Releases the GIL. Returns the grants made."""
    granted, base0, none, none_f = 0, off[flow_ptr[k0]], np.zeros(0, np.int64), np.zeros(0)
    for k in range(k0, k1):
        b = off[flow_ptr[k]]
        n = off[flow_ptr[k + 1]] - b
        if n == 0:
            continue
        sub = nodes[b - base0:b - base0 + n]
        qb = queue_ptr[k - k0]
        granted += play_step(sub, n, heap, qs, start, qb, queue_ptr[k - k0 + 1] - qb, ct, cv, b, none_f, none,
                             none, none, none, none, none, none, link_s, early)
        step_out(sub, n, b, down, held, flow_ptr[k] if per_flow else -1)
    return granted


@njit(cache=True, nogil=True)
def step_out(nodes, n_nodes, b, down, held, f0) -> None:
    """Head down (grant + hop, s) and held time (release - grant, s; the release kept in the record's qv by _run)
    of a played step's n_nodes NODE records into down[b:b + n_nodes] and held[b:b + n_nodes] (the same
    operations as hwmodels.timing.des's on the grant and release arrays); with f0 >= 0 (the step's first flow),
    down holds one entry per flow instead, the head down time of its last channel (no child; a path's only one),
    at down[f0 + key]. Releases the GIL."""
    for u in range(n_nodes):
        nd = nodes[ux(u)]
        gu = nd.g
        if f0 < 0:
            down[ux(b + u)] = gu + nd.hop
        elif nd.fc < 0:
            down[ux(f0 + nd.key)] = gu + nd.hop
        held[ux(b + u)] = nd.qv - gu


@njit(cache=True, nogil=True)
def play_step(nodes, n_nodes, heap, qs, start, qb, n_queues, ct, cv, b, rel, ch_ptr, child, tm_ptr, term_node,
              term_const, dp_ptr, dependent, link_s, early) -> int:
    """Play one step whose n_nodes nodes are set as NODE records (numbered from 0; `of` numbers the step's
    n_queues queues from 0, queue j's users being start[qb + j]..start[qb + j + 1] - 1 counted from
    start[qb]): the queues' QUEUE records are set (qs), the roots (parent -1, request qv) join their queues'
    waiting heaps in node order, every queue with a waiting node makes a candidate in the time heap (ct, cv:
    room for n_queues + 2 n_nodes + 1 entries), then _run. Releases the GIL. Returns the grants made."""
    for qu in range(n_queues):
        q = qs[ux(qu)]
        q.free, q.start, q.size, q.ver = -np.inf, start[ux(qb + qu)] - start[ux(qb)], 0, qu << 32
    for u in range(n_nodes):
        nd = nodes[ux(u)]
        if nd.parent < 0:
            _wait_push(heap, qs, nd.of, u, nodes)
    hsize = 0
    for qu in range(n_queues):
        q = qs[ux(qu)]
        if q.size > 0:
            hsize = _cand_push(ct, cv, hsize, max(q.free, nodes[ux(q.head)].qv), q.ver)
    return _run(hsize, ct, cv, heap, qs, nodes, b, rel, ch_ptr, child, tm_ptr, term_node, term_const, dp_ptr,
                dependent, link_s, early)


@njit(cache=True, nogil=True)
def _run(hsize, ct, cv, heap, qs, nodes, b, rel, ch_ptr, child, tm_ptr, term_node, term_const, dp_ptr, dependent,
         link_s, early) -> int:
    """Pop candidates in time order until none is left: grant, derive the children's requests and every release now
    known (into rel at the group's node numbers, b + the step's; with an empty rel, into the released node's qv,
    which is read no more once it is granted, as it is before its release); returns the grants made and adds to
    early[0] the children requested at their parent's grant instant. A candidate is current while its version equals
    its queue's ver (queue cv >> 32); a queue is held while its free is NaN. A granted candidate stays at the top of
    the heap until the first push takes its place (one sift-down instead of a pop and a push); equal times of
    different queues may thus pop in another order than a pop-then-push heap's, which does not change any grant:
    every least candidate is certain (module docstring), and a queue has one current candidate."""
    granted, single, plain, in_node = 0, len(ch_ptr) == 0, len(dp_ptr) == 0, len(rel) == 0
    n_early = 0
    while hsize > 0:
        v = cv[0]
        qu = v >> 32
        if v != qs[ux(qu)].ver:
            hsize = _cand_pop(ct, cv, hsize)
            continue
        # the candidate stays at the top until the first push replaces it (or it is popped at the end)
        top = True
        u = _wait_pop(heap, qs, qu, nodes)
        nu, q = nodes[ux(u)], qs[ux(qu)]
        gt = max(q.free, nu.qv)
        nu.g = gt
        q.free = np.nan
        q.ver = v + 1
        granted += 1
        lo, hi = (0, int(nu.fc >= 0)) if single else (ch_ptr[ux(b + u)], ch_ptr[ux(b + u + 1)])
        for j in range(lo, hi):
            c = nu.fc if single else child[ux(j)] - b
            qc = gt + nu.hop
            nc = nodes[ux(c)]
            nc.qv = qc
            if qc <= gt:
                n_early += 1
            kq = nc.of
            _wait_push(heap, qs, kq, c, nodes)
            fk = qs[ux(kq)].free
            if not np.isnan(fk) and qs[ux(kq)].head == c:
                hsize, top = _renew(ct, cv, hsize, top, qs, kq, max(fk, qc)), False
        p = nu.parent
        lo, hi = (0, 1 + int(p >= 0 and nodes[ux(p)].blocking)) if plain else (dp_ptr[ux(b + u)],
                                                                                dp_ptr[ux(b + u + 1)])
        for j in range(lo, hi):
            x = (u if j == 0 else p) if plain else dependent[ux(j)] - b
            nx = nodes[ux(x)]
            nx.missing -= 1
            if nx.missing == 0:
                r = _release(x, nodes, b, tm_ptr, term_node, term_const, link_s)
                if in_node:
                    nx.qv = r  # granted already: its request is read no more
                else:
                    rel[ux(b + x)] = r
                xq = nx.of
                qx = qs[ux(xq)]
                qx.free = r
                if qx.size > 0:
                    hsize, top = _renew(ct, cv, hsize, top, qs, xq, max(r, nodes[ux(qx.head)].qv)), False
        if top:
            hsize = _cand_pop(ct, cv, hsize)
    early[0] += n_early
    return granted
