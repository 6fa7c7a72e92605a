"""The lowering's compiled kernels give the bytes of plain computations: the merge of populations' events into the
trace's rows (workloads.lowering.events_kernel) against a row-by-row Python loop, the per-channel uniform
quantization (workloads.lowering.fit_kernel) against the whole-array numpy formula, and the early "too many
points" test of the grid search (sample sorted before it is rescaled) against the sample rescaled, then sorted, and
a stage's float32 weights in one pass (workloads.lowering.fold_kernel) against the eager float64 products."""
import numpy as np
import pytest
import torch

from workloads.lowering import fit, grid
from workloads.lowering.events import Events, merge_events
from workloads.lowering.events_kernel import copy_rows
from workloads.lowering.fit_kernel import uniform_rows
from workloads.lowering.fold_kernel import stage_weight_f32
from workloads.lowering.jobs import Jobs
from workloads.lowering.values import Stage


def _random_events(rng: np.random.Generator, n_t: int, n_b: int, size: int, density: float) -> Events:
    """Events of one population of `size` neurons: (t, b) rows with random ascending neurons (some rows empty),
    graded float32 values."""
    rows = [np.flatnonzero(rng.random(size) < density * rng.integers(0, 2)) for _ in range(n_t * n_b)]
    indices = np.concatenate(rows + [np.zeros(0, np.int64)]).astype(np.int32)
    counts = np.array([len(r) for r in rows], np.int64)
    return Events(counts, indices, rng.normal(size=len(indices)).astype(np.float32))


def _merged_by_rows(events: dict[int, Events], n_p: int, n_t: int, n_b: int):
    """The trace's rows (sample, t, population) built one by one: (counts, indices, values)."""
    counts, indices, values = [], [], []
    for b in range(n_b):
        for t in range(n_t):
            for p in range(n_p):
                ev = events.get(p)
                row = t * n_b + b
                lo = 0 if ev is None else int(ev.counts[:row].sum())
                n = 0 if ev is None else int(ev.counts[row])
                counts.append(n)
                indices += [] if ev is None else ev.indices[lo:lo + n].tolist()
                values += [] if ev is None else ev.values[lo:lo + n].tolist()
    return np.array(counts, np.int64), np.array(indices, np.int32), np.array(values, np.float32)


