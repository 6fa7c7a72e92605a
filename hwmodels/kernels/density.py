"""Compiled message loop of the density congestion model (hwmodels.timing.des_density, steps 2-3 of its module
docstring): the messages of a run of hardware steps, each step played from fresh per-core and per-key state, with
the same floating-point operations in the same order as the loop the model used to run in Python (one heap of the
cores' next messages by (ready time, message), one of the messages in flight by (receiver start, message); every
entry's message index is unique, so each heap pops the one order any correct heap pops). Binary heaps as in Cormen
et al., "Introduction to Algorithms", ch. 6; the same (time, index) heap as hwmodels.kernels.event_queue's, written
out again here on purpose: numba's on-disk cache is invalidated only by changes to a function's own file, not to
the compiled functions it calls from other modules (numba's documented cache limitation; hwmodels.kernels.index),
so the kernels do not call each other across modules. tests/hwmodels/test_density_kernel.py checks it bit for bit
against that Python loop. The messages in flight are kept in one FIFO per receiver, with a heap of the receivers'
first messages only (_step_fifo: the same retire order, since a receiver starts its messages in send order at
non-decreasing times; a step where two of them start at the same instant against message order is played again
with the one heap, _step), so that heap holds at most one entry per core instead of every message in flight.

The per-step loop and its heap helpers are compiled without numba's reference counting (_nrt=False: they allocate
nothing, and the caller holds every array), which takes the atomic increments and decrements of the arrays handed
to inlined helpers out of the loop (-20% on the MNIST conv net's 2.47 M messages).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux


@njit(cache=True, inline="always", _nrt=False)
def _before(ta, ka, tb, kb) -> bool:
    """(ta, ka) < (tb, kb) in lexicographic order."""
    return ta < tb or (ta == tb and ka < kb)


@njit(cache=True, inline="always", _nrt=False)
def _push(ht, hk, n, t, k) -> int:
    """Add (t, k) to the binary heap ht[:n], hk[:n]; returns the new size."""
    i = n
    while i > 0:
        p = (i - 1) // 2
        if not _before(t, k, ht[ux(p)], hk[ux(p)]):
            break
        ht[ux(i)], hk[ux(i)] = ht[ux(p)], hk[ux(p)]
        i = p
    ht[ux(i)], hk[ux(i)] = t, k
    return n + 1


@njit(cache=True, inline="always", _nrt=False)
def _pop(ht, hk, n) -> int:
    """Remove the least entry of the binary heap ht[:n], hk[:n] (n >= 1, the caller read it at index 0); returns
    the new size."""
    n -= 1
    t, k = ht[ux(n)], hk[ux(n)]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _before(ht[ux(c + 1)], hk[ux(c + 1)], ht[ux(c)], hk[ux(c)]):
            c += 1
        if not _before(ht[ux(c)], hk[ux(c)], t, k):
            break
        ht[ux(i)], hk[ux(i)] = ht[ux(c)], hk[ux(c)]
        i = c
    if n > 0:
        ht[ux(i)], hk[ux(i)] = t, k
    return n


@njit(cache=True, inline="always", _nrt=False)
def _arrive(t, r, c, key_ptr, keys, density, cap, mean, h1, lat0, head_in, shift) -> float:
    """When a message on route r, handled at t by core c, reaches its receiver (step 3): the density on its route
    keys, its blocking delay (added to shift[c]) and the congestion-stretched network latency."""
    d = 0.0
    for i in range(key_ptr[ux(r)], key_ptr[ux(r + 1)]):
        d += density[ux(keys[ux(i)])]
    if d > cap[ux(r)]:
        block = (d - cap[ux(r)]) * mean
        t += block
        shift[ux(c)] += block
    net = d * mean / h1[ux(r)]
    return t + (net if net > lat0[ux(r)] else lat0[ux(r)]) + head_in


@njit(cache=True, inline="always", _nrt=False)
def _add_density(r, key_ptr, keys, density, delta) -> None:
    """Add delta to the density of every key of route r (a message entering flight: w; leaving it: -w, the same
    floating-point result as subtracting w)."""
    for i in range(key_ptr[ux(r)], key_ptr[ux(r + 1)]):
        density[ux(keys[ux(i)])] += delta


@njit(cache=True, nogil=True)
def play_steps(bounds, ready, src, work, route, key_ptr, keys, w, lat0, h1, cap, dst, n_keys, head_in, shift,
               free) -> None:
    """Play steps s = 0 .. len(bounds) - 2, step s being messages bounds[s]:bounds[s + 1] in send order (sorted by
    source core). Per message: ready (s), src (core), work (receive work, s), route (index of its route). Per
    route r: density keys keys[key_ptr[r]:key_ptr[r + 1]] (< n_keys), w (density weight), lat0 (s), h1 (hops + 1),
    cap (blocking threshold; inf: none), dst (core). head_in: receive head delay (s). Writes each step's total
    blocking delay per core into shift[s] and last receive finish per core into free[s] (float64 (n_steps,
    n_cores), both zeroed first). Each step is played with the messages in flight kept per receiver (_step_fifo);
    a step where that order could differ from one heap's is played again with one heap (_step)."""
    most = 0
    for s in range(len(bounds) - 1):
        most = max(most, bounds[s + 1] - bounds[s])
    n_cores = shift.shape[1]
    density = np.zeros(n_keys)
    ht, hk = np.empty(most), np.empty(most, np.int64)
    ft, fk = np.empty(most), np.empty(most, np.int64)
    head, tail, nxt = np.empty(n_cores, np.int64), np.empty(n_cores, np.int64), np.empty(most, np.int64)
    st = np.empty(most)
    for s in range(len(bounds) - 1):
        density[:] = 0.0
        shift[s, :] = 0.0
        free[s, :] = 0.0
        if _step_fifo(bounds[s], bounds[s + 1], ready, src, work, route, key_ptr, keys, w, lat0, h1, cap, dst,
                      head_in, density, ht, hk, ft, fk, head, tail, nxt, st, shift[s], free[s]):
            continue
        density[:] = 0.0
        shift[s, :] = 0.0
        free[s, :] = 0.0
        _step(bounds[s], bounds[s + 1], ready, src, work, route, key_ptr, keys, w, lat0, h1, cap, dst, head_in,
              density, ht, hk, ft, fk, shift[s], free[s])


