"""hwmodels.kernels.unique.dense_unique against np.unique (the lookup-table path and the sort path)."""
import numpy as np
import pytest

from hwmodels.kernels.unique import dense_unique


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
@pytest.mark.parametrize("n, size", [(0, 10), (1, 1), (1000, 50), (1000, 5000), (200, 1 << 22)])
def test_dense_unique_equals_np_unique(rng, dtype, n, size):
    keys = rng.integers(0, size, n).astype(dtype)
    uniq, inv = dense_unique(keys, size)
    want_u, want_i = np.unique(keys, return_inverse=True)
    assert np.array_equal(uniq, want_u) and np.array_equal(inv, want_i.reshape(-1))
    assert inv.dtype == np.int64 and np.array_equal(uniq[inv], keys)
    uniq, at = dense_unique(keys, size, first=True)
    assert np.array_equal(uniq, want_u) and np.array_equal(keys[at], uniq)


def test_dense_unique_keeps_the_shape_of_two_dimensional_keys(rng):
    keys = rng.integers(0, 30, (7, 9))
    uniq, inv = dense_unique(keys, 30)
    assert inv.shape == keys.shape and np.array_equal(uniq[inv], keys)
