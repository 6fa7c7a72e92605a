"""The vectorised construction of the DES channel nodes (hwmodels.timing.des_nodes.Nodes, with the trees' arrays
laid end to end in a RouteTable) against a plain per-flow Python construction of the same arrays, on the routes of random
contended traces (multicast trees with several children per channel, unicast paths, flows of zero hops)."""
import numpy as np
import pytest

from hwmodels.timing.des_nodes import Nodes

from test_des_engines import _case, _inputs


def _reference(trees, flow_route, hops, msgs, flow_step, link_s) -> dict:
    """Per-node arrays built flow by flow, channel by channel (the layout Nodes documents)."""
    out = {k: [] for k in ("flow", "step", "link", "parent", "hop", "before", "blocking", "cm")}
    first_child, base = [], 0
    for f, (r, h) in enumerate(zip(flow_route, hops)):
        t = trees[r]
        for c in range(h):
            p = int(t.parent[c])
            out["flow"].append(f), out["step"].append(flow_step[f]), out["link"].append(int(t.links[c]))
            out["parent"].append(base + p if p >= 0 else -1)
            out["hop"].append(float(t.hop_s[c])), out["before"].append(float(t.before_s[c]))
            out["blocking"].append(bool(t.blocking[c])), out["cm"].append((int(msgs[f]) - 1) * link_s)
            kids = [k for k in range(h) if int(t.parent[k]) == c]
            first_child.append(base + min(kids) if kids else -1)
        base += h
    out["first_child"] = first_child
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("multicast", [False, True])
def test_nodes_equal_a_flow_by_flow_construction(multicast):
    """Every per-node array and the single-child flag, on 6 random cases; with zero-hop flows inserted."""
    forks = 0
    for seed in range(6):
        g, tr, m, chip = _case(77 + seed, None, rate=0.3)
        acts, times, net, use = _inputs(g, tr, m, chip, multicast, "pipelined")
        rng = np.random.default_rng(seed)
        hops = use.hops.copy()
        hops[rng.random(len(hops)) < 0.2] = 0  # flows that cross no channel (same-tile deliveries)
        step = acts.flow_sample * acts.n_steps + acts.flow_step
        nd = Nodes(use.table, use.flow_route, hops, acts.flow_messages, step, times.link_s, None)
        ref = _reference(use.trees, use.flow_route, hops, acts.flow_messages, step, times.link_s)
        assert nd.n == int(hops.sum()) == len(ref["flow"])
        for name, want in ref.items():
            got = getattr(nd, name)
            assert np.array_equal(got, want.astype(got.dtype)), name
        kids = np.bincount(ref["parent"][ref["parent"] >= 0], minlength=1)
        assert nd.single_child == bool(kids.max() <= 1)
        assert multicast or nd.single_child  # unicast routes are paths
        forks += not nd.single_child
    assert forks > 0 if multicast else forks == 0  # the multicast cases do have channels with several children
