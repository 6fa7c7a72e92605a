"""The grant kernel fed straight from the route table (hwmodels.kernels.route_play, hwmodels.timing.des._play_routes)
against the simpy engine and the Nodes path: the same head arrivals and hold times bit for bit, on any number of
threads; a forked tree sends the play back to the Nodes path."""
import dataclasses

import numpy as np
import pytest

from hwmodels.kernels import route_play, threads
from hwmodels.timing import des
from test_des_engines import _case, _inputs


def _routes_play(acts, times, use):
    """(played, down, held) of des._play_routes on one batch."""
    flows = des._group_flows([(acts, times, use)])
    off = des._offsets(use.hops)
    down, held = np.full(int(off[-1]), -1.0), np.full(int(off[-1]), -1.0)
    return (des._play_routes(flows, off, times.flow_ready_s, times.flow_tail_s, times.link_s, None, down, held,
                             threads.count()), down, held)


@pytest.mark.parametrize("run_nodes", [7, 1 << 13])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_unicast_play_from_the_route_table_equals_simpy_bit_for_bit(monkeypatch, workers, run_nodes):
    """8 random contended unicast cases with unbounded buffers, steps split over `workers` threads down to one
    node and filled in runs of up to `run_nodes` nodes (7: a run per step or two; 2^13: all steps in one):
    every channel's head arrival and hold time equal the simpy engine's exactly, and flows waited."""
    monkeypatch.setattr(route_play, "RUN_NODES", run_nodes)
    monkeypatch.setattr(threads, "MIN_ITEMS", 1)
    monkeypatch.setattr(threads, "count", lambda: workers)
    waited = 0
    for seed in range(8):
        g, tr, m, chip = _case(300 + seed, None, rate=0.2 + 0.05 * seed)
        acts, times, net, use = _inputs(g, tr, m, chip, False, "pipelined")
        (down_s, held_s), = des._play([(acts, times, use)], None, "simpy")
        played, down, held = _routes_play(acts, times, use)
        assert played and len(down) > 50
        assert np.array_equal(down, down_s) and np.array_equal(held, held_s)
        # a channel held longer than its own messages take: some flow waited behind another
        waited += int(np.any(held > (acts.flow_messages.max() + 1) * times.link_s))
    assert waited >= 4


@pytest.mark.parametrize("workers", [1, 3])
def test_per_flow_head_down_times_are_each_flows_last_channel(monkeypatch, workers):
    """per_flow: down gets one head down time per flow, its last channel's (a unicast path's eject channel), bit
    for bit the node-sized play's there, in runs of 7 nodes on `workers` threads; hold times unchanged; flows of
    no channel (cores sharing a tile) are left untouched; a chunked batch (_play_chunked) gives the same per-flow
    values, and the step latencies and core finish times equal the simpy engine's."""
    monkeypatch.setattr(route_play, "RUN_NODES", 7)
    monkeypatch.setattr(threads, "MIN_ITEMS", 1)
    monkeypatch.setattr(threads, "count", lambda: workers)
    for seed in range(4):
        g, tr, m, chip = _case(500 + seed, None, rate=0.3)
        if seed % 2:  # core k and core k + n/2 on one tile (cores_per_tile 2): flows of no channel, on the tile
            chip = chip.model_copy(update={"cores_per_tile": 2})
            m = dataclasses.replace(m, tile_xy=m.tile_xy[np.arange(m.cores_used) % -(-m.cores_used // 2)])
        acts, times, net, use = _inputs(g, tr, m, chip, False, "pipelined")
        _, down, held = _routes_play(acts, times, use)
        flows, off = des._group_flows([(acts, times, use)]), des._offsets(use.hops)
        per_flow, held_f = np.full(len(use.hops), -1.0), np.full(int(off[-1]), -1.0)
        assert des._play_routes(flows, off, times.flow_ready_s, times.flow_tail_s, times.link_s, None, per_flow,
                                held_f, workers, per_flow=True)
        routed = use.hops > 0
        assert routed.sum() > 20 and (seed % 2 == 0 or (~routed).any())
        assert np.array_equal(per_flow[routed], down[off[1:][routed] - 1]) and np.all(per_flow[~routed] == -1.0)
        assert np.array_equal(held_f, held)
        monkeypatch.setattr(des, "CHUNK_NODES", 5)
        chunked, held_c = des._play_chunked((acts, times, use), None)
        monkeypatch.setattr(des, "CHUNK_NODES", 1 << 23)
        assert np.array_equal(chunked.values[routed], per_flow[routed]) and np.array_equal(held_c, held)
        ts, tv = (des.timing(acts, times, net, use, None, engine=e) for e in ("simpy", "vector"))
        assert np.array_equal(ts.step_s, tv.step_s) and np.array_equal(ts.core_done_s, tv.core_done_s)


def test_a_forked_tree_is_left_to_the_nodes_path_with_the_same_result(monkeypatch):
    """Multicast trees fork: _play_routes declines them (False), and a batch over CHUNK_NODES with unbounded
    buffers is then played by the Nodes path with step latencies and hold times equal to the unchunked play."""
    declined = 0
    for seed in range(4):
        g, tr, m, chip = _case(400 + seed, None, rate=0.4)
        acts, times, net, use = _inputs(g, tr, m, chip, True, "pipelined")
        parents = use.table.flat_parent
        forks = np.bincount(parents[parents >= 0]).max(initial=0) > 1
        played, _, _ = _routes_play(acts, times, use)
        assert played == (not forks)
        declined += int(forks)
        whole = des.timing(acts, times, net, use, None, engine="vector")
        monkeypatch.setattr(des, "CHUNK_NODES", 5)
        chunked = des.timing(acts, times, net, use, None, engine="vector")
        monkeypatch.undo()
        assert np.array_equal(whole.step_s, chunked.step_s)
        assert np.array_equal(whole.link_held_s, chunked.link_held_s)
    assert declined >= 2


def test_a_step_over_the_int32_records_is_refused():
    """route_play numbers a step's nodes in int32 records: a step of 2^31 nodes is refused before any work."""
    off = np.array([0, 2 ** 31], np.int64)
    step, none = np.zeros(1, np.int64), np.zeros(0)
    with pytest.raises(ValueError, match="2\\*\\*31 nodes"):
        route_play.play(off, step, step, off, none, none, none, none, none, 1, none, none, none, 1e-9, none, none)
