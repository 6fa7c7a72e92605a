"""The flat route table (hwmodels.events.route_table.RouteTable) against trees built one by one with
Network._build (through Network.tree): the vectorised unicast table and the concatenated multicast table equal the
built trees' arrays field by field and bit for bit, the Trees it makes on access equal the built ones (incl. up,
eject, children, blocking), and its recost equals the trees built on the other network."""
import numpy as np
import pytest

from hwmodels import load_preset, map_network
from hwmodels.events.network import Network, RouteUse, route_use
from hwmodels.events.route_table import FIELDS, RouteTable, Tree
from hwmodels.timing.des_nodes import Nodes
from hwmodels.trace import NetworkGraph, NeuronModel, Population


def _nets(multichip: bool) -> tuple[Network, Network]:
    """Networks of one mapping of 30 cores on two chips of other hop latencies and energies: 30 tiles of one chip,
    or 15 tiles (2 cores each) on 3 x 2-tile chips with chip-to-chip links."""
    over = {"core.neurons_per_core": 16, "mesh_width": 6, "mesh_height": 5, "cores_per_tile": 1}
    if multichip:
        over.update({"mesh_width": 3, "mesh_height": 2, "cores_per_tile": 2, "n_chips": 4,
                     "router.chip_link_latency_s": 20e-9, "router.chip_link_energy_j": 10e-12})
    base = load_preset("loihi", over)
    r = base.router
    other = load_preset("loihi", {**over, "router.hop_latency_ew_s": 3.3 * r.hop_latency_ew_s,
                                  "router.hop_latency_ns_s": 0.7 * r.hop_latency_ns_s,
                                  "router.hop_energy_ns_j": 2.5 * r.hop_energy_ns_j,
                                  **({"router.chip_link_latency_s": 31e-9} if multichip else {})})
    m = map_network(NetworkGraph([Population("a", (16 * 30,), NeuronModel())], []), base)
    return Network(m, base), Network(m, other)


def _multicast(net: Network, rng, n: int) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """n random (source core, destination cores) route sets, some of one destination and some on the source tile."""
    cores = len(net.tiles)
    src = rng.integers(0, cores, n)
    dsts = [tuple(rng.choice(cores, rng.integers(1, 9), replace=False).tolist()) for _ in range(n)]
    return src, dsts


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _assert_table_is(table: RouteTable, trees: list[Tree]) -> None:
    """Every flat field of `table` is the built trees' arrays laid end to end, bit for bit; eject as CSR."""
    sizes = [len(t.links) for t in trees]
    assert len(table) == len(trees) and table.off.tolist() == np.concatenate([[0], np.cumsum(sizes)]).tolist()
    for name, dtype in FIELDS.items():
        want = np.concatenate([getattr(t, name) for t in trees]).astype(dtype)
        assert _same_bits(getattr(table, name), want), name
    e_off, tile, chan = table.eject
    got = [{tuple(xy): c for xy, c in zip(tile[a:b].tolist(), chan[a:b].tolist())}
           for a, b in zip(e_off[:-1], e_off[1:])]
    assert got == [t.eject for t in trees]
    assert table.max_depth.tolist() == [int(t.depth.max(initial=0)) for t in trees]


def _assert_tree_is(got: Tree, want: Tree) -> None:
    """A Tree made from a table equals the built one, field by field (bit for bit) and in its derived values."""
    for name in FIELDS:
        assert _same_bits(getattr(got, name), getattr(want, name)), name
    assert got.children == want.children and got.eject == want.eject and got.roots == want.roots
    assert np.array_equal(got.up, want.up) and got.n_channels == want.n_channels


