"""Threads for the compiled kernels: a kernel that releases the GIL (numba nogil) runs on disjoint ranges of
independent work items (hardware steps, rows) at once, one range per thread. The thread count is numba's
NUMBA_NUM_THREADS setting (default: the CPUs of the machine; set NUMBA_NUM_THREADS=1 for one thread). Results
never depend on it: each range writes only its own items.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import numpy as np
from numba import config

T = TypeVar("T")
S = TypeVar("S")
#: items (channel nodes, events) below which a range is not worth a thread of its own
MIN_ITEMS = 1 << 15


def count() -> int:
    """Threads a kernel may use: numba's NUMBA_NUM_THREADS (>= 1)."""
    return max(1, int(config.NUMBA_NUM_THREADS))


def split(ptr: np.ndarray, parts: int, min_items: int | None = None) -> list[tuple[int, int]]:
    """Ranges [k0, k1) of the len(ptr) - 1 units (unit k holds items ptr[k]..ptr[k+1]-1; ptr int64
    non-decreasing), in order and covering all units: at most `parts` ranges (fewer when the items do not give
    each range min_items, default MIN_ITEMS), cut where the items' cumulative count passes equal shares;
    [(0, 0)] when there are no units."""
    min_items = MIN_ITEMS if min_items is None else min_items
    units, total = len(ptr) - 1, int(ptr[-1] - ptr[0]) if len(ptr) else 0
    parts = max(1, min(int(parts), units, total // max(1, min_items)))
    if units <= 0:
        return [(0, 0)]
    cuts = np.searchsorted(ptr, ptr[0] + total * np.arange(1, parts) / parts).tolist()
    bounds = sorted({0, units, *[min(max(c, 0), units) for c in cuts]})
    return list(zip(bounds[:-1], bounds[1:]))


def run(fn: Callable[[int, int], T], ranges: list[tuple[int, int]]) -> list[T]:
    """[fn(k0, k1) for each range], the first on the calling thread and the others on threads of their own (fn
    must release the GIL to gain, and write only what its range owns). An exception in any range is raised."""
    if len(ranges) == 1:
        return [fn(*ranges[0])]
    with ThreadPoolExecutor(max_workers=len(ranges) - 1, thread_name_prefix="hwmodels-kernel") as pool:
        futures = [pool.submit(fn, k0, k1) for k0, k1 in ranges[1:]]
        first = fn(*ranges[0])
        return [first] + [f.result() for f in futures]


def map_items(fn: Callable[..., T], items: list[tuple], workers: int) -> list[T]:
    """[fn(*item) for item in items] on up to `workers` threads (items taken in order as threads free up; results
    in item order). An exception in any item is raised."""
    if workers <= 1 or len(items) <= 1:
        return [fn(*item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="hwmodels-kernel") as pool:
        return list(pool.map(lambda item: fn(*item), items))


def guided(fn: Callable[[S, int, int], T], ptr: np.ndarray, workers: int, state: Callable[[], S],
           min_items: int | None = None) -> list[T]:
    """fn(st, k0, k1) over consecutive ranges [k0, k1) covering the len(ptr) - 1 units (unit k holds items
    ptr[k]..ptr[k+1]-1; ptr int64 non-decreasing) on up to `workers` threads (the calling thread one of them), each
    thread with its own st = state() made once. Threads take ranges in unit order from a shared cursor as they free
    up, each about the items left / (2 x workers) (at least min_items, default MIN_ITEMS, and one unit): large
    ranges first, small ones at the end, so a thread that runs slower (a costlier range, a busy core) holds up
    the others by about a small range at most (OpenMP's "guided" schedule). One thread, or fewer than 2 x
    min_items items: one range [0, units) on the calling thread. Returns the results in range order (fn must
    write only what its range owns). An exception in any range is raised."""
    min_items = MIN_ITEMS if min_items is None else min_items
    units, total = len(ptr) - 1, int(ptr[-1] - ptr[0]) if len(ptr) else 0
    if workers <= 1 or units <= 1 or total < 2 * min_items:
        return [fn(state(), 0, max(units, 0))]
    lock, cursor, done = threading.Lock(), [0], {}

    def take() -> tuple[int, int] | None:
        with lock:
            k0 = cursor[0]
            if k0 >= units:
                return None
            want = max(int(ptr[-1] - ptr[k0]) // (2 * workers), min_items)
            k1 = min(max(int(np.searchsorted(ptr, ptr[k0] + want, side="right")) - 1, k0 + 1), units)
            cursor[0] = k1
            return k0, k1

    def work() -> None:
        st, got = state(), take()
        while got is not None:
            done[got] = fn(st, *got)
            got = take()
    with ThreadPoolExecutor(max_workers=workers - 1, thread_name_prefix="hwmodels-kernel") as pool:
        futures = [pool.submit(work) for _ in range(workers - 1)]
        work()
        for f in futures:
            f.result()
    return [done[r] for r in sorted(done)]
