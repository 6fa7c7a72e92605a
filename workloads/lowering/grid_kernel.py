"""Compiled kernels of workloads.lowering.grid.row_intervals: the grid search of sorted rows (sorted_intervals, one
pass per row instead of numpy's passes over every row: Spikformer-4-384's weight fit 82 -> 36 ms on one thread),
the gap test of a sorted sample of each row (sample_off_grid, which proves float channels off every grid),
and the distinct values of rows of a weight matrix,
collected in an open-addressing hash set of their bit patterns (linear probing in a table of 8 slots or more per
value kept, 16 kB for float32 with the grid's 512) instead of sorting each whole row. 0.0 and -0.0 are one value
(-0.0 is keyed as 0.0, so the bit pattern of -0.0 marks an empty slot); NaNs are keys like any other. A row stops
being read at its first value beyond the most kept. Inserting is branch-free but for collisions, so no branch is
mispredicted however often a row meets a new value.

Before hashing, a row with a finite positive span is tried on buckets: 4 x cap equal buckets over [min, max]
(bucket floor((v - min) x (buckets - 1) / span), monotone in v), each written its value's key, then every value
checked against its bucket's key. When they all match, no bucket holds two distinct values, and a scan of the
buckets gives the distinct values already in ascending order: three passes without a dependency chain (each
value's bucket, vectorised; the stores; the loads), about 1.6 ns a value, instead of a hash probe chain of 2.7-4.5 (VGG-11's weight fit 45 -> 26 ms on one thread). A
quantized channel's levels lie >= span / (2^b - 1) apart, so up to 9 bits they never share a bucket; rows where
some bucket does (float noise, close values) are hashed.
"""
from __future__ import annotations

import numpy as np
from numba import njit

