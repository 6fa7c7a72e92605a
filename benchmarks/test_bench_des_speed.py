"""DES wall time against the torch forward pass on the same samples, and events simulated per second.

Writes reports/benchmarks/des_speed.{md,csv,json}. Target (issue 3): DES <= 1.0x the torch forward time on VGG-11
at 32x32, T=4, 16 samples. Every time is the median of 3 repeats on a shared 2-core machine (load in the header).
"""
import pandas as pd
import pytest

from benchutil import machine_info, target_row, time_median, torch_forward_s, write_report
from hwmodels import map_network, simulate
from workloads_bench import mnist_default, vgg11_32


def _measure(w) -> dict:
    """Medians (s) of forward, mapping, analytic and DES simulation of workload `w`, plus its event counts."""
    n = w.trace.n_samples
    fwd, fwd_all = torch_forward_s(w.model, w.x)
    map_s, _, mapping = time_median(lambda: map_network(w.graph, w.chip))
    ana_s, _, _ = time_median(lambda: simulate(w.graph, w.trace, w.chip, mapping, model="analytic"))
    des_s, des_all, res = time_median(lambda: simulate(w.graph, w.trace, w.chip, mapping, model="des"))
    return {"workload": w.name, "samples": n, "timesteps": w.trace.n_timesteps, "cores": mapping.cores_used,
            "torch_forward_s": fwd, "lower_s": w.lower_s, "map_s": map_s, "analytic_s": ana_s, "des_s": des_s,
            "des_over_forward": des_s / fwd, "map_plus_des_over_forward": (map_s + des_s) / fwd,
            "synops_per_inference": res.synops, "messages_per_inference": res.messages,
            "spikes_per_inference": res.spikes, "synaptic_events_per_s": res.synops * n / des_s,
            "messages_per_s": res.messages * n / des_s, "des_repeats_s": " ".join(f"{t:.3f}" for t in des_all),
            "forward_repeats_s": " ".join(f"{t:.3f}" for t in fwd_all)}


@pytest.mark.benchmark
def test_des_against_torch_forward():
    machine = machine_info()
    workloads = [mnist_default(), vgg11_32()]
    rows = [_measure(w) for w in workloads]
    table = pd.DataFrame(rows)
    vgg = table.set_index("workload").loc["vgg11"]
    targets = [target_row("VGG-11 DES / torch forward", float(vgg["des_over_forward"]), 1.0, "x")]
    notes = [w.description for w in workloads] + [
        "des_s / analytic_s: hwmodels.simulate(model='des' / 'analytic') on the whole trace, fan-out tables and "
        "action counting included, mapping excluded (map_s); the two share everything but the network timing, so "
        "des_s - analytic_s is the DES's simpy play of channel contention (flow-level: one event chain per flow "
        "and channel). lower_s: one forward pass with spike recording.",
        "torch_forward_s: one no-grad batch of all samples in eval mode on CPU (after one warm-up pass).",
        "synaptic_events_per_s / messages_per_s: events and core-to-core messages of all samples / des_s.",
        f"load average at start {machine['load_avg_1min']} on {machine['cores']} cores: other jobs ran alongside."]
    write_report("des_speed", "DES speed against the torch forward pass",
                 "Wall time of the discrete-event simulator (hwmodels, model='des') on the traces of the same "
                 "samples the torch forward pass runs, medians of 3 repeats.", table, targets, notes, machine)
    assert (table["des_s"] > 0).all() and (table["synops_per_inference"] > 0).all()
