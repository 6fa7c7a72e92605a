"""The per-channel weight grid of the fit rule (workloads.lowering.fit): the fewest steps of an affine grid that
holds a channel's values, for one channel or for every output channel of a weight at once.

A channel's values v, rescaled to f = (v - min) / (max - min) in [0, 1], lie on a grid of m steps when every
f is within GRID_TOL x m of a multiple of 1/m, i.e. |f m - round(f m)| <= GRID_TOL m. The smallest m is searched
from a lower bound set by the smallest gap between distinct values (a quantized channel almost always fits that
first candidate); the rows of a weight are searched in one compiled pass each (grid_kernel.sorted_intervals),
grid_intervals (numpy, one channel) being the plain form of the rule the tests hold them to.
A row of more than _FEW values has its distinct values collected on buckets over its range, or else by hashing
(workloads.lowering.grid_kernel; 0.0 and -0.0 as one), and only they are sorted, in the row's own dtype (a
quantized channel holds at most 2^b of them); other rows are sorted whole. Either way they are rescaled to float64 only
then: repeated values add zero gaps and no deviation, so every gap and every fit test is as on the whole row, and
so is the answer (the smallest m from the first candidate on whose grid every value lies).
"""
from __future__ import annotations

import numpy as np

from workloads.lowering.grid_kernel import distinct_rows, sample_off_grid, sorted_intervals

#: tolerance of the grid test, as a fraction of a channel's range (max - min)
GRID_TOL = 1e-5
#: most steps a grid may have over a channel's range (its step >= 20 x GRID_TOL x range)
MAX_INTERVALS = 5000
#: bits of weights on no grid (floats)
FLOAT_BITS = 32
#: candidate steps tested together while scanning
_BLOCK = 256
#: values of a channel tested first against a block of candidates (a necessary condition, cheap to reject)
_PROBE = 64
#: values of a channel whose spread tells early that it needs more than a small grid (_too_many_points)
_SAMPLE = 512
#: a smaller sample tried first (_off_grid): it refuses almost every float channel for an 8-bit grid, at an
#: eighth of the sort
_PRE_SAMPLE = 64
#: most distinct values of a row collected by hashing (more: the row is sorted whole), done in rows of more values
#: only (numpy sorts rows of up to a few hundred values at 1-2 ns a value, as fast as hashing; longer ones at 4-11)
_FEW = 512
#: most elements of one chunk of rows searched at once (bounds the memory of its sorted copy)
_CHUNK_ELEMENTS = 1 << 22


#: a channel of fewer stored values than this may lie on a grid of many steps by chance (3 or 4 float weights fit
#: one of a few thousand steps within GRID_TOL), so such channels count as a grid only on evidence (chance_of_grid)
SHORT_ROW = 16
#: the largest typical chance (chance_of_grid) that a channel lies on its grid by accident for the grid to be believed
CHANCE_MAX = 1e-2


def chance_of_grid(rows: np.ndarray, steps: np.ndarray) -> float:
    """Chance that random values would lie on the channels' grids as closely as `rows` (float, (C, n): each
    channel's values, repeats allowed) lie on theirs of `steps` (int (C,)): per channel of k distinct values, m
    steps and largest deviation d (as a fraction of its range, at least 2^-24: float32's resolution), the
    chance that its k - 2 inner values come within d of one of the j + 1 points of some grid of j <= m steps
    (its two ends always are), sum_j (2 d j)^(k - 2) <= (2 d)^(k - 2) (m + 1)^(k - 1) / (k - 1), capped at 1;
    returns the geometric mean over the channels: a quantized weight's channels all lie on their grids to float32's
    resolution, a float weight's few that fit a small grid by accident are outweighed by the rest. Channels of 2
    values or fewer, or of m < 2, are left out (1.0 when none is left)."""
    v = np.asarray(rows, np.float64)
    lo, span = v.min(axis=1), np.ptp(v, axis=1)
    m = np.asarray(steps, np.float64)
    k = 1 + np.count_nonzero(np.diff(np.sort(v, axis=1), axis=1), axis=1)
    use = (k > 2) & (m >= 2) & (span > 0)
    if not use.any():
        return 1.0
    v, lo, span, m, k = v[use], lo[use], span[use], m[use], k[use].astype(np.float64)
    scaled = (v - lo[:, None]) / span[:, None] * m[:, None]
    d = np.maximum(np.abs(scaled - np.round(scaled)).max(axis=1) / m, 2.0 ** -24)
    log_p = (k - 2) * np.log(2 * d) + (k - 1) * np.log(m + 1) - np.log(k - 1)
    return float(np.exp(np.minimum(log_p, 0.0).mean()))


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


