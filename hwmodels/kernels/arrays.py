"""Array helpers for the kernels' outputs."""
from __future__ import annotations

import numpy as np


def truncated(a: np.ndarray, m: int) -> np.ndarray:
    """a[:m] of a 1-D array allocated larger than needed (a kernel's output, sized for the worst case), with the
    rest of its memory returned: `a` itself shrunk in place by ndarray.resize (a realloc: the first m entries are
    not copied) when `a` owns its data, else a copy of a[:m]. The caller must hold the only reference to `a` (no
    view of it may be alive: resize does not check, refcheck=False). Raises ValueError when m > len(a)."""
    if m > len(a):
        raise ValueError(f"m: {m} is more than the array's {len(a)} entries")
    if a.ndim == 1 and a.flags.owndata and a.base is None:
        a.resize(m, refcheck=False)
        return a
    return a[:m].copy()