#: multiplier of the (Fibonacci) hash: a key's first slot is the top bits of key x _GOLDEN mod 2^64
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def distinct_rows(v: np.ndarray, rows: np.ndarray, cap: int, lo: np.ndarray | None = None,
                  span: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(values, count) of the rows `rows` (int64 (r,)) of v (float32 or float64 (c, n), C-contiguous, n >= 1),
    cap >= 1: values (r, cap), v's dtype, holds in values[i, :count[i]] the distinct values of v[rows[i]] (0.0 and
    -0.0 as one, kept as 0.0), ascending when they fall in distinct buckets (module docstring), else in order of
    first occurrence, and that row's largest value in the rest; count (r,) int64 is cap + 1 for a row with more
    than cap distinct values (values[i] is then undefined).
    lo, span: float64 (r,), each row's min and max - min as numpy computes them (NaN for a row with a NaN), or
    None to compute them here; only rows whose lo and span are finite, span > 0, are tried on buckets."""
    bits = v.view(np.uint32 if v.dtype == np.float32 else np.uint64)
    rows = np.asarray(rows, np.int64)
    if lo is None or span is None:
        picked = v[rows] if len(rows) else np.zeros((0, 1), v.dtype)
        lo = picked.min(1).astype(np.float64)
        span = picked.max(1).astype(np.float64) - lo
    neg_zero = bits.dtype.type(1) << bits.dtype.type(8 * bits.itemsize - 1)
    values = np.empty((len(rows), cap + 1), v.dtype)
    count = _collect(v, bits, rows, np.asarray(lo, np.float64), np.asarray(span, np.float64), neg_zero,
                     (8 * cap - 1).bit_length(), values, values.view(bits.dtype))
    return values[:, :cap], count


@njit(cache=True, nogil=True)
def _collect(v: np.ndarray, bits: np.ndarray, rows: np.ndarray, lo: np.ndarray, span: np.ndarray, neg_zero,
             table_bits: int, values: np.ndarray, values_bits: np.ndarray) -> np.ndarray:
    """count of distinct_rows, given v and bits (v viewed as uint32/uint64 (c, n)); lo, span: float64 (r,);
    neg_zero: the bits of -0.0 (that dtype); table_bits: log2 of the slots of the hash set (> cap), and of the
    buckets (4 x cap or more); values: the (r, cap + 1) float output, filled here, with values_bits the same
    memory viewed as bits' dtype. Releases the GIL (the lowering fits projections on threads,
    workloads.lowering.jobs)."""
    keys = np.full(1 << table_bits, neg_zero, bits.dtype)
    buckets = np.full(1 << (table_bits - 1), neg_zero, bits.dtype)
    where = np.empty(v.shape[1], np.int32)
    used = np.empty(values.shape[1], np.uint64)
    count = np.empty(len(rows), np.int64)
    for i in range(len(rows)):
        c = -1
        per_unit = (len(buckets) - 1) / span[i] if span[i] > 0.0 else np.inf
        if np.isfinite(lo[i]) and np.isfinite(span[i]) and np.isfinite(per_unit):  # a subnormal span: hashed
            c = _bucket_row(v[rows[i]], bits[rows[i]], lo[i], per_unit, buckets, neg_zero, values_bits[i], where)
        if c < 0:
            c = _add_row(bits[rows[i]], keys, used, neg_zero, np.uint64(64 - table_bits))
            for j in range(c):
                values_bits[i, j] = keys[used[j]]
                keys[used[j]] = neg_zero
        count[i] = c
        if c < values.shape[1]:
            values[i, c:] = values[i, :c].max()
    return count


@njit(cache=True)
def _bucket_row(row: np.ndarray, row_bits: np.ndarray, lo: float, per_unit: float, buckets: np.ndarray,
                neg_zero, out_bits: np.ndarray, where: np.ndarray) -> int:
    """The distinct keys of a row (n,) (floats and their bit patterns, every value in [lo, lo + span], per_unit =
    (len(buckets) - 1) / span) into out_bits (cap + 1,) in ascending order, when no bucket of `buckets` (all
    neg_zero, left so) holds two distinct keys: returns their number (len(out_bits) when more than cap), else -1."""
    top = np.float64(len(buckets) - 1)
    for j in range(len(row)):  # vectorised
        where[j] = _bucket(row[j], lo, per_unit, top)
    for j in range(len(row)):  # stores only: the last key of a bucket stays
        b = row_bits[j]
        buckets[where[j]] = b if b != neg_zero else b ^ b
    same = True
    for j in range(len(row)):  # loads only: no early exit
        b = row_bits[j]
        same &= buckets[where[j]] == (b if b != neg_zero else b ^ b)
    c = 0
    for k in range(len(buckets)):
        if buckets[k] != neg_zero:
            if same and c < len(out_bits):
                out_bits[c] = buckets[k]
                c += 1
            buckets[k] = neg_zero
    return c if same else -1


@njit(cache=True, inline="always")
def _bucket(x, lo: float, per_unit: float, top: float) -> int:
    """The bucket of a value x: floor((float64(x) - lo) x per_unit), clamped to 0..top, NaN to 0 (whatever x, lo
    and per_unit, it never indexes outside the buckets)."""
    t = (np.float64(x) - lo) * per_unit
    t = t if t >= 0.0 else 0.0  # NaN too
    return np.int32(t if t <= top else top)


@njit(cache=True)
def _add_row(row: np.ndarray, keys: np.ndarray, used: np.ndarray, neg_zero, shift) -> int:
    """Add the keys of row (n,) (bit patterns) to the empty hash set `keys`, the c-th new one at slot used[c]
    (uint64); returns their number, stopping at len(used). Every key is written to its slot and its slot to
    used[c], but only a new key advances c."""
    mask, one, c, most = np.uint64(len(keys) - 1), np.uint64(1), np.uint64(0), np.uint64(len(used))
    for b in row:
        key = b if b != neg_zero else b ^ b
        h = (np.uint64(key) * _GOLDEN) >> shift
        while keys[h] != key and keys[h] != neg_zero:
            h = (h + one) & mask
        new = np.uint64(keys[h] != key)
        keys[h] = key
        used[c] = h
        c += new
        if c == most:
            break
    return np.int64(c)


def sorted_intervals(s: np.ndarray, lo: np.ndarray, scale: np.ndarray, limit: int, tol: float,
                     most: int) -> np.ndarray:
    """int64 (c,): per row of s (float32/float64 (c, k), each row sorted ascending, every distinct value of a
    channel at least once, k >= 1), the fewest steps m <= limit of a grid holding the channel's values rescaled as
    f = (float64(v) - lo) / scale (lo, scale: float64 (c,), scale > 0), or -1 for none: the rule of
    workloads.lowering.grid (tolerance `tol`, gaps wider than 2 tol, at most `most` of them) in one compiled pass
    per row, with numpy's IEEE operations in numpy's order (no fastmath): the first candidate
    max(1, ceil(1 / (smallest gap + 2 tol) - 1e-9)), then each m in turn until every f has |f m - rint(f m)|
    <= tol m. Equal values add zero gaps (not counted) and the same deviation."""
    out = np.empty(len(s), np.int64)
    _sorted_intervals(np.ascontiguousarray(s), np.asarray(lo, np.float64), np.asarray(scale, np.float64),
                      float(limit), float(tol), 2.0 * tol, int(most), np.empty(s.shape[1]), out)
    return out


@njit(cache=True, nogil=True)
def _sorted_intervals(s, lo, scale, limit, tol, tol2, most, f, out) -> None:
    """sorted_intervals into out, with f (k,) float64 scratch for a row's rescaled values. The smallest gap wider
    than tol2 is taken on bit patterns, as unsigned integers (+inf's when there is none): such gaps are positive,
    and positive floats order as their patterns; an integer minimum vectorises, a float one (which must keep
    NaN's rules) does not: 0.34 against 3.7 ms for the gaps of 1,536 rows of 384 values."""
    inf_bits = np.float64(np.inf).view(np.uint64)
    for i in range(s.shape[0]):
        row, lo_i, sc = s[i], lo[i], scale[i]
        k = row.shape[0]
        for j in range(k):
            f[j] = (np.float64(row[j]) - lo_i) / sc
        count, smallest = 0, inf_bits
        for j in range(1, k):  # branch-free: equal values give zero gaps, which are not counted
            gap = f[j] - f[j - 1]
            big = gap > tol2
            count += big
            smallest = min(smallest, np.float64(gap).view(np.uint64) if big else inf_bits)
        out[i] = -1
        if count == 0 or count > most:
            continue
        m = max(1.0, np.ceil(1.0 / (np.uint64(smallest).view(np.float64) + tol2) - 1e-9))
        while m <= limit:
            if _holds(f, k, m, tol * m):
                out[i] = np.int64(m)
                break
            m += 1.0


@njit(cache=True, inline="always")
def _holds(f, k, m, bound) -> bool:
    """Every f[:k] lies within `bound` of a multiple of 1/m: |f m - rint(f m)| <= bound (False at a NaN)."""
    ok = True
    for j in range(k):  # no early exit: an AND over all of them vectorises
        x = f[j] * m
        ok &= abs(x - np.rint(x)) <= bound
    return ok


def sample_off_grid(picked: np.ndarray, lo: np.ndarray, scale: np.ndarray, apart: float, between: float,
                    limit: int) -> np.ndarray:
    """bool (r,): workloads.lowering.grid's sample test of r sorted samples picked (float32 or float64 (r, k),
    k >= 2, each row ascending, NaNs last): each row cast to float64, minus lo[i], divided by scale[i] (float64
    (r,)), and its gaps g (next minus previous) counted: True when more than `limit` gaps have g > apart or
    some gap has apart < g < between (the bounds as grid._too_many_points computes them). One compiled pass per
    row with numpy's operations in its order (no fastmath), so the answers are those of numpy's passes over
    (r, k) arrays (tests/workloads/test_lowering_grid_rows.py) at a third of their time; releases the GIL. (The
    sort stays numpy's: its vectorised sort of short rows is several times numba's.)"""
    out = np.empty(len(picked), np.bool_)
    _sample_off_grid(np.ascontiguousarray(picked), np.ascontiguousarray(lo, np.float64),
                     np.ascontiguousarray(scale, np.float64), float(apart), float(between), int(limit), out)
    return out


@njit(cache=True, nogil=True)
def _sample_off_grid(picked, lo, scale, apart, between, limit, out) -> None:
    """sample_off_grid's pass into out."""
    for i in range(len(picked)):
        count, off = 0, False
        prev = (np.float64(picked[i, 0]) - lo[i]) / scale[i]
        for j in range(1, picked.shape[1]):
            f = (np.float64(picked[i, j]) - lo[i]) / scale[i]
            g = f - prev
            prev = f
            if g > apart:
                count += 1
                if g < between:
                    off = True
                    break
        out[i] = off or count > limit
