"""hwmodels.events.actions.class_stack_of (the compiled class-stack assembly, hwmodels.kernels.stack) against
class_stack_scipy (scipy's sums, indicator, element-wise product and hstack it replaced): the same CSR entries, in
order, for one and several storage formats, with and without a bits block, parts that pay no format (bits only),
rows without a synapse and overlapping destinations."""
import numpy as np
import pytest
import scipy.sparse as sp

from hwmodels.events.actions import class_stack_of, class_stack_scipy


def _part(rng, n_rows, n, density):
    dense = rng.integers(1, 6, (n_rows, n)) * (rng.random((n_rows, n)) < density)
    dense[rng.random(n_rows) < 0.2] = 0  # rows without a synapse
    return sp.csr_matrix(dense, dtype=np.int64)


@pytest.mark.parametrize("n_formats, with_bits", [(1, False), (1, True), (2, False), (2, True)])
def test_stack_equals_the_scipy_blocks(rng, n_formats, with_bits):
    n_rows, n = 40, 9
    parts = []
    for k in range(5):
        fmt = int(rng.integers(-1, n_formats)) if with_bits else int(rng.integers(0, n_formats))
        parts.append((_part(rng, n_rows, n, 0.3), fmt, int(rng.integers(0, 3)) * 8 if with_bits else 0))
    if not any(j >= 0 for _, j, _ in parts):
        parts[0] = (parts[0][0], 0, parts[0][2])
    args = (n_rows, n, n_formats, with_bits, parts)
    got, want = class_stack_of(*args), class_stack_scipy(*args)
    assert got.shape == want.shape == (n_rows, n * (1 + n_formats + with_bits))
    assert got.dtype == want.dtype == np.int64
    for name in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


def test_stack_by_hand():
    # one row; part a pays format 0 on cores 0 and 2, part b counts bits only (4 per event) on cores 1 and 2
    a = sp.csr_matrix(np.array([[3, 0, 1]]), dtype=np.int64)
    b = sp.csr_matrix(np.array([[0, 5, 2]]), dtype=np.int64)
    got = class_stack_of(1, 3, 1, True, [(a, 0, 0), (b, -1, 4)]).toarray()[0]
    # messages to cores 0 and 2; events 3 and 1; bits only where a message goes: core 2, 4 x 2
    assert got.tolist() == [1, 0, 1, 3, 0, 1, 0, 0, 8]


def test_stack_leaves_non_canonical_parts_to_scipy():
    f = sp.csr_matrix((np.array([2, 0], np.int64), np.array([1, 0]), np.array([0, 2])), shape=(1, 3))
    assert class_stack_of(1, 3, 1, False, [(f, 0, 0)]) is None and class_stack_of(1, 3, 1, False, []) is None
