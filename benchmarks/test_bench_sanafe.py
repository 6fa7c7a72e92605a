"""SANA-FE side by side on more samples: agreement of energy (per component) and latency between our DES on the
`loihi-sanafe` preset and SANA-FE on its own loihi.yaml, and wall time of both, for an MLP 784-100-10 and a conv SNN
8C3-16C3-10FC (several weight seeds each) on MNIST spikes, T=8. Writes reports/benchmarks/sanafe_agreement.{md,csv,
json} and sanafe_agreement_per_sample.csv.

Targets (issue 3): energy within 10 %, latency within 25 %, our simulator >= 5x faster than SANA-FE per sample.
"""
import numpy as np
import pandas as pd
import pytest

from benchutil import REPORT_DIR, machine_info, markdown_table, target_row, time_median, write_report

sanafe = pytest.importorskip("sanafe")

from hwmodels import load_preset, map_network, simulate  # noqa: E402
from peer_nets import lowered  # noqa: E402
from sanafe_bridge import SanafeRun  # noqa: E402

T = 8
#: network -> ((weight seed, samples), ...); the first run of each network (most samples) gives its speed-up
PLAN = {"mlp": ((0, 16), (1, 16)), "conv": ((0, 16), (1, 4), (2, 4), (3, 4))}
#: diagnostic: our pipeline's other receive mode (message in overlapping the synapse unit, as on Loihi)
OVERLAP = {"core.receive_mode": "overlap"}


def _row(name, seed, s, o, t) -> dict:
    """One per-sample comparison row: ours (SimResult o) against SANA-FE (SanafeSample t)."""
    return {"network": name, "seed": seed, "sample": s, "synaptic_events_ours": o.synops,
            "synaptic_events_sanafe": t.synaptic_events, "spikes_ours": o.spikes, "spikes_sanafe": t.neurons_fired,
            "hops_ours": o.hops, "hops_sanafe": t.hops, "energy_ours_j": o.energy_j,
            "energy_sanafe_j": t.energy_j["total"], "synapse_ours_j": o.energy_breakdown_j["synapse"],
            "synapse_sanafe_j": t.energy_j["synapse"], "neuron_ours_j": o.energy_breakdown_j["neuron"],
            "soma_sanafe_j": t.energy_j["soma"], "network_ours_j": o.energy_breakdown_j["network"],
            "network_sanafe_j": t.energy_j["network"], "latency_ours_s": o.latency_s,
            "latency_sanafe_s": t.latency_s, "sanafe_sim_wall_traced_s": t.wall_s}


def _compare(name: str, seed: int, n: int, arch) -> tuple[list, dict, np.ndarray]:
    """Per-sample rows, wall times and mean per-step latencies (ours, SANA-FE) of network `name`, weight `seed`."""
    _, _, graph, trace = lowered(name, n, T, seed=seed)
    chip, overlap = load_preset("loihi-sanafe"), load_preset("loihi-sanafe", OVERLAP)
    map_s, _, mapping = time_median(lambda: map_network(graph, chip))
    des_s, _, _ = time_median(lambda: simulate(graph, trace, chip, mapping, model="des"))
    ours = [simulate(graph, trace.sample_view(s), chip, mapping, model="des") for s in range(n)]
    build_s, _, run = time_median(lambda: SanafeRun(graph, mapping, chip, arch), repeats=1)
    theirs = [run.run_sample(trace, s) for s in range(n)]
    untraced = [run.run_sample(trace, s, per_step=False).wall_s for s in range(n)]  # wall time without tracing
    rows = [_row(name, seed, s, o, t) for s, (o, t) in enumerate(zip(ours, theirs))]
    for r, s in zip(rows, range(n)):
        r["latency_ours_overlap_s"] = simulate(graph, trace.sample_view(s), overlap, mapping, model="des").latency_s
    speed = {"network": name, "seed": seed, "samples": n, "cores": mapping.cores_used, "tiles": mapping.tiles_used,
             "ours_map_s": map_s, "ours_des_all_samples_s": des_s, "ours_per_sample_s": (map_s + des_s) / n,
             "sanafe_build_load_s": build_s, "sanafe_sim_per_sample_s": float(np.median(untraced))}
    steps = np.stack([np.mean([o.latency_per_step_s for o in ours], axis=0),
                      np.mean([t.step_latency_s for t in theirs], axis=0)])
    return rows, speed, steps