@njit(cache=True, nogil=True, _nrt=False)
def _step_fifo(lo, hi, ready, src, work, route, key_ptr, keys, w, lat0, h1, cap, dst, head_in, density, ht, hk, ft,
               fk, head, tail, nxt, st, shift, free) -> bool:
    """_step with the messages in flight in one FIFO per receiver (linked lists: head, tail per core, nxt per
    message, st its start) and a heap of the receivers' first ones (ft, fk: at most one entry per core) instead
    of one heap of them all: a receiver starts its messages in the order they are sent to it, at non-decreasing
    times (start >= the previous one's finish), so its FIFO is in (start, message) order and the least first
    entry is the least of all, the message one heap would retire; the same operations in the same order, on a
    heap of at most n_cores entries. Returns False (the step's results are then unusable) when two messages to
    one receiver start at the same time in the other message order (a zero receive work), where the orders
    could differ."""
    head[:] = -1
    nh = 0
    for k in range(lo, hi):  # each core's first message
        if k == lo or src[ux(k - 1)] != src[ux(k)]:
            nh = _push(ht, hk, nh, ready[ux(k)], k)
    nf, nq, mean = 0, 0, 0.0  # messages in flight, receivers with messages in flight, their mean work
    while nh > 0:
        t, k = ht[0], hk[0]
        nh = _pop(ht, hk, nh)
        while nq > 0 and ft[0] <= t:  # retire the messages their receiver has started
            j = fk[0]
            nq = _pop(ft, fk, nq)
            rj = route[ux(j)]
            after = nxt[ux(j - lo)]
            head[ux(dst[ux(rj)])] = after
            if after >= 0:
                nq = _push(ft, fk, nq, st[ux(after - lo)], after)
            _add_density(rj, key_ptr, keys, density, -w[ux(rj)])
            mean = mean + (mean - work[ux(j)]) / (nf - 1) if nf > 1 else 0.0
            nf -= 1
        r, c = route[ux(k)], src[ux(k)]
        arrive = _arrive(t, r, c, key_ptr, keys, density, cap, mean, h1, lat0, head_in, shift)
        g = dst[ux(r)]
        f = free[ux(g)]
        start = f if f > arrive else arrive
        free[ux(g)] = start + work[ux(k)]
        st[ux(k - lo)], nxt[ux(k - lo)] = start, -1
        if head[ux(g)] < 0:
            head[ux(g)] = k
            nq = _push(ft, fk, nq, start, k)
        else:
            last = tail[ux(g)]
            if start == st[ux(last - lo)] and k < last:
                return False  # a tie one heap would break by message index the other way
            nxt[ux(last - lo)] = k
        tail[ux(g)] = k
        nf += 1
        _add_density(r, key_ptr, keys, density, w[ux(r)])
        mean += (work[ux(k)] - mean) / nf
        if k + 1 < hi and src[ux(k + 1)] == c:
            nh = _push(ht, hk, nh, ready[ux(k + 1)] + shift[ux(c)], k + 1)
    return True


