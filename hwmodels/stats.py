"""Uncertainty over samples: seeded bootstrap confidence intervals of a mean and of a ratio of means
(scipy.stats.bootstrap, percentile method; Efron & Tibshirani, "An Introduction to the Bootstrap", 1993).

Results are means over a finite set of test samples; these intervals say how far the mean could move with other
samples from the same distribution, so a claim can be judged on an interval, not on one pair of means.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

from hwmodels.kernels.sums import SUMS_BLOCK, resampled_means

#: bootstrap resamples of every interval (enough for the 2.5 / 97.5 % percentiles to be stable to ~1 %)
N_RESAMPLES = 2000


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: {level} must be in (0, 1)")


def mean_ci(values: np.ndarray, level: float = 0.95, n_resamples: int = N_RESAMPLES,
            seed: int = 0) -> tuple[float, float]:
    """(low, high) percentile-bootstrap confidence interval of the mean of `values` (1-D), at `level`.

    Identical values give a zero-width interval; fewer than 2 values give (nan, nan). Raises ValueError for a
    level outside (0, 1).
    """
    _check_level(level)
    v = np.asarray(values, float).ravel()
    if len(v) < 2:
        return float("nan"), float("nan")
    if np.all(v == v[0]):
        return float(v[0]), float(v[0])
    from scipy import stats  # here, not at module level: scipy.stats takes ~0.5 s to import (hwmodels, the CLI)
    res = stats.bootstrap((v,), np.mean, confidence_level=level, n_resamples=n_resamples, method="percentile",
                          vectorized=True, random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@lru_cache(maxsize=8)
def _draws(seed: int, n_resamples: int, n: int) -> np.ndarray:
    """Read-only int64 (n_resamples, n) bootstrap resample indices of a generator seeded with `seed`: the draws
    of scipy.stats.bootstrap's percentile method (a pure function of its arguments, memoised: a sweep asks for
    the same draws at every design point)."""
    idx = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    idx.setflags(write=False)
    return idx


def _means(v: np.ndarray, idx: np.ndarray, rows: int = 256) -> np.ndarray:
    """np.mean(v[idx], axis=-1), bit for bit (each row is summed alone): a row at a time by the compiled
    hwmodels.kernels.sums.resampled_means for rows of up to 128 values, else gathered `rows` resamples at a
    time so that the gathered block stays in cache."""
    if idx.shape[1] <= SUMS_BLOCK:
        return resampled_means(np.ascontiguousarray(v, np.float64), np.ascontiguousarray(idx, np.int64))
    return np.concatenate([np.mean(v.take(idx[i:i + rows]), axis=-1) for i in range(0, len(idx), rows)])


def linear_quantiles(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """scipy.stats.quantile(x, p, axis=-1) of a 2-D float64 x (rows, n >= 1) at the probabilities p (k,) in [0, 1]
    with its default method 'linear' (Hyndman & Fan 1996, definition 7), bit for bit: the same sort and the same
    elementwise operations as scipy's _quantile_hf, without its per-call input checks and array-API dispatch
    (about 1 ms of each SimResult.as_row, measured; a sweep reads one per design point). Rows holding a NaN give
    NaN. Returns float64 (rows, k)."""
    y = np.sort(x, axis=-1)
    p = np.broadcast_to(p, (x.shape[0], len(p)))
    n = np.asarray(x.shape[-1], dtype=x.dtype)
    jg = p * n + (1 - p)
    jp1 = jg // 1
    j = jp1 - 1
    g = jg % 1
    g[j < 0] = 0
    j, jp1 = np.clip(j, 0.0, n - 1), np.clip(jp1, 0.0, n - 1)
    out = ((1 - g) * np.take_along_axis(y, j.astype(np.int64), axis=-1)
           + g * np.take_along_axis(y, jp1.astype(np.int64), axis=-1))
    out[np.isnan(y).any(axis=-1)] = np.nan
    return out


def mean_cis(columns: dict[str, np.ndarray], level: float = 0.95, n_resamples: int = N_RESAMPLES,
             seed: int = 0) -> dict[str, tuple[float, float]]:
    """{name: mean_ci(values, level, n_resamples, seed)} of equal-length columns, bit for bit, drawing the
    resample indices once for all of them (mean_ci seeds every interval alike, so they share the draws; the
    draws, the resampled means and the quantiles (linear_quantiles: scipy.stats.quantile's, bit for bit) are
    those of scipy.stats.bootstrap's percentile method; the quantiles of all varied columns are taken at once,
    row by row as one at a time).
    Raises ValueError for a level outside (0, 1) or columns of different lengths."""
    _check_level(level)
    cols = {k: np.asarray(v, float).ravel() for k, v in columns.items()}
    if len({len(v) for v in cols.values()}) > 1:
        raise ValueError(f"mean_cis: columns differ in length: { {k: len(v) for k, v in cols.items()} }")
    varied = [k for k, v in cols.items() if len(v) >= 2 and not np.all(v == v[0])]
    out = {k: mean_ci(v, level, n_resamples, seed) for k, v in cols.items() if k not in varied}
    if varied:
        idx = _draws(seed, n_resamples, len(cols[varied[0]]))
        theta = np.stack([_means(cols[k], idx) for k in varied])  # (varied, n_resamples)
        alpha = np.asarray((1 - level) / 2, dtype=theta.dtype)
        ci = linear_quantiles(theta, np.stack((alpha, 1 - alpha), axis=-1))
        out.update({k: (float(lo), float(hi)) for k, (lo, hi) in zip(varied, ci)})
    return {k: out[k] for k in cols}


def _ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) / np.mean(b, axis=axis)


def ratio_ci(a: np.ndarray, b: np.ndarray, paired: bool, level: float = 0.95, n_resamples: int = N_RESAMPLES,
             seed: int = 0) -> tuple[float, float, float]:
    """(ratio, low, high): mean(a) / mean(b) and its percentile-bootstrap confidence interval at `level`.

    paired: a[i] and b[i] were measured on the same input i (resampled together, which removes the spread the
    two share); otherwise a and b are resampled independently. A group of one value is held fixed (a
    deterministic quantity such as a parameter count). Resamples whose b mean is 0 give inf ratios, kept as bounds
    (an interval [2, inf] is above 1), and 0 / 0 resamples are left out (`quantile`). Raises ValueError when
    paired groups differ in length or the level is outside (0, 1).
    """
    _check_level(level)
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if paired and len(a) != len(b):
        raise ValueError(f"ratio_ci: paired groups need equal lengths, got {len(a)} and {len(b)}")
    ratio = float(np.mean(a) / np.mean(b)) if len(a) and len(b) and np.mean(b) != 0 else float("nan")
    if not np.isfinite(ratio):
        return ratio, float("nan"), float("nan")
    if (len(a) < 2 or np.all(a == a[0])) and (len(b) < 2 or np.all(b == b[0])):
        return ratio, ratio, ratio
    rng = np.random.default_rng(seed)
    tail = (1.0 - level) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's DegenerateDataWarning on inf / NaN resamples: handled below
        if paired:
            from scipy import stats  # see mean_ci
            res = stats.bootstrap((a, b), _ratio, paired=True, vectorized=True, confidence_level=level,
                                  n_resamples=n_resamples, method="percentile", random_state=rng)
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
            if np.isfinite(low) and np.isfinite(high):
                return ratio, low, high
            ratios = res.bootstrap_distribution
        else:
            draws = [_resampled_means(x, n_resamples, rng) for x in (a, b)]
            ratios = draws[0] / draws[1]
    return ratio, quantile(ratios, tail), quantile(ratios, 1.0 - tail)


def quantile(x: np.ndarray, q: float) -> float:
    """The q-quantile of resampled ratios x (numpy's linear interpolation) where some ratios are inf (a resample
    whose b mean is 0) or NaN (0 / 0): NaN ratios are left out (they say nothing about the ratio), and a quantile
    that lies at or interpolates towards +inf is +inf (numpy gives NaN for inf - inf), towards -inf -inf. NaN when
    every ratio is NaN."""
    x = np.asarray(x, float).ravel()
    x = np.sort(x[~np.isnan(x)])
    if not len(x):
        return float("nan")
    if np.all(np.isfinite(x)):
        return float(np.quantile(x, q))
    h = (len(x) - 1) * q
    lo, hi = int(np.floor(h)), int(np.ceil(h))
    if h == lo or x[lo] == x[hi]:
        return float(x[lo])
    if np.isinf(x[lo]) or np.isinf(x[hi]):
        return float(x[hi] if np.isinf(x[hi]) and x[hi] > 0 else x[lo])
    return float(x[lo] + (h - lo) * (x[hi] - x[lo]))


def _resampled_means(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Means of n bootstrap resamples of x (a constant array when x has one value)."""
    if len(x) < 2:
        return np.full(n, float(np.mean(x)))
    return x[rng.integers(0, len(x), size=(n, len(x)))].mean(axis=1)
