"""Compiled port of the simpy engine of the DES network play (hwmodels.timing.des_simpy), for any hop latency,
zero included (where the vector engine's proof does not hold: hwmodels.timing.des_vector): one step's events run
in simpy's order, (time, scheduling count), each scheduled at an absolute time through the same exact delays and
two-stage detours as des_simpy.AbsoluteTimeEnv.at, so every event runs in the order it runs on simpy and every
grant, release, head-down and held time is the simpy engine's bit for bit (tests/hwmodels/test_event_engine.py).

Events: START (flow: request its root channels), REQUEST (flow, channel), GRANT (link: the armed grant of a free
link to its least waiting (request time, flow, channel)), RELEASE (link), and DETOUR (an event on its way to its
time through an earlier instant). The release closed form and the plan of each (route, K) (children, roots,
descendant terms, grants a release needs and the channels each grant counts for) are des_simpy's, built by
hwmodels.kernels.event_plans. Events for the current instant wait in a FIFO, later ones in a binary heap (Cormen et
al., "Introduction to Algorithms", ch. 6) by (time, id); each link's waiting requests in a binary heap.

The step loop and its helpers are compiled without numba's reference counting (_nrt=False: they allocate nothing,
play_steps makes their arrays and holds them): inlined helpers that take arrays otherwise increment and decrement
each array's count atomically on every call, which took most of the loop's time (the MNIST conv net's play on
spinnaker2, 5.1 M events on one thread: 1.0 s with counting, 0.18 s without).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux

START, REQUEST, GRANT, RELEASE, DETOUR = 0, 1, 2, 3, 4


@njit(cache=True)
def exact_delay(now: float, time: float) -> float:
    """des_simpy.exact_delay: a delay d >= 0 with now + d == time in float64, NaN when none lands there (time >=
    now is the caller's)."""
    d = time - now
    while now + d < time:
        d = np.nextafter(d, np.inf)
    while now + d > time:
        d = np.nextafter(d, 0.0)
    return d if now + d == time else np.nan


@njit(cache=True, inline="always")
def _fmax(a, b):
    """Python's max(a, b) on floats: a unless b > a."""
    return b if b > a else a


@njit(cache=True, inline="always")
def _ev_less(ta, a, tb, b) -> bool:
    """Event a (at ta) runs before event b (at tb): (time, scheduling count = event id)."""
    return ta < tb or (ta == tb and a < b)


@njit(cache=True, inline="always", _nrt=False)
def _ev_push(ht, he, n, t, e) -> int:
    """Add event e at time t to the binary heap ht[:n], he[:n]; returns the new size."""
    i = n
    while i > 0:
        p = (i - 1) // 2
        if not _ev_less(t, e, ht[ux(p)], he[ux(p)]):
            break
        ht[ux(i)], he[ux(i)] = ht[ux(p)], he[ux(p)]
        i = p
    ht[ux(i)], he[ux(i)] = t, e
    return n + 1


@njit(cache=True, inline="always", _nrt=False)
def _ev_pop(ht, he, n) -> int:
    """Remove the least entry (index 0) of the binary heap ht[:n], he[:n] (n >= 1); returns the new size."""
    n -= 1
    t, e = ht[ux(n)], he[ux(n)]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _ev_less(ht[ux(c + 1)], he[ux(c + 1)], ht[ux(c)], he[ux(c)]):
            c += 1
        if not _ev_less(ht[ux(c)], he[ux(c)], t, e):
            break
        ht[ux(i)], he[ux(i)] = ht[ux(c)], he[ux(c)]
        i = c
    if n > 0:
        ht[ux(i)], he[ux(i)] = t, e
    return n


@njit(cache=True, inline="always")
def _w_less(a, b, wt, wk, wc) -> bool:
    """Waiting entry a comes before b in (request time, flow, channel) order."""
    if wt[ux(a)] != wt[ux(b)]:
        return wt[ux(a)] < wt[ux(b)]
    if wk[ux(a)] != wk[ux(b)]:
        return wk[ux(a)] < wk[ux(b)]
    return wc[ux(a)] < wc[ux(b)]


@njit(cache=True, inline="always", _nrt=False)
def _w_push(wheap, base, n, a, wt, wk, wc) -> None:
    """Add waiting entry a to the binary heap wheap[base:base + n]."""
    i = n
    while i > 0:
        p = (i - 1) // 2
        if not _w_less(a, wheap[ux(base + p)], wt, wk, wc):
            break
        wheap[ux(base + i)] = wheap[ux(base + p)]
        i = p
    wheap[ux(base + i)] = a


@njit(cache=True, inline="always", _nrt=False)
def _w_pop(wheap, base, n, wt, wk, wc) -> int:
    """Remove and return the least entry of the binary heap wheap[base:base + n] (n >= 1)."""
    top = wheap[ux(base)]
    n -= 1
    a = wheap[ux(base + n)]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and _w_less(wheap[ux(base + c + 1)], wheap[ux(base + c)], wt, wk, wc):
            c += 1
        if not _w_less(wheap[ux(base + c)], a, wt, wk, wc):
            break
        wheap[ux(base + i)] = wheap[ux(base + c)]
        i = c
    if n > 0:
        wheap[ux(base + i)] = a
    return top


@njit(cache=True, nogil=True)
def play_steps(k0, k1, step_ptr, flows, flow_plan, flow_key, flow_m, flow_tail, flow_off, ready, p_off, p_root_ptr,
               p_roots, ch_link, ch_hop, ch_before, ch_blocking, ch_count, child_ptr, child, term_ptr, term_i, term_up,
               dep_ptr, dep, link_s, depth, n_links, down, held) -> tuple[int, int]:
    """Play hardware steps k0..k1-1 of des_simpy.play, step s being the flows flows[step_ptr[s]:step_ptr[s + 1]]
    (int64, those with channels, in flow order). Per flow (indexed by flow number): plan (index into the plans),
    key (its flow number, the tie-break), m (messages), tail (s, its last message ready), off (its first channel
    node in down / held), ready (s). Plans: channels p_off[p]:p_off[p + 1] (global channel index = p_off[p] +
    tree-local c), roots p_roots[p_root_ptr[p]:...] (tree-local); per global channel: link id (< n_links), hop
    (s), before (s), blocking, count (grants its release needs), children child[child_ptr[j]:...] (tree-local),
    descendant terms (term_i tree-local, term_up), dependents dep[dep_ptr[j]:...] (tree-local channels whose
    release a grant of j counts for). depth: buffer depth (messages; 0: unbounded). Writes down[off + c] (head
    down = grant + hop, s) and held[off + x] (release - grant, s) of the steps' nodes. Returns (0, -1), or (code,
    step) for the first step that fails: code 1 when an event would fall before the current time, 2 when a
    channel is still held or requested at the end of the step (a deadlock). Releases the GIL."""
    most_f, most_n = 1, 1
    for s in range(k0, k1):
        n = 0
        for f in flows[step_ptr[s]:step_ptr[s + 1]]:
            n += p_off[ux(flow_plan[ux(f)] + 1)] - p_off[ux(flow_plan[ux(f)])]
        most_f, most_n = max(most_f, step_ptr[s + 1] - step_ptr[s]), max(most_n, n)
    work = _work_arrays(n_links, most_f, most_n)  # made once for the range: fresh pages per step cost more than a step
    for s in range(k0, k1):
        rc = _play_step(flows[step_ptr[s]:step_ptr[s + 1]], flow_plan, flow_key, flow_m, flow_tail, flow_off, ready,
                        p_off, p_root_ptr, p_roots, ch_link, ch_hop, ch_before, ch_blocking, ch_count, child_ptr,
                        child, term_ptr, term_i, term_up, dep_ptr, dep, link_s, depth, work, down, held)
        if rc != 0:
            return rc, s
    return 0, -1


@njit(cache=True)
def _work_arrays(n_links, most_f, most_n):
    """Work arrays of _play_step for steps of up to most_f flows and most_n channel nodes: (local link map (n_links,)
    all -1, node offsets, step links, waiting heaps' capacities and sizes, owner / armed flags, waiting heap and
    entries, grants, missing grants, events (times, kinds, operands, detour targets), event heap and FIFO, and the
    counters of _at)."""
    # events a step schedules: its starts (at their ready times from 0: exact, no detour), at most one request and
    # one release per node (each possibly through a detour) and one grant per request or release (at `now`)
    most = most_f + 6 * most_n + 8
    return (np.full(n_links, -1, np.int64), np.empty(most_f + 1, np.int64), np.empty(most_n, np.int64),
            np.empty(most_n + 1, np.int64), np.empty(most_n, np.int64), np.empty(most_n, np.bool_),
            np.empty(most_n, np.bool_), np.empty(most_n, np.int64), np.empty(most_n), np.empty(most_n, np.int64),
            np.empty(most_n, np.int64), np.empty(most_n, np.int64), np.empty(most_n), np.empty(most_n, np.int64),
            np.empty(most), np.empty(most, np.int64), np.empty(most, np.int64), np.empty(most, np.int64),
            np.empty(most), np.empty(most, np.int64), np.empty(most, np.int64), np.empty(most),
            np.empty(most, np.int64), np.empty(4, np.int64))


@njit(cache=True, nogil=True, _nrt=False)
def _play_step(flows, flow_plan, flow_key, flow_m, flow_tail, flow_off, ready, p_off, p_root_ptr, p_roots, ch_link,
               ch_hop, ch_before, ch_blocking, ch_count, child_ptr, child, term_ptr, term_i, term_up, dep_ptr, dep,
               link_s, depth, work, down, held) -> int:
    """One step of play_steps (its flows `flows`) on the work arrays of _work_arrays (its link map left all -1). Returns
    its code."""
    local, node0, links, cap, size, owner, armed, wheap, wt, wk, wc, wf, grant, missing, ev_t, ev_k, ev_a, ev_b, \
        ev_to, ev_in, heap, ht, fq, cnt = work
    n_f = len(flows)
    node0[0] = 0  # step-local node offset of each flow (position in `flows`)
    for i in range(n_f):
        f = flows[ux(i)]
        p = flow_plan[ux(f)]
        node0[i + 1] = node0[i] + p_off[ux(p + 1)] - p_off[ux(p)]
    n_nodes = node0[n_f]
    n_l = 0
    for i in range(n_f):
        p = flow_plan[ux(flows[ux(i)])]
        for j in range(p_off[ux(p)], p_off[ux(p + 1)]):
            lk = ch_link[ux(j)]
            if local[ux(lk)] < 0:
                local[ux(lk)] = n_l
                links[ux(n_l)] = lk
                n_l += 1
    cap[:n_l + 1] = 0
    for i in range(n_f):
        p = flow_plan[ux(flows[ux(i)])]
        for j in range(p_off[ux(p)], p_off[ux(p + 1)]):
            cap[ux(local[ux(ch_link[ux(j)])] + 1)] += 1
    base = cap  # waiting heap of link l: wheap[base[l]:base[l] + size[l]]
    for l in range(n_l):
        base[l + 1] += base[l]
    size[:n_l] = 0
    owner[:n_l] = False
    armed[:n_l] = False
    n_w = 0
    grant[:n_nodes] = 0.0
    for i in range(n_f):
        p = flow_plan[ux(flows[ux(i)])]
        for j in range(p_off[ux(p)], p_off[ux(p + 1)]):
            missing[ux(node0[i] + j - p_off[ux(p)])] = ch_count[ux(j)]
    cnt[:] = 0  # events, heap size, FIFO head, FIFO tail (_at)
    now = 0.0
    for i in range(n_f):  # des_simpy.play schedules every flow's start from time 0, in flow order
        bad = _at(0.0, ready[ux(flows[ux(i)])], START, i, 0, ev_t, ev_k, ev_a, ev_b, ev_to, ev_in, heap, ht, fq,
                  cnt)
        if bad:
            return 1
    while cnt[1] > 0 or cnt[2] < cnt[3]:
        if cnt[2] < cnt[3] and (cnt[1] == 0 or ht[0] > now):  # the heap's events at `now` first: older ids
            e = fq[cnt[2]]
            cnt[2] += 1
            if cnt[2] == cnt[3]:
                cnt[2], cnt[3] = 0, 0
        else:
            e, now = heap[0], ht[0]
            cnt[1] = _ev_pop(ht, heap, cnt[1])
        kind, a, b = ev_k[ux(e)], ev_a[ux(e)], ev_b[ux(e)]
        if kind == DETOUR:  # des_simpy.AbsoluteTimeEnv.at again, from the earlier instant
            bad = _at(now, ev_to[ux(e)], ev_in[ux(e)], a, b, ev_t, ev_k, ev_a, ev_b, ev_to, ev_in, heap, ht, fq,
                      cnt)
            if bad:
                return 1
            continue
        if kind == START:
            p = flow_plan[ux(flows[ux(a)])]
            for r in range(p_root_ptr[ux(p)], p_root_ptr[ux(p + 1)]):  # its roots requested at once
                n_w, bad = _request(now, a, p_roots[ux(r)], flows, flow_plan, flow_key, p_off, ch_link, local, wheap,
                                    base, size, owner, armed, wt, wk, wc, wf, n_w, ev_t, ev_k, ev_a, ev_b, ev_to,
                                    ev_in, heap, ht, fq, cnt)
                if bad:
                    return 1
        elif kind == REQUEST:
            n_w, bad = _request(now, a, b, flows, flow_plan, flow_key, p_off, ch_link, local, wheap, base, size,
                                owner, armed, wt, wk, wc, wf, n_w, ev_t, ev_k, ev_a, ev_b, ev_to, ev_in, heap, ht, fq,
                                cnt)
            if bad:
                return 1
        elif kind == GRANT:
            armed[ux(a)] = False
            if not owner[ux(a)] and size[ux(a)] > 0:
                w = _w_pop(wheap, base[ux(a)], size[ux(a)], wt, wk, wc)
                size[ux(a)] -= 1
                owner[ux(a)] = True
                i, c = wf[ux(w)], wc[ux(w)]  # des_simpy._Flow.granted: channel c of the flow at position i
                f = flows[ux(i)]
                p = flow_plan[ux(f)]
                j0, n0, off = p_off[ux(p)], node0[ux(i)], flow_off[ux(f)]
                grant[ux(n0 + c)] = now
                reach = now + ch_hop[ux(j0 + c)]
                down[ux(off + c)] = reach
                for t in range(child_ptr[ux(j0 + c)], child_ptr[ux(j0 + c + 1)]):  # requested at the head's arrival
                    if _at(now, reach, REQUEST, i, child[ux(t)], ev_t, ev_k, ev_a, ev_b, ev_to, ev_in, heap, ht, fq,
                           cnt):
                        return 1
                m, tail = flow_m[ux(f)], flow_tail[ux(f)]
                for t in range(dep_ptr[ux(j0 + c)], dep_ptr[ux(j0 + c + 1)]):  # releases whose grants are all known
                    x = dep[ux(t)]
                    missing[ux(n0 + x)] -= 1
                    if missing[ux(n0 + x)] == 0:
                        tail_x = _tail_start(x, j0, m, tail, grant, n0, ch_before, term_ptr, term_i, term_up, link_s,
                                             depth)
                        if ch_blocking[ux(j0 + x)]:
                            rel = _fmax(tail_x + link_s, _tail_start(child[ux(child_ptr[ux(j0 + x)])], j0, m, tail,
                                                                      grant, n0, ch_before, term_ptr, term_i, term_up,
                                                                      link_s, depth))
                        else:
                            rel = tail_x + _fmax(link_s, ch_hop[ux(j0 + x)])
                        held[ux(off + x)] = rel - grant[ux(n0 + x)]
                        if _at(now, rel, RELEASE, local[ux(ch_link[ux(j0 + x)])], 0, ev_t, ev_k, ev_a, ev_b, ev_to,
                               ev_in, heap, ht, fq, cnt):
                            return 1
        else:  # RELEASE of step-local link a
            owner[ux(a)] = False
            if size[ux(a)] > 0 and not armed[ux(a)]:
                armed[ux(a)] = True
                bad = _at(now, now, GRANT, a, 0, ev_t, ev_k, ev_a, ev_b, ev_to, ev_in, heap, ht, fq, cnt)
                if bad:
                    return 1
    rc = 0
    for l in range(n_l):
        if owner[l] or size[l] > 0:
            rc = 2
        local[ux(links[ux(l)])] = -1
    return rc


@njit(cache=True, inline="always", _nrt=False)
def _at(now, time, kind, a, b, ev_t, ev_k, ev_a, ev_b, ev_to, ev_in, heap, ht, fq, cnt):
    """des_simpy.AbsoluteTimeEnv.at: schedule event (kind, a, b) at `time` from `now`, directly when a float delay
    lands there, else as a DETOUR through the latest earlier instant reachable exactly; cnt: [events, heap size,
    FIFO head, FIFO tail]. An event for the current instant joins the FIFO fq (it runs after every event of the
    heap at this instant, all scheduled before it, and after those already in the FIFO, as in simpy's (time,
    id) order), a later one the heap. Returns True when time < now (nothing scheduled)."""
    if time < now:
        return True
    n_ev = cnt[0]
    d = exact_delay(now, time)
    if d == d:
        ev_t[n_ev], ev_k[n_ev], ev_a[n_ev], ev_b[n_ev] = now + d, kind, a, b
    else:
        mid = np.nextafter(time, 0.0)
        while exact_delay(now, mid) != exact_delay(now, mid):
            mid = np.nextafter(mid, 0.0)
        ev_t[n_ev], ev_k[n_ev], ev_a[n_ev], ev_b[n_ev] = now + exact_delay(now, mid), DETOUR, a, b
        ev_to[n_ev], ev_in[n_ev] = time, kind
    if ev_t[n_ev] == now:
        fq[cnt[3]] = n_ev
        cnt[3] += 1
    else:
        cnt[1] = _ev_push(ht, heap, cnt[1], ev_t[n_ev], n_ev)
    cnt[0] = n_ev + 1
    return False


@njit(cache=True, inline="always", _nrt=False)
def _request(now, i, c, flows, flow_plan, flow_key, p_off, ch_link, local, wheap, base, size, owner, armed, wt, wk,
             wc, wf, n_w, ev_t, ev_k, ev_a, ev_b, ev_to, ev_in, heap, ht, fq, cnt):
    """des_simpy._Step.request of channel c of the flow at position i, then _arm."""
    f = flows[ux(i)]
    p = flow_plan[ux(f)]
    lk = local[ux(ch_link[ux(p_off[ux(p)] + c)])]
    wt[ux(n_w)], wk[ux(n_w)], wc[ux(n_w)], wf[ux(n_w)] = now, flow_key[ux(f)], c, i
    _w_push(wheap, base[ux(lk)], size[ux(lk)], n_w, wt, wk, wc)
    size[ux(lk)] += 1
    bad = False
    if not owner[ux(lk)] and not armed[ux(lk)]:
        armed[ux(lk)] = True
        bad = _at(now, now, GRANT, lk, 0, ev_t, ev_k, ev_a, ev_b, ev_to, ev_in, heap, ht, fq, cnt)
    return n_w + 1, bad


@njit(cache=True, inline="always", _nrt=False)
def _tail_start(z, j0, m, tail, g, n0, ch_before, term_ptr, term_i, term_up, link_s, depth):
    """des_simpy._Flow._tail_start of tree-local channel z (plan channels from global j0; the flow's grants from
    g[n0])."""
    v = _fmax(g[ux(n0 + z)] + (m - 1) * link_s, tail + ch_before[ux(j0 + z)])
    for t in range(term_ptr[ux(j0 + z)], term_ptr[ux(j0 + z + 1)]):
        v = _fmax(v, g[ux(n0 + term_i[ux(t)])] + (m - 1 - depth * term_up[ux(t)]) * link_s)
    return v