@pytest.mark.parametrize("multichip", [False, True])
def test_unicast_table_equals_trees_built_one_by_one(multichip):
    """Random core pairs (incl. pairs on one tile): the table built at once equals Network._build's trees, and so
    do the Trees it makes on access; unicast_trees gives them too."""
    net, _ = _nets(multichip)
    rng = np.random.default_rng(1)
    src, dst = rng.integers(0, len(net.tiles), 400), rng.integers(0, len(net.tiles), 400)
    table = net.unicast_table(src, dst)
    built = [net.tree(s, (d,)) for s, d in zip(src.tolist(), dst.tolist())]
    assert any(len(t.links) == 0 for t in built) and max(len(t.links) for t in built) >= 7
    assert not multichip or (table.kind == 2).any()
    _assert_table_is(table, built)
    for got, want in zip(table.trees, built):
        _assert_tree_is(got, want)
    for got, want in zip(net.unicast_trees(src[:50], dst[:50]), built):
        _assert_tree_is(got, want)


@pytest.mark.parametrize("multichip", [False, True])
def test_multicast_table_equals_the_built_trees_and_makes_them_back(multichip):
    """Random multicast route sets: RouteTable.of_trees lays the built trees end to end, bit for bit; the Trees
    it makes on access equal them (incl. forks, non-blocking channels and their climbs, Tree.up); a concat of
    two tables is the table of both tree lists."""
    net, _ = _nets(multichip)
    src, dsts = _multicast(net, np.random.default_rng(2), 200)
    built = [net.tree(s, d) for s, d in zip(src.tolist(), dsts)]
    assert any(sum(len(k) > 1 for k in t.children) for t in built)  # forks exist
    table = RouteTable.of_trees(built)
    _assert_table_is(table, built)
    assert not table.blocking.all() and table.blocking.any()
    for t in (0, 17, 199, -1):
        _assert_tree_is(table.trees[t], built[t])
    both = RouteTable.concat([RouteTable.of_trees(built[:80]), RouteTable.of_trees(built[80:])])
    _assert_table_is(both, built)


@pytest.mark.parametrize("multichip", [False, True])
def test_multicast_table_built_at_once_equals_the_trees_built_one_by_one(multichip):
    """Network.multicast_table (one compiled walk over all routes, hwmodels.kernels.trees) equals Network._build's
    trees route by route, bit for bit: channel order, parents, depths, kinds, costs, before_s, blocking and the
    eject map (destination tiles in (x, y) order, -1 for the source tile), with repeated destination cores, cores
    sharing a tile and the source's own tile among the destinations; an empty route set gives an empty table."""
    net, _ = _nets(multichip)
    src, dsts = _multicast(net, np.random.default_rng(5), 300)
    dsts = [d + d[:1] + ((int(s),) if k % 7 == 0 else ()) for k, (s, d) in enumerate(zip(src.tolist(), dsts))]
    table = net.multicast_table(src, [np.array(d) for d in dsts])
    built = [net.tree(s, d) for s, d in zip(src.tolist(), dsts)]
    assert any(-1 in t.eject.values() for t in built) and any(sum(len(k) > 1 for k in t.children) for t in built)
    assert not multichip or (table.kind == 2).any()
    _assert_table_is(table, built)
    for t in (0, 123, -1):
        _assert_tree_is(table.trees[t], built[t])
    assert len(net.multicast_table(np.zeros(0, np.int64), [])) == 0


