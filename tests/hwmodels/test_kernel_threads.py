"""hwmodels.kernels.threads: ranges of whole units with equal shares of items, and running them on threads."""
import threading

import numpy as np
import pytest

from hwmodels.kernels import threads


@pytest.mark.parametrize("ptr, parts, expected", [
    ([0, 10, 20, 30, 40], 2, [(0, 2), (2, 4)]),       # 20 items each
    ([0, 90, 95, 100], 2, [(0, 1), (1, 3)]),          # the heavy first unit alone
    ([0, 10, 20, 30, 40], 3, [(0, 2), (2, 3), (3, 4)]),  # cuts where the count passes 13.3 and 26.7
    ([0, 1, 2, 3], 5, [(0, 1), (1, 2), (2, 3)]),       # no more ranges than units
    ([0, 5], 3, [(0, 1)]),
    ([0], 2, [(0, 0)]),                                # no units
])
def test_split_cuts_whole_units_at_equal_shares_of_items(ptr, parts, expected):
    assert threads.split(np.array(ptr, np.int64), parts, min_items=1) == expected


def test_split_keeps_one_range_when_the_items_do_not_fill_two():
    ptr = np.array([0, 10, 20, 30, 40], np.int64)
    assert threads.split(ptr, 2, min_items=21) == [(0, 4)]
    assert threads.split(ptr, 2, min_items=20) == [(0, 2), (2, 4)]


def test_run_and_map_items_return_in_order_use_threads_and_raise():
    names = []

    def fn(a, b):
        names.append(threading.current_thread().name)
        return a * 10 + b

    assert threads.run(fn, [(0, 1), (1, 2), (2, 3)]) == [1, 12, 23]
    assert threading.current_thread().name in names  # the first range on the caller's thread
    assert sum(n.startswith("hwmodels-kernel") for n in names) == 2  # the others on the pool's
    assert threads.map_items(fn, [(k, k) for k in range(5)], 2) == [0, 11, 22, 33, 44]
    assert threads.map_items(fn, [(1, 2)], 4) == [12]

    def bad(a, b):
        if a == 1:
            raise ValueError("range 1")
        return a

    with pytest.raises(ValueError, match="range 1"):
        threads.run(bad, [(0, 1), (1, 2)])
    with pytest.raises(ValueError, match="range 1"):
        threads.map_items(bad, [(0, 1), (1, 2)], 2)


def test_count_follows_numba_setting(monkeypatch):
    from numba import config
    monkeypatch.setattr(config, "NUMBA_NUM_THREADS", 3)
    assert threads.count() == 3
    monkeypatch.setattr(config, "NUMBA_NUM_THREADS", 0)
    assert threads.count() == 1


def test_guided_ranges_cover_every_unit_once_largest_first_with_state_per_thread():
    """threads.guided on 2 threads: consecutive ranges covering units 0..n-1 once, each about the items left / 4
    (hand-computed for equal units), never below min_items or one unit; one state per thread; results in range
    order; one range on the calling thread for one worker or too few items; an exception is raised."""
    ptr = np.arange(0, 1001, 10, dtype=np.int64)  # 100 units of 10 items
    seen, states = [], []

    def fn(st, k0, k1):
        st.append((k0, k1))
        seen.append((k0, k1))
        return k0, k1, threading.get_ident()

    def state():
        states.append([])
        return states[-1]
    out = threads.guided(fn, ptr, 2, state, min_items=60)
    ranges = [(k0, k1) for k0, k1, _ in out]
    assert ranges == sorted(seen) and ranges[0][0] == 0 and ranges[-1][1] == 100
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    # the first range takes 1000 / 4 = 250 items (25 units); the next one 750 / 4 = 187 -> 18 units; ...
    # each at least 60 items (6 units), the last what is left
    assert ranges[0] == (0, 25) and ranges[1] == (25, 43)
    assert all(k1 - k0 >= 6 for k0, k1 in ranges[:-1])
    assert len(states) == 2 and sorted(r for st in states for r in st) == ranges
    assert threads.guided(fn, ptr, 1, state) == [(0, 100, threading.get_ident())]
    assert [r[:2] for r in threads.guided(fn, ptr, 2, state, min_items=501)] == [(0, 100)]
    assert threads.guided(fn, np.zeros(1, np.int64), 2, state)[0][:2] == (0, 0)

    def bad(st, k0, k1):
        if k0 > 0:
            raise ValueError("range")
    with pytest.raises(ValueError, match="range"):
        threads.guided(bad, ptr, 2, list, min_items=60)
