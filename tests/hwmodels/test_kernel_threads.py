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
