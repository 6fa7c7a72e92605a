"""SimResult: what one simulation of a network on a chip reports (per-inference means, per sample, per population,
per core, per link), with bootstrap confidence intervals over the samples (hwmodels.stats)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from hwmodels.energy.costs import ENERGY_COMPONENTS
from hwmodels.stats import mean_cis

#: per-sample metrics that get a confidence interval in SimResult.as_row (<metric>_ci_low / <metric>_ci_high)
CI_METRICS = ("energy_j", "latency_s")
#: latency percentiles over samples reported by as_row (latency_p<q>_s)
PERCENTILES = (50, 95, 99)


class ResultTables:
    """The DataFrames of a SimResult (samples, populations, cores, links, action_counts), built on first use from
    `build()` -> {name: DataFrame} (a sweep that reads only SimResult.as_row never builds them), and the
    per-sample columns as_row needs: {"energy_j", "latency_s", and "correct" when recorded: float (n_samples,)}."""

    NAMES = ("samples", "populations", "cores", "links", "action_counts")

    def __init__(self, build: Callable[[], dict[str, pd.DataFrame]], sample_columns: dict[str, np.ndarray]):
        self._build, self._frames = build, None
        self.sample_columns = sample_columns

    @classmethod
    def of(cls, **frames: pd.DataFrame) -> "ResultTables":
        """Tables given as DataFrames (missing ones empty); sample columns read from `samples`."""
        full = {n: frames.get(n, pd.DataFrame()) for n in cls.NAMES}
        cols = {c: full["samples"][c].to_numpy(float) for c in (*CI_METRICS, "correct") if c in full["samples"]}
        return cls(lambda: full, cols)

    def __getstate__(self) -> dict:
        """Pickled (e.g. sent between dask workers) with its tables built: the builder is a closure."""
        self.get("samples")
        return {"_build": None, "_frames": self._frames, "sample_columns": self.sample_columns}

    def __eq__(self, other: object) -> bool:
        """Equal when every table is equal value for value (DataFrame.equals: same shape, labels, dtypes and
        values, NaNs in the same places) and so are the sample columns."""
        if not isinstance(other, ResultTables):
            return NotImplemented
        cols = self.sample_columns.keys() == other.sample_columns.keys() and all(
            np.array_equal(v, other.sample_columns[k]) for k, v in self.sample_columns.items())
        return cols and all(self.get(n).equals(other.get(n)) for n in self.NAMES)

    __hash__ = None

    def get(self, name: str) -> pd.DataFrame:
        """The DataFrame `name` (one of NAMES), built with the others on the first call."""
        if self._frames is None:
            self._frames = self._build()
            self._build = None
        return self._frames[name]


@dataclass
class SimResult:
    """Result of `hwmodels.simulate`. All scalars are means per inference (one sample) unless stated.

    energy_j: total energy, J; energy_breakdown_j: {synapse_compute, synapse_memory, neuron_compute,
        neuron_memory, network, static} in J (sums to energy_j; hwmodels.energy.costs).
    latency_s: latency of one inference (sum of its hardware-step latencies), s.
    latency_per_step_s: float array (hardware_steps,), mean over samples of each step's latency, s.
    synops: synaptic events the chip pays (per storage format's count); synops_structural / synops_nonzero: the
        SpikingJelly-style structural and the NeuroBench-style non-zero counts (for a gated projection the static
        non-zero pattern of its stored weights, not the gate-fired count hwmodels.mapping.connectivity.gated_events
        gives).
    spikes: neuron spikes (all populations, input included); messages: core-to-core spike messages;
    hops: message-hops (messages x hops, a hop being a tile-to-tile link or a chip-to-chip link crossed).
    cores_used / tiles_used: from the mapping.
    n_samples: samples simulated; timesteps: algorithmic T; hardware_steps: steps per inference.
    tables: the ResultTables behind the five DataFrame properties below (built on first use).
    samples: DataFrame indexed by sample: energy_j, energy_<component>_j, latency_s, synops, spikes, messages,
        and label / prediction / correct when the trace records them.
    populations: DataFrame indexed by population: cores (chip cores: they sum to cores_used; an input population
        fed through the chip's input port, ChipSpec.input_location, has 0), neurons, spikes, synops (events
        processed on its cores), energy_j and one energy_<component>_j column per component.
    cores: DataFrame indexed by core: population, tile_x, tile_y, neurons, synapse_bits, spikes, synops,
        messages_out, messages_in, busy_s (serial work: updates + sends + incoming flows), utilization
        (busy_s / latency_s), energy_j and energy_<component>_j, and port (True for an input port's pseudo-core,
        which is not a chip core: the rows with port False are the cores_used chip cores). busy_s per step is the
        longer of the core's send side (soma + messages out) and its synapse unit's work, which run in parallel
        (hwmodels.timing.core_times.core_busy_s).
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
    tables: ResultTables = field(repr=False, compare=False)
    energy_table: dict = field(default_factory=dict, repr=False)
    static_power_w: float = 0.0
    model: str = "des"
    chip: str = ""
    placement: str = ""
    semantics: str = "pipelined"
    multicast: bool = False

    @property
    def samples(self) -> pd.DataFrame:
        """Per-sample table (see the class docstring); built on first use."""
        return self.tables.get("samples")

    @property
    def populations(self) -> pd.DataFrame:
        """Per-population table (see the class docstring); built on first use."""
        return self.tables.get("populations")

    @property
    def cores(self) -> pd.DataFrame:
        """Per-core table (see the class docstring); built on first use."""
        return self.tables.get("cores")

    @property
    def links(self) -> pd.DataFrame:
        """Per-link table (see the class docstring); built on first use."""
        return self.tables.get("links")

    @property
    def action_counts(self) -> pd.DataFrame:
        """Per-core action counts per inference (see the class docstring); built on first use."""
        return self.tables.get("action_counts")

    @property
    def energy_dynamic_j(self) -> float:
        """Energy per inference without static energy, J (what event-count peers such as SANA-FE report)."""
        return float(sum(v for k, v in self.energy_breakdown_j.items() if k != "static"))

    def latency_percentiles_s(self) -> dict[int, float]:
        """{q: q-th percentile of the per-sample latency} for q in PERCENTILES, s."""
        lat = self.tables.sample_columns.get("latency_s", np.zeros(0))
        values = np.percentile(lat, PERCENTILES) if len(lat) else np.full(len(PERCENTILES), np.nan)
        return {q: float(v) for q, v in zip(PERCENTILES, values)}  # one call: each q as np.percentile(lat, q)

    def confidence_intervals(self, level: float = 0.95, seed: int = 0) -> dict[str, tuple[float, float]]:
        """{metric: (low, high)} bootstrap confidence interval of the per-inference mean of each CI_METRICS
        metric (and of accuracy when the trace records predictions and labels) over the samples
        (hwmodels.stats.mean_cis, seeded); NaN bounds with fewer than 2 samples. energy_j's interval holds the
        reported energy_j (the sum of the components' means, which can differ from the mean of the samples' totals
        in the last bit: identical samples gave a zero-width interval 1 ulp beside it)."""
        cols = self.tables.sample_columns
        metrics = list(CI_METRICS) + (["correct"] if "correct" in cols else [])
        out = mean_cis({m: cols.get(m, np.zeros(0)) for m in metrics}, level, seed=seed)
        lo, hi = out.get("energy_j", (np.nan, np.nan))
        if not np.isnan(lo):
            out["energy_j"] = (min(lo, self.energy_j), max(hi, self.energy_j))
        return out

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
                row[name] = float(np.mean(self.tables.sample_columns["correct"]))
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = lo, hi
        return row
