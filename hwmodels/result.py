"""SimResult: what one simulation of a network on a chip reports (per-inference means, per sample, per population,
per core, per link), with bootstrap confidence intervals over the samples (hwmodels.stats)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hwmodels.energy.costs import ENERGY_COMPONENTS
from hwmodels.stats import mean_ci

#: per-sample metrics that get a confidence interval in SimResult.as_row (<metric>_ci_low / <metric>_ci_high)
CI_METRICS = ("energy_j", "latency_s")
#: latency percentiles over samples reported by as_row (latency_p<q>_s)
PERCENTILES = (50, 95, 99)


@dataclass
class SimResult:
    """Result of `hwmodels.simulate`. All scalars are means per inference (one sample) unless stated.

    energy_j: total energy, J; energy_breakdown_j: {synapse_compute, synapse_memory, neuron_compute,
        neuron_memory, network, static} in J (sums to energy_j; hwmodels.energy.costs).
    latency_s: latency of one inference (sum of its hardware-step latencies), s.
    latency_per_step_s: float array (hardware_steps,), mean over samples of each step's latency, s.
    synops: synaptic events the chip pays (per storage format's count); synops_structural / synops_nonzero: the
        SpikingJelly-style structural and the NeuroBench-style non-zero counts.
    spikes: neuron spikes (all populations, input included); messages: core-to-core spike messages;
    hops: message-hops (messages x tile hops). cores_used / tiles_used: from the mapping.
    n_samples: samples simulated; timesteps: algorithmic T; hardware_steps: steps per inference.
    samples: DataFrame indexed by sample: energy_j, energy_<component>_j, latency_s, synops, spikes, messages,
        and label / prediction / correct when the trace records them.
    populations: DataFrame indexed by population: cores, neurons, spikes, synops (events processed on its cores),
        energy_j and one energy_<component>_j column per component.
    cores: DataFrame indexed by core: population, tile_x, tile_y, neurons, synapse_bits, spikes, synops,
        messages_out, messages_in, busy_s (serial work: updates + sends + incoming flows), utilization
        (busy_s / latency_s), energy_j and energy_<component>_j. busy_s per step is the longer of the core's send
        side (soma + messages out) and its synapse unit's work, which run in parallel
        (hwmodels.timing.pipeline.core_busy_s).
    action_counts: DataFrame indexed by core, the action counts per inference that the energy model costs
        (synops_<format>, hwmodels.energy.costs.ACTIONS, busy_s, idle_s); energy_table: {action: J per action}
        (hwmodels.energy.costs.EnergyTable.as_dict): energy = counts x table (hwmodels.energy.costs).
    static_power_w: the chip's static power during the inference, W.
    links: DataFrame indexed by directed link '(x,y)->(x2,y2)': src_x, src_y, dst_x, dst_y, messages (crossing
        it), busy_s (messages x link time), held_s (time flows owned the channel, waits behind full buffers
        included; the DES's, or the contention-free value for the analytic model), utilization (busy_s /
        latency_s). Empty when no message leaves its tile.
    model / chip / placement / semantics: names of what produced the result; multicast: whether spikes were
        sent as one multicast message per spike.
    """

    energy_j: float
    energy_breakdown_j: dict[str, float]
    latency_s: float
    latency_per_step_s: np.ndarray
    synops: float
    synops_structural: float
    synops_nonzero: float
    spikes: float
    messages: float
    hops: float
    cores_used: int
    tiles_used: int
    n_samples: int
    timesteps: int
    hardware_steps: int
    populations: pd.DataFrame = field(repr=False)
    cores: pd.DataFrame = field(repr=False)
    links: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    samples: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    action_counts: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    energy_table: dict = field(default_factory=dict, repr=False)
    static_power_w: float = 0.0
    model: str = "des"
    chip: str = ""
    placement: str = ""
    semantics: str = "pipelined"
    multicast: bool = False

    @property
    def energy_dynamic_j(self) -> float:
        """Energy per inference without static energy, J (what event-count peers such as SANA-FE report)."""
        return self.energy_j - float(self.energy_breakdown_j.get("static", 0.0))

    def latency_percentiles_s(self) -> dict[int, float]:
        """{q: q-th percentile of the per-sample latency} for q in PERCENTILES, s."""
        lat = self.samples["latency_s"].to_numpy(float) if "latency_s" in self.samples else np.zeros(0)
        return {q: float(np.percentile(lat, q)) if len(lat) else float("nan") for q in PERCENTILES}

    def confidence_intervals(self, level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
        """{metric: (low, high)} bootstrap confidence interval of the per-inference mean of each CI_METRICS
        metric (and of accuracy when the trace records predictions and labels) over the samples
        (hwmodels.stats.mean_ci, seeded); NaN bounds with fewer than 2 samples."""
        metrics = list(CI_METRICS) + (["correct"] if "correct" in self.samples else [])
        return {m: mean_ci(self.samples[m].to_numpy(float), level, seed=seed) for m in metrics}

    def as_row(self, level: float = 0.95, seed: int = 0) -> dict:
        """The scalar fields as one flat dict for a results table: breakdown as energy_<component>_j,
        energy_dynamic_j, latency percentiles latency_p<q>_s, and <metric>_ci_low / _ci_high bounds
        (`confidence_intervals(level, seed)`; accuracy_hw and its bounds when predictions are recorded)."""
        row = {"chip": self.chip, "model": self.model, "placement": self.placement, "semantics": self.semantics,
               "energy_j": self.energy_j, "energy_dynamic_j": self.energy_dynamic_j}
        row.update({f"energy_{k}_j": float(self.energy_breakdown_j[k]) for k in ENERGY_COMPONENTS})
        for name in ("latency_s", "synops", "synops_structural", "synops_nonzero", "spikes", "messages", "hops",
                     "cores_used", "tiles_used", "n_samples", "timesteps", "hardware_steps", "static_power_w"):
            row[name] = getattr(self, name)
        row.update({f"latency_p{q}_s": v for q, v in self.latency_percentiles_s().items()})
        for metric, (lo, hi) in self.confidence_intervals(level, seed).items():
            name = "accuracy_hw" if metric == "correct" else metric
            if metric == "correct":
                row[name] = float(self.samples["correct"].mean())
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = lo, hi
        return row
