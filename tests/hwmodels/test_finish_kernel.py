"""The compiled synapse-unit makespan (hwmodels.kernels.finish via core_times.destination_finish) against a
vectorised formula (lexsort by (destination, arrival), per destination the suffix sums of the work from its last
delivery back, max_j (a_j + suffix_j)): equal bit for bit, ties and long runs included; and a destination's finish
does not depend on the other destinations of the batch."""
import numpy as np
import pytest

from hwmodels.timing.core_times import destination_finish


def _vectorised(keys, arrival, work):
    """The reference: numpy.lexsort order, numpy.cumsum and numpy.maximum.reduceat."""
    order = np.lexsort((arrival, keys))
    key, arr, w = keys[order], arrival[order], work[order]
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(first)
    # work of this delivery and every later one at its unit, summed from the unit's last delivery back
    suffix = np.concatenate([np.cumsum(part[::-1])[::-1] for part in np.split(w, starts[1:])])
    return key[starts], np.maximum.reduceat(arr + suffix, starts)


@pytest.mark.parametrize("n_keys", [1, 3, 40, 1000])
def test_destination_finish_matches_the_vectorised_formula(n_keys):
    rng = np.random.default_rng(n_keys)
    for _ in range(20):
        n = int(rng.integers(1, 600))
        keys = rng.integers(0, n_keys, n) * 7 + 3
        arrival = rng.choice(rng.random(max(1, n // 5)) * 1e-6, n)  # many equal arrivals
        work = rng.choice([1e-9, 3e-9, 7.1e-9, 0.3e-9], n) * rng.random(n)
        want, got = _vectorised(keys, arrival, work), destination_finish(keys, arrival, work)
        assert np.array_equal(want[0], got[0])
        assert np.array_equal(want[1], got[1])  # bit for bit, not approximately


def test_destination_finish_by_hand():
    # one unit, deliveries arriving at 0, 1, 5 (s) with work 2, 2, 1: served 0-2, 2-4, 5-6 -> finishes at 6;
    # another unit with one delivery at 3 of work 4 -> 7
    keys = np.array([9, 4, 4, 4])
    got = destination_finish(keys, np.array([3.0, 5.0, 0.0, 1.0]), np.array([4.0, 1.0, 2.0, 2.0]))
    assert got[0].tolist() == [4, 9] and got[1].tolist() == [6.0, 7.0]
    assert [len(a) for a in destination_finish(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))] == [0, 0]


def test_a_destination_s_finish_does_not_depend_on_the_other_destinations():
    """The suffix sums were differences of one running sum over the whole batch: a destination's finish changed in
    its last bits with the work of the destinations sorted before it (other samples of the batch)."""
    rng = np.random.default_rng(5)
    arrival, work = rng.random(50) * 1e-6, rng.random(50) * 3e-9
    alone = destination_finish(np.full(50, 7), arrival, work)[1]
    for before in (1e-3, 12.5, 1e-9):  # deliveries of destination 3 sorted first
        keys = np.r_[np.full(40, 3), np.full(50, 7)]
        both = destination_finish(keys, np.r_[rng.random(40), arrival], np.r_[np.full(40, before), work])[1]
        assert both[1] == alone[0]
