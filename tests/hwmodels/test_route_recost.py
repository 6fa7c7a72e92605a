"""Routes recosted for other router latencies (Network.recost, RouteUse.recosted) equal routes built on a network
with those latencies, field by field and bit for bit, for unicast and multicast trees on one chip and across
chip-to-chip links; and the DES channel nodes recosted (Nodes.with_costs) equal nodes built anew."""
import dataclasses

import numpy as np
import pytest

from hwmodels import load_preset, map_network
from hwmodels.events.actions import build_fanout, count_actions
from hwmodels.events.network import Network, route_use
from hwmodels.timing.core_times import action_times
from hwmodels.timing.des import build_nodes

ARRAYS = ("links", "parent", "depth", "hop_s", "hop_j", "kind", "before_s", "blocking")


def _chips(multichip: bool):
    """A base chip and one with other hop latencies, link time, chip-link costs and finite buffers."""
    over = {"core.neurons_per_core": 16, "mesh_width": 3, "mesh_height": 2, "cores_per_tile": 4}
    if multichip:
        over.update({"mesh_width": 2, "mesh_height": 1, "n_chips": 4, "router.chip_link_latency_s": 20e-9,
                     "router.chip_link_energy_j": 10e-12})
    base = load_preset("loihi", over)
    r = base.router
    other = load_preset("loihi", {**over, "router.hop_latency_ew_s": 3.3 * r.hop_latency_ew_s,
                                  "router.hop_latency_ns_s": 0.7 * r.hop_latency_ns_s, "router.buffer_depth": 2,
                                  "router.link_bandwidth_msgs_per_s": r.link_bandwidth_msgs_per_s / 3,
                                  "router.hop_energy_ns_j": 2.5 * r.hop_energy_ns_j,
                                  **({"router.chip_link_latency_s": 31e-9} if multichip else {})})
    return base, other


@pytest.mark.parametrize("multicast", [False, True])
@pytest.mark.parametrize("multichip", [False, True])
def test_recosted_routes_equal_routes_built_on_the_other_network(nets, rng, multicast, multichip):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 3, 3, 0.4)
    base, other = _chips(multichip)
    m = map_network(g, base)
    a = count_actions(g, tr, m, build_fanout(g, m, multicast), range(3))
    net_a, net_b = Network(m, base), Network(m, other)
    use_a = route_use(a.flow_src, a.flow_route, a.flow_messages, a.routes, net_a)
    want = route_use(a.flow_src, a.flow_route, a.flow_messages, a.routes, net_b)
    got = use_a.recosted(net_b)
    assert got.topology is use_a and want.topology is want
    assert len(got.trees) == len(want.trees) > 0
    if multichip:
        assert any((t.kind == 2).any() for t in want.trees)
    assert any(len(t.links) > 1 for t in want.trees)
    for tg, tw in zip(got.trees, want.trees):
        for name in ARRAYS:
            assert np.array_equal(getattr(tg, name), getattr(tw, name)), name
        assert tg.children == tw.children and tg.eject == tw.eject
        assert np.array_equal(tg.up, tw.up)
    for field in dataclasses.fields(want):
        if field.name not in ("table", "base"):
            assert np.array_equal(getattr(got, field.name), getattr(want, field.name)), field.name
    # the DES channel nodes of the recosted routes equal nodes built on the other network's routes
    t_b = action_times(a, other, m)
    built, _ = build_nodes([(a, t_b, want)], other.router.buffer_depth)
    base_nodes, _ = build_nodes([(a, action_times(a, base, m), use_a)], other.router.buffer_depth)
    moved = base_nodes.with_costs(got.table, t_b.link_s)
    assert built.n > 0 and len(built.term_node) > 0  # finite buffers: slot terms exist
    for name in ("hop", "before", "cm", "term_const", "term_node", "tm_ptr", "parent", "link", "missing"):
        assert np.array_equal(getattr(moved, name), getattr(built, name)), name
    assert not np.array_equal(moved.hop, base_nodes.hop)  # the costs did change


def test_tree_energy_sums_are_numpys_sums_bit_for_bit():
    """RouteUse.recosted's per-tree energy sums (vectorised for trees under 8 channels) equal Tree.hop_j.sum()
    exactly, for trees of 0 to 11 channels with hop energies of very different magnitudes (where summation
    order shows)."""
    from types import SimpleNamespace

    from hwmodels.events.network import tree_energy_sums
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(0, 12, 30)
        energy = rng.random(3) * 10.0 ** rng.integers(-15, -9, 3)
        kind = rng.integers(0, 3, int(sizes.sum()))
        bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        trees = tuple(SimpleNamespace(hop_j=energy[kind[lo:hi]]) for lo, hi in zip(bounds[:-1], bounds[1:]))
        got = tree_energy_sums(SimpleNamespace(kind=kind, off=bounds), energy)
        assert np.array_equal(got, [t.hop_j.sum() for t in trees])


