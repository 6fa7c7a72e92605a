"""hwmodels.kernels.arrays.truncated: the first m entries of an over-allocated kernel output."""
import numpy as np
import pytest

from hwmodels.kernels.arrays import truncated


def test_truncated_keeps_the_first_entries_in_place_or_copies_a_view():
    a = np.arange(10, dtype=np.int64) * 3
    want = a[:4].copy()
    t = truncated(a, 4)
    assert t is a and t.shape == (4,) and np.array_equal(t, want)  # owned: shrunk in place
    base = np.arange(12.0)
    view = base[2:]
    v = truncated(view, 3)
    assert v is not view and np.array_equal(v, [2.0, 3.0, 4.0]) and base.shape == (12,)  # a view: copied
    assert truncated(np.arange(5), 0).shape == (0,)
    with pytest.raises(ValueError, match="m: 6"):
        truncated(np.arange(5), 6)
