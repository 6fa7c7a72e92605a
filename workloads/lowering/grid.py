"""The per-channel weight grid of the fit rule (workloads.lowering.fit): the fewest steps of an affine grid that
holds a channel's values, for one channel or for every output channel of a weight at once.

A channel's values v, rescaled to f = (v - min) / (max - min) in [0, 1], lie on a grid of m steps when every
f is within GRID_TOL x m of a multiple of 1/m, i.e. |f m - round(f m)| <= GRID_TOL m. The smallest m is searched
from a lower bound set by the smallest gap between distinct values; a quantized channel almost always fits that
first candidate, so all channels of a weight try it in one vectorised test and only the others are scanned.
A row of more than _FEW values has its distinct values collected by hashing (workloads.lowering.grid_kernel;
0.0 and -0.0 as one) and only they are sorted, in the row's own dtype (a quantized channel holds at most 2^b of
them); other rows are sorted whole and cut to their distinct values. Either way they are rescaled to float64 only
then: repeated values add zero gaps and no deviation, so every gap and every fit test is as on the whole row, and
so is the answer (the smallest m from the first candidate on whose grid every value lies).
"""
from __future__ import annotations

import numpy as np

from workloads.lowering.grid_kernel import distinct_rows

#: tolerance of the grid test, as a fraction of a channel's range (max - min)
GRID_TOL = 1e-5
#: most steps a grid may have over a channel's range (its step >= 20 x GRID_TOL x range)
MAX_INTERVALS = 5000
#: bits of weights on no grid (floats)
FLOAT_BITS = 32
#: candidate steps tested together while scanning
_BLOCK = 256
#: first candidates of every row tested in the vectorised pass: the lower bound from the smallest gap is up to
#: 2 GRID_TOL m^2 below the answer m (1.3 for an 8-bit grid, m = 254)
_WINDOW = 3
#: values of a channel tested first against a block of candidates (a necessary condition, cheap to reject)
_PROBE = 64
#: values of a channel whose spread tells early that it needs more than a small grid (_too_many_points)
_SAMPLE = 512
#: most distinct values of a row collected by hashing (more: the row is sorted whole), done in rows of more values
#: only (numpy sorts rows of up to a few hundred values at 1-2 ns a value, as fast as hashing; longer ones at 4-11)
_FEW = 512
#: most float64 elements of one vectorised row test (bounds its temporary memory to ~32 MB)
_CHUNK_ELEMENTS = 1 << 22


def bits_for_intervals(m: int | None) -> int:
    """Bits of a grid of m steps (m + 1 levels): ceil(log2(m + 1)), at least 1; FLOAT_BITS for None."""
    return FLOAT_BITS if m is None else max(1, int(m).bit_length())


def grid_intervals(values: np.ndarray, limit: int = MAX_INTERVALS) -> int | None:
    """Fewest steps m of a grid lo + k (hi - lo) / m, k = 0..m, holding every value within GRID_TOL (hi - lo):
    0 for fewer than two distinct values, None when no grid of at most MAX_INTERVALS steps does, or when the
    fewest steps exceed `limit` (a bound the caller cares about, e.g. 2^b - 1 for "fits b bits").

    values: any-shape float array (one channel).
    """
    v = np.asarray(values, np.float64).ravel()
    span = float(v.max() - v.min()) if v.size else 0.0
    if span <= 0.0:
        return 0
    f = np.sort((v - v.min()) / span)
    gaps = np.diff(f)
    distinct = gaps[gaps > 2 * GRID_TOL]
    if distinct.size == 0 or distinct.size > MAX_INTERVALS:
        return None
    return _scan(f, max(1, int(np.ceil(1.0 / (distinct.min() + 2 * GRID_TOL) - 1e-9))), min(limit, MAX_INTERVALS))