QUANTITIES = (("synaptic events", "synaptic_events_ours", "synaptic_events_sanafe"),
              ("neuron spikes", "spikes_ours", "spikes_sanafe"), ("message-hops", "hops_ours", "hops_sanafe"),
              ("energy synapse (J)", "synapse_ours_j", "synapse_sanafe_j"),
              ("energy neuron / soma (J)", "neuron_ours_j", "soma_sanafe_j"),
              ("energy network (J)", "network_ours_j", "network_sanafe_j"),
              ("energy total (J)", "energy_ours_j", "energy_sanafe_j"), ("latency (s)", "latency_ours_s",
                                                                         "latency_sanafe_s"))


def _summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per network: mean per inference of each quantity, ours vs SANA-FE, rel_diff = ours / SANA-FE - 1 of the
    means, and the largest |rel_diff| of any one weight seed's mean."""
    out = []
    for net, g in df.groupby("network", sort=False):
        for label, a, b in QUANTITIES:
            by_seed = g.groupby("seed")[[a, b]].mean()
            seed_diff = by_seed[a] / by_seed[b].where(by_seed[b] != 0) - 1.0
            out.append({"network": net, "quantity": label, "ours": g[a].mean(), "sanafe": g[b].mean(),
                        "rel_diff": g[a].mean() / g[b].mean() - 1.0 if g[b].mean() else 0.0,
                        "worst_seed_abs_rel_diff": float(seed_diff.abs().max()) if seed_diff.notna().any() else 0.0})
    return pd.DataFrame(out)


NOTES = [
    "Same network, input spikes and placement: the SANA-FE network is built from our NetworkGraph (weights on the "
    "1/64 grid, theta = 1 - 1/128, IF with hard reset), every neuron on the SANA-FE core at the same tile as in "
    "our mapping (tests/crosscheck/sanafe_bridge.py). Spikes, synaptic events and message-hops agree exactly.",
    "Synapse energy: events x per-format cost (dense 35.5 pJ, conv 24.0 pJ) in both: exact.",
    "Network energy: messages x 111 pJ + east-west hops x 3.0 pJ + north-south hops x 4.2 pJ in both: exact.",
    "Neuron energy: SANA-FE pays the soma access (51.2 pJ) for every mapped non-input neuron in all T + L steps and "
    "the update (21.6 pJ) only when input arrived or the potential is non-zero; ChipSpec has one cost per neuron "
    "update, paid for every non-input neuron in the T steps its population is active (inactive 72.8 pJ = access + "
    "update, active 142.1 pJ = + spike out 69.3 pJ). Difference = 51.2 pJ x neurons x L (pipeline fill/drain "
    "accesses we do not charge) + 21.6 pJ x (SANA-FE updates - neurons x T) (its updates outside the window minus "
    "the resting neurons it skips); tests/crosscheck/test_sanafe.py rebuilds SANA-FE's soma energy from these "
    "counts exactly. Closing it needs a per-mapped-neuron-per-step access cost in ChipSpec (e.g. "
    "core.neuron_access_energy_j / _latency_s paid in every hardware step); SANA-FE's skipped updates depend on "
    "the membrane potential and cannot be derived from a spike trace.",
    "Latency, per step: both run soma, message out, network, message in + synapses, then the same barrier "
    "(SANA-FE's sync table is a step function; the preset repeats entries so ChipSpec's linear interpolation "
    "gives the same steps), and both process a received message serially (message in 16 ns, then its synapses; "
    "the preset sets core.receive_mode serial). Remaining differences: (1) SANA-FE's soma loop accesses every "
    "mapped neuron every step (6 ns), also in the first and last L steps where our populations are idle (first "
    "and last rows of the per-step tables: ours lower); (2) SANA-FE sends each spike's messages as soon as its "
    "neuron is processed, our cores send after all their updates (ours later); (3) SANA-FE's congestion delay "
    "(messages in flight x mean receive time) against our link channels with 16-message buffers; (4) SANA-FE "
    "skips the update time (3.7 ns) of resting neurons (ours later). Their signs differ, so the net difference "
    "changes sign between networks (per-seed rows below). Closing (1) needs a per-mapped-neuron-per-step access "
    "latency; (2) a pipeline that interleaves a core's sends with its neuron loop.",
    "Receive mode: with core.receive_mode overlap (message in overlapping the previous message's synaptic work, "
    "the Loihi reading of hwmodels.pipeline) our latency drops by the 16 ns x messages on the critical receive "
    "path; overlap_latency_rel_diff in 'By weight seed' shows how far that is from SANA-FE, which is why the "
    "preset says serial.",
]