@njit(cache=True, nogil=True, _nrt=False)
def _step(lo, hi, ready, src, work, route, key_ptr, keys, w, lat0, h1, cap, dst, head_in, density, ht, hk, ft, fk,
          shift, free) -> None:
    """One step of play_steps on messages lo:hi (hwmodels.timing.des_density, steps 2-3)."""
    nh = 0
    for k in range(lo, hi):  # each core's first message
        if k == lo or src[ux(k - 1)] != src[ux(k)]:
            nh = _push(ht, hk, nh, ready[ux(k)], k)
    nf, mean = 0, 0.0
    while nh > 0:
        t, k = ht[0], hk[0]
        nh = _pop(ht, hk, nh)
        while nf > 0 and ft[0] <= t:  # retire the messages their receiver has started
            j = fk[0]
            nf_before = nf
            nf = _pop(ft, fk, nf)
            rj = route[ux(j)]
            _add_density(rj, key_ptr, keys, density, -w[ux(rj)])
            mean = mean + (mean - work[ux(j)]) / (nf_before - 1) if nf_before > 1 else 0.0
        r, c = route[ux(k)], src[ux(k)]
        arrive = _arrive(t, r, c, key_ptr, keys, density, cap, mean, h1, lat0, head_in, shift)
        f = free[ux(dst[ux(r)])]
        start = f if f > arrive else arrive
        free[ux(dst[ux(r)])] = start + work[ux(k)]
        nf = _push(ft, fk, nf, start, k)
        _add_density(r, key_ptr, keys, density, w[ux(r)])
        mean += (work[ux(k)] - mean) / nf
        if k + 1 < hi and src[ux(k + 1)] == c:
            nh = _push(ht, hk, nh, ready[ux(k + 1)] + shift[ux(c)], k + 1)


