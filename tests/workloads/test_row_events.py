"""The recorder's compiled event extraction (workloads.lowering.events.row_events, events_kernel.nonzero_rows) gives
the arrays of the numpy path it replaces (event_mask, mask_events, packing the mask) and of a plain per-row
np.flatnonzero, for every layout the recorder hands it: plain rows, token views, graded values, row lengths that
are not multiples of 64 or 8, -0.0 and NaN, and rows split over the lowering's threads."""
import numpy as np
import pytest
import torch

from hwmodels.activity import pack
from hwmodels.trace import NeuronModel, Population
from workloads.lowering import events
from workloads.lowering.activity import population_activity
from workloads.lowering.events import event_mask, mask_events, row_events
from workloads.lowering.events_kernel import nonzero_rows
from workloads.lowering.jobs import Jobs


def _values(seed: int, shape, density: float, dtype=np.float32) -> np.ndarray:
    """Seeded normal values, zero outside `density`, with a -0.0 and a NaN (non-zero for IEEE !=) planted."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(shape) * (rng.random(shape) < density)).astype(dtype)
    flat = a.reshape(-1)
    flat[0], flat[-1] = -0.0, np.nan
    return a


def _plain(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """counts, indices, values of each row's non-zero entries by a per-row np.flatnonzero (the definition)."""
    idx = [np.flatnonzero(r != 0) for r in rows]
    return (np.array([len(i) for i in idx], np.int64), np.concatenate(idx).astype(np.int32),
            np.concatenate([r[i] for r, i in zip(rows, idx)]).astype(np.float32))


@pytest.mark.parametrize("n", [1, 7, 8, 63, 64, 65, 130, 1000])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.bool_])
def test_nonzero_rows_equal_flatnonzero_per_row(n, density, dtype):
    a = _values(n, (5, n), density).astype(dtype)
    counts, indices, vals, flags = nonzero_rows(a, True, True)
    want_counts, want_idx, want_vals = _plain(a)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(indices, want_idx)
    np.testing.assert_array_equal(vals, want_vals)  # NaN where the row has it
    np.testing.assert_array_equal(flags, pack(a != 0))
    assert counts.dtype == np.int64 and indices.dtype == np.int32 and vals.dtype == np.float32
    c2, i2, v2, f2 = nonzero_rows(a, False, False)
    assert v2 is None and f2 is None and np.array_equal(c2, counts) and np.array_equal(i2, indices)


@pytest.mark.parametrize("n_l, n_d", [(64, 24), (8, 5), (9, 16), (130, 7), (196, 12)])
def test_nonzero_tokens_equal_the_transposed_copy(n_l, n_d):
    mem = _values(n_l * n_d, (6, n_l, n_d), 0.2)  # (rows, L, D): neuron d * L + l
    want = _plain(np.ascontiguousarray(mem.transpose(0, 2, 1)).reshape(6, -1))
    packed = n_l % 8 == 0
    counts, indices, vals, flags = nonzero_rows(mem, True, packed, tokens=True)
    for got, exp in zip((counts, indices, vals), want):
        np.testing.assert_array_equal(got, exp)
    if packed:
        np.testing.assert_array_equal(flags, pack(np.ascontiguousarray(mem.transpose(0, 2, 1)).reshape(6, -1) != 0))
    else:
        with pytest.raises(ValueError, match="L % 8 == 0"):
            nonzero_rows(mem, False, True, tokens=True)


def _numpy_path(values: torch.Tensor, pop: Population, n_t: int, n_b: int, graded: bool):
    """Events and packed flags as the recorder took them before row_events: event_mask, mask_events, pack."""
    mask, vals = event_mask(values, pop, n_t, n_b, graded)
    return mask_events(mask, vals, graded and pop.graded), pack(mask)


@pytest.mark.parametrize("graded", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("split", [False, True])
def test_row_events_equal_the_numpy_path(graded, dtype, split, monkeypatch):
    n_t, n_b = 3, 4
    pop = Population("p", (3, 7, 5), NeuronModel("relay" if graded else "IF"), graded=graded)
    values = torch.from_numpy(_values(11, (n_t, n_b, 3, 7, 5), 0.3, np.float64)).to(dtype)
    if split:  # rows split over two threads from 1 element on
        monkeypatch.setattr(events, "_SPLIT_ELEMENTS", 1)
    with Jobs(2) as jobs:
        ev, flags = row_events(values, pop, n_t, n_b, graded, True, jobs)
    want, want_flags = _numpy_path(values, pop, n_t, n_b, graded)
    np.testing.assert_array_equal(ev.counts, want.counts)
    np.testing.assert_array_equal(ev.indices, want.indices)
    assert (ev.values is None) == (not graded)
    if graded:
        np.testing.assert_array_equal(ev.values, want.values)
    np.testing.assert_array_equal(flags, want_flags)
    act = population_activity(pop, None, None, n_t, n_b, flags)
    np.testing.assert_array_equal(act, population_activity(pop, event_mask(values, pop, n_t, n_b, False)[0], None,
                                                           n_t, n_b))


@pytest.mark.parametrize("n_l, n_d, graded", [(8, 4, False), (16, 3, True), (5, 4, False)])
def test_row_events_of_a_token_view_equal_the_numpy_path(n_l, n_d, graded):
    n_t, n_b = 2, 3
    pop = Population("tok", (n_d, 1, n_l), NeuronModel("relay" if graded else "LIF"), graded=graded)
    view = torch.from_numpy(_values(5, (n_t, n_b, n_l, n_d), 0.3)).transpose(-1, -2)
    assert events._swapped_view(view, n_t, n_b) is not None
    got = row_events(view, pop, n_t, n_b, graded, True)
    if n_l % 8:  # a channel's flags would not end on a byte: the caller packs event_mask's mask
        assert got is None
        ev, _ = row_events(view, pop, n_t, n_b, graded, False)
    else:
        ev, flags = got
        np.testing.assert_array_equal(flags, _numpy_path(view, pop, n_t, n_b, graded)[1])
    want = _numpy_path(view, pop, n_t, n_b, graded)[0]
    for a, b in ((ev.counts, want.counts), (ev.indices, want.indices)):
        np.testing.assert_array_equal(a, b)
    if graded:
        np.testing.assert_array_equal(ev.values, want.values)


def test_row_events_refuses_a_wrong_size_and_leaves_other_dtypes():
    pop = Population("p", (2, 5), NeuronModel("IF"))
    with pytest.raises(ValueError, match="population 'p': recorded 9 neurons per step, expected 10"):
        row_events(torch.zeros(2, 3, 9), pop, 2, 3, False, False)
    assert row_events(torch.zeros(2, 3, 10, dtype=torch.float16), pop, 2, 3, False, False) is None