def bits_for_steps(steps: np.ndarray) -> np.ndarray:
    """bits_for_intervals of every entry of an int array of steps (-1 for None, as row_steps gives them):
    int64, same shape. The bit length is frexp's exponent, exact for integers below 2^53."""
    m = np.asarray(steps, np.int64)
    return np.where(m < 0, FLOAT_BITS, np.maximum(1, np.frexp(np.maximum(m, 0).astype(np.float64))[1]))


def row_intervals(rows: np.ndarray, limit: int = MAX_INTERVALS) -> list[int | None]:
    """[grid_intervals(r, limit) for r in rows] of a float (C, n) array (C channels of n values), equal value for
    value (row_steps, None for its -1)."""
    return [None if m < 0 else m for m in row_steps(rows, limit).tolist()]


def row_steps(rows: np.ndarray, limit: int = MAX_INTERVALS) -> np.ndarray:
    """row_intervals as an int64 array (C,), -1 for None: chunks of rows sorted by numpy, then searched row by row
    in one compiled pass each (_fill_sorted). float32 rows stay float32 until rescaled (sorting and min/max
    commute with the exact cast to float64); other dtypes are taken as float64."""
    v = np.asarray(rows)
    v = np.ascontiguousarray((v if v.dtype == np.float32 else np.asarray(v, np.float64)).reshape(len(v), -1))
    if v.shape[1] == 0:
        return np.zeros(len(v), np.int64)
    step = max(1, _CHUNK_ELEMENTS // v.shape[1])
    return np.concatenate([_rows_chunk(v[lo:lo + step], min(limit, MAX_INTERVALS)) for lo in range(0, len(v), step)]
                          or [np.zeros(0, np.int64)])


def _rows_chunk(v: np.ndarray, limit: int) -> np.ndarray:
    """row_intervals of float32/float64 (c, n) C-contiguous rows, n >= 1, limit <= MAX_INTERVALS. Only the rows
    with a positive span are searched, on their values sorted (_fill_sorted): the distinct ones distinct_rows
    collects when n > _FEW, or the whole row when it has more than _FEW of them or n <= _FEW; _too_many_points
    drops the rows it proves off every grid before they are hashed or sorted whole. When the first of them has
    at most _FEW distinct values (quantized weights: the fit of weight_fit "quantize"), every row's distinct
    values are collected first and only the rows with more go through _too_many_points, whose sample sort then
    costs nothing on grid-like rows; otherwise (float weights) it goes first. The answers are the same either
    way: the test only proves what the search would find."""
    lo = v.min(1).astype(np.float64)
    span = v.max(1).astype(np.float64) - lo
    scale = np.where(span > 0.0, span, 1.0)
    out = np.where(span <= 0.0, 0, -1)  # -1: none (a NaN span too)
    rows = np.flatnonzero(span > 0.0)
    first = rows[:1]
    if v.shape[1] > _FEW and len(rows) and distinct_rows(v, first, _FEW, lo[first], span[first])[1][0] <= _FEW:
        rows = _fill_distinct(out, v, rows, lo, span, scale, limit)
        rows = rows[~_off_grid(v, rows, lo, scale, limit)]
    else:
        rows = rows[~_off_grid(v, rows, lo, scale, limit)]
        if v.shape[1] > _FEW:
            rows = _fill_distinct(out, v, rows, lo, span, scale, limit)
    s = v[rows]
    s.sort(axis=1)
    _fill_sorted(out, rows, s, lo, scale, limit)
    return out


def _fill_distinct(out: np.ndarray, v: np.ndarray, rows: np.ndarray, lo: np.ndarray, span: np.ndarray,
                   scale: np.ndarray, limit: int) -> np.ndarray:
    """Fill out[r] for the rows r of `rows` (int64, positive spans) of v (c, n) with at most _FEW distinct values,
    searched on those values sorted (distinct_rows; only the rows that do not come ascending are sorted: a
    quantized channel's, collected on buckets, do, and sorting them would give them back as they are); returns
    the other rows."""
    few, count = distinct_rows(v, rows, _FEW, lo[rows], span[rows])
    hashed = count <= _FEW
    s = few[hashed, :int(count[hashed].max(initial=1))]
    unsorted = ~np.all(s[:, 1:] >= s[:, :-1], axis=1)  # rows collected on buckets come ascending (grid_kernel)
    if unsorted.all():
        s.sort(axis=1)
    elif unsorted.any():
        s[unsorted] = np.sort(s[unsorted], axis=1)
    _fill_sorted(out, rows[hashed], s, lo, scale, limit)
    return rows[~hashed]


def _fill_sorted(out: np.ndarray, rows: np.ndarray, s: np.ndarray, lo: np.ndarray, scale: np.ndarray,
                 limit: int) -> None:
    """out[rows[i]] = the answer of row i of s (c, k) (-1 for none; out int64 (C,)): values of row rows[i]
    (int64 (c,), a positive span), sorted, each of its distinct values at least once (the whole row, or its
    distinct values padded with its largest); lo, scale: float64 (C,) of all rows. One compiled pass per row
    (workloads.lowering.grid_kernel.sorted_intervals: the rule of grid_intervals, whose numpy passes cost ~13 ns
    a value on 384-value rows)."""
    if len(rows):
        out[rows] = sorted_intervals(s, lo[rows], scale[rows], limit, GRID_TOL, MAX_INTERVALS)


def _off_grid(v: np.ndarray, rows: np.ndarray, lo: np.ndarray, scale: np.ndarray, limit: int) -> np.ndarray:
    """bool (r,): the rows of `rows` that _too_many_points proves off every grid of at most `limit` steps from a
    sample of _PRE_SAMPLE values, or else from one of _SAMPLE (rows of more than _SAMPLE values). Either answer is
    a proof, so the rows kept are the same as with the larger sample alone or fewer (a row of at most _SAMPLE
    values may now be refused before its whole-row search, which would find no grid either)."""
    off = _too_many_points(v, rows, lo, scale, limit, _PRE_SAMPLE)
    if v.shape[1] > _SAMPLE and not off.all():
        off[~off] = _too_many_points(v, rows[~off], lo, scale, limit, _SAMPLE)
    return off


def _too_many_points(v: np.ndarray, rows: np.ndarray, lo: np.ndarray, scale: np.ndarray, limit: int,
                     sample: int = _SAMPLE) -> np.ndarray:
    """bool (r,): which of the rows `rows` (int64 (r,)) of values v (c, n) (rescaled as (v - lo) / scale, lo and
    scale float64 (c,)) no grid of at most `limit` steps holds, told from a spread sample of `sample` of their
    values (all False when n <= sample: such rows are searched whole, cheaply). Two tests, each a proof (a 1e-6
    relative margin covers rounding): (count) more than `limit` gaps of the sorted sample wider than 2 GRID_TOL
    (values that far apart lie on different grid points); (gap) a gap g with 2 GRID_TOL < g < 1 / limit -
    2 GRID_TOL (two values within GRID_TOL of grid points k / m, m <= limit, are 2 GRID_TOL apart at most on one
    point and 1 / m - 2 GRID_TOL apart at least on two). A float channel fails the gap test at once, so the fit
    of float weights (limit MAX_INTERVALS) skips hashing and sorting their rows. The sample is sorted in v's own
    dtype (numpy sorts float32 twice as fast as float64), then rescaled and tested in one compiled pass per row
    (grid_kernel.sample_off_grid): the rescaling (exact cast, subtraction, division by a positive scale, each
    rounded monotonically) never reverses two values, so the gaps are those of the rescaled sample sorted. (It
    makes NaNs, which sort last, of infinite values only: of every value when lo is -inf, else of the largest
    values, those sorted last anyway; NaN gaps pass neither test.)"""
    if v.shape[1] <= sample or len(rows) == 0:
        return np.zeros(len(rows), bool)
    spread = _spread(v.shape[1], sample)
    picked = np.take(v, spread, axis=1) if len(rows) == len(v) else v[np.ix_(rows, spread)]
    picked.sort(axis=1)
    # (count) can only refuse below sample - 1: the sample has that many gaps; the rest is one compiled pass per row
    return sample_off_grid(picked, lo[rows], scale[rows], 2 * GRID_TOL * (1 + 1e-6),
                           (1.0 / limit - 2 * GRID_TOL) * (1 - 1e-6), limit)


def _spread(n: int, k: int) -> np.ndarray:
    """int64 indices of min(n, k) positions spread evenly over 0..n - 1 (both ends included)."""
    k = min(n, k)
    return (np.arange(k, dtype=np.int64) * (n - 1)) // max(1, k - 1)


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
