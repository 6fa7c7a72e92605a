"""hwmodels.kernels.sums against numpy's own sums (segment sums, bincount), bit for bit."""
import numpy as np

from hwmodels.kernels.sums import segment_sums, delivery_sums, flow_sums


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


def test_delivery_and_flow_sums_equal_bincount_bit_for_bit():
    rng = np.random.default_rng(11)
    nb, n, n_flows, m = 3, 7, 400, 1500
    flow_sample, flow_src = rng.integers(0, nb, n_flows), rng.integers(0, n, n_flows)
    deliv_flow, deliv_dst = rng.integers(0, n_flows, m), rng.integers(0, n, m)
    events = rng.integers(0, 2 ** 40, (m, 2))  # large counts: float64 rounding in every partial sum
    bits, msgs = rng.integers(0, 2 ** 45, m), rng.integers(1, 2 ** 30, m)
    got = delivery_sums(deliv_flow, deliv_dst, flow_sample, n, nb * n, events, bits, msgs)
    key = flow_sample[deliv_flow] * n + deliv_dst
    cols = [events[:, 0], events[:, 1], events.sum(axis=1), bits, msgs]
    want = [np.bincount(key, weights=c.astype(float), minlength=nb * n) for c in cols]
    assert got.shape == (5, nb * n) and all(np.array_equal(g, w) for g, w in zip(got, want))
    fm, kinds = rng.integers(1, 2 ** 40, n_flows), rng.integers(0, 9, (n_flows, 3))
    got = flow_sums(flow_sample, flow_src, n, nb * n, fm, kinds)
    fkey, w = flow_sample * n + flow_src, fm.astype(float)
    want = [np.bincount(fkey, weights=w, minlength=nb * n)] + [
        np.bincount(fkey, weights=w * kinds[:, k], minlength=nb * n) for k in range(3)]
    assert got.shape == (4, nb * n) and all(np.array_equal(g, x) for g, x in zip(got, want))
    empty = delivery_sums(deliv_flow[:0], deliv_dst[:0], flow_sample, n, nb * n, events[:0, :0], bits[:0], msgs[:0])
    assert empty.shape == (3, nb * n) and not empty.any()
