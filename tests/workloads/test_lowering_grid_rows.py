"""The compiled per-channel grid search (workloads.lowering.grid.row_intervals) equals the one-channel search
(grid_intervals) value for value, on float32 and float64 weights: float channels, quantized channels (BatchNorm-like
per-channel scale, after folding in float32), channels with few distinct values, constant channels, mixtures; and
on the channels whose distinct values are hashed (workloads.lowering.grid_kernel.distinct_rows) rather than sorted."""
import numpy as np
import pytest

from workloads.lowering.grid import grid_intervals, row_intervals
from workloads.lowering.grid_kernel import distinct_rows, sample_off_grid


def _rows(kind: str, n_rows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """float64 (n_rows, n) channels of one kind."""
    if kind == "float":
        return rng.normal(size=(n_rows, n))
    if kind == "constant":
        return np.repeat(rng.normal(size=(n_rows, 1)), n, axis=1)
    bits = {"q2": 2, "q4": 4, "q8": 8}[kind]
    levels = 2 ** (bits - 1) - 1
    k = rng.integers(-levels, levels + 1, size=(n_rows, n))
    scale = rng.uniform(0.01, 3.0, size=(n_rows, 1)) / levels
    return (k * scale).astype(np.float32).astype(np.float64) * rng.uniform(0.5, 2.0, size=(n_rows, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 9, 64, 384, 700, 1536])
@pytest.mark.parametrize("limit", [3, 255, 5000])
def test_row_intervals_equal_grid_intervals_row_by_row(dtype, n, limit):
    rng = np.random.default_rng(n * 7 + limit)
    kinds = ["float", "constant", "q2", "q4", "q8"]
    rows = np.concatenate([_rows(kind, 6, n, rng) for kind in kinds] + [_rows("q8", 3, n, rng)[:, ::-1]])
    rows = rows[rng.permutation(len(rows))].astype(dtype)
    assert row_intervals(rows, limit) == [grid_intervals(r, limit) for r in rows]


def _hashed_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    """float64 (k, n) channels for the distinct-value path of row_intervals (rows of more than 512 values; shorter
    ones are sorted whole): per-channel quantized (2..255 levels, and 1000+: more distinct values than it keeps)
    and scaled in float32, with 0.0 and -0.0, sparse (mostly zeros, some -0.0), all -0.0, constant, float, and a
    few float levels repeated at random."""
    out = []
    for levels in (2, 3, 16, 255, 1000, 1500):
        k = rng.integers(-(levels // 2), levels - levels // 2, size=(3, n))
        w = (k * (rng.uniform(0.01, 3.0, size=(3, 1)) / levels)).astype(np.float32)
        out.append(w * rng.uniform(0.3, 3.0, size=(3, 1)).astype(np.float32))
    rows = np.concatenate(out).astype(np.float64)
    signed_zero = rows[::4].copy()
    signed_zero[:, ::3] = 0.0
    signed_zero[:, 1::3] = -0.0
    sparse = rows[1::5] * (rng.random((len(rows[1::5]), n)) < 0.05)
    sparse[:, ::7] = -sparse[:, ::7] * 0.0  # -0.0 among the zeros
    few_levels = rng.choice(rng.normal(size=7), size=(2, n)) * np.float32(1.7)
    return np.concatenate([rows, signed_zero, sparse, few_levels, np.full((1, n), -0.0), np.full((1, n), 2.5),
                           rng.normal(size=(2, n)), -rows[:2]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2, 27, 511, 512, 513, 2304, 4608])
@pytest.mark.parametrize("limit", [1, 3, 15, 255, 5000])
def test_row_intervals_of_hashed_distinct_values_equal_grid_intervals(dtype, n, limit):
    rng = np.random.default_rng(n * 13 + limit)
    rows = _hashed_rows(n, rng)
    rows = rows[rng.permutation(len(rows))].astype(dtype)
    assert row_intervals(rows, limit) == [grid_intervals(r, limit) for r in rows]
    assert row_intervals(rows[:, ::-1], limit) == [grid_intervals(r, limit) for r in rows[:, ::-1]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distinct_rows_collects_each_value_once(dtype):
    rng = np.random.default_rng(5)
    v = rng.choice(rng.normal(size=40), size=(6, 300)).astype(dtype)
    v[0, ::2], v[0, 1::2] = 0.0, -0.0
    v[1, :7] = np.nan
    v[2] = rng.normal(size=300)  # more distinct values than kept
    v[3, 5], v[3, 9] = -0.0, 0.0
    values, count = distinct_rows(np.ascontiguousarray(v), np.arange(6), 64)
    assert values.shape == (6, 64) and values.dtype == dtype and count[2] == 65
    for i in (0, 3, 4, 5):
        assert np.array_equal(np.sort(values[i, :count[i]]), np.unique(v[i]))
        assert (values[i, count[i]:] == v[i].max()).all()
    assert count[1] == len(np.unique(v[1, 7:])) + 1  # one NaN: the same bit pattern seven times


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distinct_rows_buckets_give_ascending_values_and_fall_back_to_hashing(dtype):
    """A row whose distinct values fall in distinct buckets comes out ascending (the bucket scan); a row with two
    distinct values in one bucket (1e-7 apart on a span of 1: 2048 buckets) or with a NaN bound is hashed, in
    order of first occurrence. 0.0 and -0.0 are one value either way, kept as +0.0."""
    rng = np.random.default_rng(11)
    n = 2304
    k = rng.integers(-127, 128, size=(3, n))
    v = (k * (rng.uniform(0.01, 1.0, size=(3, 1)) / 127)).astype(dtype)
    v[1, 0], v[1, 1:4] = -0.0, 0.0  # a quantized row with both zeros
    v[2] = np.resize(np.array([1.0, 1e-7, 0.0, -0.0], dtype), n)  # two distinct values in bucket 0
    values, count = distinct_rows(np.ascontiguousarray(v), np.arange(3), 512)
    for i in (0, 1):
        assert count[i] == len(np.unique(v[i]))
        assert np.array_equal(values[i, :count[i]], np.unique(v[i]))  # ascending: no sort needed
    zero = values[1, :count[1]] == 0
    assert zero.sum() == 1 and not np.signbit(values[1, :count[1]][zero]).any()  # -0.0 kept as +0.0
    assert count[2] == 3 and values[2, :3].tolist() == [1.0, dtype(1e-7), 0.0]  # first occurrence: hashed
    nan_bounds = np.full(3, np.nan)
    hashed, hashed_count = distinct_rows(np.ascontiguousarray(v), np.arange(3), 512, nan_bounds, nan_bounds)
    assert np.array_equal(hashed_count, count)
    first = [list(dict.fromkeys(np.where(r == 0, 0.0, r).tolist())) for r in v[:2]]  # order of first occurrence
    assert [hashed[i, :count[i]].tolist() for i in (0, 1)] == first


def test_distinct_rows_bucket_bounds_only_steer_the_buckets():
    """Any finite bounds give the right values: values outside [lo, lo + span] go to the first or last bucket
    (never outside the table), the mapping stays monotone, and a shared bucket falls back to hashing."""
    v = np.ascontiguousarray(np.resize(np.array([0.0, 2.0, 5.0, -3.0], np.float32), (1, 600)))
    for lo, span in ((1.0, 1.0), (-3.0, 8.0), (10.0, 0.5), (-1e30, 1e-30)):
        values, count = distinct_rows(v, np.arange(1), 512, np.array([lo]), np.array([span]))
        assert count[0] == 4 and sorted(values[0, :4].tolist()) == [-3.0, 0.0, 2.0, 5.0]
        assert (values[0, 4:] == 5.0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distinct_rows_subnormal_spans_and_nan_values_stay_inside_the_buckets(dtype):
    """Spans of a few subnormals (their bucket scale overflows to inf: hashed) and NaN values under explicit
    finite bounds (a NaN bucket position goes to bucket 0) give the same distinct bit patterns as hashing."""
    tiny = np.finfo(dtype).smallest_subnormal
    v = np.zeros((3, 600), dtype)
    v[0] = np.resize(np.array([0.0, tiny, 2 * tiny], dtype), 600)
    v[1] = -v[0]
    v[2] = np.resize(np.array([1.0, np.nan, 2.0, -1.0], dtype), 600)
    v = np.ascontiguousarray(v)
    bounds = (np.array([0.0, -2 * float(tiny), -1.0]), np.array([2 * float(tiny), 2 * float(tiny), 3.0]))
    for lo, span in ((None, None), bounds):
        values, count = distinct_rows(v, np.arange(3), 512, lo, span)
        assert count.tolist() == [3, 3, 4]
        for i in range(3):
            got = values[i, :count[i]].view(np.uint32 if dtype == np.float32 else np.uint64)
            want = np.unique(np.where(v[i] == 0, dtype(0), v[i]).view(got.dtype))
            assert sorted(got.tolist()) == want.tolist()
    assert row_intervals(v[:2]) == [grid_intervals(r) for r in v[:2]] == [2, 2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hashed_rows", [1, 3])
def test_row_intervals_sort_only_the_rows_hashed_out_of_order(dtype, hashed_rows):
    """Rows of more than 512 values: a quantized row's distinct values come from the buckets ascending and are not
    sorted again; a row whose two close values share a bucket is hashed, its values in order of first occurrence
    (descending here), and sorted. With 1 of 4 rows hashed (some rows sorted) and 3 of 3 (all), every answer is
    grid_intervals'."""
    rng = np.random.default_rng(11)
    n = 600
    quantized = (rng.integers(-127, 128, size=(4 - hashed_rows if hashed_rows < 3 else 0, n)) * 0.01).astype(dtype)
    one_up = np.nextafter(dtype(1.0), dtype(2.0))
    close = np.tile(np.array([3.0, 2.0, one_up, 1.0], dtype), (hashed_rows, n // 4))
    close[1:] *= dtype(0.5)
    rows = np.concatenate([quantized, close])
    values, count = distinct_rows(rows, np.arange(len(rows)), 512)
    firsts = values[len(quantized):, :4]
    assert (count[len(quantized):] == 4).all() and (firsts[:, 0] > firsts[:, 1]).all()  # hashed, not ascending
    assert all((np.diff(r[:c]) > 0).all() for r, c in zip(values[:len(quantized)], count))  # bucketed: ascending
    assert row_intervals(rows, 255) == [grid_intervals(r, 255) for r in rows]
    assert row_intervals(rows, 5000) == [grid_intervals(r, 5000) for r in rows]


def _numpy_sample_test(v, rows, lo, scale, spread, apart, between, limit):
    """The sample test as numpy passes over (rows, sample) arrays (grid's formulation before its compiled pass)."""
    picked = v[np.ix_(rows, spread)]
    picked.sort(axis=1)
    f = picked.astype(np.float64)
    f -= lo[rows, None]
    with np.errstate(invalid="ignore"):  # inf / inf of the infinite rows, NaN as in the kernel
        f /= scale[rows, None]
    gaps = f[:, 1:] - f[:, :-1]
    far = gaps > apart
    return (np.count_nonzero(far, axis=1) > limit) | (far & (gaps < between)).any(axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sample, limit", [(64, 255), (64, 5000), (512, 3), (512, 255), (512, 400)])
def test_sample_off_grid_equals_numpy_passes(dtype, sample, limit):
    rng = np.random.default_rng(sample + limit)
    n = 1536
    v = np.concatenate([_rows(kind, 8, n, rng) for kind in ("float", "constant", "q2", "q4", "q8")]
                       + [_hashed_rows(n, rng)]).astype(dtype)
    v[3, ::7] = np.nan  # NaN values, -0.0 and infinite ones sort and rescale as numpy does
    v[4, 5], v[5, 9], v[6, ::3] = -np.inf, np.inf, -0.0
    lo = v.min(1).astype(np.float64)
    span = v.max(1).astype(np.float64) - lo
    scale = np.where(span > 0.0, span, 1.0)
    rows = rng.permutation(len(v))[: len(v) - 3]
    spread = (np.arange(sample, dtype=np.int64) * (n - 1)) // (sample - 1)
    apart, between = 2e-5 * (1 + 1e-6), (1.0 / limit - 2e-5) * (1 - 1e-6)
    want = _numpy_sample_test(v, rows, lo, scale, spread, apart, between, limit)
    picked = v[np.ix_(rows, spread)]
    picked.sort(axis=1)
    got = sample_off_grid(picked, lo[rows], scale[rows], apart, between, limit)
    assert got.dtype == bool and got.tolist() == want.tolist()
    assert want.any() and not want.all()  # both answers occur
