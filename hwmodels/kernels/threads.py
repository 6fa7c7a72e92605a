"""Threads for the compiled kernels: a kernel that releases the GIL (numba nogil) runs on disjoint ranges of
independent work items (hardware steps, rows) at once, one range per thread. The thread count is numba's
NUMBA_NUM_THREADS setting (default: the CPUs of the machine; set NUMBA_NUM_THREADS=1 for one thread). Results
never depend on it: each range writes only its own items.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import numpy as np
from numba import config

T = TypeVar("T")
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