def row_intervals(rows: np.ndarray, limit: int = MAX_INTERVALS) -> list[int | None]:
    """[grid_intervals(r, limit) for r in rows] of a float (C, n) array (C channels of n values), equal value for
    value: every row's first _WINDOW candidates are tested in one vectorised pass (in chunks of rows), the rows
    they miss are scanned one by one. float32 rows stay float32 until rescaled (sorting and min/max commute with
    the exact cast to float64); other dtypes are taken as float64."""
    v = np.asarray(rows)
    v = np.ascontiguousarray((v if v.dtype == np.float32 else np.asarray(v, np.float64)).reshape(len(v), -1))
    if v.shape[1] == 0:
        return [0] * len(v)
    step = max(1, _CHUNK_ELEMENTS // (_WINDOW * v.shape[1]))
    return [m for lo in range(0, len(v), step) for m in _rows_chunk(v[lo:lo + step], min(limit, MAX_INTERVALS))]


def _rows_chunk(v: np.ndarray, limit: int) -> list[int | None]:
    """row_intervals of float32/float64 (c, n) C-contiguous rows, n >= 1, limit <= MAX_INTERVALS. Only the rows
    with a positive span that _too_many_points keeps are searched, on their values sorted (_fill_sorted): the
    distinct ones distinct_rows collects when n > _FEW, or the whole row when it has more than _FEW of them or
    n <= _FEW."""
    lo = v.min(1).astype(np.float64)
    span = v.max(1).astype(np.float64) - lo
    scale = np.where(span > 0.0, span, 1.0)
    out: list[int | None] = [0 if s <= 0.0 else None for s in span]
    rows = np.flatnonzero((span > 0.0) & ~_too_many_points(v, lo, scale, limit))
    if len(rows) == 0:
        return out
    if v.shape[1] > _FEW:
        few, count = distinct_rows(v, rows, _FEW)
        hashed = count <= _FEW
        s = few[hashed, :int(count[hashed].max(initial=1))]
        s.sort(axis=1)
        _fill_sorted(out, rows[hashed], s, lo, scale, limit)
        rows = rows[~hashed]
    s = v[rows]
    s.sort(axis=1)
    _fill_sorted(out, rows, s, lo, scale, limit)
    return out


def _fill_sorted(out: list[int | None], rows: np.ndarray, s: np.ndarray, lo: np.ndarray, scale: np.ndarray,
                 limit: int) -> None:
    """out[rows[i]] = the answer of row i of s (c, k): values of row rows[i] (int64 (c,), a positive span), sorted,
    each of its distinct values at least once (the whole row, or its distinct values padded with its largest);
    lo, scale: float64 (C,) of all rows. Rows whose middle values already need too fine a grid (_too_fine) stay
    None; only the distinct values of the others (_distinct) are rescaled and tested."""
    if len(rows) == 0:
        return
    fine = _too_fine(s, lo[rows], scale[rows], limit)
    rows, s = rows[~fine], s[~fine]
    if len(rows) == 0:
        return
    f = _distinct(s)
    f = np.subtract(f, lo[rows, None], dtype=np.float64)
    f /= scale[rows, None]
    for r, m in zip(rows, _sorted_rows(f, limit)):
        out[r] = m


def _distinct(s: np.ndarray) -> np.ndarray:
    """Rows sorted ascending (c, n) cut to their distinct values, each row padded with its largest value to the
    most distinct values of any row (c, k); `s` itself when that saves less than half of it."""
    keep = np.empty(s.shape, bool)
    keep[:, 0] = True
    np.not_equal(s[:, 1:], s[:, :-1], out=keep[:, 1:])
    k = np.count_nonzero(keep, axis=1)
    width = int(k.max())
    if 2 * width > s.shape[1]:
        return s
    out = np.repeat(s[:, -1:], width, axis=1)
    out[np.arange(width) < k[:, None]] = np.compress(keep.ravel(), s.ravel())  # row-major, as s[keep]
    return out


def _too_fine(s: np.ndarray, lo: np.ndarray, scale: np.ndarray, limit: int) -> np.ndarray:
    """bool (c,): rows of sorted values s (c, n) (rescaled as (v - lo) / scale, float64 (c,) each) that need a grid
    of more than `limit` steps, told from _PROBE + 1 adjacent values in the middle of each row: a gap there wider
    than 2 GRID_TOL bounds the smallest such gap of the row from above, hence the row's first candidate
    (_sorted_rows, non-increasing in that gap) from below; a first candidate beyond `limit` means no grid. Rows
    with repeated values left out (and padded with their largest) keep this: their adjacent values are adjacent
    in the whole row too, so each of their gaps is one of its gaps (padding adds zero gaps only)."""
    lo_col = max(0, (s.shape[1] - _PROBE - 1) // 2)
    f = np.subtract(s[:, lo_col:lo_col + _PROBE + 1], lo[:, None], dtype=np.float64) / scale[:, None]
    gaps = np.diff(f, axis=1)
    with np.errstate(divide="ignore"):
        first = np.maximum(1.0, np.ceil(1.0 / (np.where(gaps > 2 * GRID_TOL, gaps, np.inf).min(1, initial=np.inf)
                                               + 2 * GRID_TOL) - 1e-9))
    return first > limit


def _too_many_points(v: np.ndarray, lo: np.ndarray, scale: np.ndarray, limit: int) -> np.ndarray:
    """bool (c,): rows of values v (c, n) (rescaled as (v - lo) / scale, float64 (c,) each) that no grid of at
    most `limit` steps holds, because a spread sample of _SAMPLE of their values already has more than `limit`
    gaps wider than 2 GRID_TOL (values that far apart lie on different grid points; a 1e-6 relative margin covers
    rounding). All False when the sample is too small to tell. The sample is sorted in v's own dtype (numpy sorts
    float32 twice as fast as float64) and rescaled after: the rescaling (exact cast, subtraction, division by a
    positive scale, each rounded monotonically) never reverses two values, so the gaps are those of the rescaled
    sample sorted. (It makes NaNs, which sort last, of infinite values only: of every value when lo is -inf, else
    of the largest values, those sorted last anyway.)"""
    if v.shape[1] <= _SAMPLE or limit >= _SAMPLE:
        return np.zeros(len(v), bool)
    sample = np.take(v, _spread(v.shape[1], _SAMPLE), axis=1)
    sample.sort(axis=1)
    f = sample.astype(np.float64)
    f -= lo[:, None]
    f /= scale[:, None]
    return np.count_nonzero(f[:, 1:] - f[:, :-1] > 2 * GRID_TOL * (1 + 1e-6), axis=1) > limit


def _sorted_rows(f: np.ndarray, limit: int) -> list[int | None]:
    """grid_intervals(row, limit) of each row of sorted rescaled values f (c, n) with a positive span."""
    gaps = np.diff(f, axis=1)
    big = gaps > 2 * GRID_TOL
    count = big.sum(1)
    with np.errstate(divide="ignore"):
        first = np.maximum(1.0, np.ceil(1.0 / (np.where(big, gaps, np.inf).min(1, initial=np.inf) + 2 * GRID_TOL)
                                        - 1e-9))
    grid = (count > 0) & (count <= MAX_INTERVALS)
    fit, start = _window_fit(f, first, grid, limit)
    return [None if not grid[r] else int(fit[r]) if fit[r] else _scan(f[r], int(start[r]), limit)
            for r in range(len(f))]


def _window_fit(f: np.ndarray, first: np.ndarray, grid: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, start), int64 (c,) each, for the rows of sorted rescaled values f (c, n) where `grid` is set: fit is
    the smallest of first, ..., first + _WINDOW - 1 (at most `limit`) whose grid holds the row, 0 when none does;
    then `start` is where a scan must go on (every smaller candidate has failed). The candidates are tested on a
    spread sample of _PROBE values of each row (a necessary condition) and only the smallest that passes on all
    values."""
    probe = f[:, _spread(f.shape[1], _PROBE)]
    cand = np.zeros(len(f))
    for j in range(_WINDOW - 1, -1, -1):  # smaller candidates overwrite larger ones
        m = first + j
        ok = grid & (m <= limit)
        ok[ok] = _fits_rows(probe[ok], m[ok])
        cand[ok] = m[ok]
    rows = np.flatnonzero(cand > 0)
    hit = np.zeros(len(f), bool)
    hit[rows] = _fits_rows(f[rows], cand[rows])
    fit = np.where(hit, cand, 0).astype(np.int64)
    start = np.where(cand > 0, cand + 1, first + _WINDOW).astype(np.int64)
    return fit, start


def _spread(n: int, k: int) -> np.ndarray:
    """int64 indices of min(n, k) positions spread evenly over 0..n - 1 (both ends included)."""
    k = min(n, k)
    return (np.arange(k, dtype=np.int64) * (n - 1)) // max(1, k - 1)


def _fits_rows(f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """bool (c,): row i of f (c, n) lies on the grid of m[i] steps (the test of the module docstring)."""
    scaled = f * m[:, None]
    dev = np.round(scaled)
    np.subtract(scaled, dev, out=dev)
    np.abs(dev, out=dev)
    return dev.max(1, initial=0.0) <= GRID_TOL * m


def _fits(f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """bool (k,): the sorted rescaled values f (n,) lie on the grid of m[j] steps, for each candidate m (k,)."""
    scaled = f[None, :] * m[:, None]
    return np.abs(scaled - np.round(scaled)).max(1) <= GRID_TOL * m


def _scan(f: np.ndarray, first: int, limit: int) -> int | None:
    """Smallest m in first..limit whose grid holds the sorted rescaled values f (n,), else None. Blocks of
    candidates are tested on a spread subset of f first; only the candidates it keeps are tested on all of f."""
    if first > limit:
        return None
    probe = f[_spread(f.size, _PROBE)]
    for start in range(first, limit + 1, _BLOCK):
        m = np.arange(start, min(start + _BLOCK, limit + 1), dtype=np.float64)
        for cand in m[_fits(probe, m)]:
            if _fits(f, np.array([cand]))[0]:
                return int(cand)
    return None