@njit(cache=True, nogil=True)
def soma_prefix(where, first, order, accessed, updated, idx, h):
    """Soma work before each spike on its core (hwmodels.timing.des_density._soma_prefix): int64 (n, 3) = neurons
    accessed, updated and spiking, updated and quiet among the core's neurons up to and including the spiking
    neuron idx[j] at hardware step h[j], in core order. where (size,): each neuron's position in `order` (the
    neurons core after core); first (size,): the position where its core starts; accessed bool (n_steps,);
    updated bool (n_steps, size): updated neurons before the spikes are added (a spiking neuron is updated). One
    pass over the positions per step with spikes, then a difference of running counts per spike."""
    n, size = len(idx), len(where)
    out = np.zeros((n, 3), np.int64)
    mark = np.zeros(size, np.bool_)
    run_sp, run_up = np.zeros(size + 1, np.int64), np.zeros(size + 1, np.int64)
    by_step = np.argsort(h, kind="mergesort")
    i0 = 0
    while i0 < n:
        hh = h[by_step[i0]]
        i1 = i0
        while i1 < n and h[by_step[i1]] == hh:
            mark[where[idx[by_step[i1]]]] = True
            i1 += 1
        c_sp, c_up = 0, 0
        for pos in range(size):
            c_sp += mark[pos]
            c_up += mark[pos] | updated[hh, order[pos]]
            run_sp[pos + 1], run_up[pos + 1] = c_sp, c_up
        for q in range(i0, i1):
            j = by_step[q]
            pos, fp = where[idx[j]], first[idx[j]]
            spiking = run_sp[pos + 1] - run_sp[fp]
            out[j, 0] = pos + 1 - fp if accessed[hh] else 0
            out[j, 1] = spiking
            out[j, 2] = run_up[pos + 1] - run_up[fp] - spiking
            mark[pos] = False
        i0 = i1
    return out


def expand_messages(cls: np.ndarray, step: np.ndarray, src: np.ndarray, soma: np.ndarray, fan: tuple, nf: int,
                    multicast: bool) -> tuple[np.ndarray, ...]:
    """The messages of spikes sorted by (step, source core, neuron): cls int64 (n_spikes,) their classes (ids of
    hwmodels.events.actions.JointClasses), step / src int64 (n_spikes,) their hardware step (sample * n_steps +
    step) and source core, soma int64 (n_spikes, 3) their soma prefixes. One message per (spike, destination core)
    with messages in the class's fan-out fan = (ptr, dst, val) (JointClasses.stack: class c's destinations
    dst[ptr[c]:ptr[c + 1]] increasing, val (., 1 + blocks) messages then the blocks). Returns (step, src, dst, soma
    (m, 3), out, events (m, nf): the first nf value blocks), int64 each, sorted by (spike, dst), where out counts
    the messages the source core has written in the step up to and including this one (multicast: one per spike,
    shared by its deliveries): one compiled pass instead of a sparse row gather, a sort, searches and the running
    sums of the messages."""
    ptr, dst, val = fan
    total = int((ptr[cls + 1] - ptr[cls]).sum()) if len(cls) else 0
    out = tuple(np.empty(total, np.int64) for _ in range(4)) + (np.empty((total, 3), np.int64),
                                                                np.empty((total, nf), np.int64))
    m = _expand(cls, step, src, soma, ptr, dst, val, nf, multicast, *out)
    m_step, m_src, m_dst, m_out, m_soma, m_events = (a[:m] for a in out)
    return m_step, m_src, m_dst, m_soma, m_out, m_events


@njit(cache=True, nogil=True)
def _expand(cls, step, src, soma, ptr, dst, val, nf, multicast, m_step, m_src, m_dst, m_out, m_soma, m_events) -> int:
    """expand_messages' pass; returns how many messages it wrote."""
    m, written = 0, 0
    for i in range(len(cls)):
        if i == 0 or step[ux(i)] != step[ux(i - 1)] or src[ux(i)] != src[ux(i - 1)]:
            written = 0  # a new (step, source core): its count starts again
        c = cls[ux(i)]
        sent = False
        for q in range(ptr[ux(c)], ptr[ux(c + 1)]):
            if val[ux(q), 0] != 0:
                if not multicast or not sent:
                    written += 1
                sent = True
                m_step[ux(m)], m_src[ux(m)], m_dst[ux(m)], m_out[ux(m)] = step[ux(i)], src[ux(i)], dst[ux(q)], written
                for b in range(3):
                    m_soma[ux(m), b] = soma[ux(i), b]
                for b in range(nf):
                    m_events[ux(m), b] = val[ux(q), 1 + b]
                m += 1
    return m
