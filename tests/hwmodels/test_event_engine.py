"""The compiled event engine (hwmodels.timing.des_events, hwmodels.kernels.event_queue) against the simpy engine it
ports: every channel node's head-down and held time bit for bit, on random contended traces with finite buffers,
multicast trees and zero hop latencies (where same-instant events cascade and their order decides grants), and
the step latencies of a whole DES run."""
import numpy as np
import pytest

from hwmodels import load_preset
from hwmodels.kernels.event_queue import exact_delay
from hwmodels.timing import des, des_simpy

from test_des_engines import _case, _inputs


def _zero_hop(chip, which: str):
    """`chip` with the hop latencies `which` ("ew", "ns" or "both") set to 0."""
    keys = {"ew": ["router.hop_latency_ew_s"], "ns": ["router.hop_latency_ns_s"],
            "both": ["router.hop_latency_ew_s", "router.hop_latency_ns_s"]}[which]
    return load_preset("loihi", {"mesh_width": 5, "mesh_height": 5, "cores_per_tile": 1,
                                 "router.buffer_depth": chip.router.buffer_depth,
                                 "router.link_bandwidth_msgs_per_s": chip.router.link_bandwidth_msgs_per_s,
                                 "core.message_out_latency_s": chip.core.message_out_latency_s,
                                 **{k: 0.0 for k in keys}})


@pytest.mark.parametrize("hops", ["loihi", "ew", "both"])
@pytest.mark.parametrize("multicast", [False, True])
@pytest.mark.parametrize("depth", [None, 1, 3])
def test_event_engine_equals_simpy_bit_for_bit(depth, multicast, hops):
    """3 random cases per combination: (head down, held) of every channel node identical to the simpy engine's,
    and the DES step latencies, per-core finish times and link hold times of both engines identical."""
    nodes = 0
    for seed in range(3):
        g, tr, m, chip = _case(500 * seed + (depth or 0), depth, rate=0.2 + 0.05 * (seed % 5))
        if hops != "loihi":
            chip = _zero_hop(chip, hops)
        acts, times, net, use = _inputs(g, tr, m, chip, multicast, "pipelined")
        (down_s, held_s), = des._play([(acts, times, use)], depth, "simpy")
        (down_e, held_e), = des._play([(acts, times, use)], depth, "event")
        np.testing.assert_array_equal(down_e, down_s)
        np.testing.assert_array_equal(held_e, held_s)
        nodes += len(down_s)
        ts, te = (des.timing(acts, times, net, use, depth, engine=e) for e in ("simpy", "event"))
        np.testing.assert_array_equal(te.step_s, ts.step_s)
        np.testing.assert_array_equal(te.core_done_s, ts.core_done_s)
        np.testing.assert_array_equal(te.link_held_s, ts.link_held_s)
    assert nodes > 100


def test_auto_takes_the_event_engine_for_zero_hop_latency():
    """A router with a zero hop latency is outside the vector engine's proof: auto plays the event engine, whose
    step latencies are the simpy engine's."""
    g, tr, m, chip = _case(7, None, rate=0.4)
    acts, times, net, use = _inputs(g, tr, m, _zero_hop(chip, "both"), False, "pipelined")
    assert des._engine("auto", [(acts, times, use)]) == "event"
    auto = des.timing(acts, times, net, use, None)
    assert np.array_equal(auto.step_s, des.timing(acts, times, net, use, None, engine="simpy").step_s)


@pytest.mark.parametrize("now, time", [(0.0, 1e-9), (3.0, 3.0), (1e-9, 3.7e-9), (0.1, 0.3), (1.0, 1.0 + 2 ** -52),
                                       (12345.678, 12345.679)])
def test_exact_delay_is_des_simpys(now, time):
    """The kernel's exact delay lands where des_simpy's does (or is NaN where des_simpy's is None)."""
    want = des_simpy.exact_delay(now, time)
    got = exact_delay(now, time)
    assert (np.isnan(got) and want is None) or (got == want and now + got == time)


def test_event_engine_steps_on_threads_give_the_same_play(monkeypatch):
    """The steps split over two threads in guided ranges (every range a few steps) play exactly as on one."""
    from hwmodels.kernels import threads
    from hwmodels.timing import des_events
    g, tr, m, chip = _case(3, 2, rate=0.35)
    acts, times, net, use = _inputs(g, tr, m, _zero_hop(chip, "ew"), True, "pipelined")
    off = np.concatenate([[0], np.cumsum(use.hops)]).astype(np.int64)
    one = des_events.play(acts, times, use, 2, off, workers=1)
    monkeypatch.setattr(threads, "MIN_ITEMS", 1)
    two = des_events.play(acts, times, use, 2, off, workers=2)
    assert len(np.unique(acts.flow_step)) > 2 and len(one[0]) > 50
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
