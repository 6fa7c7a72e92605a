"""hwmodels.kernels.unique.dense_unique against np.unique (the lookup-table path and the sort path)."""
import numpy as np
import pytest

from hwmodels.kernels.unique import dense_unique, distinct_rows, distinct_valued_rows, first_of_classes


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


@pytest.mark.parametrize("n, k", [(0, 0), (1, 1), (500, 7), (500, 600)])
def test_first_of_classes_equals_minimum_at(rng, n, k):
    classes = rng.integers(0, max(k, 1), n) if k else np.zeros(0, np.int64)
    want = np.full(k, n, np.int64)
    np.minimum.at(want, classes, np.arange(n))  # classes that do not occur keep n
    got = first_of_classes(classes, k)
    assert got.dtype == np.int64 and np.array_equal(got, want)
    assert np.array_equal(first_of_classes(np.array([2, 0, 2, 0]), 4), [1, 4, 0, 4])  # class 1, 3 absent


def test_sorted_unique_is_np_unique():
    """sorted_unique gives np.unique's values and dtype (sorted, distinct, flattened) for empty, one-value, signed,
    wide and 2-D integer arrays."""
    from hwmodels.kernels.unique import sorted_unique
    rng = np.random.default_rng(1)
    for a in (np.array([], np.int64), np.array([5]), rng.integers(-5, 5, 100), rng.integers(0, 10 ** 12, 1000),
              rng.integers(0, 3, (4, 5)).astype(np.int32), np.array([7, 7, 7], np.uint8)):
        want, got = np.unique(a), sorted_unique(a)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_distinct_rows_number_equal_rows_in_order_of_first_appearance(rng, dtype):
    """Rows drawn from 2,500 column sets (some empty, some with columns only at or past the width, which do not
    count) in a table of 8,192 slots: hundreds of distinct rows share slots and are told apart column by column."""
    width = 30
    pool = [np.sort(rng.choice(60, rng.integers(0, 8), replace=False)) for _ in range(2500)]
    rows = [pool[i] for i in rng.integers(0, len(pool), 3000)]
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(dtype)
    indices = np.concatenate(rows).astype(dtype)
    ids, first = distinct_rows(indptr, indices, width)
    keys = [tuple(int(c) for c in r if c < width) for r in rows]
    seen = {}  # key -> id, in order of first appearance
    want = [seen.setdefault(key, len(seen)) if key else -1 for key in keys]
    assert ids.tolist() == want
    assert len(seen) > 500
    assert first.tolist() == [keys.index(key) for key in seen]
    empty = distinct_rows(np.zeros(1, dtype), np.zeros(0, dtype), width)
    assert len(empty[0]) == 0 and len(empty[1]) == 0


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_distinct_valued_rows_number_rows_equal_in_columns_values_and_keys(rng, dtype):
    """Rows drawn from 1,500 (columns, values, keys) triples, many sharing columns and differing only in one value
    or one key, some empty: every row gets the id of the first equal row, as a dict of the triples gives."""
    pool = []
    for _ in range(500):
        cols = np.sort(rng.choice(40, rng.integers(0, 7), replace=False))
        vals = rng.integers(1, 4, len(cols))
        key = rng.integers(0, 3, 2)
        pool.append((cols, vals, key))
        pool.append((cols, vals, key + np.array([0, 1])))  # the same row with another key
        other = vals.copy()
        other[:1] += 1  # another value (or the same empty row)
        pool.append((cols, other, key))
    rows = [pool[i] for i in rng.integers(0, len(pool), 4000)]
    indptr = np.r_[0, np.cumsum([len(c) for c, _, _ in rows])].astype(dtype)
    indices = np.concatenate([c for c, _, _ in rows]).astype(dtype)
    data = np.concatenate([v for _, v, _ in rows]).astype(np.int64)
    keys = np.array([k for _, _, k in rows], np.int64)
    ids, first = distinct_valued_rows(indptr, indices, data, keys)
    tuples = [(tuple(c.tolist()), tuple(v.tolist()), tuple(k.tolist())) for c, v, k in rows]
    seen = {}
    assert ids.tolist() == [seen.setdefault(t, len(seen)) for t in tuples]
    assert len(seen) > 800 and first.tolist() == [tuples.index(t) for t in seen]
    none = distinct_valued_rows(np.zeros(1, dtype), np.zeros(0, dtype), np.zeros(0, np.int64),
                                np.zeros((0, 2), np.int64))
    assert len(none[0]) == 0 and len(none[1]) == 0
