"""Run a NetworkGraph + EventTrace in SANA-FE (the peer simulator) with the neuron placement of one of our Mappings,
so that the same network, input spikes and placement can be compared side by side (tests/crosscheck, benchmarks).

SANA-FE (sanafe 2.2.9, GPL-3.0) is only run through its public Python API here, never copied. How it counts
(../shared/PEERS.md, and read from its behaviour): `r["spikes"]` are synaptic events, `r["neurons_fired"]`
neuron spikes (inputs included); each layer adds one step of delay (run T + L steps); its Loihi soma fires on
V > theta and truncates V to a 1/64 grid, so weights on a 1/64 grid and theta = our threshold - 1/128 give the
same spikes as an IF neuron firing on V >= theta. Tile id t of its mesh sits at (x, y) = (t // height, t % height).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from importlib.resources import files

import numpy as np
import sanafe
import yaml

from hwmodels.mapping.map import Mapping
from hwmodels.chip.spec import ChipSpec
from hwmodels.trace import EventTrace, NetworkGraph, Projection, conv_output_shape

#: weight grid of SANA-FE's Loihi soma (it truncates the potential to multiples of 1/64 every step)
GRID = 1.0 / 64.0
#: our storage format -> SANA-FE synapse unit of loihi.yaml that processes it
SYNAPSE_UNITS = {"dense": "loihi_dense_synapse", "sparse": "loihi_sparse_synapse", "conv": "loihi_conv_synapse"}
LIF_SOMA = "loihi_lif"


def snap_to_grid(w: np.ndarray) -> np.ndarray:
    """Weights rounded to the nearest multiple of 1/64 (float32), the resolution of SANA-FE's Loihi soma."""
    return (np.round(np.asarray(w, dtype=np.float64) / GRID) * GRID).astype(np.float32)