@pytest.mark.parametrize("n_p, n_t, n_b", [(1, 1, 1), (4, 3, 2), (6, 5, 7), (3, 1, 9)])
@pytest.mark.parametrize("with_values", [False, True])
def test_merge_events_equals_the_rows_merged_one_by_one(n_p, n_t, n_b, with_values):
    rng = np.random.default_rng(n_p * 100 + n_t * 10 + n_b)
    events = {p: _random_events(rng, n_t, n_b, int(rng.integers(1, 40)), float(rng.uniform(0.05, 0.9)))
              for p in range(n_p) if p != 1}  # population 1 records nothing
    if n_p > 2:
        events[2] = Events(np.zeros(n_t * n_b, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
    counts, indices, values = merge_events(events if with_values else {
        p: Events(e.counts, e.indices, None) for p, e in events.items()}, n_p, n_t, n_b, with_values)
    want_counts, want_indices, want_values = _merged_by_rows(events, n_p, n_t, n_b)
    assert counts.dtype == np.int64 and indices.dtype == np.int32
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(indices, want_indices)
    if with_values:
        assert values.dtype == np.float32 and values.tobytes() == want_values.tobytes()
    else:
        assert values is None


def test_merge_events_gives_events_without_values_ones():
    rng = np.random.default_rng(7)
    n_p, n_t, n_b = 4, 3, 5
    events = {p: _random_events(rng, n_t, n_b, 30, 0.4) for p in range(n_p)}
    binary = {p: Events(e.counts, e.indices, None) if p % 2 else e for p, e in events.items()}
    counts, indices, values = merge_events(binary, n_p, n_t, n_b, True)
    want = {p: Events(e.counts, e.indices, np.ones(len(e.indices), np.float32)) if p % 2 else e
            for p, e in events.items()}
    want_counts, want_indices, want_values = _merged_by_rows(want, n_p, n_t, n_b)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(indices, want_indices)
    assert values.tobytes() == want_values.tobytes() and (values != 1.0).any()


def test_merge_events_of_no_events():
    counts, indices, values = merge_events({}, 3, 2, 2, True)
    assert counts.shape == (12,) and not counts.any() and indices.shape == (0,) and values.shape == (0,)


@pytest.mark.parametrize("counts, start", [([2, -1, 2], [0, 2, 2]), ([1, 1, 2], [0, 1, 2]), ([1, 1, 1], [0, 1, 5]),
                                           ([1, 2, 0], [-1, 1, 3])])
def test_copy_rows_rejects_rows_that_do_not_fit(counts, start):
    dst = np.full(5, 7, np.int32)
    with pytest.raises(ValueError, match="do not fit"):
        copy_rows(np.arange(3, dtype=np.int32), np.array(counts), np.array(start), dst)
    assert (dst == 7).all()


def _quantize_formula(w: np.ndarray, bits: int, keep: np.ndarray) -> tuple[np.ndarray, float]:
    """The whole-array numpy quantization: q = rint(w / step) * step in float64 (w / 1.0 where step is 0), cast to
    w's dtype, rows `keep` restored; the error max |q - w| in float64."""
    w64 = w.astype(np.float64)
    step = np.abs(w64).max(1, keepdims=True) / (2 ** (bits - 1) - 1)
    q = (np.rint(w64 / np.where(step > 0, step, 1.0)) * step).astype(w.dtype)
    q[keep] = w[keep]
    return q, float(np.abs(q.astype(np.float64) - w64).max())


def _weights(rng: np.random.Generator, c: int, n: int, dtype, bits: int) -> np.ndarray:
    """(c, n) weights of `dtype`: normal, all-zero rows (step 0), rows of zeros and -0.0, rows already on the grid,
    a tie (w / step exactly k + 0.5) and very small and large scales."""
    w = rng.normal(size=(c, n)) * rng.choice([1e-30, 1e-3, 1.0, 1e20], size=(c, 1))
    w[::5] = 0.0
    w[1::7, ::2] = -0.0
    levels = 2 ** (bits - 1) - 1
    w[2::6] = rng.integers(-levels, levels + 1, size=w[2::6].shape) * 0.125
    w = w.astype(dtype)
    if n >= 2 and c >= 4:
        w[3, 0], w[3, 1] = 1.0, 2.5 / levels  # |w| max 1.0: w[3, 1] / step = 2.5, rounded to 2
    return w


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bits", [2, 3, 4, 8, 12])
@pytest.mark.parametrize("c, n", [(1, 1), (9, 7), (31, 64), (64, 577)])
def test_uniform_rows_equals_the_whole_array_formula(dtype, bits, c, n):
    rng = np.random.default_rng(bits * 1000 + c * 10 + n)
    w = _weights(rng, c, n, dtype, bits)
    for keep in (np.zeros(c, bool), rng.random(c) < 0.3, np.ones(c, bool)):
        q, err = fit._uniform_rows(w, bits, keep)
        want, want_err = _quantize_formula(w, bits, keep)
        assert q.dtype == dtype and q.shape == w.shape
        assert q.tobytes() == want.tobytes() and err == want_err
        assert isinstance(err, float) and (err == 0.0) == bool(keep.all() or (want == w).all())


def test_uniform_rows_tie_rounds_half_to_even():
    w = np.array([[3.0, 2.5, 1.5, -0.5, 0.5]], np.float32)  # 3 bits: 3 levels of step 1.0 each side of 0
    q, err = fit._uniform_rows(w, 3, np.zeros(1, bool))
    assert q.tobytes() == np.array([[3.0, 2.0, 2.0, -0.0, 0.0]], np.float32).tobytes() and err == 0.5


def test_uniform_rows_of_empty_and_strided_arrays():
    for shape in ((0, 5), (3, 0), (0, 0)):
        q, err = fit._uniform_rows(np.zeros(shape, np.float32), 4, np.zeros(shape[0], bool))
        assert q.shape == shape and q.dtype == np.float32 and err == 0.0
    w = np.random.default_rng(1).normal(size=(6, 10)).astype(np.float32)
    q, err = fit._uniform_rows(w[::2, ::3], 4, np.zeros(3, bool))
    want, want_err = _quantize_formula(np.ascontiguousarray(w[::2, ::3]), 4, np.zeros(3, bool))
    assert q.tobytes() == want.tobytes() and err == want_err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_rows_of_nan_and_inf_do_not_crash(dtype):
    w = np.array([[1.0, np.nan, 0.5], [0.5, -1.0, 0.25], [np.inf, 1.0, -2.0], [-np.inf, 0.0, 3.0]], dtype)
    for keep in (np.zeros(4, bool), np.array([False, True, False, True])):
        q, err = fit._uniform_rows(w, 8, keep)
        with np.errstate(invalid="ignore"):
            want, _ = _quantize_formula(w, 8, keep)
        np.testing.assert_array_equal(q, want)  # NaNs in the same places
        assert np.isnan(err)
    q, err = fit._uniform_rows(w[1:2], 8, np.zeros(1, bool))
    assert np.isfinite(err) and q.tobytes() == _quantize_formula(w[1:2], 8, np.zeros(1, bool))[0].tobytes()


def test_uniform_rows_on_threads_equals_serial():
    rng = np.random.default_rng(3)
    arrays = [_weights(rng, 40, 300, dtype, 8) for dtype in (np.float32, np.float64) * 4]
    keep = np.zeros(40, bool)
    serial = [uniform_rows(a, 127, keep) for a in arrays]
    with Jobs(2) as jobs:
        threaded = jobs.map(lambda a: uniform_rows(a, 127, keep), arrays)
    assert all(q.tobytes() == q2.tobytes() and e == e2 for (q, e), (q2, e2) in zip(serial, threaded))


def _sample_gaps_rescaled_first(v: np.ndarray, lo: np.ndarray, scale: np.ndarray, limit: int,
                                 sample: int = grid._SAMPLE) -> np.ndarray:
    """The rule of grid._too_many_points as its docstring states it: a spread sample of `sample` values per row
    (none refused when a row has no more values than that), rescaled to float64 (v - lo) / scale, then sorted;
    more than `limit` gaps above 2 GRID_TOL (1 + 1e-6) when limit < sample, or a gap between that and
    (1 / limit - 2 GRID_TOL) (1 - 1e-6)."""
    if v.shape[1] <= sample:
        return np.zeros(len(v), bool)
    cols = (np.arange(sample) * (v.shape[1] - 1)) // (sample - 1)
    f = np.sort((v[:, cols].astype(np.float64) - lo[:, None]) / scale[:, None], axis=1)
    gaps = np.diff(f, axis=1)
    apart = gaps > 2 * grid.GRID_TOL * (1 + 1e-6)
    between = apart & (gaps < (1 / limit - 2 * grid.GRID_TOL) * (1 - 1e-6))
    return ((apart.sum(1) > limit) & (limit < sample)) | between.any(1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("limit", [1, 15, 255, 400, 5000])
def test_too_many_points_sorted_before_rescaling_equals_after(dtype, limit):
    rng = np.random.default_rng(limit)
    n = 1500
    levels = rng.integers(2, 700, size=(40, 1))
    levels[20:25, 0] = (2, 3, 5, 8, 12)
    v = rng.integers(0, levels, size=(40, n)) / levels * rng.uniform(0.1, 5.0, size=(40, 1))
    v[:8] = rng.normal(size=(8, n))
    v[8, ::3], v[9, 5], v[10, 7], v[11, 0] = -0.0, np.inf, -np.inf, np.nan
    v = v.astype(dtype)
    v[12, :n // 2], v[12, n // 2:] = -np.finfo(dtype).max, np.finfo(dtype).max  # float64: v - lo overflows
    with np.errstate(invalid="ignore", over="ignore"):
        lo = v.min(1).astype(np.float64)
        span = v.max(1).astype(np.float64) - lo
        scale = np.where(span > 0.0, span, 1.0)
        want = _sample_gaps_rescaled_first(v, lo, scale, limit)
        got = grid._too_many_points(v, np.arange(len(v)), lo, scale, limit)
        some = np.array([0, 3, 9, 12, 21, 39])  # a subset of the rows (sampled by fancy indexing) answers alike
        part = grid._too_many_points(v, some, lo, scale, limit)
        small = _sample_gaps_rescaled_first(v, lo, scale, limit, grid._PRE_SAMPLE)
        off = grid._off_grid(v, np.arange(len(v)), lo, scale, limit)
        short = grid._off_grid(v[:, :400], np.arange(len(v)), lo, scale, limit)  # <= _SAMPLE values: small only
        short_want = _sample_gaps_rescaled_first(v[:, :400], lo, scale, limit, grid._PRE_SAMPLE)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(part, want[some])
    np.testing.assert_array_equal(off, small | want)  # the small sample first, the large one on the rest
    np.testing.assert_array_equal(short, short_want)
    if limit <= 255:  # the small sample alone refuses the float rows of an 8-bit (or coarser) grid
        assert small[:8].all()
    assert want[:8].all() and want[20:25].any() == (limit < 11)  # float rows; rows of 2..12 levels


@pytest.mark.parametrize("limit", [255, 400, 5000])
def test_too_many_points_keeps_a_grid_row_exactly_when_its_steps_fit(limit):
    """Sorted rows on grids of m steps (every level present, so the fewest steps are m; the sample's neighbours lie
    on one level or two adjacent ones, 1 / m apart): refused exactly when m > limit, by hand: 1 / m < 1 / limit -
    2 GRID_TOL. Float rows are refused at every limit, 5000 (MAX_INTERVALS) included."""
    n, m = 1500, np.array([40, 300, 450])
    v = np.floor(np.arange(n)[None, :] * (m[:, None] + 1) / n) / m[:, None] * 0.7 - 0.2
    v = np.concatenate([v, np.random.default_rng(1).normal(size=(2, n))])
    lo, span = v.min(1), v.max(1) - v.min(1)
    got = grid._too_many_points(v, np.arange(len(v)), lo, span, limit)
    assert got.tolist() == [40 > limit, 300 > limit, 450 > limit, True, True]
    assert grid._too_many_points(v, np.array([4, 1]), lo, span, limit).tolist() == [True, 300 > limit]



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("n_rows", [0, 1, 2, 3])
@pytest.mark.parametrize("shape", [(6, 3, 2, 2), (5, 7), (4, 0)])
def test_stage_weight_f32_equals_the_eager_float64_products(dtype, n_rows, shape):
    g = torch.Generator().manual_seed(n_rows + len(shape))
    w = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    if w.numel() > 2:
        w.view(-1)[:2] = torch.tensor([float("inf"), float("nan")], dtype=dtype)
    rows = tuple(torch.rand(shape[0], generator=g, dtype=torch.float64) * 5 - 1 for _ in range(n_rows))
    eager = w.double()
    for r in rows:  # what Current.scaled computed per BatchNorm before it deferred the products
        eager = eager * r.reshape((-1,) + (1,) * (eager.dim() - 1))
    want = eager.numpy().astype(np.float32)
    got = stage_weight_f32(w, rows)
    assert got.dtype == np.float32 and got.shape == want.shape and got.tobytes() == want.tobytes()
    stage = Stage("p", "dense" if len(shape) == 2 else "conv", w, "Linear", [], rows=rows)
    assert stage.weight().dtype == torch.float64
    assert np.array_equal(stage.weight().numpy(), eager.numpy(), equal_nan=True)


def test_stage_weight_f32_of_a_strided_view_copies_it():
    w = torch.arange(24, dtype=torch.float32).reshape(4, 6).t()  # (6, 4), not contiguous
    got = stage_weight_f32(w, (torch.arange(6, dtype=torch.float64),))
    assert got.tobytes() == (w.double() * torch.arange(6.0).reshape(6, 1)).numpy().astype(np.float32).tobytes()
    got[0, 0] = -1.0
    assert w[0, 0] == 0.0  # a new array, not the weight's memory