@pytest.mark.parametrize("multichip", [False, True])
def test_vectorised_unicast_paths_equal_the_general_tree_builder(multichip):
    """Network.unicast_trees (every unicast route at once, hwmodels.events.paths) gives, field by field and bit
    for bit, the trees Network.tree builds link by link, for every pair of 20 cores, on one chip and across
    chip-to-chip links; path_latency_s of any pairs equals the pair table path_s."""
    from hwmodels.trace import NetworkGraph, NeuronModel, Population
    chip, _ = _chips(multichip)
    m = map_network(NetworkGraph([Population("a", (16 * 20,), NeuronModel())], []), chip)
    n = m.cores_used
    src, dst = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    fast, slow = Network(m, chip).unicast_trees(src, dst), Network(m, chip)
    assert n == 20 and any(len(t.links) > 2 for t in fast)
    assert not multichip or any((t.kind == 2).any() for t in fast)
    for s, d, t in zip(src.tolist(), dst.tolist(), fast):
        ref = slow.tree(s, (d,))
        for name in ARRAYS:
            assert np.array_equal(getattr(t, name), getattr(ref, name)), name
        assert t.children == ref.children and t.eject == ref.eject and np.array_equal(t.up, ref.up)
    net = Network(m, chip)
    assert np.array_equal(net.path_latency_s(src, dst), net.path_s[src, dst])
    assert net.path_s.shape == net.path_j.shape == net.path_hops.shape == (n, n)


@pytest.mark.parametrize("multicast", [False, True])
@pytest.mark.parametrize("multichip", [False, True])
def test_eject_channels_are_the_trees_own_eject_channels(nets, rng, multicast, multichip):
    """The DES's channel into each delivery's destination tile (the unicast shortcut: a path's last channel;
    multicast: a search over all trees' channels) is the one the tree builder records (Tree.eject), -1 on the
    source tile."""
    from hwmodels.timing import des

    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 3, 3, 0.4)
    base, _ = _chips(multichip)
    m = map_network(g, base)
    a = count_actions(g, tr, m, build_fanout(g, m, multicast), range(3))
    net = Network(m, base)
    use = route_use(a.flow_src, a.flow_route, a.flow_messages, a.routes, net)
    got = des._eject_channels(a, use, net)
    want = [use.trees[use.flow_route[f]].eject[net.tiles[d]] for f, d in zip(a.deliv_flow, a.deliv_dst)]
    assert got.dtype == np.int64 and np.array_equal(got, want)
    assert (got == -1).any() and (got > 0).any()


@pytest.mark.parametrize("multicast", [False, True])
def test_link_messages_and_node_offsets_against_the_trees(nets, rng, multicast):
    """RouteUse.link_messages: every pair's messages added on each link of its tree, by a loop over the trees;
    node_off: each flow's nodes are its tree's channels; a recosted use shares both (they hold no latency) and
    link_totals gives the same messages."""
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, 3, 3, 0.4)
    base, other = _chips(True)
    m = map_network(g, base)
    a = count_actions(g, tr, m, build_fanout(g, m, multicast), range(3))
    use = route_use(a.flow_src, a.flow_route, a.flow_messages, a.routes, Network(m, base))
    want: dict[int, int] = {}
    for pair, tree in enumerate(use.trees):
        for link in tree.links.tolist():
            want[link] = want.get(link, 0) + int(use.messages[pair])
    ids, msgs = use.link_messages
    assert ids.tolist() == sorted(want) and msgs.tolist() == [want[k] for k in sorted(want)] and len(want) > 3
    assert msgs.dtype == np.int64
    sizes = np.array([len(use.trees[r].links) for r in use.flow_route.tolist()], np.int64)
    assert use.node_off[0] == 0 and np.array_equal(np.diff(use.node_off), sizes) and sizes.max() > 1
    moved = use.recosted(Network(m, other))
    assert moved.link_messages is use.link_messages and moved.node_off is use.node_off
    got = moved.link_totals(other.router.link_time_s, other.core.message_out_latency_s)
    assert np.array_equal(got[0], ids) and np.array_equal(got[1], msgs)
