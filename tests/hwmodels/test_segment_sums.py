"""hwmodels.kernels.sums.segment_sums against numpy's own sums, bit for bit."""
import numpy as np

from hwmodels.kernels.sums import segment_sums


def test_segment_sums_equal_numpy_sums_bit_for_bit_for_every_length_up_to_600():
    """Every segment length 0..600 (numpy's three regimes: under 8, up to 128, halved above), values of very
    different magnitudes and signs (where the order of additions shows), some segments contiguous in one array."""
    rng = np.random.default_rng(3)
    sizes = np.concatenate([np.arange(601), rng.integers(0, 2000, 50)])
    flat = rng.normal(size=int(sizes.sum())) * 10.0 ** rng.integers(-18, 3, int(sizes.sum()))
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    got = segment_sums(flat, ptr)
    want = np.array([flat[a:b].sum() for a, b in zip(ptr[:-1], ptr[1:])])
    assert got.dtype == np.float64 and len(got) == len(sizes)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, np.array([float(np.sum(np.sort(flat[a:b]))) for a, b in zip(ptr[:-1], ptr[1:])]))


def test_segment_sums_of_empty_segments_are_zero():
    assert np.array_equal(segment_sums(np.zeros(0), np.zeros(3, np.int64)), np.zeros(2))


def test_resampled_means_equal_numpy_means_of_the_gathered_rows_bit_for_bit():
    """Every row length 1..128 (numpy's regimes below its halving), values of very different magnitudes."""
    from hwmodels.kernels.sums import resampled_means
    rng = np.random.default_rng(5)
    for n in range(1, 129):
        v = rng.normal(size=n) * 10.0 ** rng.integers(-12, 3, n)
        idx = rng.integers(0, n, (40, n))
        got = resampled_means(v, idx)
        assert np.array_equal(got, np.mean(v[idx], axis=-1)), n
