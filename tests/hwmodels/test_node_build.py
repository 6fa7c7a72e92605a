"""The DES channel nodes and their queues as the compiled fill builds them (hwmodels.kernels.nodes.fill,
hwmodels.timing.des_nodes.Nodes / Queues): equal to a plain numpy construction (gathers through the flat channel
index, queues numbered by np.unique of step * n_links + link) on random route tables, flows and steps (empty
steps, one step, few and many links, flows of no channel); the int32 index arrays equal the int64 ones, and the
vector engine's results do not depend on the index dtype."""
import numpy as np
import pytest

from hwmodels.events.route_table import NO_TERM, RouteTable, climbs
from hwmodels.kernels import nodes as kernel
from hwmodels.timing import des
from hwmodels.timing.des_nodes import Nodes, Queues

from test_des_engines import _case, _inputs


def _table(rng, n_trees: int, most: int, n_links: int) -> RouteTable:
    """Random trees of 0..most channels (parents before children, several roots allowed), links below n_links,
    blocking channels among those of one child."""
    sizes = rng.integers(0, most + 1, n_trees)
    parent = np.concatenate([[rng.integers(-1, c) if c else -1 for c in range(s)] for s in sizes] + [[]])
    parent = parent.astype(np.int64)
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    depth = np.zeros(len(parent), np.int64)
    for t in range(n_trees):
        for c in range(off[t], off[t + 1]):
            p = parent[c]
            depth[c] = 1 if p < 0 else depth[off[t] + p] + 1
    n = len(parent)
    flat = np.flatnonzero(parent >= 0)
    kids = np.bincount(parent[flat] + np.repeat(off[:-1], sizes)[flat], minlength=n)
    return RouteTable(off, rng.integers(0, n_links, n).astype(np.int64), parent, depth, np.zeros(n, np.int64),
                      rng.random(n) * 1e-9 + 1e-10, rng.random(n), rng.random(n) * 1e-8,
                      (kids == 1) & (rng.random(n) < 0.7), None)


def _flows(rng, rt: RouteTable, n_flows: int, n_steps: int):
    """(flow_route, hops, msgs, flow_step): whole trees or no channel (a fifth of the flows), steps sorted with gaps."""
    route = rng.integers(0, len(rt), n_flows).astype(np.int64)
    hops = rt.sizes[route] * (rng.random(n_flows) >= 0.2)
    return route, hops, rng.integers(1, 9, n_flows).astype(np.int64), np.sort(rng.integers(0, n_steps, n_flows))