def conv_edges(proj: Projection, src_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every in-bounds kernel tap of a conv projection as an explicit synapse, zero weights included.

    Returns (source index, target index, weight), each (n_edges,), C-order neuron numbering, torch Conv2d
    geometry (stride, padding, dilation, groups); n_edges = the structural synapse count.
    """
    c_out, c_in_g, kh, kw = proj.weight.shape
    _, h_out, w_out = conv_output_shape(proj, src_shape)
    _, h, w = src_shape
    o, oy, ox, ci, ky, kx = np.meshgrid(np.arange(c_out), np.arange(h_out), np.arange(w_out), np.arange(c_in_g),
                                        np.arange(kh), np.arange(kw), indexing="ij")
    y = oy * proj.stride[0] - proj.padding[0] + ky * proj.dilation[0]
    x = ox * proj.stride[1] - proj.padding[1] + kx * proj.dilation[1]
    ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    c = (o // (c_out // proj.groups)) * c_in_g + ci
    src = ((c * h + y) * w + x)[ok]
    dst = ((o * h_out + oy) * w_out + ox)[ok]
    return src, dst, proj.weight[o[ok], ci[ok], ky[ok], kx[ok]]


def loihi_arch_file() -> dict:
    """SANA-FE's shipped loihi.yaml (sanafe/examples/loihi.yaml) as a dict."""
    return yaml.safe_load(files("sanafe.examples").joinpath("loihi.yaml").read_text())


def _check_supported(graph: NetworkGraph) -> None:
    """Raise ValueError unless every neuron is an IF with hard reset to 0, no bias, and weights on the 1/64 grid."""
    for pop in graph.populations.values():
        nm = pop.neuron
        if pop.graded:
            raise ValueError(f"population {pop.name!r}: graded spikes are not supported by the SANA-FE bridge")
        if not pop.is_input and (nm.kind != "IF" or nm.tau is not None or nm.v_reset != 0.0):
            raise ValueError(f"population {pop.name!r}: only IF neurons with hard reset to 0 give exact spike "
                             f"parity with SANA-FE's Loihi soma, got {nm}")
    for proj in graph.projections:
        if proj.bias is not None and np.any(proj.bias != 0):
            raise ValueError(f"projection {proj.name!r}: a bias is applied by SANA-FE in every step, including "
                             "the pipeline fill steps; remove it")
        if not np.array_equal(proj.weight, snap_to_grid(proj.weight)):
            raise ValueError(f"projection {proj.name!r}: weights must lie on the 1/64 grid (use snap_to_grid)")


@dataclass(frozen=True)
class SanafeSample:
    """SANA-FE's results for one sample (one inference of T + L steps).

    energy_j: {total, synapse, dendrite, soma, network} in J; latency_s in s; step_latency_s (n_steps,) in s and
    hops (message-hops) from its per-step trace, None when run without it; synaptic_events (SANA-FE's
    r["spikes"]); neurons_fired and neurons_updated (input neurons count once per spike in both); wall_s: wall
    time of chip.sim; spikes: {population: int64 (n_steps, size) 0/1} when spike logging was on, else None.
    """

    energy_j: dict
    latency_s: float
    step_latency_s: np.ndarray | None
    synaptic_events: int
    neurons_fired: int
    neurons_updated: int
    hops: int | None
    wall_s: float
    spikes: dict | None


class SanafeRun:
    """`graph` built as a SANA-FE network, every neuron on the SANA-FE core that matches its core in `mapping`
    (same tile (x, y), same position among that tile's used cores), loaded on a SpikingChip of its own.

    arch: sanafe.load_loihi() (SANA-FE's loihi.yaml), shareable between runs; None loads it. Each run builds its
    own SpikingChip (seconds: 128 cores x 1,030 pipeline units): sanafe 2.2.9 aborts the process when a second
    network is loaded on a chip that has already simulated ("This model must update every time-step"), since
    chip.reset() keeps the chip's step counter but the new neurons start from step 0.
    log_spikes: record every neuron's spikes (slower; for exact per-neuron comparisons).
    Raises ValueError when the graph is not supported (see `_check_supported`) or `chip`'s mesh differs from
    SANA-FE's loihi.yaml (8 x 4 tiles, 4 cores per tile).
    """

    def __init__(self, graph: NetworkGraph, mapping: Mapping, chip: ChipSpec, arch=None, log_spikes: bool = False):
        _check_supported(graph)
        self.arch = sanafe.load_loihi() if arch is None else arch
        self.graph, self.mapping, self.log_spikes = graph, mapping, log_spikes
        self._sanafe_core = self._core_index(chip)
        net = sanafe.Network()
        groups = {name: self._group(net, name) for name in graph.populations}
        for proj in graph.projections:
            self._connect(groups[proj.source], groups[proj.target], proj)
        self.chip = sanafe.SpikingChip(self.arch)
        self.chip.load(net)
        self.inputs = [p.name for p in graph.populations.values() if p.is_input]

    def _core_index(self, chip: ChipSpec) -> np.ndarray:
        """SANA-FE core id of each of our cores: tile id x * height + y, then the core's rank within its tile."""
        shape = (chip.mesh_width, chip.mesh_height, chip.cores_per_tile, getattr(chip, "n_chips", 1))
        if shape != (8, 4, 4, 1):
            raise ValueError(f"chip: {shape[3]} chip(s) of {shape[0]} x {shape[1]} tiles x {shape[2]} cores differ "
                             "from SANA-FE's loihi.yaml (one chip, 8 x 4 tiles, 4 cores per tile)")
        xy = self.mapping.tile_xy
        tile = xy[:, 0] * chip.mesh_height + xy[:, 1]
        rank = np.array([np.count_nonzero(tile[:k] == tile[k]) for k in range(len(tile))])
        if rank.max(initial=0) >= chip.cores_per_tile:
            raise ValueError("mapping: more cores on one tile than the chip has")
        return tile * chip.cores_per_tile + rank

    def _group(self, net, name: str):
        """Create one neuron group for population `name`, with its somas and core placement."""
        pop, cores = self.graph.populations[name], self.arch.cores()
        if pop.is_input:
            group = net.create_neuron_group(name, pop.size, log_spikes=self.log_spikes)
        else:
            theta = pop.neuron.threshold - GRID / 2
            group = net.create_neuron_group(name, pop.size, model_attributes={"threshold": theta, "reset": 0.0,
                                            "reset_mode": "hard", "leak_decay": 1.0}, soma_hw_name=LIF_SOMA,
                                            default_synapse_hw_name=self._synapse_unit(name),
                                            log_spikes=self.log_spikes)
        core_of = self._sanafe_core[self.mapping.core_of_neuron[name]]
        slot = np.zeros(len(core_of), np.int64)
        for c in np.unique(core_of):
            slot[core_of == c] = np.arange(np.count_nonzero(core_of == c))
        for i, neuron in enumerate(group.neurons):
            if pop.is_input:
                neuron.set_attributes(soma_hw_name=f"loihi_inputs[{int(slot[i])}]")
            neuron.map_to_core(cores[int(core_of[i])])
        return group

    def _synapse_unit(self, name: str) -> str:
        """SANA-FE synapse unit of the in-projections of population `name` (one storage format per target)."""
        formats = {p.storage for p in self.graph.in_projections(name)}
        if len(formats) != 1:
            raise ValueError(f"population {name!r}: in-projections use storage {sorted(formats)}; the bridge "
                             "needs exactly one (SANA-FE selects the synapse unit per target neuron)")
        return SYNAPSE_UNITS[formats.pop()]

    def _connect(self, src, dst, proj: Projection) -> None:
        """Synapses as the storage format stores them: dense = every matrix entry, sparse = non-zeros only,
        conv = every in-bounds tap (zeros included), so SANA-FE visits what our storage format pays."""
        src_shape = self.graph.populations[proj.source].shape
        if proj.kind == "conv":
            s, d, w = conv_edges(proj, src_shape)
        elif proj.storage == "dense":
            src.connect_neurons_dense(dst, {"w": proj.weight.T.astype(np.float64).ravel()})
            return
        else:
            d, s = np.nonzero(proj.weight)
            w = proj.weight[d, s]
        if proj.storage == "sparse":
            keep = w != 0
            s, d, w = s[keep], d[keep], w[keep]
        src.connect_neurons_sparse(dst, {"w": w.astype(np.float64).tolist()},
                                   list(zip(s.tolist(), d.tolist())))

    def run_sample(self, trace: EventTrace, sample: int, per_step: bool = True) -> SanafeSample:
        """Play sample `sample` of `trace` (its input populations' spikes) for T + L steps after a chip reset.

        per_step: ask SANA-FE for its per-step trace (step latencies, hops); it adds 10-25 % to chip.sim's wall
        time, so speed measurements run without it.
        """
        n_steps = trace.n_timesteps + self.graph.n_layers
        chip = self.chip
        chip.reset()
        for name in self.inputs:
            size = self.graph.populations[name].size
            train = np.zeros((size, n_steps), bool)
            for t in range(trace.n_timesteps):
                train[trace.spikes(sample, t, name).indices, t] = True
            for i, mapped in enumerate(chip.mapped_neuron_groups[name]):
                mapped.set_attributes(model_attributes={"spikes": train[i].tolist()})
        t0 = time.perf_counter()
        r = chip.sim(n_steps, timing_model="detailed", perf_trace=per_step, spike_trace=self.log_spikes)
        wall = time.perf_counter() - t0
        perf = r["perf_trace"] if per_step else None
        return SanafeSample(dict(r["energy"]), float(r["sim_time"]),
                            None if perf is None else np.asarray(perf["sim_time"], float), int(r["spikes"]),
                            int(r["neurons_fired"]), int(r["neurons_updated"]),
                            None if perf is None else int(np.sum(perf["hops"])), wall,
                            self._spikes(r["spike_trace"], n_steps) if self.log_spikes else None)

    def _spikes(self, spike_trace: list, n_steps: int) -> dict:
        """{population: (n_steps, size) 0/1} from SANA-FE's per-step lists of spiking neuron addresses."""
        out = {name: np.zeros((n_steps, p.size), np.int64) for name, p in self.graph.populations.items()}
        for step, fired in enumerate(spike_trace):
            for addr in fired:
                out[addr.group_name][step, addr.neuron_offset] = 1
        return out
