"""Compiled kernels of hwmodels.events.actions.count_actions. One pass over a batch of a population's spikes in
the trace's CSR (offsets, indices) counts the spikes per row (a row is (sample, hardware step, source core)) and
groups their classes by row; a second pass over the rows multiplies every row's spikes per class of neurons by
the classes' fan-out and sums them per destination core, emitting the (row, destination) entries in sorted order
(unicast_flows), or first groups every row's classes by their multicast destination set and emits one flow per
(row, set) with its (flow, destination) deliveries (multicast_flows). All counts are int64 sums of integers,
exact in any order.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.arrays import truncated
from hwmodels.kernels.index import ux


@njit(cache=True, nogil=True)
def count_rows(lo: np.ndarray, hi: np.ndarray, idx: np.ndarray, seg_base: np.ndarray, core: np.ndarray,
               spikes: np.ndarray, packed: np.ndarray, n_t: int,
               group: tuple) -> tuple[int, np.ndarray, np.ndarray]:
    """Add one population's spikes to `spikes`, find those its activity record misses and group them by row.

    lo, hi: int64 (n_seg,): the events of segment g = sample * n_t + timestep are idx[lo[g]:hi[g]] (neuron
    indices, any integer dtype); seg_base: int64 (n_seg,) the row of core 0 for segment g (every row belongs to
    one segment); core: int64 (size,) the core of every neuron; spikes: int64 (n_rows,), spikes[seg_base[g] +
    core[i]] += 1 per event. packed: uint8 (n_samples * (n_t + 1), bytes) the population's packed activity rows
    (hwmodels.activity), or zero rows to skip the check. group: (cls int64 (size,), offset, cores, row_lo,
    row_hi, ev_cls) (_group_segment), or an empty cls not to group. Returns (-1, or the position in idx of the
    first index outside 0..size - 1, in which case nothing after it is counted; int64 segments and int64
    neurons of the spikes whose activity bit is not set). Releases the GIL: populations on cores of their own
    write disjoint rows and events, so they may be counted on threads at once."""
    size, check, grouping = len(core), packed.shape[0] > 0, len(group[0]) > 0
    n_ev = 0
    for g in range(len(lo)):
        n_ev += hi[ux(g)] - lo[ux(g)]
    miss_g = np.empty(n_ev if check else 0, np.int64)
    miss_i = np.empty(n_ev if check else 0, np.int64)
    n_miss = 0
    cls, offset, _, row_lo, row_hi, ev_cls = group
    for g in range(len(lo)):
        base, prow = seg_base[ux(g)], (g // n_t) * (n_t + 1) + g % n_t
        prev, run, ordered = -1, 0, True  # spikes are counted per run of equal rows
        for j in range(lo[ux(g)], hi[ux(g)]):
            i = np.int64(idx[ux(j)])
            if i < 0 or i >= size:
                return j, miss_g[:n_miss], miss_i[:n_miss]
            r = base + core[ux(i)]
            if r != prev:
                if prev >= 0:
                    spikes[ux(prev)] += run
                if grouping:
                    ordered &= r > prev  # rows in increasing order: each row's spikes are one run
                    row_lo[ux(r)] = j
                    if prev >= 0:
                        row_hi[ux(prev)] = j
                prev, run = r, 0
            run += 1
            if check and (packed[ux(prow), ux(i >> 3)] >> (i & 7)) & 1 == 0:
                miss_g[ux(n_miss)], miss_i[ux(n_miss)] = g, i
                n_miss += 1
            if grouping:
                ev_cls[ux(j)] = offset + cls[ux(i)]
        if prev >= 0:
            spikes[ux(prev)] += run
            if grouping:
                row_hi[ux(prev)] = hi[ux(g)]
        if grouping and not ordered:
            _group_segment(lo[ux(g)], hi[ux(g)], idx, base, core, spikes, group)
    return -1, miss_g[:n_miss], miss_i[:n_miss]


@njit(cache=True)
def _group_segment(a: int, b: int, idx: np.ndarray, base: int, core: np.ndarray, spikes: np.ndarray,
                   group: tuple) -> None:
    """Counting sort of the spikes idx[a:b] of one segment by row (base + core[i]; spikes counted): for every
    core c of the population (group[2], int64), row r = base + c gets ev_cls[row_lo[r]:row_hi[r]] = the classes
    offset + cls[i] of its spikes in trace order, within positions a:b."""
    cls, offset, cores, row_lo, row_hi, ev_cls = group
    pos = a
    for c in cores:
        row_lo[ux(base + c)], row_hi[ux(base + c)] = pos, pos
        pos += spikes[ux(base + c)]
    for j in range(a, b):
        i = np.int64(idx[ux(j)])
        r = base + core[ux(i)]
        ev_cls[ux(row_hi[ux(r)])] = offset + cls[ux(i)]
        row_hi[ux(r)] += 1


@njit(cache=True, inline="always")
def _merge_row(ev_cls: np.ndarray, a: int, b: int, cnt: np.ndarray, cls_buf: np.ndarray) -> int:
    """Distinct classes of ev_cls[a:b] into cls_buf in order of first appearance, their counts added to `cnt`
    (per-class scratch, zero for all of them before); returns how many (branch-free: a class is written at the
    next slot each time and the slot advances when it was new)."""
    u = 0
    for j in range(a, b):
        c = ev_cls[ux(j)]
        cls_buf[ux(u)] = c
        u += cnt[ux(c)] == 0
        cnt[ux(c)] += 1
    return u


@njit(cache=True)
def _sort_dsts(touched: np.ndarray, dlist: np.ndarray, nd: int) -> None:
    """Sort the nd destinations dlist[:nd] (each flagged in `touched`, bool (n,)) in place: insertion sort when
    few, read off the flags when they are a good part of all n, else a library sort."""
    if nd <= 16:
        for a in range(1, nd):
            d, b = dlist[ux(a)], a - 1
            while b >= 0 and dlist[ux(b)] > d:
                dlist[ux(b + 1)] = dlist[ux(b)]
                b -= 1
            dlist[ux(b + 1)] = d
    elif nd * 16 >= len(touched):
        k = 0
        for d in range(len(touched)):
            if touched[ux(d)]:
                dlist[ux(k)] = d
                k += 1
    else:
        dlist[:nd].sort()


#: output entries unicast_flows first makes room for per row with spikes (at most n, the destination cores)
FLOWS_PER_ROW = 64


def unicast_flows(row_lo: np.ndarray, row_hi: np.ndarray, ev_cls: np.ndarray, fan: tuple, n: int,
                  rows_per_sample: int, totals: tuple, first_row: int = 0):
    """Unicast flows of a batch: for every row r, the classes of its spikes ev_cls[row_lo[r]:row_hi[r]]
    (row_lo, row_hi int64 (n_rows,); ev_cls int64 class ids) counted, then sum_c count_c x fan-out of class c,
    per destination core d < n. fan = (ptr, dst, val) (dst_major): class c's destinations dst[ptr[c]:ptr[c + 1]]
    with their values val[same] (int64 (., 1 + blocks): messages, then the value blocks). first_row: the batch
    row of row_lo[0] (a range of rows that need not start or end at a sample's first row).

    Returns (row, dst, messages, values (m, blocks), struct, nonzero, orphan): one entry per (row, dst) with a
    non-zero message sum, sorted by (row, dst), int64 each (row counted from row_lo[0]), values holding the blocks'
    sums; struct / nonzero: int64 sums of count_c x totals[0][c] (totals[1][c]) per sample the rows touch, from
    the sample of first_row (first_row // rows_per_sample) to the sample of the last row; orphan: True when some
    (row, dst) has a zero message sum but a non-zero block (not emitted).

    The compiled pass (_flow_rows, which releases the GIL) writes into output arrays that numpy allocates here
    and doubles when a row might not fit: large numpy arrays get huge pages, where numba's own growing arrays
    faulted ~12,000 fresh 4 KiB pages per batch of Spikformer-4-384, on two threads at once. They start at
    FLOWS_PER_ROW (or n, if fewer) entries per row with spikes: address space only, as pages are taken when
    written (the three bench nets emit 2.5, 7.2 and 34-45 entries per such row on 28, 185 and 1,756 cores)."""
    width = fan[2].shape[1]
    s0 = first_row // rows_per_sample
    n_s = (first_row + len(row_lo) - 1) // rows_per_sample - s0 + 1 if len(row_lo) else 0
    sums = (np.zeros(n_s, np.int64), np.zeros(n_s, np.int64))
    cap = max(1024, n, min(n, FLOWS_PER_ROW) * int(np.count_nonzero(row_hi != row_lo)))
    out = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty((cap, width), np.int64))
    m, r, orphan = 0, 0, False
    while True:
        m, r, lost = _flow_rows(row_lo, row_hi, ev_cls, fan, n, rows_per_sample, totals, first_row, sums, out, m, r)
        orphan |= lost
        if r == len(row_lo):
            break
        out = tuple(_doubled(a, m) for a in out)
    row, dst, values = out
    return row[:m], dst[:m], values[:m, 0].copy(), values[:m, 1:], sums[0], sums[1], orphan


def _doubled(a: np.ndarray, m: int) -> np.ndarray:
    """A new numpy array of twice a's rows, the first m rows of `a` copied in."""
    b = np.empty((2 * a.shape[0],) + a.shape[1:], a.dtype)
    b[:m] = a[:m]
    return b


@njit(cache=True, nogil=True)
def _flow_rows(row_lo, row_hi, ev_cls, fan, n, rows_per_sample, totals, first_row, sums, out, m, r0):
    """unicast_flows' pass over rows r0, r0 + 1, ... into out = (row, dst, values) from slot m and into sums;
    stops before a row with spikes when fewer than n slots are left (a row emits at most n entries). Returns
    (slots used, the row it stopped at: len(row_lo) when done, orphan)."""
    n_cls, width = len(fan[0]) - 1, fan[2].shape[1]
    scratch = (np.zeros(n_cls, np.int64), np.empty(n_cls + 1, np.int64), np.zeros((n, width), np.int64),
               np.zeros(n, np.bool_), np.empty(n, np.int64))
    s0, orphan = first_row // rows_per_sample, False
    for r in range(r0, len(row_lo)):
        if row_lo[ux(r)] != row_hi[ux(r)]:
            if len(out[0]) - m < n:
                return m, r, orphan
            s = (first_row + r) // rows_per_sample - s0
            nd = _row_product(ev_cls[row_lo[ux(r)]:row_hi[ux(r)]], fan, scratch, totals, sums, s)
            m, lost = _emit_row(r, nd, scratch, out, m)
            orphan |= lost
    return m, len(row_lo), orphan


@njit(cache=True, inline="always")
def _row_product(ev_cls: np.ndarray, fan: tuple, scratch: tuple, totals: tuple, sums: tuple, s: int) -> int:
    """Add sum_c count_c x fan-out of class c over the classes `ev_cls` of one row's spikes into the
    accumulator scratch[2] (n, 1 + blocks), flag its destinations in scratch[3] and list them in scratch[4];
    add count_c x totals[.][c] to sums[.][s]. Returns how many destinations are listed."""
    cnt, cls_buf = scratch[0], scratch[1]
    u, nd = _merge_row(ev_cls, 0, len(ev_cls), cnt, cls_buf), 0
    for e in range(u):
        c = cls_buf[ux(e)]
        k, cnt[ux(c)] = cnt[ux(c)], 0
        sums[0][ux(s)] += k * totals[0][ux(c)]
        sums[1][ux(s)] += k * totals[1][ux(c)]
        nd = _add_class(c, k, fan, scratch, nd)
    return nd


@njit(cache=True, inline="always")
def _emit_row(r: int, nd: int, scratch: tuple, out: tuple, m: int) -> tuple:
    """Append row r's accumulated destinations with messages, in increasing order, to out = (row, dst, values)
    from slot m (room for nd more), clearing the accumulator. Returns (the new m, whether some destination had
    values but no messages)."""
    _, _, acc, touched, dlist = scratch
    _sort_dsts(touched, dlist, nd)
    orphan = False
    for d in dlist[:nd]:
        touched[ux(d)] = False
        msg = acc[ux(d), 0]
        if msg != 0:
            out[0][ux(m)], out[1][ux(m)] = r, d
            for b in range(acc.shape[1]):
                out[2][ux(m), b] = acc[ux(d), b]
            m += 1
        for b in range(acc.shape[1]):
            orphan |= msg == 0 and acc[ux(d), b] != 0
            acc[ux(d), b] = 0
    return m, orphan


def multicast_flows(row_lo: np.ndarray, row_hi: np.ndarray, ev_cls: np.ndarray, route_of: np.ndarray, fan: tuple,
                    n: int, rows_per_sample: int, totals: tuple, first_row: int = 0):
    """Multicast flows of a batch: every row's spike classes (row_lo, row_hi, ev_cls, fan, rows_per_sample,
    totals, first_row as unicast_flows') counted and grouped by their destination set route_of[c] (int64 per
    class; -1: the class sends no message, its spikes make no flow): one flow per (row, route) with its spike
    count, and per flow the sum of count_c x fan-out of its classes per destination core.

    Returns (flow row, flow route, flow spikes, delivery flow, dst, messages, values (m, blocks), struct, nonzero,
    orphan): flows sorted by (row, route), numbered from 0, rows counted from row_lo[0]; deliveries one per
    (flow, dst) with a non-zero message sum, sorted by (flow, dst); struct, nonzero and orphan as unicast_flows'
    (every spike's totals, route or not). Output arrays are numpy's, doubled between compiled passes as in
    unicast_flows (a row's pass needs room for n deliveries per flow it makes)."""
    width = fan[2].shape[1]
    s0 = first_row // rows_per_sample
    n_s = (first_row + len(row_lo) - 1) // rows_per_sample - s0 + 1 if len(row_lo) else 0
    sums = (np.zeros(n_s, np.int64), np.zeros(n_s, np.int64))
    busy = int(np.count_nonzero(row_hi != row_lo))
    flows = tuple(np.empty(max(1024, 2 * busy), np.int64) for _ in range(3))
    cap = max(1024, n, min(n, FLOWS_PER_ROW) * busy)
    out = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty((cap, width), np.int64))
    f, m, r, orphan = 0, 0, 0, False
    while True:
        f, m, r, lost = _multicast_rows(row_lo, row_hi, ev_cls, route_of, fan, n, rows_per_sample, totals,
                                        first_row, sums, flows, out, f, m, r)
        orphan |= lost
        if r == len(row_lo):
            break
        flows, out = tuple(_doubled(a, f) for a in flows), tuple(_doubled(a, m) for a in out)
    (frow, froute, fspikes), (dflow, dst, values) = flows, out
    return (frow[:f], froute[:f], fspikes[:f], dflow[:m], dst[:m], values[:m, 0].copy(), values[:m, 1:], sums[0],
            sums[1], orphan)


@njit(cache=True, nogil=True)
def _multicast_rows(row_lo, row_hi, ev_cls, route_of, fan, n, rows_per_sample, totals, first_row, sums, flows,
                    out, f, m, r0):
    """multicast_flows' pass over rows r0, r0 + 1, ... into flows = (row, route, spikes) from slot f and out =
    (flow, dst, values) from slot m, and into sums; stops before a row whose flows might not fit. Returns
    (flow slots used, delivery slots used, the row it stopped at: len(row_lo) when done, orphan)."""
    ptr, dst, val = fan
    n_cls, width = len(ptr) - 1, val.shape[1]
    scratch = (np.zeros(n_cls, np.int64), np.empty(n_cls + 1, np.int64), np.zeros((n, width), np.int64),
               np.zeros(n, np.bool_), np.empty(n, np.int64))
    cnt, cls_buf, acc, touched, dlist = scratch
    keys = np.empty(n_cls + 1, np.int64)
    s0, orphan = first_row // rows_per_sample, False
    for r in range(r0, len(row_lo)):
        if row_lo[ux(r)] == row_hi[ux(r)]:
            continue
        u = _merge_row(ev_cls, row_lo[ux(r)], row_hi[ux(r)], cnt, cls_buf)
        g = _by_route(cls_buf, u, route_of, keys, n_cls + 1)
        if len(flows[0]) - f < g or len(out[0]) - m < g * n:
            for e in range(u):
                cnt[ux(cls_buf[ux(e)])] = 0
            return f, m, r, orphan
        s = (first_row + r) // rows_per_sample - s0
        e = 0
        while e < u:
            route, spikes, nd = route_of[ux(cls_buf[ux(e)])], 0, 0
            while e < u and route_of[ux(cls_buf[ux(e)])] == route:
                c = cls_buf[ux(e)]
                k, cnt[ux(c)] = cnt[ux(c)], 0
                sums[0][ux(s)] += k * totals[0][ux(c)]
                sums[1][ux(s)] += k * totals[1][ux(c)]
                if route >= 0:
                    spikes += k
                    nd = _add_class(c, k, fan, scratch, nd)
                e += 1
            if route >= 0:
                flows[0][ux(f)], flows[1][ux(f)], flows[2][ux(f)] = r, route, spikes
                m, lost = _emit_row(f, nd, scratch, out, m)
                orphan |= lost
                f += 1
    return f, m, len(row_lo), orphan


@njit(cache=True, inline="always")
def _add_class(c: int, k: int, fan: tuple, scratch: tuple, nd: int) -> int:
    """Add k x fan-out of class c (fan = (ptr, dst, val)) into the accumulator scratch[2], flagging new destinations
    in scratch[3] and listing them in scratch[4] after the nd listed; returns how many are listed."""
    ptr, dst, val = fan
    acc, touched, dlist = scratch[2], scratch[3], scratch[4]
    for q in range(ptr[ux(c)], ptr[ux(c + 1)]):
        d = dst[ux(q)]
        for b in range(val.shape[1]):
            acc[ux(d), b] += k * val[ux(q), b]
        if not touched[ux(d)]:
            touched[ux(d)], dlist[ux(nd)] = True, d
            nd += 1
    return nd


@njit(cache=True)
def _by_route(cls_buf: np.ndarray, u: int, route_of: np.ndarray, keys: np.ndarray, base: int) -> int:
    """Sort the u classes cls_buf[:u] by (route_of[c], c) in place (insertion sort when few, else a library sort of
    (route + 1) * base + c keys); returns how many distinct routes >= 0 they hold."""
    if u <= 16:
        for a in range(1, u):
            c, b = cls_buf[ux(a)], a - 1
            rc = route_of[ux(c)]
            while b >= 0:
                cb = cls_buf[ux(b)]
                rb = route_of[ux(cb)]
                if rb < rc or (rb == rc and cb < c):
                    break
                cls_buf[ux(b + 1)] = cb
                b -= 1
            cls_buf[ux(b + 1)] = c
    else:
        for a in range(u):
            keys[ux(a)] = (route_of[ux(cls_buf[ux(a)])] + 1) * base + cls_buf[ux(a)]
        keys[:u].sort()
        for a in range(u):
            cls_buf[ux(a)] = keys[ux(a)] % base
    g, last = 0, -1
    for a in range(u):
        route = route_of[ux(cls_buf[ux(a)])]
        g += route >= 0 and route != last
        last = route
    return g


def dst_major(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n: int,
              width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A CSR (n_cls, width * n) int64 matrix (column b * n + d: block b, destination d; indices of a row in any
    order, no duplicates) regrouped by destination: (ptr int64 (n_cls + 1,), dst int64, val int64 (., width)),
    class c's destinations with any entry dst[ptr[c]:ptr[c + 1]] increasing, val[q, b] its block-b value. Two
    compiled passes that release the GIL (populations' stacks are regrouped on threads at once): the
    destinations first, then the values into an array of just their number of rows. The outputs are numpy
    allocations (transparent huge pages for large ones), not numba's, whose 4 KiB page faults serialised two
    threads."""
    ptr = np.zeros(len(indptr), np.int64)
    dst = np.empty(len(indices), np.int64)
    m = _dst_lists(indptr, indices, n, ptr, dst)
    val = np.zeros((m, width), np.int64)
    _dst_values(indptr, indices, data, n, ptr, dst, val)
    return ptr, truncated(dst, m), val


@njit(cache=True, nogil=True)
def _dst_lists(indptr: np.ndarray, indices: np.ndarray, n: int, ptr: np.ndarray, dst: np.ndarray) -> int:
    """dst_major's first pass: fills ptr (n_cls + 1,) and dst[:m] with every class's destinations in increasing
    order; returns m."""
    seen = np.full(n, -1, np.int64)  # seen[d]: the last class that listed d
    m = 0
    for c in range(len(indptr) - 1):
        k, ordered = m, True
        for q in range(indptr[ux(c)], indptr[ux(c + 1)]):
            d = _block_of(indices[ux(q)], n)[1]
            if seen[ux(d)] != c:
                ordered &= k == m or d > dst[ux(k - 1)]  # a canonical CSR lists them in order (block 0 first)
                seen[ux(d)], dst[ux(k)] = c, d
                k += 1
        if not ordered:
            dst[m:k].sort()
        m = k
        ptr[ux(c + 1)] = m
    return m


@njit(cache=True, nogil=True)
def _dst_values(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n: int, ptr: np.ndarray,
                dst: np.ndarray, val: np.ndarray) -> None:
    """dst_major's second pass: class c's entry in block b at destination dst[a] (a in ptr[c]..ptr[c + 1] - 1)
    goes to val[a, b] (val: zeros (ptr[-1], width))."""
    slot = np.full(n, -1, np.int64)
    for c in range(len(ptr) - 1):
        for a in range(ptr[ux(c)], ptr[ux(c + 1)]):
            slot[ux(dst[ux(a)])] = a
        for q in range(indptr[ux(c)], indptr[ux(c + 1)]):
            b, d = _block_of(indices[ux(q)], n)
            val[ux(slot[ux(d)]), b] = data[ux(q)]


@njit(cache=True, inline="always")
def _block_of(col: int, n: int) -> tuple[int, int]:
    """(block b, destination d) of a column col = b * n + d >= 0 of a few blocks, by subtraction: a 64-bit
    division per entry cost more than the rest of dst_major."""
    b = 0
    while col >= n:
        col -= n
        b += 1
    return b, col


@njit(cache=True, nogil=True)
def chunk_bits(packed: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """Set bits of every row of `packed` (uint8 (rows, bytes), little bit order: neuron i is bit i & 7 of byte
    i >> 3) in each chunk of neurons [starts[k], starts[k + 1]), the last chunk to neuron size - 1: the padding
    bits after it and any bytes past ceil(size / 8) are not counted (a hand-packed row of 0xFF bytes is `size`
    neurons, not a multiple of 8), int64 (rows, len(starts)). starts: int64 increasing, starts[0] = 0, all below
    size. Releases the GIL (populations' activity is counted on threads at once)."""
    pop = np.zeros(256, np.int64)
    for v in range(1, 256):
        pop[ux(v)] = pop[ux(v >> 1)] + (v & 1)
    rows, n_chunks = packed.shape[0], len(starts)
    n_bytes = min(packed.shape[1], (size + 7) >> 3)
    tail = (1 << (size & 7)) - 1 if size & 7 else 255  # valid bits of the last byte
    out = np.zeros((rows, n_chunks), np.int64)
    for r in range(rows):
        total, pos, prev = 0, 0, 0
        for k in range(n_chunks):
            byte, bit = starts[ux(k)] >> 3, starts[ux(k)] & 7
            while pos < byte:
                total += pop[packed[r, pos]]
                pos += 1
            before = total
            if bit and byte < n_bytes:
                before += pop[packed[r, byte] & ((1 << bit) - 1)]
            if k:
                out[r, k - 1] = before - prev
            prev = before
        while pos < n_bytes:
            total += pop[packed[r, pos] & tail] if pos == n_bytes - 1 else pop[packed[r, pos]]
            pos += 1
        if n_chunks:
            out[r, n_chunks - 1] = total - prev
    return out
