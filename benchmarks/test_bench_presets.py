"""DES speed on every chip preset: the default MNIST conv net (100 samples, T=4, benchmarks/workloads_bench.py) mapped
onto each preset of hwmodels (those it fits), simulated with the analytic model and the DES, against its torch
forward pass. Writes reports/benchmarks/des_presets.{md,csv,json}.

The DES takes one of three network plays by preset: the vector engine (hwmodels.timing.des_vector, every hop
latency > 0), the compiled event engine (hwmodels.timing.des_events: zero hop latency, as spinnaker2's, where the
vector engine's proof does not hold) or the density model (hwmodels.timing.des_density, router.congestion_model
"density": loihi-sanafe). The event engine ports the simpy engine; its network play is timed here against the
simpy engine's on the same batches (spinnaker2), with bit-identical step latencies, core finish times and link
hold times. Target: the event engine >= 10x the simpy engine there.
"""
import time

import numpy as np
import pandas as pd
import pytest

from benchutil import machine_info, target_row, time_median, torch_forward_s, write_report
from hwmodels import MappingError, list_presets, load_preset, map_network, simulate
from hwmodels.events.actions import build_fanout, count_actions
from hwmodels.events.network import Network, route_use
from hwmodels.timing import des
from hwmodels.timing.core_times import action_times
from workloads_bench import mnist_default


def _engine(chip) -> str:
    """The network play simulate(model='des') takes on `chip`."""
    if chip.router.congestion_model == "density":
        return "density (des_density)"
    lat = (chip.router.hop_latency_ew_s, chip.router.hop_latency_ns_s)
    return "vector" if min(lat) > 0 else "event (des_events)"


def _engines_row(w, chip) -> dict:
    """Network play alone (des.timing) with the event and the simpy engine on the same inputs, one run each after a
    warm-up of the compiled one."""
    m = map_network(w.graph, chip)
    tables = build_fanout(w.graph, m, False, chip.core)
    acts = count_actions(w.graph, w.trace, m, tables, range(w.trace.n_samples), "pipelined")
    times, net = action_times(acts, chip, m), Network(m, chip)
    use = route_use(acts.flow_src, acts.flow_route, acts.flow_messages, acts.routes, net)
    depth = chip.router.buffer_depth
    des.timing(acts, times, net, use, depth, engine="event")
    walls, out = {}, {}
    for engine in ("event", "simpy"):
        t0 = time.perf_counter()
        out[engine] = des.timing(acts, times, net, use, depth, engine=engine)
        walls[engine] = time.perf_counter() - t0
    same = all(np.array_equal(getattr(out["event"], k), getattr(out["simpy"], k))
               for k in ("step_s", "core_done_s", "link_held_s"))
    return {"network_event_s": walls["event"], "network_simpy_s": walls["simpy"],
            "simpy_over_event": walls["simpy"] / walls["event"], "engines_bit_identical": same}


@pytest.mark.benchmark
def test_des_on_every_preset():
    machine = machine_info()
    w = mnist_default()
    forward_s, _ = torch_forward_s(w.model, w.x)
    rows, engines = [], None
    for name in list_presets():
        chip = load_preset(name)
        try:
            mapping = map_network(w.graph, chip)
        except MappingError as err:
            rows.append({"preset": name, "fits": False, "note": str(err)[:160]})
            continue
        simulate(w.graph, w.trace, chip, mapping, model="des")  # compiled kernels loaded
        analytic_s, _, _ = time_median(lambda: simulate(w.graph, w.trace, chip, mapping, model="analytic"))
        des_s, walls, res = time_median(lambda: simulate(w.graph, w.trace, chip, mapping, model="des"))
        rows.append({"preset": name, "fits": True, "cores": res.cores_used, "des_engine": _engine(chip),
                     "analytic_s": analytic_s, "des_s": des_s, "des_over_forward": des_s / forward_s,
                     "des_repeats_s": " ".join(f"{v:.3f}" for v in walls), "note": ""})
        if name == "spinnaker2":
            engines = _engines_row(w, chip)
            rows[-1].update(engines)
    table = pd.DataFrame(rows)
    targets = [target_row("spinnaker2: network play, simpy engine / event engine", engines["simpy_over_event"],
                          10.0, "x", better="higher")] if engines else []
    notes = [w.description.replace(", preset loihi", "") + f"; torch forward (one batch, median) {forward_s:.4f} s",
             "analytic_s / des_s: hwmodels.simulate(model=...) on the whole trace, fan-out tables and action "
             "counts included, mapping excluded; medians of 3 after one untimed run (numba kernels loaded).",
             "des_engine: the network play of the preset (module docstring). network_event_s / network_simpy_s: "
             "hwmodels.timing.des.timing alone with engine='event' / 'simpy' on the same actions and routes "
             "(spinnaker2), one run each; engines_bit_identical: their step latencies, core finish times and "
             "link hold times are equal exactly.",
             "Before the compiled event engine and the compiled density loop (commit 0608bea, same machine, "
             "2026-12-06, one run each): simulate(model='des') on spinnaker2 17.6 s (26.2 s with "
             "router.buffer_depth 2), on loihi-sanafe 5.6 s; after, with identical SimResult tables (every table "
             "and step latency of three router settings each compared): 0.19 / 0.24 s and 1.25 s. Then (commits "
             "c3ef006..5aedc97, eight router settings compared; another host, an Intel Xeon, where 0dcc52d took "
             "0.76-0.86 s) loihi-sanafe's message list came out of its sorted spikes by one compiled expansion "
             "instead of sparse gathers and a lexsort of the messages, and each sample is played beside the next "
             "one's list: ~0.3 s. Then (same host, eight router settings compared, every table identical) the "
             "expansion also writes each message's step, source core, soma prefix and send count (instead of "
             "numpy gathers and running sums over the 2.47 M messages), and each population's core order is "
             "found once per simulate instead of once per sample: 0.29-0.31 -> 0.24-0.25 s. Then the messages in "
             "flight are kept in one FIFO per receiver with a heap of the receivers' first ones instead of one "
             "heap of them all (tables identical again): the play on the worker thread 178 -> 143 ms, "
             "simulate 0.22-0.25 s (alone / inside make bench), now bound by the message list built on the main "
             "thread.",
             "Presets the net does not fit (fits False) are listed with the mapping's reason."]
    write_report("des_presets", "DES speed on every chip preset",
                 "The default MNIST net simulated on each chip preset, against its torch forward pass.", table,
                 targets, notes, machine)
    fitted = table[table["fits"]]
    assert len(fitted) >= 5 and (fitted["des_s"] > 0).all()
    assert engines is not None and engines["engines_bit_identical"]
