"""np.unique of bounded non-negative integer keys by a lookup table instead of a sort (channel links, queues)."""
from __future__ import annotations

import numpy as np


def dense_unique(keys: np.ndarray, size: int, first: bool = False):
    """np.unique(keys, return_inverse=True), or (unique, an index of each) when `first`, for non-negative keys
    below `size`: a lookup table instead of a sort when the table is small."""
    if size > 8 * len(keys) + (1 << 20):
        return np.unique(keys, return_index=first, return_inverse=not first)
    table = np.zeros(size, np.int64)
    table[keys] = 1
    uniq = np.flatnonzero(table)
    if first:
        table[keys] = np.arange(len(keys))
        return uniq, table[uniq]
    return uniq, (np.cumsum(table) - 1)[keys]
