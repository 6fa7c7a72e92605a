"""The compiled count kernels (hwmodels.kernels.count, issue 14) against plain numpy recounts on random inputs:
spikes per row and the spikes an activity record misses, the spikes grouped by row (sorted segments in one pass,
others counting-sorted), the unicast flows (a
per-row, per-class count times the class fan-out, summed per destination) and the set bits per neuron chunk."""
import numpy as np
import pytest
import scipy.sparse as sp

from hwmodels import activity
from hwmodels.kernels.count import (FLOWS_PER_ROW, chunk_bits, count_rows, dst_major, multicast_flows,
                                    unicast_flows)

NO_GROUP = (np.zeros(0, np.int64), 0, *[np.zeros(0, np.int64)] * 4)


def _segments(rng, n_seg, size, n_rows, max_len=12):
    """Random segments of neuron indices (int32, like a trace) with the row of core 0 of each segment (rows of
    different segments apart: 4 cores per segment)."""
    lengths = rng.integers(0, max_len, n_seg)
    hi = np.cumsum(lengths).astype(np.int64)
    lo = hi - lengths
    idx = rng.integers(0, size, int(hi[-1]) if n_seg else 0).astype(np.int32)
    seg_base = rng.permutation(n_rows // 4)[:n_seg].astype(np.int64) * 4
    return lo, hi, idx, seg_base


def _rows(lo, hi, idx, seg_base, core):
    """Row of every event and its segment, by numpy."""
    seg = np.repeat(np.arange(len(lo)), hi - lo)
    return seg_base[seg] + core[idx], seg


@pytest.mark.parametrize("n_t", [1, 3])
def test_count_rows_counts_spikes_and_unmarked_ones(n_t):
    rng = np.random.default_rng(7)
    n_s, size, n_rows = 4, 37, 60
    lo, hi, idx, seg_base = _segments(rng, n_s * n_t, size, n_rows)
    core = rng.integers(0, 4, size).astype(np.int64)
    bits = rng.random((n_s, n_t + 1, size)) < 0.5
    packed = activity.pack(bits)
    spikes = np.zeros(n_rows, np.int64)
    bad, seg, neuron = count_rows(lo, hi, idx, seg_base, core, spikes, packed.reshape(-1, packed.shape[2]), n_t,
                                  NO_GROUP)
    row, ev_seg = _rows(lo, hi, idx, seg_base, core)
    assert bad == -1
    assert np.array_equal(spikes, np.bincount(row, minlength=n_rows))
    unmarked = ~bits[ev_seg // n_t, ev_seg % n_t, idx]
    assert np.array_equal(seg, ev_seg[unmarked]) and np.array_equal(neuron, idx[unmarked])
    spikes2 = np.zeros(n_rows, np.int64)  # no record: nothing checked
    bad, seg, neuron = count_rows(lo, hi, idx, seg_base, core, spikes2, np.zeros((0, 1), np.uint8), n_t, NO_GROUP)
    assert bad == -1 and len(seg) == len(neuron) == 0 and np.array_equal(spikes2, spikes)


def test_count_rows_reports_the_first_index_out_of_range():
    rng = np.random.default_rng(8)
    lo, hi, idx, seg_base = _segments(rng, 6, 10, 30)
    idx[[5, 9]] = [10, -1]
    bad, _, _ = count_rows(lo, hi, idx, seg_base, np.zeros(10, np.int64), np.zeros(30, np.int64),
                           np.zeros((0, 1), np.uint8), 2, NO_GROUP)
    assert bad == 5


def _class_stack(rng, n_cls, n, blocks, orphan=False):
    """Dense (n_cls, (1 + blocks) * n) int64 class stack: messages 0/1, blocks > 0 only where a message is."""
    msg = (rng.random((n_cls, n)) < 0.3).astype(np.int64)
    vals = rng.integers(0, 9, (n_cls, blocks, n)) * msg[:, None, :]
    if orphan:
        c, d = np.argwhere(msg == 0)[0]
        vals[c, 0, d] = 3
    return np.concatenate([msg[:, None, :], vals], axis=1).reshape(n_cls, -1)


def _csr(dense, rng):
    """CSR arrays (int64) of a dense matrix, each row's entries shuffled."""
    indptr, indices, data = [0], [], []
    for row in dense:
        cols = rng.permutation(np.flatnonzero(row))
        indices += cols.tolist()
        data += row[cols].tolist()
        indptr.append(len(indices))
    return (np.array(indptr, np.int64), np.array(indices, np.int64), np.array(data, np.int64))


@pytest.mark.parametrize("canonical", [False, True])
def test_dst_major_regroups_a_class_stack_by_destination(canonical):
    """Rows with shuffled entries, and canonical rows (sorted: block 0 first, the order build_fanout's stacks
    have, which dst_major takes without sorting)."""
    rng = np.random.default_rng(9)
    n, blocks = 7, 2
    dense = _class_stack(rng, 12, n, blocks, orphan=True)
    csr = _csr(dense, rng)
    if canonical:
        m = sp.csr_matrix(dense)
        csr = (m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(np.int64))
    ptr, dst, val = dst_major(*csr, n, 1 + blocks)
    per = dense.reshape(12, 1 + blocks, n)
    for c in range(12):
        want = np.flatnonzero(per[c].any(axis=0))
        assert np.array_equal(dst[ptr[c]:ptr[c + 1]], want)
        assert np.array_equal(val[ptr[c]:ptr[c + 1]], per[c][:, want].T)


def _grouped(rng, n_rows, n_cls, n_seg, sort):
    """Events of random segments grouped by count_rows (segments sorted by neuron, on cores of contiguous
    neurons, when `sort`): (row_lo, row_hi, ev_cls, row and class (offset 2) of every event)."""
    size = 50
    lo, hi, idx, seg_base = _segments(rng, n_seg, size, n_rows, max_len=60)
    core = np.repeat(np.arange(4), 13)[:size].astype(np.int64) if sort else rng.integers(0, 4, size)
    if sort:
        for a, b in zip(lo, hi):
            idx[a:b] = np.sort(idx[a:b])
    cls = rng.integers(0, n_cls - 2, size).astype(np.int64)
    row, _ = _rows(lo, hi, idx, seg_base, core)
    spikes = np.zeros(n_rows, np.int64)
    row_lo, row_hi, ev_cls = np.zeros(n_rows, np.int64), np.zeros(n_rows, np.int64), np.empty(len(idx), np.int64)
    group = (cls, 2, np.unique(core), row_lo, row_hi, ev_cls)
    assert count_rows(lo, hi, idx, seg_base, core, spikes, np.zeros((0, 1), np.uint8), 1, group)[0] == -1
    assert np.array_equal(spikes, np.bincount(row, minlength=n_rows))
    return row_lo, row_hi, ev_cls, row, cls[idx] + 2


@pytest.mark.parametrize("sort", [True, False])
def test_count_rows_groups_spikes_by_row_in_trace_order(sort):
    rng = np.random.default_rng(10)
    row_lo, row_hi, ev_cls, row, cls = _grouped(rng, 80, 9, 15, sort)
    for r in range(80):
        assert np.array_equal(ev_cls[row_lo[r]:row_hi[r]], cls[row == r])


@pytest.mark.parametrize("n, blocks", [(5, 2), (40, 3), (400, 1)])
def test_unicast_flows_equal_dense_product(n, blocks):
    """The flows equal the dense product of the rows' class counts and the class stack; with 400 cores the rows
    emit more entries than the first output arrays hold (FLOWS_PER_ROW per row with spikes), which are then
    doubled."""
    rng = np.random.default_rng(11)
    n_rows, n_cls, per_sample = 48, 15, 12
    row_lo, row_hi, ev_cls, row, cls = _grouped(rng, n_rows, n_cls, 10, sort=False)
    dense = _class_stack(rng, n_cls, n, blocks)
    struct_cls, nonzero_cls = rng.integers(0, 50, n_cls), rng.integers(0, 50, n_cls)
    ptr, dst, val = dst_major(*_csr(dense, rng), n, 1 + blocks)
    got = unicast_flows(row_lo, row_hi, ev_cls, (ptr, dst, val), n, per_sample, (struct_cls, nonzero_cls))
    counts = np.zeros((n_rows, n_cls), np.int64)
    np.add.at(counts, (row, cls), 1)
    prod = (counts @ dense).reshape(n_rows, 1 + blocks, n)
    want_row, want_dst = np.nonzero(prod[:, 0, :])
    assert np.array_equal(got[0], want_row) and np.array_equal(got[1], want_dst)
    assert np.array_equal(got[2], prod[want_row, 0, want_dst])
    assert np.array_equal(got[3], prod[want_row, 1:, want_dst])
    sample = np.repeat(np.arange(n_rows // per_sample), per_sample)
    assert np.array_equal(got[4], np.bincount(sample, counts @ struct_cls).astype(np.int64))
    assert np.array_equal(got[5], np.bincount(sample, counts @ nonzero_cls).astype(np.int64))
    assert not got[6] and all(a.dtype == np.int64 for a in got[:6])
    assert n < 400 or len(got[0]) > max(1024, FLOWS_PER_ROW * np.count_nonzero(row_hi != row_lo))


@pytest.mark.parametrize("cuts", [[5, 17, 30], [12, 24, 36], [1, 47]])
def test_unicast_flows_on_row_ranges_join_to_the_whole(cuts):
    """Ranges of rows that start or end inside a sample (first_row), joined as hwmodels.events.actions does (rows
    shifted by first_row, per-sample sums added at the sample of first_row), give the whole batch's result."""
    rng = np.random.default_rng(13)
    n_rows, n_cls, per_sample, n = 48, 15, 12, 9
    row_lo, row_hi, ev_cls, _, _ = _grouped(rng, n_rows, n_cls, 10, sort=False)
    ptr, dst, val = dst_major(*_csr(_class_stack(rng, n_cls, n, 2), rng), n, 3)
    totals = (rng.integers(0, 50, n_cls), rng.integers(0, 50, n_cls))
    whole = unicast_flows(row_lo, row_hi, ev_cls, (ptr, dst, val), n, per_sample, totals)
    bounds = [0, *cuts, n_rows]
    parts = [(r0, r1, unicast_flows(row_lo[r0:r1], row_hi[r0:r1], ev_cls, (ptr, dst, val), n, per_sample, totals,
                                    r0)) for r0, r1 in zip(bounds[:-1], bounds[1:])]
    assert np.array_equal(np.concatenate([p[0] + r0 for r0, _, p in parts]), whole[0])
    for k in (1, 2, 3):
        assert np.array_equal(np.concatenate([p[k] for _, _, p in parts]), whole[k])
    for k in (4, 5):
        sums = np.zeros(n_rows // per_sample, np.int64)
        for r0, r1, p in parts:  # one sum per sample the range touches
            assert len(p[k]) == (r1 - 1) // per_sample - r0 // per_sample + 1
            sums[r0 // per_sample:r0 // per_sample + len(p[k])] += p[k]
        assert np.array_equal(sums, whole[k])


def _multicast_reference(row, cls, route_of, dense, n_rows, n, blocks):
    """(flows [(row, route, spikes)] sorted, deliveries {(flow index, dst): values (1 + blocks,)}) by a dict per
    (row, route) of the class counts, each group's dense product summed by numpy."""
    groups = {}
    for r, c in zip(row.tolist(), cls.tolist()):
        if route_of[c] >= 0:
            groups.setdefault((r, int(route_of[c])), np.zeros(len(route_of), np.int64))[c] += 1
    flows, deliv = [], {}
    for f, key in enumerate(sorted(groups)):
        counts = groups[key]
        flows.append((*key, int(counts.sum())))
        prod = (counts @ dense).reshape(1 + blocks, n)
        for d in np.flatnonzero(prod[0]):
            deliv[(f, int(d))] = prod[:, d]
    return flows, deliv


@pytest.mark.parametrize("n, n_routes", [(6, 3), (40, 1), (400, 5)])
def test_multicast_flows_equal_a_product_per_row_and_route(n, n_routes):
    """One flow per (row, destination set) holding its spikes, deliveries = the group's dense product, sorted;
    classes without a set (-1) send nothing but count in the totals; with 400 cores the rows need more room than
    the first output arrays hold, which are then doubled; ranges of rows join to the whole."""
    rng = np.random.default_rng(14)
    n_rows, n_cls, per_sample, blocks = 48, 15, 12, 2
    row_lo, row_hi, ev_cls, row, cls = _grouped(rng, n_rows, n_cls, 10, sort=False)
    dense = _class_stack(rng, n_cls, n, blocks)
    route_of = rng.integers(-1, n_routes, n_cls).astype(np.int64)
    route_of[dense[:, :n].sum(axis=1) == 0] = -1  # a class without messages has no destination set
    totals = (rng.integers(0, 50, n_cls), rng.integers(0, 50, n_cls))
    fan = dst_major(*_csr(dense, rng), n, 1 + blocks)
    got = multicast_flows(row_lo, row_hi, ev_cls, route_of, fan, n, per_sample, totals)
    flows, deliv = _multicast_reference(row, cls, route_of, dense, n_rows, n, blocks)
    assert list(zip(*(a.tolist() for a in got[:3]))) == flows and len(flows) > n_rows // 2
    assert list(zip(got[3].tolist(), got[4].tolist())) == sorted(deliv)
    want = np.array([deliv[k] for k in sorted(deliv)]).reshape(-1, 1 + blocks)
    assert np.array_equal(got[5], want[:, 0]) and np.array_equal(got[6], want[:, 1:])
    counts = np.zeros((n_rows, n_cls), np.int64)
    np.add.at(counts, (row, cls), 1)
    sample = np.repeat(np.arange(n_rows // per_sample), per_sample)
    assert np.array_equal(got[7], np.bincount(sample, counts @ totals[0]).astype(np.int64))
    assert np.array_equal(got[8], np.bincount(sample, counts @ totals[1]).astype(np.int64))
    assert not got[9] and all(a.dtype == np.int64 for a in got[:9])
    assert n < 400 or len(got[3]) > max(1024, FLOWS_PER_ROW * np.count_nonzero(row_hi != row_lo))
    parts = [(r0, multicast_flows(row_lo[r0:r1], row_hi[r0:r1], ev_cls, route_of, fan, n, per_sample, totals, r0))
             for r0, r1 in ((0, 17), (17, 30), (30, n_rows))]
    assert np.array_equal(np.concatenate([p[0] + r0 for r0, p in parts]), got[0])
    first = np.cumsum([0] + [len(p[0]) for _, p in parts])
    assert np.array_equal(np.concatenate([p[3] + f0 for (_, p), f0 in zip(parts, first)]), got[3])
    for k in (1, 2, 4, 5, 6):
        assert np.array_equal(np.concatenate([p[k] for _, p in parts]), got[k])


def test_multicast_flows_sort_many_classes_of_a_row_by_route():
    """A row with more classes than the insertion sort takes (the library sort of (route, class) keys)."""
    rng = np.random.default_rng(15)
    n, n_cls, blocks = 5, 60, 1
    dense = _class_stack(rng, n_cls, n, blocks)
    dense[:, 0] = 1  # every class messages core 0
    route_of = rng.integers(0, 7, n_cls).astype(np.int64)
    cls = rng.permutation(np.repeat(np.arange(n_cls, dtype=np.int64), 2))
    fan = dst_major(*_csr(dense, rng), n, 1 + blocks)
    row_lo, row_hi = np.array([0], np.int64), np.array([len(cls)], np.int64)
    got = multicast_flows(row_lo, row_hi, cls, route_of, fan, n, 1, (np.ones(n_cls, np.int64),) * 2)
    flows, deliv = _multicast_reference(np.zeros(len(cls), np.int64), cls, route_of, dense, 1, n, blocks)
    assert list(zip(*(a.tolist() for a in got[:3]))) == flows and len(flows) == len(np.unique(route_of))
    assert list(zip(got[3].tolist(), got[4].tolist())) == sorted(deliv) and got[7].tolist() == [2 * n_cls]


def test_unicast_flows_flag_values_without_messages():
    rng = np.random.default_rng(12)
    n_cls = 6
    dense = _class_stack(rng, n_cls, 4, 1, orphan=True)
    c = int(np.flatnonzero((dense[:, 4:] != 0) & (dense[:, :4] == 0))[0] // 4)  # the class with the orphan
    ptr, dst, val = dst_major(*_csr(dense, rng), 4, 2)
    row_lo, row_hi, ev_cls = np.array([0], np.int64), np.array([2], np.int64), np.array([c, c], np.int64)
    got = unicast_flows(row_lo, row_hi, ev_cls, (ptr, dst, val), 4, 1, (np.zeros(n_cls, np.int64),) * 2)
    assert got[6]
    msg = dense[c, :4] * 2  # only the entries with messages are emitted
    assert np.array_equal(got[1], np.flatnonzero(msg)) and np.array_equal(got[2], msg[msg > 0])


@pytest.mark.parametrize("size", [1, 8, 29, 64])
def test_chunk_bits_equal_unpacked_sums(size):
    rng = np.random.default_rng(size)
    bits = rng.random((5, size)) < 0.5
    packed = activity.pack(bits)
    starts = np.unique(np.r_[0, rng.integers(0, size, 3)]).astype(np.int64)
    got = chunk_bits(packed, starts, size)
    want = np.add.reduceat(bits.astype(np.int64), starts, axis=1)
    assert np.array_equal(got, want) and got.dtype == np.int64


@pytest.mark.parametrize("size", [3, 13, 16])
def test_chunk_bits_ignore_the_padding_bits_of_the_last_byte(size):
    """A row packed by hand as 0xFF bytes holds `size` active neurons, not 8 per byte (the padding bits were
    counted: 8 for a population of 3)."""
    packed = np.full((2, (size + 7) // 8 + 1), 0xFF, np.uint8)  # one byte more than the rows need, also ignored
    for starts in (np.array([0]), np.array([0, 2])):
        got = chunk_bits(packed, starts, size)
        assert got.sum(axis=1).tolist() == [size, size] and got[:, 0].tolist() == [starts[1] if len(starts) > 1
                                                                                    else size] * 2


def test_bitmap_rows_of_zero_weights_send_and_read_nothing():
    """A bitmap projection whose source neuron has only zero weights into one core's targets: that core gets no
    message and reads no bits (it used to get presence bits without a message, which crashed count_actions); the
    other core reads 1 presence bit per structural synapse + 8 weight bits per non-zero one (hand-computed)."""
    from hwmodels import load_preset, map_network
    from hwmodels.events.actions import build_fanout, count_actions
    from hwmodels.mapping.storage import read_bits
    from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection

    pops = [Population("in", (2,), NeuronModel(kind="input")), Population("out", (4,), NeuronModel())]
    w = np.array([[1.0, 0.5], [2.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # source 0: non-zero into targets 0, 1 only
    g = NetworkGraph(pops, [Projection("p", "in", "out", "dense", w, storage="bitmap")])
    chip = load_preset("loihi", {"core.neurons_per_core": 2})
    m = map_network(g, chip)
    assert m.core_of_neuron["out"].tolist() == [1, 1, 2, 2]
    tr = EventTrace.from_dense({"in": np.array([[[True, False]]]), "out": np.zeros((1, 1, 4), bool)})
    for multicast in (False, True):
        a = count_actions(g, tr, m, build_fanout(g, m, multicast, core=chip.core), range(1))
        assert a.deliv_dst.tolist() == [1] and a.deliv_messages.tolist() == [1]
        assert a.deliv_events.tolist() == [[2]]
        assert read_bits(g.projections[0], (2,), chip.core) == (1, 8)
        assert a.deliv_bits.tolist() == [1 * 2 + 8 * 2]


def test_flow_channel_sums_add_each_flows_tree_channels_in_flow_order():
    """Hand case: trees of 2, 0 and 3 channels laid end to end (bins 1, 0 | - | 2, 1, 0); flows on trees 2, 0, 1, 2
    with 3, 2, 0, 1 hops read their trees' first channels in order: nodes' bins 2, 1, 0, 1, 0, 2; the sums equal
    np.bincount of those bins bit for bit (random weights, each bin's in node order)."""
    from hwmodels.kernels.gather import flow_channel_sums
    bins = np.array([1, 0, 2, 1, 0], np.int64)
    tree_off = np.array([0, 2, 2, 5], np.int64)
    route, hops = np.array([2, 0, 1, 2], np.int64), np.array([3, 2, 0, 1], np.int64)
    w = np.random.default_rng(3).random(6) * 1e-6
    got = flow_channel_sums(bins, tree_off, route, hops, w, 4)
    want = np.bincount(np.array([2, 1, 0, 1, 0, 2]), weights=w, minlength=4)
    assert got.tobytes() == want.tobytes() and got[1] == w[1] + w[3]
    assert flow_channel_sums(bins, tree_off, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 3).tolist() \
        == [0.0, 0.0, 0.0]
