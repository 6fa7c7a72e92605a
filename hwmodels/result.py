"""SimResult: what one simulation of a network on a chip reports (per-inference means, per population, per core)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ENERGY_COMPONENTS = ("synapse", "neuron", "network", "static")


@dataclass
class SimResult:
    """Result of `hwmodels.simulate`. All scalars are means per inference (one sample) unless stated.

    energy_j: total energy, J; energy_breakdown_j: {synapse, neuron, network, static} in J (sums to energy_j).
    latency_s: latency of one inference (sum of its hardware-step latencies), s.
    latency_per_step_s: float array (hardware_steps,), mean over samples of each step's latency, s.
    synops: synaptic events the chip pays (per storage format's count); synops_structural / synops_nonzero: the
        SpikingJelly-style structural and the NeuroBench-style non-zero counts.
    spikes: neuron spikes (all populations, input included); messages: core-to-core spike messages;
    hops: message-hops (messages x tile hops). cores_used / tiles_used: from the mapping.
    n_samples: samples simulated; timesteps: algorithmic T; hardware_steps: steps per inference.
    populations: DataFrame indexed by population: cores, neurons, spikes, synops (events processed on its cores),
        energy_j and one energy_<component>_j column per component.
    cores: DataFrame indexed by core: population, tile_x, tile_y, neurons, synapse_bits, spikes, synops,
        messages_out, messages_in, busy_s (serial work: updates + sends + incoming flows), utilization
        (busy_s / latency_s), energy_j. busy_s per step is the longer of the core's send side (soma + messages
        out) and its synapse unit's work, which run in parallel (hwmodels.pipeline.core_busy_s).
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
    model: str = "des"
    chip: str = ""
    placement: str = ""
    semantics: str = "pipelined"
    multicast: bool = False

    def as_row(self) -> dict:
        """The scalar fields as one flat dict for a results table (breakdown as energy_<component>_j)."""
        row = {"chip": self.chip, "model": self.model, "placement": self.placement, "semantics": self.semantics,
               "energy_j": self.energy_j}
        row.update({f"energy_{k}_j": float(self.energy_breakdown_j[k]) for k in ENERGY_COMPONENTS})
        for name in ("latency_s", "synops", "synops_structural", "synops_nonzero", "spikes", "messages", "hops",
                     "cores_used", "tiles_used", "n_samples", "timesteps", "hardware_steps"):
            row[name] = getattr(self, name)
        return row