def test_slot_terms_of_the_table_are_the_trees_up_matrices():
    """Nodes' slot terms on a table of multicast and unicast trees list exactly the entries of every tree's
    Tree.up within K = min((m - 1) // B, the tree's depth) climbs (node i below ancestor z, in increasing i)."""
    net, _ = _nets(False)
    src, dsts = _multicast(net, np.random.default_rng(3), 150)
    trees = [net.tree(s, d) for s, d in zip(src.tolist(), dsts)] + [net.tree(0, (29,)), net.tree(5, (5,))]
    table = RouteTable.of_trees(trees)
    sizes = np.diff(table.off)
    for msgs, depth in ((2, 1), (5, 2), (40, 1)):
        nd = Nodes(table, np.arange(len(trees)), sizes, np.full(len(trees), msgs), np.zeros(len(trees), np.int64),
                   1e-9, depth)
        want = []
        for t, o in zip(trees, table.off[:-1]):
            k = min((msgs - 1) // depth, int(t.depth.max(initial=0)))
            want += [[int(o + i) for i in np.flatnonzero(t.up[:, z] <= k)] for z in range(len(t.links))]
        got = [nd.term_node[a:b].tolist() for a, b in zip(nd.tm_ptr[:-1], nd.tm_ptr[1:])]
        assert got == want and (msgs < 40 or sum(map(len, want)) > 100)


def test_tree_sequence_reads_like_a_tuple():
    """RouteTable.trees: len, truthiness, negative indices, slices (a tuple), iteration and IndexError; a tree is
    made once and kept."""
    net, _ = _nets(False)
    table = net.unicast_table(np.array([0, 1, 2]), np.array([7, 1, 20]))
    seq = table.trees
    assert len(seq) == 3 and seq and not net.unicast_table(np.zeros(0, int), np.zeros(0, int)).trees
    assert seq[-1] is seq[2] and seq[1].n_channels == 0 and seq[1].eject == {net.tiles[1]: -1}
    assert seq[0:2] == (seq[0], seq[1]) and list(seq) == [seq[0], seq[1], seq[2]]
    with pytest.raises(IndexError):
        seq[3]
    assert RouteTable.of(seq) is table and RouteTable.of(table) is table


@pytest.mark.parametrize("multicast", [False, True])
@pytest.mark.parametrize("multichip", [False, True])
def test_recost_of_the_table_equals_trees_built_on_the_other_network(multicast, multichip):
    """A table recosted for the other network (Network.recost, RouteTable.recost) equals the table of the trees
    that network builds, bit for bit (before_s summed parent by parent); Network.recost of a sequence of Tree
    gives those trees; the topology arrays are shared, not copied."""
    net_a, net_b = _nets(multichip)
    rng = np.random.default_rng(4)
    if multicast:
        src, dsts = _multicast(net_a, rng, 200)
    else:
        src = rng.integers(0, len(net_a.tiles), 300)
        dsts = [(int(d),) for d in rng.integers(0, len(net_a.tiles), 300)]
    table = (RouteTable.of_trees([net_a.tree(s, d) for s, d in zip(src.tolist(), dsts)]) if multicast
             else net_a.unicast_table(src, np.array([d[0] for d in dsts])))
    want = [net_b.tree(s, d) for s, d in zip(src.tolist(), dsts)]
    got = net_b.recost(table)
    _assert_table_is(got, want)
    assert got.links is table.links and got.parent is table.parent
    assert not np.array_equal(got.hop_s, table.hop_s) and not np.array_equal(got.before_s, table.before_s)
    for g, w in zip(net_b.recost(tuple(table.trees[:40])), want):
        _assert_tree_is(g, w)
    for t in (0, 99, -1):
        _assert_tree_is(got.trees[t], want[t])


def test_route_use_reads_its_table():
    """route_use keeps the routes as a RouteTable: hops, hop_j and hop_kinds per flow are its trees' channel
    counts, Tree.hop_j.sum() (bit for bit) and kinds; channels are its links and hop latencies."""
    net, _ = _nets(True)
    rng = np.random.default_rng(5)
    src, dst = rng.integers(0, len(net.tiles), 500), rng.integers(0, len(net.tiles), 500)
    use = route_use(src, dst, rng.integers(1, 5, 500), None, net)
    assert isinstance(use, RouteUse) and isinstance(use.table, RouteTable) and use.trees is use.table.trees
    for f in range(0, 500, 7):
        t = net.tree(int(src[f]), (int(dst[f]),))
        tree = use.trees[use.flow_route[f]]
        _assert_tree_is(tree, t)
        assert use.hops[f] == len(t.links) and _same_bits(use.hop_j[f], t.hop_j.sum())
        assert use.hop_kinds[f].tolist() == np.bincount(t.kind, minlength=3).tolist()
    uniq, inv, tree_of, hop_s = use.channels
    assert np.array_equal(uniq[inv], use.table.links) and hop_s is use.table.hop_s
    assert np.array_equal(tree_of, np.repeat(np.arange(len(use.table)), use.table.sizes))