def _sections(speed: pd.DataFrame, steps: dict, per_sample: pd.DataFrame) -> dict:
    """Markdown sections: wall times, results by weight seed and the per-step latencies of each first run."""
    sec = {"Wall time": "Ours = (map_network + simulate(model='des') on the samples) / samples, medians of 3 "
                        "(mapping and fan-out tables are built once per run, so runs with few samples pay more per "
                        "sample); SANA-FE = median chip.sim wall per sample without its per-step trace (network "
                        "build and chip load excluded, shown as sanafe_build_load_s).\n\n" + markdown_table(speed)}
    v = per_sample.groupby(["network", "seed"])[
        ["energy_ours_j", "energy_sanafe_j", "latency_ours_s", "latency_sanafe_s", "latency_ours_overlap_s"]
    ].mean().reset_index()
    v["energy_rel_diff"] = v.energy_ours_j / v.energy_sanafe_j - 1.0
    v["latency_rel_diff"] = v.latency_ours_s / v.latency_sanafe_s - 1.0
    v["overlap_latency_rel_diff"] = v.latency_ours_overlap_s / v.latency_sanafe_s - 1.0
    sec["By weight seed"] = ("Means per inference of each run; latency_ours_overlap_s: our DES with "
                             "core.receive_mode = overlap instead of the preset's serial.\n\n" + markdown_table(v))
    for (net, seed), st in steps.items():
        tab = pd.DataFrame({"step": np.arange(st.shape[1]), "ours_us": st[0] * 1e6, "sanafe_us": st[1] * 1e6,
                            "rel_diff": st[0] / st[1] - 1.0})
        sec[f"Per-step latency, {net}, seed {seed}"] = "Mean over samples.\n\n" + markdown_table(tab)
    return sec


@pytest.mark.benchmark
def test_sanafe_agreement_and_speed():
    machine = machine_info()
    arch = sanafe.load_loihi()
    rows, speeds, steps = [], [], {}
    for name, runs in PLAN.items():
        for k, (seed, n) in enumerate(runs):
            r, sp, st = _compare(name, seed, n, arch)
            rows += r
            speeds.append(sp)
            if k == 0:
                steps[name, seed] = st
    per_sample, speed = pd.DataFrame(rows), pd.DataFrame(speeds)
    speed["speedup"] = speed.sanafe_sim_per_sample_s / speed.ours_per_sample_s
    summary = _summary(per_sample)
    targets = []
    for net in PLAN:
        s = summary[summary.network == net].set_index("quantity")
        for label, key, tol in (("energy", "energy total (J)", 0.10), ("latency", "latency (s)", 0.25)):
            targets.append(target_row(f"{net}: |{label} diff|, all samples", abs(s.loc[key, "rel_diff"]), tol, "rel"))
            targets.append(target_row(f"{net}: |{label} diff|, worst seed", s.loc[key, "worst_seed_abs_rel_diff"],
                                      tol, "rel"))
        first = speed[speed.network == net].iloc[0]
        targets.append(target_row(f"{net}: speed-up over SANA-FE ({first.samples} samples)", float(first.speedup),
                                  5.0, "x", better="higher"))
    intro = ("Our DES on the `loihi-sanafe` preset against SANA-FE 2.2.9 (`sanafe.load_loihi()`, timing_model "
             f"'detailed') on the same networks and MNIST rate-coded spikes, T={T}: MLP 784-100-10 and conv "
             "8C3-16C3-10FC, untrained IF networks (tests/crosscheck/peer_nets.py); (weight seed, samples) runs "
             + "; ".join(f"{k}: {v}" for k, v in PLAN.items())
             + ". Table: means per inference over all samples; rel_diff = ours / SANA-FE - 1.")
    write_report("sanafe_agreement", "Agreement with SANA-FE", intro, summary, targets, NOTES, machine,
                 _sections(speed, steps, per_sample))
    per_sample.to_csv(REPORT_DIR / "sanafe_agreement_per_sample.csv", index=False)
    assert (per_sample.synaptic_events_ours == per_sample.synaptic_events_sanafe).all()
    assert (per_sample.spikes_ours == per_sample.spikes_sanafe).all()
    assert (per_sample.hops_ours == per_sample.hops_sanafe).all()
