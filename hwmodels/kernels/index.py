"""Unsigned array indices for the compiled kernels of hwmodels.kernels.

numba wraps every signed index it cannot prove non-negative (i < 0: i + the length; always on, numba issue
#1533, https://github.com/numba/numba/issues/1533) and skips that for an unsigned one (numba pull request #929,
https://github.com/numba/numba/pull/929). In the kernels' chains of dependent loads (a heap entry, then its node
record; a spike's neuron, then its core) that is a compare and an add more on every load. Same-process A/B on
one thread, results identical (medians of paired rounds): the grant kernel's play of Spikformer-4-384's 9.25 M
channel grants, with the fill of its records, 768 -> 626 ms with unsigned indices in the grants alone, about -30%
with both (play 690 -> 450-490 ms, fill 82 -> 68-78 ms; the MNIST conv net's play -17%); on synthetic inputs of
the bench nets' sizes head_arrivals -36%, flow_channel_sums -25%, tree_channels -13%, unicast_flows -10%,
stack_rows -8%, delivery_sums -6%, flow_sums -4%, count_rows -3%, makespans unchanged; first_of_classes -43%,
row_class_counts -19%, _ranks -6%.

numba caches a compiled function by its own source file: a kernel that inlines `ux` is not recompiled when this
file changes, so `ux` stays the one-line cast it is.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def ux(i):
    """Index i (an integer >= 0 by construction of the caller) as np.uint64, which numba does not wrap. A negative
    i would index far out of bounds: callers pass only indices they know to be >= 0."""
    return np.uint64(i)
