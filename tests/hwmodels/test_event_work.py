"""hwmodels.timing.core_times.event_work: the work of deliveries, events per storage format times the latency per
event, without a BLAS call for one format: equal bit for bit to the matrix product it replaced."""
import numpy as np

from hwmodels.timing.core_times import event_work


def test_one_format_by_hand():
    events = np.array([[3], [0], [7]], np.int64)
    ns = 2.0 ** -30  # about 0.93 ns, exact in binary, so the products are exact too
    got = event_work(events, np.array([ns]))
    assert got.dtype == np.float64
    assert np.array_equal(got, [3 * ns, 0.0, 7 * ns])


def test_equals_the_matrix_product_bit_for_bit():
    rng = np.random.default_rng(3)
    for n_formats in (1, 2, 3):
        events = rng.integers(0, 10 ** 6, (5000, n_formats))
        per_event = rng.random(n_formats) * 1e-8
        got, ref = event_work(events, per_event), events @ per_event
        assert got.dtype == ref.dtype and np.array_equal(got, ref)
