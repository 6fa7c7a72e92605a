"""Compiled kernel of the core pipeline's synapse units (hwmodels.timing.core_times.destination_finish): the
makespan of each destination's single server over its deliveries in arrival order, max_j (a_j + suffix_j), the
suffix sums of the work summed per destination from its last delivery back. Until 2026-12 they were differences of
one running sum over all deliveries of the batch (the vectorised form's S_last - (S_j - w_j)), so a destination's
finish, and a sample's latency, changed in the last bits with the samples batched with it (batch_samples, select).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux


@njit(cache=True, nogil=True)
def makespans(order: np.ndarray, starts: np.ndarray, arrival: np.ndarray, work: np.ndarray) -> np.ndarray:
    """Finish time (s) of every destination group.

    order: int64 (n,) deliveries sorted by destination key, ties by index (a stable argsort); starts: int64
    (n_groups + 1,) where each destination's run begins in `order` (last entry n); arrival, work: float (n,) s.
    Within a group, deliveries are taken by arrival, ties by index (as numpy.lexsort((arrival, keys)) orders them).
    Returns float (n_groups,).
    """
    out = np.empty(len(starts) - 1)
    buf = np.empty(len(order), np.int64)
    for g in range(len(starts) - 1):
        m = starts[ux(g + 1)] - starts[ux(g)]
        if m > 32:
            idx = order[starts[ux(g)]:starts[ux(g + 1)]]
            buf[:m] = idx[np.argsort(arrival[idx], kind="mergesort")]
        else:  # stable insertion sort of a short run
            for k in range(m):
                x = order[ux(starts[ux(g)] + k)]
                j = k
                while j > 0 and arrival[ux(buf[ux(j - 1)])] > arrival[ux(x)]:
                    buf[ux(j)] = buf[ux(j - 1)]
                    j -= 1
                buf[ux(j)] = x
        best, suffix = -np.inf, 0.0
        for k in range(m - 1, -1, -1):  # the work of this delivery and every later one at its unit
            i = buf[ux(k)]
            suffix += work[ux(i)]
            v = arrival[ux(i)] + suffix
            if v > best:
                best = v
        out[ux(g)] = best
    return out