def _reference(rt: RouteTable, route, hops, msgs, flow_step, link_s) -> dict:
    """The per-node arrays and queues by numpy gathers over every node and np.unique of the queue keys."""
    off = np.concatenate([[0], np.cumsum(hops)]).astype(np.int64)
    n, nl = int(off[-1]), int(rt.links.max(initial=-1)) + 1
    flow = np.repeat(np.arange(len(route)), hops)
    tidx = rt.off[route][flow] + np.arange(n) - off[flow]
    parent = np.where(rt.parent[tidx] >= 0, rt.parent[tidx] + off[flow], -1)
    first = np.full(n, n)
    kids = np.flatnonzero(parent >= 0)
    np.minimum.at(first, parent[kids], kids)
    step, link = flow_step[flow], rt.links[tidx]
    uniq, of = np.unique(step * nl + link, return_inverse=True)
    steps = np.arange(int(step.max(initial=-1)) + 2)
    return {"flow": flow, "parent": parent, "first_child": np.where(first == n, -1, first), "step": step,
            "link": link, "hop": rt.hop_s[tidx], "before": rt.before_s[tidx], "blocking": rt.blocking[tidx],
            "cm": (msgs[flow] - 1) * link_s, "missing": 1 + rt.blocking[tidx].astype(np.int64),
            "node_ptr": np.searchsorted(step, steps), "of": of, "n_queues": len(uniq), "queue_step": uniq // nl,
            "queue_ptr": np.searchsorted(uniq // nl, steps), "roots": np.flatnonzero(parent < 0),
            "start": np.concatenate([[0], np.cumsum(np.bincount(of, minlength=len(uniq)))]),
            "single_child": bool(np.bincount(parent[kids], minlength=1).max(initial=0) <= 1)}


# (trees, most channels per tree, links, flows, steps): many links (sorted per step), few links (the table read
# in order), one step, empty steps, no flow
SHAPES = [(40, 6, 5000, 300, 7), (40, 6, 3, 300, 7), (25, 9, 60, 200, 1), (30, 4, 40, 50, 400), (10, 3, 20, 0, 3),
          (1, 0, 1, 20, 4), (60, 12, 700, 2000, 30)]


@pytest.mark.parametrize("shape", SHAPES)
def test_nodes_and_queues_equal_a_numpy_construction(shape):
    """Every node array, node_ptr, the single-child flag and the queues (of, n, step, ptr, start, roots) on 5
    random draws per shape."""
    n_trees, most, n_links, n_flows, n_steps = shape
    for seed in range(5):
        rng = np.random.default_rng(seed)
        rt = _table(rng, n_trees, most, n_links)
        route, hops, msgs, step = _flows(rng, rt, n_flows, n_steps)
        nd, ref = Nodes(rt, route, hops, msgs, step, 3e-9, None), _reference(rt, route, hops, msgs, step, 3e-9)
        qs = Queues(nd)
        for name in ("flow", "parent", "first_child", "step", "link", "hop", "before", "blocking", "cm", "missing",
                     "node_ptr"):
            assert np.array_equal(getattr(nd, name), ref[name]), name
        assert nd.flow.dtype == nd.parent.dtype == nd.first_child.dtype == qs.of.dtype == np.int32
        assert nd.single_child == ref["single_child"]
        assert np.array_equal(qs.of, ref["of"]) and qs.n == ref["n_queues"]
        assert np.array_equal(qs.step, ref["queue_step"]) and np.array_equal(qs.ptr, ref["queue_ptr"])
        assert np.array_equal(qs.start, ref["start"]) and np.array_equal(qs.roots, ref["roots"])


def test_int64_index_arrays_equal_the_int32_ones(monkeypatch):
    """fill with int64 index arrays (chosen past 2^31 nodes, flows or links) gives the same values; index_dtype
    picks int32 below that bound."""
    pick, rng = kernel.index_dtype, np.random.default_rng(3)
    rt = _table(rng, 50, 8, 300)
    route, hops, msgs, step = _flows(rng, rt, 500, 12)
    narrow = Nodes(rt, route, hops, msgs, step, 1e-9, 2)
    monkeypatch.setattr(kernel, "index_dtype", lambda *sizes: np.int64)
    wide = Nodes(rt, route, hops, msgs, step, 1e-9, 2)
    for name in ("flow", "parent", "first_child"):
        assert getattr(wide, name).dtype == np.int64 and getattr(narrow, name).dtype == np.int32
        assert np.array_equal(getattr(wide, name), getattr(narrow, name)), name
    assert np.array_equal(Queues(wide).of, Queues(narrow).of)
    for name in ("tm_ptr", "term_node", "term_const", "missing"):
        assert np.array_equal(getattr(wide, name), getattr(narrow, name)), name
    assert pick(2**31 - 2, 5, 7) == np.int32 and pick() == np.int32
    assert pick(5, 2**31 - 1) == np.int64 and pick(0, 0, 2**33) == np.int64


def test_vector_engine_does_not_depend_on_the_index_dtype(monkeypatch):
    """Head arrivals and hold times of the vector engine with int64 index arrays equal the int32 ones bit for bit
    (unicast and multicast, unbounded and finite buffers)."""
    for multicast in (False, True):
        for depth in (None, 2):
            g, tr, m, chip = _case(5, depth, rate=0.4)
            acts, times, net, use = _inputs(g, tr, m, chip, multicast, "pipelined")
            (down, held), = des._play([(acts, times, use)], depth, "vector")
            with monkeypatch.context() as mp:
                mp.setattr(kernel, "index_dtype", lambda *sizes: np.int64)
                (down_w, held_w), = des._play([(acts, times, use)], depth, "vector")
            assert len(down) > 0 and np.array_equal(down, down_w) and np.array_equal(held, held_w)


def test_recosted_nodes_equal_nodes_built_on_the_recosted_table():
    """Nodes.with_costs (hop, before, cm, slot term constants) against Nodes built anew, finite buffers."""
    rng = np.random.default_rng(8)
    rt = _table(rng, 60, 7, 90)
    route, hops, msgs, step = _flows(rng, rt, 400, 9)
    other = rt.with_costs(rng.random(len(rt.links)) * 1e-9 + 1e-10, rt.hop_j, rng.random(len(rt.links)) * 1e-8)
    moved = Nodes(rt, route, hops, msgs, step, 1e-9, 2).with_costs(other, 4e-9)
    built = Nodes(other, route, hops, msgs, step, 4e-9, 2)
    assert len(built.term_node) > 0
    for name in ("hop", "before", "cm", "flow_cm", "term_const", "term_node", "tm_ptr", "missing", "parent", "flow"):
        assert np.array_equal(getattr(moved, name), getattr(built, name)), name


def test_unsorted_or_negative_steps_are_refused():
    rng = np.random.default_rng(1)
    rt = _table(rng, 10, 4, 20)
    route, hops, msgs, step = _flows(rng, rt, 30, 5)
    for bad in (step[::-1].copy(), step - 1):
        if np.array_equal(bad, step):
            continue
        with pytest.raises(ValueError, match="sorted"):
            Nodes(rt, route, hops, msgs, bad, 1e-9, None)


def _dependency_reference(nd: Nodes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dp_ptr, dependent, need) by a set per node: x's own grant, its child's when blocking, the slot terms of
    both, each once; rows listed in increasing order of x."""
    rows = [[] for _ in range(nd.n)]
    need = np.zeros(nd.n, np.int64)
    for x in range(nd.n):
        grants = {x, *nd.term_node[nd.tm_ptr[x]:nd.tm_ptr[x + 1]].tolist()}
        if nd.blocking[x]:
            c = int(nd.first_child[x])
            grants |= {c, *nd.term_node[nd.tm_ptr[c]:nd.tm_ptr[c + 1]].tolist()}
        need[x] = len(grants)
        for j in grants:
            rows[j].append(x)
    ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return ptr, np.array([x for r in rows for x in r], np.int64), need


@pytest.mark.parametrize("depth", [None, 1, 2, 5])
def test_release_dependencies_equal_a_set_per_node(depth):
    """Nodes.dependents (CSR) and missing with finite buffers against a set per node on random tables, whose slot
    terms repeat a child's grant or each other's (removed once); unbounded buffers: a node's own grant and its
    child's when blocking."""
    for seed in range(4):
        rng = np.random.default_rng(20 + seed)
        rt = _table(rng, 50, 8, 40)
        route, hops, msgs, step = _flows(rng, rt, 400, 6)
        nd = Nodes(rt, route, hops, msgs * 3, step, 1e-9, depth)
        ptr, dependent, need = _dependency_reference(nd)
        assert nd.plain == (depth is None) and (depth is None or len(nd.term_node) > 0)
        assert np.array_equal(nd.dependents[0], ptr) and np.array_equal(nd.dependents[1], dependent)
        assert np.array_equal(nd.missing, need) and nd.dependents[1].dtype == np.int64
        assert depth is None or (need > 1 + nd.blocking).any()  # some release waits on slot terms


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_slot_terms_equal_the_trees_climbs(depth):
    """Each node's slot terms (node, link times) against its tree's climb matrix (hwmodels.events.route_table.
    climbs: depth differences up through blocking channels), kept up to K = min((m - 1) // B, tree depth), in
    increasing order of the node."""
    for seed in range(4):
        rng = np.random.default_rng(40 + seed)
        rt = _table(rng, 60, 9, 50)
        route, hops, msgs, step = _flows(rng, rt, 300, 5)
        nd = Nodes(rt, route, hops, msgs * 2, step, 1e-9, depth)
        off = np.concatenate([[0], np.cumsum(hops)])
        want_ptr, want_node, want_links = [0], [], []
        for f, t in enumerate(route):
            a, b = rt.off[t], rt.off[t + 1]
            up = climbs(rt.parent[a:b], rt.depth[a:b], rt.blocking[a:b])
            k = min((msgs[f] * 2 - 1) // depth, int(rt.depth[a:b].max(initial=0)))
            for c in range(hops[f]):
                for i in range(b - a):
                    if up[i, c] != NO_TERM and up[i, c] <= k:
                        want_node.append(off[f] + i)
                        want_links.append(msgs[f] * 2 - 1 - depth * up[i, c])
                want_ptr.append(len(want_node))
        assert len(want_node) > 100
        assert np.array_equal(nd.tm_ptr, want_ptr) and np.array_equal(nd.term_node, want_node)
        assert np.array_equal(nd.term_const, np.array(want_links, np.int64) * 1e-9)
