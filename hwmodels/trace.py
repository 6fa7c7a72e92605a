"""The contract between workloads and the hardware model: NetworkGraph + EventTrace (numpy only).

Any event source (a lowered SpikingJelly model, a NIR graph, a Brian2 network, a recorded trace) produces these
two objects; `hwmodels` consumes nothing else. See ../shared/DESIGN.md, "The contract".
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import xxhash

from hwmodels.activity import check as check_activity
from hwmodels.activity import pack as pack_activity
from hwmodels.atomic import write_atomic
from hwmodels.npzfile import array, file_name, one_line, open_npz, quote, read_meta, type_names
from hwmodels.trace_folder import read_trace_folder
from hwmodels.trace_meta import (TRACE_FORMAT_VERSION, TRACE_META, TRACE_VERSIONS_READ, activity_columns,
                                 optional_meta)

NEURON_KINDS = ("input", "IF", "LIF", "PLIF", "sLIF", "relay", "CubaLIF")
#: state variables per neuron of a kind (others: one, the membrane potential)
STATE_VARIABLES = {"CubaLIF": 2}
PROJECTION_KINDS = ("dense", "conv")
#: widest stored weight a projection may have (Projection.weight_bits is 1..MAX_WEIGHT_BITS; lowering and the run
#: config's hardware.weight_bits take the same range)
MAX_WEIGHT_BITS = 32
STORAGE_FORMATS = ("dense", "sparse", "conv", "bitmap")
#: version written by NetworkGraph.save (graphs read: exactly this one)
GRAPH_FORMAT_VERSION = 1
#: start of NetworkGraph.fingerprint() (XXH3-128); a trace's graph_fingerprint without it is the legacy 16-hex
#: SHA-256 form (NetworkGraph.legacy_fingerprint) of traces lowered before, still checked as such
FINGERPRINT_PREFIX = "xxh3-128:"



def _check_choice(field_name: str, value: str, accepted: tuple[str, ...]) -> None:
    """Raise ValueError naming `field_name` when `value` is not one of `accepted`."""
    if value not in accepted:
        raise ValueError(f"{field_name}: {quote(value)} is not one of {', '.join(accepted)}")


def _is_real(x: object) -> bool:
    """True for an int or float (numpy scalars included), False for bool, str, None and the rest."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def is_int(x: object) -> bool:
    """True for an int (numpy integers included), False for bool, float (even 3.0), str and the rest."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_finite(field_name: str, owner: str, a: np.ndarray) -> None:
    """Raise ValueError naming `field_name` of `owner` when the float array `a` holds NaN or inf."""
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ValueError(f"{field_name}: {quote(owner)} has {bad} non-finite value{'s' if bad > 1 else ''} (NaN or "
                         "inf); weights and biases must be finite")


@dataclass(frozen=True)
class NeuronModel:
    """Discrete-time neuron model of a population.

    kind: one of NEURON_KINDS ("input" marks an encoder population with no neuron state; "relay" a non-spiking
        dendritic relay that emits its graded value every timestep it holds one, e.g. the rank-r middle of a
        low-rank projection, see hwmodels.mapping.storage).
    threshold: firing threshold theta (dimensionless, same units as the membrane potential); +inf for a
        non-spiking readout.
    tau: membrane time constant in timesteps (LIF family; SpikingJelly H = V + (X - (V - V_reset)) / tau);
        None for IF (no leak).
    v_reset: hard-reset value, or None for soft reset (subtract theta).
    decay_input: SpikingJelly's `decay_input` flag (input divided by tau as well).
    tau_syn: synaptic-current time constant in timesteps of a "CubaLIF" (current-based LIF, two states per
        neuron: I[t] = I[t-1] - I[t-1]/tau_syn + X[t], then the LIF step on I[t] without input decay,
        workloads.neurons.CubaLIFNode); None for the one-state kinds, and then left out of the saved graph and
        the fingerprint, so graphs without a CubaLIF are stored and hashed as before.
    Raises ValueError for an unknown kind, a NaN or -inf threshold, a tau that is not a finite number >= 1, a
    non-finite v_reset, a decay_input that is not a bool, or a tau_syn that is not a finite number >= 1 given
    exactly for kind "CubaLIF".
    """

    kind: str = "IF"
    threshold: float = 1.0
    tau: float | None = None
    v_reset: float | None = 0.0
    decay_input: bool = True
    tau_syn: float | None = None

    def __post_init__(self) -> None:
        _check_choice("neuron.kind", self.kind, NEURON_KINDS)
        if (self.tau_syn is None) != (self.kind != "CubaLIF") or not (
                self.tau_syn is None or (_is_real(self.tau_syn) and 1.0 <= self.tau_syn < math.inf)):
            raise ValueError(f"neuron.tau_syn: {quote(self.tau_syn)} must be a finite number >= 1 timestep for kind "
                             f"CubaLIF and None for the others (kind {quote(self.kind)})")
        if not _is_real(self.threshold) or math.isnan(self.threshold) or self.threshold == -math.inf:
            raise ValueError(f"neuron.threshold: {quote(self.threshold)} must be a number or +inf (a non-spiking "
                             "readout)")
        if self.tau is not None and not (_is_real(self.tau) and 1.0 <= self.tau < math.inf):
            raise ValueError(f"neuron.tau: {quote(self.tau)} must be a finite number >= 1 timestep or None")
        if self.v_reset is not None and not (_is_real(self.v_reset) and math.isfinite(self.v_reset)):
            raise ValueError(f"neuron.v_reset: {quote(self.v_reset)} must be a finite number or None (soft reset)")
        if not isinstance(self.decay_input, (bool, np.bool_)):
            raise ValueError(f"neuron.decay_input: {quote(self.decay_input)} must be True or False")

    @property
    def state_variables(self) -> int:
        """State variables one neuron holds: 2 for a CubaLIF (current and potential), else 1."""
        return STATE_VARIABLES.get(self.kind, 1)


#: most neurons in one population: traces hold neuron indices as int32
MAX_NEURONS = 2 ** 31 - 1


@dataclass(frozen=True)
class Population:
    """A group of neurons with one shape and one neuron model (a layer's spiking output, or the input).

    shape: tensor shape of one timestep's output without batch, e.g. (C, H, W) or (N,); neurons are numbered in
        C-order (row-major) over this shape, as torch's `flatten` numbers them.
    state_bits: bits of one state variable per neuron held in core memory (the membrane potential; a CubaLIF
        neuron holds two such variables, NeuronModel.state_variables, hwmodels.mapping.storage.state_bits_per_neuron).
    graded: True when spikes carry a real value (direct-encoded input, graded/ternary spikes); the trace then
        stores a value per event.
    Raises ValueError for an empty or non-string name, a shape that is not a non-empty tuple of positive ints
    (2.5 or "3" refused, not truncated or parsed) or a state_bits that is not an int in 1..64.
    """

    name: str
    shape: tuple[int, ...]
    neuron: NeuronModel = field(default_factory=NeuronModel)
    state_bits: int = 16
    graded: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"population.name: {quote(self.name)} must be a non-empty string")
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else ()
        if not shape or not all(is_int(s) and s > 0 for s in shape):
            raise ValueError(f"population.shape: {quote(self.shape)} of {quote(self.name)} must be a non-empty tuple "
                             "of positive ints")
        object.__setattr__(self, "shape", tuple(int(s) for s in shape))
        if math.prod(self.shape) > MAX_NEURONS:
            raise ValueError(f"population.shape: {self.shape} holds {math.prod(self.shape)} neurons; at most "
                             f"{MAX_NEURONS} (2**31 - 1: traces number neurons in int32)")
        if not is_int(self.state_bits) or not 1 <= self.state_bits <= 64:
            raise ValueError(f"population.state_bits: {quote(self.state_bits)} must be an integer in 1..64")

    @property
    def size(self) -> int:
        """Number of neurons (product of `shape`)."""
        return int(np.prod(self.shape))

    @property
    def is_input(self) -> bool:
        """True for an encoder population (no neuron state to update)."""
        return self.neuron.kind == "input"


@dataclass(frozen=True, eq=False)
class Projection:
    """Synapses from one population to another.

    kind "dense": `weight` has shape (n_target, n_source) over flattened neuron indices.
    kind "conv": `weight` has shape (C_out, C_in / groups, kh, kw); source shape (C_in, H, W), target shape
        (C_out, H_out, W_out), torch.nn.Conv2d geometry (stride, padding, dilation, groups).
    A synapse exists where the weight is non-zero (`synapse count = non-zero synapses`); the structural
    fan-out (all in-bounds kernel positions / all matrix entries) is what a dense storage format walks.
    weight_bits: bits per stored weight (1..32). storage: one of STORAGE_FORMATS; decides memory and which
    synaptic events the chip pays (see hwmodels.mapping.connectivity).
    bias: optional per-target-neuron constant input (shape (n_target,)), e.g. a folded BatchNorm shift; held as
        float32 (as the weight).
    Weights and bias must be real and finite; stride, padding and dilation are two ints (one int: both sides),
    groups an int >= 1, weight_bits an int in 1..32 (bools and fractions refused; ValueError naming the field).
    gate, gate_index: a gated ("dynamic") projection, whose weights change every timestep because they are
        themselves spikes, e.g. spiking self-attention Q K^T V (Zhou et al., Spikformer, ICLR 2023). gate names a
        population and gate_index (int, shape of `weight`) a neuron of it for every weight entry; at timestep t of
        a sample the effective weight of entry j is weight[j] x (value of neuron gate_index[j] of `gate` at t, 0
        when it emitted nothing). The input a target receives is the usual sum over source spikes of value x
        effective weight. Synaptic events: "structural" = the static fan-out (a walk over the whole stored operand
        row, what the hardware model pays: storage must be "dense" or "conv", whose paid count is structural);
        "nonzero" = only entries whose gate fired in hwmodels.mapping.connectivity.synaptic_events (gated_events;
        SimResult.synops_nonzero counts the static non-zero pattern instead). The target depends on the
        gate as on the source (NetworkGraph.depth). Both None for an ordinary projection.
    """

    name: str
    source: str
    target: str
    kind: str
    weight: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    weight_bits: int = 8
    storage: str = ""
    bias: np.ndarray | None = None
    gate: str | None = None
    gate_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_choice("projection.kind", self.kind, PROJECTION_KINDS)
        storage = self.storage or ("conv" if self.kind == "conv" else "dense")
        _check_choice("projection.storage", storage, STORAGE_FORMATS)
        if storage == "conv" and self.kind != "conv":
            raise ValueError(f"projection.storage: 'conv' needs kind 'conv', got kind {self.kind!r}")
        object.__setattr__(self, "storage", storage)
        want_ndim = 4 if self.kind == "conv" else 2
        for name in ("weight", "bias"):
            if np.iscomplexobj(getattr(self, name)):  # a cast to float32 would drop the imaginary part silently
                raise ValueError(f"projection.{name}: {quote(self.name)} is complex; weights and biases are real")
        w = np.asarray(self.weight, dtype=np.float32)
        if w.ndim != want_ndim:
            raise ValueError(f"projection.weight: {self.kind} needs {want_ndim} dims, got shape {w.shape}")
        _check_finite("projection.weight", self.name, w)
        object.__setattr__(self, "weight", w)
        if self.bias is not None:  # held as float32, as it is saved and fingerprinted
            b = np.asarray(self.bias, dtype=np.float64)
            _check_finite("projection.bias", self.name, b)
            _check_finite("projection.bias", self.name, b.astype(np.float32))
            object.__setattr__(self, "bias", b.astype(np.float32))
        for name, low in (("stride", 1), ("padding", 0), ("dilation", 1)):
            given = getattr(self, name)
            values = tuple(given) if isinstance(given, (tuple, list, np.ndarray)) else (given, given)  # 2: (2, 2)
            if len(values) != 2 or not all(_is_real(v) and np.isfinite(float(v)) and float(v) == int(v)
                                           and int(v) >= low for v in values):
                raise ValueError(f"projection.{name}: {quote(given)} of {quote(self.name)} must be an integer or "
                                 f"two (height, width), >= {low}")
            object.__setattr__(self, name, tuple(int(v) for v in values))
        if not is_int(self.groups) or self.groups < 1:
            raise ValueError(f"projection.groups: {quote(self.groups)} of {quote(self.name)} must be an integer >= 1")
        if not is_int(self.weight_bits) or not 1 <= self.weight_bits <= MAX_WEIGHT_BITS:
            raise ValueError(f"projection.weight_bits: {quote(self.weight_bits)} must be an integer in "
                             f"1..{MAX_WEIGHT_BITS}")
        if self.gate is not None or self.gate_index is not None:
            self._check_gate()

    def _check_gate(self) -> None:
        """Validate gate/gate_index (both set, int index shaped like the weight, >= 0, paid count structural)."""
        if self.gate is None or self.gate_index is None:
            raise ValueError(f"projection.gate/gate_index: {self.name!r} needs both or neither")
        idx = np.asarray(self.gate_index)
        if idx.shape != self.weight.shape or not np.issubdtype(idx.dtype, np.integer) or (idx.size and idx.min() < 0):
            raise ValueError(f"projection.gate_index: {self.name!r} needs non-negative ints of the weight's shape "
                             f"{self.weight.shape}, got {idx.dtype} {idx.shape}")
        object.__setattr__(self, "gate_index", np.asarray(idx, dtype=np.int64))  # held as given, like the weight
        if self.storage not in ("dense", "conv"):
            raise ValueError(f"projection.storage: gated projection {self.name!r} must be 'dense' or 'conv' (the "
                             f"hardware model pays gated synapses structurally), got {self.storage!r}")

    @property
    def nonzero_synapses(self) -> int:
        """Number of stored weights that are non-zero (conv: kernel entries, not unrolled synapses)."""
        return int(np.count_nonzero(self.weight))


class NetworkGraph:
    """Populations and projections of one lowered network, in topological (layer) order.

    name: a string; metadata: a dict, saved as JSON (numpy scalars and arrays as numbers and lists).
    Raises ValueError when a projection names an unknown population, when names repeat, when the graph
    has a cycle, or when name is not a string or metadata not a dict (a graph saved with them would not load).
    """

    def __init__(self, populations: list[Population], projections: list[Projection], name: str = "network",
                 metadata: dict | None = None):
        if not isinstance(name, str):
            raise ValueError(f"graph.name: {quote(name)} must be a string")
        if not isinstance(metadata, (dict, type(None))):
            raise ValueError(f"graph.metadata: {type(metadata).__name__} must be a dict (or None)")
        self.name = name
        self.metadata = dict(metadata or {})
        self.populations: dict[str, Population] = {}
        for pop in populations:
            if pop.name in self.populations:
                raise ValueError(f"population.name: {pop.name!r} appears twice")
            self.populations[pop.name] = pop
        names = set()
        for proj in projections:
            for end in (proj.source, proj.target):
                if end not in self.populations:
                    raise ValueError(f"projection.source/target: {end!r} (in {proj.name!r}) is not one of "
                                     f"{', '.join(self.populations)}")
            if proj.name in names:
                raise ValueError(f"projection.name: {proj.name!r} appears twice")
            names.add(proj.name)
            _check_shapes(proj, self.populations[proj.source], self.populations[proj.target])
            if proj.gate is not None:
                _check_gate_population(proj, self.populations.get(proj.gate), self.populations)
        self.projections: list[Projection] = list(projections)
        self._depth = self._compute_depth()

    def _compute_depth(self) -> dict[str, int]:
        """Longest path (in projections) from a source population to each population."""
        depth = {name: 0 for name in self.populations}
        for _ in range(len(self.populations) + 1):
            changed = False
            for proj in self.projections:
                for src in (proj.source,) if proj.gate is None else (proj.source, proj.gate):
                    if depth[proj.target] < depth[src] + 1:
                        depth[proj.target] = depth[src] + 1
                        changed = True
            if not changed:
                return depth
        raise ValueError("network graph: projections form a cycle; only feed-forward graphs are supported")

    def depth(self, population: str) -> int:
        """Layer depth of `population`: 0 for inputs, longest projection path from an input otherwise."""
        return self._depth[population]

    @property
    def n_layers(self) -> int:
        """Largest population depth (number of synaptic stages on the longest path)."""
        return max(self._depth.values())

    def in_projections(self, population: str) -> list[Projection]:
        """Projections whose target is `population`."""
        return [p for p in self.projections if p.target == population]

    def out_projections(self, population: str) -> list[Projection]:
        """Projections whose source is `population`."""
        return [p for p in self.projections if p.source == population]

    @property
    def n_neurons(self) -> int:
        """Total neurons over all populations."""
        return sum(p.size for p in self.populations.values())

    def fingerprint(self) -> str:
        """FINGERPRINT_PREFIX and 32 hex digits of an XXH3-128 hash (Collet, xxHash, https://xxhash.com; python
        package xxhash) over what decides the network's events: every population (name, shape, neuron model,
        graded) and projection (name, ends, kind, geometry, groups, gate; weights, bias and gate indices bit for
        bit), in order. The graph's name and metadata, storage formats, weight bits and state bits are left out: a
        label or a hardware choice, which a trace recorded on the graph does not depend on. A saved and reloaded
        graph has the fingerprint of the original. XXH3 is not cryptographic: the fingerprint tells a trace of
        another model from a trace of this one, it is no defence against a forged trace. It hashes ~14 GB/s
        against SHA-256's ~1.4 (legacy_fingerprint: Spikformer-4-384's 82 MB of weights in ~6 ms instead of ~55
        on a 2-core AMD EPYC); like hashlib's SHA-256, xxhash releases the GIL while it hashes a large array (a
        thread hashing 370 MB left a Python loop on the main thread at its speed, measured with xxhash 3.6), only
        each projection's small JSON header holds it."""
        return FINGERPRINT_PREFIX + self.hash_into(xxhash.xxh3_128()).hexdigest()

    def legacy_fingerprint(self) -> str:
        """The fingerprint graphs gave before FINGERPRINT_PREFIX (traces lowered before it carry it): 16 hex digits
        of a SHA-256 over the same bytes as fingerprint()."""
        return self.hash_into(hashlib.sha256()).hexdigest()[:16]

    def fingerprint_of(self, recorded: str) -> str:
        """This graph's fingerprint in the form of `recorded` (a trace's graph_fingerprint): fingerprint() when it
        starts with FINGERPRINT_PREFIX, else legacy_fingerprint(); equal to `recorded` when the trace was recorded
        on this graph."""
        return self.fingerprint() if recorded.startswith(FINGERPRINT_PREFIX) else self.legacy_fingerprint()

    def hash_into(self, h):
        """`h` (any object with update(bytes-like): a hashlib or xxhash hash) updated with the bytes the fingerprints
        hash, in order; returns h."""
        for pop in self.populations.values():
            h.update(_canonical({"name": pop.name, "shape": list(pop.shape), "neuron": _neuron_dict(pop.neuron),
                                 "graded": pop.graded}))
        for proj in self.projections:
            keys = ("name", "source", "target", "kind", "stride", "padding", "dilation", "groups", "gate")
            arrays = (proj.weight, None if proj.bias is None else np.asarray(proj.bias, np.float32), proj.gate_index)
            h.update(_canonical({**{k: getattr(proj, k) for k in keys},
                                 "shapes": [None if a is None else list(a.shape) for a in arrays]}))
            for a in arrays:  # the array's own C-order bytes (its buffer: no copy when contiguous)
                h.update(b"" if a is None else np.ascontiguousarray(a))
        return h

    def save(self, path: str | os.PathLike) -> None:
        """Write the graph to one `.npz` (weights as arrays, everything else as JSON); atomic."""
        meta = {"format_version": GRAPH_FORMAT_VERSION, "name": self.name, "metadata": self.metadata,
                "populations": [_pop_to_dict(p) for p in self.populations.values()], "projections": []}
        arrays = {}
        for i, proj in enumerate(self.projections):
            d = {k: getattr(proj, k) for k in ("name", "source", "target", "kind", "stride", "padding",
                                               "dilation", "groups", "weight_bits", "storage")}
            d["has_bias"] = proj.bias is not None
            if proj.gate is not None:
                d["gate"] = proj.gate
                arrays[f"g{i}"] = proj.gate_index
            meta["projections"].append(d)
            arrays[f"w{i}"] = proj.weight
            if proj.bias is not None:
                arrays[f"b{i}"] = np.asarray(proj.bias, dtype=np.float32)
        try:
            text = json.dumps(meta, default=_plain)
        except TypeError as exc:
            raise ValueError(f"graph.metadata: {exc}; metadata is saved as JSON (numbers, strings, lists, dicts; "
                             "numpy scalars and arrays are converted)") from None
        arrays["meta"] = np.frombuffer(text.encode(), dtype=np.uint8)
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NetworkGraph":
        """Read a graph written by `save`.

        Raises FileNotFoundError when `path` does not exist and a one-line ValueError naming the file and what
        was expected for anything else that is not such a graph: a directory, a file that is not an .npz
        (empty, truncated, another format), an unknown format version, an event trace or mapping file, meta
        that is not a JSON object with the graph's keys, arrays of the wrong dtype or shape, non-finite weights,
        biases or thresholds, or a graph the constructor refuses.
        """
        with open_npz(path, "network graph") as z:
            name = file_name(path)
            meta = read_meta(z, name, "network graph", GRAPH_META)
            _check_version(meta, path, (GRAPH_FORMAT_VERSION,))
            pops = [_pop_from_dict(d, f"{name}: meta['populations'][{i}]") for i, d in enumerate(meta["populations"])]
            projs = [_projection_from(z, name, i, d) for i, d in enumerate(meta["projections"])]
            return cls(pops, projs, name=meta["name"], metadata=meta["metadata"])


def conv_output_shape(proj: Projection, src_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C_out, H_out, W_out) of a conv projection on a (C_in, H, W) source, torch.nn.Conv2d arithmetic.

    Raises ValueError when the source is not 3-D or the channel counts disagree with the weight.
    """
    if len(src_shape) != 3:
        raise ValueError(f"projection {proj.name!r}: conv source shape {src_shape} must be (C, H, W)")
    c_out, c_in_g, kh, kw = proj.weight.shape
    if src_shape[0] != c_in_g * proj.groups:
        raise ValueError(f"projection {proj.name!r}: source has {src_shape[0]} channels, weight expects "
                         f"{c_in_g * proj.groups} (C_in/groups={c_in_g}, groups={proj.groups})")
    h_out = (src_shape[1] + 2 * proj.padding[0] - proj.dilation[0] * (kh - 1) - 1) // proj.stride[0] + 1
    w_out = (src_shape[2] + 2 * proj.padding[1] - proj.dilation[1] * (kw - 1) - 1) // proj.stride[1] + 1
    return c_out, h_out, w_out


def _check_shapes(proj: Projection, src: Population, tgt: Population) -> None:
    """Raise ValueError when the weight (and bias) of `proj` do not fit its source and target populations."""
    if proj.kind == "dense":
        want = (tgt.size, src.size)
        if proj.weight.shape != want:
            raise ValueError(f"projection {proj.name!r}: dense weight shape {proj.weight.shape} should be "
                             f"(target size, source size) = {want}")
    elif conv_output_shape(proj, src.shape) != tgt.shape:
        raise ValueError(f"projection {proj.name!r}: conv output shape {conv_output_shape(proj, src.shape)} "
                         f"!= target shape {tgt.shape}")
    if proj.bias is not None and np.shape(proj.bias) != (tgt.size,):
        raise ValueError(f"projection {proj.name!r}: bias shape {np.shape(proj.bias)} should be ({tgt.size},)")


def _check_gate_population(proj: Projection, gate: Population | None, populations: dict) -> None:
    """Raise ValueError when the gate of `proj` is not a population of the graph or an index is out of range."""
    if gate is None:
        raise ValueError(f"projection.gate: {proj.gate!r} (in {proj.name!r}) is not one of {', '.join(populations)}")
    if proj.gate_index.size and proj.gate_index.max() >= gate.size:
        raise ValueError(f"projection.gate_index: {proj.name!r} indexes neuron {int(proj.gate_index.max())} of "
                         f"{gate.name!r}, which has {gate.size}")


#: keys (and JSON types) of a saved graph's meta, of each population entry and of each projection entry
GRAPH_META = {"format_version": int, "name": str, "metadata": dict, "populations": list, "projections": list}
POPULATION_KEYS = {"name": str, "shape": list, "neuron": dict, "state_bits": int, "graded": bool}
#: keys (and JSON types) of a population's neuron entry; tau_syn (a number) is written for a CubaLIF only
NEURON_KEYS = {"kind": str, "threshold": (int, float), "tau": (int, float, type(None)),
               "v_reset": (int, float, type(None)), "decay_input": bool}
PROJECTION_KEYS = {"name": str, "source": str, "target": str, "kind": str, "stride": list, "padding": list,
                   "dilation": list, "groups": int, "weight_bits": int, "storage": str, "has_bias": bool}


def _plain(value: object) -> object:
    """A numpy scalar or array in `metadata` as the Python number or list JSON holds (json.dumps's default=);
    TypeError for anything else JSON cannot hold."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"object of type {type(value).__name__} is not JSON serializable")


def _canonical(obj: dict) -> bytes:
    """Canonical JSON bytes of a dict of plain values (numpy scalars as Python numbers), for hashing."""
    return json.dumps(obj, sort_keys=True, default=lambda v: v.item() if hasattr(v, "item") else str(v)).encode()


def _entry(d: object, keys: dict[str, type], where: str) -> dict:
    """`d` when it is a dict holding `keys` with values of their types; ValueError naming `where` otherwise."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: is {quote(d)}, expected a JSON object with keys {', '.join(keys)}")
    for key, kind in keys.items():
        if key not in d:
            raise ValueError(f"{where}: lacks {key!r} (expected keys {', '.join(keys)})")
        if not isinstance(d[key], kind) or (isinstance(d[key], bool) and kind is not bool):
            raise ValueError(f"{where}[{key!r}] is {quote(d[key])}, expected {type_names(kind)}")
    return d


def _projection_from(z, name: str, i: int, d: object) -> Projection:
    """Projection i of an open graph .npz (file `name`) from its meta entry `d` and arrays w<i>, b<i>, g<i>."""
    d = dict(_entry(d, PROJECTION_KEYS, f"{name}: meta['projections'][{i}]"))
    has_bias = d.pop("has_bias")
    gate = {"gate": d.pop("gate"), "gate_index": array(z, name, f"g{i}", "int")} if "gate" in d else {}
    bias = array(z, name, f"b{i}", "float", 1) if has_bias else None
    return Projection(weight=array(z, name, f"w{i}", "float"), bias=bias, **d, **gate)


def _neuron_dict(neuron: NeuronModel) -> dict:
    """asdict(neuron) without tau_syn when it is None (graphs without a CubaLIF keep their bytes and hashes)."""
    d = asdict(neuron)
    if d["tau_syn"] is None:
        del d["tau_syn"]
    return d


def _pop_to_dict(pop: Population) -> dict:
    d = asdict(pop)
    d["shape"] = list(pop.shape)
    d["neuron"] = _neuron_dict(pop.neuron)
    return d


def _pop_from_dict(d: object, where: str) -> Population:
    """Population of a saved graph's meta entry `d`; ValueError naming `where` for a missing, mistyped or unknown
    key of the entry or of its neuron (NEURON_KEYS, tau_syn for a CubaLIF)."""
    d = _entry(d, POPULATION_KEYS, where)
    neuron = _entry(d["neuron"], NEURON_KEYS, f"{where}['neuron']")
    neuron_keys = {**NEURON_KEYS, "tau_syn": float}
    for entry, keys, at in ((d, POPULATION_KEYS, where), (neuron, neuron_keys, f"{where}['neuron']")):
        unknown = sorted(set(entry) - set(keys))
        if unknown:
            raise ValueError(f"{at}: unknown key {unknown[0]!r} (expected keys {', '.join(keys)})")
    return Population(name=d["name"], shape=tuple(d["shape"]), neuron=NeuronModel(**neuron),
                      state_bits=d["state_bits"], graded=d["graded"])


def _check_version(meta: dict, path, accepted: tuple[int, ...]) -> None:
    """Raise ValueError naming the file when its format_version is not one of `accepted`."""
    if meta.get("format_version") not in accepted:
        raise ValueError(f"{file_name(path)}: format_version {quote(meta.get('format_version'))} is not one of "
                         f"{', '.join(map(str, accepted))}")


def atomic_savez(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to a temp file in the same folder, then rename (hwmodels.atomic.write_atomic), so no half-written
    file is ever visible; the folder is made when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def savez(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a name
            np.savez(fh, **arrays)
    write_atomic(path, savez)


@dataclass(frozen=True)
class StepSpikes:
    """Spikes of one population at one timestep of one sample: neuron indices (int32) and values (float32)."""

    indices: np.ndarray
    values: np.ndarray


class EventTrace:
    """Which neuron spiked, at which timestep, per sample and population (CSR layout).

    Row r = (sample * n_timesteps + t) * n_populations + p holds the sorted int32 neuron indices
    `indices[offsets[r]:offsets[r+1]]` of population `populations[p]` that spiked at timestep t of `sample`.
    `values` (float32, same length as `indices`) carries graded/ternary spike values; None means every spike is
    1.0. `labels` (int64, shape (n_samples,)) optionally holds the class of each sample, `predictions` (int64,
    (n_samples,)) the class the recorded model predicted (its readout), so per-sample correctness is known.
    `activity` optionally records which neurons were updated (input, bias or a non-zero potential), per sample,
    timestep and population, plus those left with a non-zero potential after the last timestep: the packed
    layout of hwmodels.activity; populations without an entry follow the default rule (every neuron updated in
    each of its timesteps). `sizes` ({population: neurons}) is needed to check `activity` (else its shapes are
    checked when it is used); it is kept and saved, so a consumer can check the trace against its graph.
    `graph_fingerprint`: NetworkGraph.fingerprint() of the graph the trace was recorded on (workloads.lowering
    sets it), or None (older traces, hand-made ones); hwmodels.trace_check compares it with the graph simulated.

    Raises ValueError when populations repeat or are empty, n_samples < 0, n_timesteps < 1, or
    offsets/indices/values/labels/predictions/activity/sizes are inconsistent (integer columns must convert exactly).
    A neuron listed twice in one row is refused when the trace is checked against its graph (hwmodels.trace_check).
    """

    def __init__(self, populations: list[str], n_samples: int, n_timesteps: int, offsets: np.ndarray,
                 indices: np.ndarray, values: np.ndarray | None = None, labels: np.ndarray | None = None,
                 activity: dict[str, np.ndarray] | None = None, predictions: np.ndarray | None = None,
                 sizes: dict[str, int] | None = None, graph_fingerprint: str | None = None):
        self.populations = tuple(populations)
        self.n_samples = _count("trace.n_samples", n_samples, 0)
        self.n_timesteps = _count("trace.n_timesteps", n_timesteps, 1)
        self.offsets = _int_array("trace.offsets", offsets, np.int64)
        self.indices = _int_array("trace.indices", indices, np.int32)
        self.values = None if values is None else np.asarray(values, dtype=np.float32)
        self.labels = None if labels is None else _int_array("trace.labels", labels, np.int64)
        self.predictions = None if predictions is None else _int_array("trace.predictions", predictions, np.int64)
        self._pop_index = {name: i for i, name in enumerate(self.populations)}
        _check_names(self.populations)  # before sizes, whose message lists them
        self.sizes = _check_sizes(sizes, self.populations)
        self.graph_fingerprint = None if graph_fingerprint is None else str(graph_fingerprint)
        self._validate()
        self.activity = check_activity(activity or {}, self.populations, self.n_samples, self.n_timesteps,
                                       self.sizes)

    def _validate(self) -> None:
        rows = self.n_samples * self.n_timesteps * len(self.populations)
        if self.offsets.shape != (rows + 1,):
            raise ValueError(f"trace.offsets: shape {self.offsets.shape} should be ({rows + 1},)")
        if self.offsets[0] != 0 or self.offsets[-1] != len(self.indices) or np.any(np.diff(self.offsets) < 0):
            raise ValueError("trace.offsets: must start at 0, be non-decreasing and end at len(indices)")
        if self.values is not None and self.values.shape != self.indices.shape:
            raise ValueError(f"trace.values: shape {self.values.shape} != indices shape {self.indices.shape}")
        for name in ("labels", "predictions"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (self.n_samples,):
                raise ValueError(f"trace.{name}: shape {arr.shape} should be ({self.n_samples},)")

    def _row(self, sample: int, t: int, population: str) -> int:
        """CSR row of (sample, t, population); KeyError for an unknown population, IndexError for a sample outside
        0..n_samples-1 or a timestep outside 0..n_timesteps-1 (which would name another sample's row)."""
        if population not in self._pop_index:
            raise KeyError(f"population: {population!r} is not one of {', '.join(self.populations)}")
        for name, v, n in (("sample", sample, self.n_samples), ("t", t, self.n_timesteps)):
            if not 0 <= v < n:
                raise IndexError(f"{name}: {v} is outside 0..{n - 1}")
        return (sample * self.n_timesteps + t) * len(self.populations) + self._pop_index[population]

    def spikes(self, sample: int, t: int, population: str) -> StepSpikes:
        """Spikes of `population` at timestep `t` of `sample` (views, no copy). Raises KeyError for an unknown
        population and IndexError for a sample or timestep out of range."""
        r = self._row(sample, t, population)
        lo, hi = self.offsets[r], self.offsets[r + 1]
        vals = np.ones(hi - lo, np.float32) if self.values is None else self.values[lo:hi]
        return StepSpikes(self.indices[lo:hi], vals)

    def counts(self) -> np.ndarray:
        """Spike counts, shape (n_samples, n_timesteps, n_populations), int64."""
        return np.diff(self.offsets).reshape(self.n_samples, self.n_timesteps, len(self.populations))

    def sample_view(self, s: int) -> "EventTrace":
        """Sample `s` as a single-sample EventTrace (views into this trace's arrays, no copy)."""
        if not 0 <= s < self.n_samples:
            raise IndexError(f"sample: {s} is outside 0..{self.n_samples - 1}")
        rows = self.n_timesteps * len(self.populations)
        lo, hi = self.offsets[s * rows], self.offsets[(s + 1) * rows]
        return EventTrace(self.populations, 1, self.n_timesteps, self.offsets[s * rows:(s + 1) * rows + 1] - lo,
                          self.indices[lo:hi], None if self.values is None else self.values[lo:hi],
                          None if self.labels is None else self.labels[s:s + 1],
                          {n: a[s:s + 1] for n, a in self.activity.items()},
                          None if self.predictions is None else self.predictions[s:s + 1], self.sizes,
                          self.graph_fingerprint)

    def iter_samples(self) -> Iterator["EventTrace"]:
        """Yield one single-sample EventTrace per sample (views), so consumers hold one sample at a time."""
        for s in range(self.n_samples):
            yield self.sample_view(s)

    def select(self, samples: int | slice | np.ndarray) -> "EventTrace":
        """A new trace with only the given samples (copies): an index, a slice, an index array or a bool mask over
        the samples (numpy indexing: IndexError out of range). ValueError when nothing is selected (e.g. a mask
        of no sample), naming how many samples the trace has."""
        picked = np.atleast_1d(np.arange(self.n_samples)[samples])
        if not picked.size:
            raise ValueError(f"samples: the selection picks none of the trace's {self.n_samples} samples")
        return concat_traces([self.sample_view(int(s)) for s in picked])

    @classmethod
    def from_dense(cls, spikes: dict[str, np.ndarray], labels: np.ndarray | None = None,
                   graded: tuple[str, ...] = (), activity: dict[str, np.ndarray] | None = None,
                   graph_fingerprint: str | None = None) -> "EventTrace":
        """Build a trace from dense spike tensors.

        spikes: {population: array of shape (n_samples, n_timesteps, *population_shape)}, in population order;
            an event is any non-zero entry. Populations in `graded` keep their values; the others store 1.0.
            The trace's sizes are the population sizes of these arrays.
        activity: optional {population: bool array (n_samples, n_timesteps + 1, *population_shape)} of updated
            neurons (row n_timesteps: non-zero potential after the last timestep; see hwmodels.activity).
        graph_fingerprint: NetworkGraph.fingerprint() of the graph the spikes come from, or None.
        Raises ValueError when `spikes` is empty, an array has fewer than 3 dims, sample or timestep counts differ
        between populations, `graded` names a population `spikes` lacks, or an activity array is not shaped
        (n_samples, n_timesteps + 1, *population_shape).
        """
        names = list(spikes)
        if not names:
            raise ValueError("spikes: needs at least one population {name: (n_samples, n_timesteps, *shape) array}")
        unknown = [name for name in graded if name not in spikes]
        if unknown:
            raise ValueError(f"graded: {quote(unknown[0])} is not one of {', '.join(names)}")
        n_s, n_t = np.shape(spikes[names[0]])[:2] if np.ndim(spikes[names[0]]) >= 2 else (None, None)
        flat = {}
        for name in names:
            a = np.asarray(spikes[name])
            if a.ndim < 3 or a.shape[:2] != (n_s, n_t):
                same = f", leading ({n_s}, {n_t}) as {names[0]!r}" if name != names[0] else ""
                raise ValueError(f"spikes[{name!r}]: shape {a.shape} should be (n_samples, n_timesteps, *shape){same}")
            flat[name] = a.reshape(n_s, n_t, -1)
        for name, a in (activity or {}).items():
            if name in flat and np.shape(a) != (n_s, n_t + 1) + np.shape(spikes[name])[2:]:
                raise ValueError(f"activity[{name!r}]: shape {np.shape(a)} should be "
                                 f"{(n_s, n_t + 1) + np.shape(spikes[name])[2:]} (n_samples, n_timesteps + 1, *shape)")
        counts, idx_parts, val_parts = [], [], []
        any_graded = any(name in graded for name in names)
        for s in range(n_s):
            for t in range(n_t):
                for name in names:
                    row = flat[name][s, t]
                    nz = np.flatnonzero(row).astype(np.int32)
                    counts.append(len(nz))
                    idx_parts.append(nz)
                    if any_graded:
                        val_parts.append(row[nz].astype(np.float32) if name in graded
                                         else np.ones(len(nz), np.float32))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        indices = np.concatenate(idx_parts) if idx_parts else np.zeros(0, np.int32)
        values = np.concatenate(val_parts) if any_graded else None
        packed = {n: pack_activity(np.asarray(a, bool).reshape(n_s, n_t + 1, -1)) for n, a in (activity or {}).items()}
        return cls(names, n_s, n_t, offsets, indices, values, labels, packed,
                   sizes={n: flat[n].shape[2] for n in names}, graph_fingerprint=graph_fingerprint)

    def to_dense(self, population: str, shape: tuple[int, ...]) -> np.ndarray:
        """Dense float32 array (n_samples, n_timesteps, *shape) of one population's spike values. Raises KeyError
        for an unknown population and ValueError when `shape` does not hold the population: another neuron count
        than its recorded size (trace.sizes), or fewer neurons than a spike index needs."""
        size = int(np.prod(shape))
        known = (self.sizes or {}).get(population)
        if known is not None and known != size:
            raise ValueError(f"shape: {tuple(shape)} holds {size} neurons; population {population!r} has {known}")
        out = np.zeros((self.n_samples, self.n_timesteps, size), np.float32)
        for s in range(self.n_samples):
            for t in range(self.n_timesteps):
                st = self.spikes(s, t, population)
                if len(st.indices) and not 0 <= int(st.indices.min()) <= int(st.indices.max()) < size:
                    raise ValueError(f"shape: {tuple(shape)} holds {size} neurons; population {population!r} has a "
                                     f"spike index outside 0..{size - 1} (sample {s}, timestep {t})")
                out[s, t, st.indices] = st.values
        return out.reshape((self.n_samples, self.n_timesteps) + tuple(shape))

    def save(self, path: str | os.PathLike) -> None:
        """Write the trace to `.npz` (atomic: temp file, then rename); sizes and graph_fingerprint go into the
        meta when known."""
        meta = {"format_version": TRACE_FORMAT_VERSION, "populations": list(self.populations),
                "n_samples": self.n_samples, "n_timesteps": self.n_timesteps, "activity": list(self.activity),
                **self.provenance()}
        arrays = {"offsets": self.offsets, "indices": self.indices,
                  "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        for name in ("values", "labels", "predictions"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        for name, packed in self.activity.items():
            arrays[f"activity{self.populations.index(name)}"] = packed
        atomic_savez(path, arrays)

    def provenance(self) -> dict:
        """The optional meta a saved trace carries: {"sizes": {...}, "graph_fingerprint": "..."}, the known ones."""
        out = {"sizes": self.sizes, "graph_fingerprint": self.graph_fingerprint}
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EventTrace":
        """Read a trace written by `save` (format 1 or 2; a format-1 trace has no activity, so the default rule
        of hwmodels.activity applies; traces saved before sizes and graph fingerprints were recorded load
        without them).

        Raises FileNotFoundError when `path` does not exist and a one-line ValueError naming the file and what
        was expected for anything else: a directory (a streamed trace folder opens with EventTrace.open), a file
        that is not an .npz (empty, truncated, another format), an unknown format version, a network graph or
        mapping file, meta that is not a JSON object with the trace's keys, arrays of the wrong dtype or shape,
        or arrays the constructor refuses.
        """
        with open_npz(path, "event trace", "; open a streamed trace folder with EventTrace.open") as z:
            name = file_name(path)
            meta = read_meta(z, name, "event trace", TRACE_META)
            _check_version(meta, path, TRACE_VERSIONS_READ)
            opt = {k: array(z, name, k, kind, 1) if k in z.files else None
                   for k, kind in (("values", "float"), ("labels", "int"), ("predictions", "int"))}
            activity = {pop: array(z, name, f"activity{i}", "uint8", 3)
                        for pop, i in activity_columns(meta, name, list).items()}
            csr = [array(z, name, k, "int", 1) for k in ("offsets", "indices")]
            return cls(meta["populations"], meta["n_samples"], meta["n_timesteps"], *csr, opt["values"],
                       opt["labels"], activity, opt["predictions"], **optional_meta(meta, name))

    @classmethod
    def open(cls, path: str | os.PathLike) -> "EventTrace":
        """Open a trace folder written by hwmodels.stream.TraceWriter, memory-mapped (read-only, nothing is read
        until used), so simulate() streams it batch by batch. Raises FileNotFoundError for a missing or
        incomplete folder and a one-line ValueError naming the file and what was expected for anything else: a
        file instead of a folder (an .npz trace loads with EventTrace.load), meta.json that is not a JSON object
        with the trace's keys (or is the meta of another kind of file), an unknown format version, a missing,
        truncated or wrongly typed .npy column, or columns the EventTrace constructor refuses
        (hwmodels.trace_folder)."""
        name = file_name(path)
        try:
            return cls(**read_trace_folder(path))
        except ValueError as exc:
            raise ValueError(one_line(exc) if str(exc).startswith(name) else f"{name}: {one_line(exc)}") from None


def _int_array(field_name: str, a: object, dtype: type) -> np.ndarray:
    """`a` as an array of `dtype` (np.int32 or np.int64), without a copy when it already is one (a memory-mapped
    column is not read). Any other array is converted only when every value is an integer `dtype` holds: a
    fraction (0.5) or a value out of range (an int64 index >= 2^31) raises ValueError naming `field_name` instead
    of being truncated or wrapped."""
    arr = np.asarray(a)
    if arr.dtype == dtype:
        return arr
    if arr.size and arr.dtype.kind not in "iub":
        if arr.dtype.kind != "f":
            raise ValueError(f"{field_name}: {arr.dtype} array; expected integers")
        bad = ~np.isfinite(arr) | (arr != np.floor(arr))
        if bad.any():
            raise ValueError(f"{field_name}: {int(bad.sum())} value(s) are not integers (e.g. {float(arr[bad][0])!r})")
    info = np.iinfo(dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise ValueError(f"{field_name}: values {arr.min()}..{arr.max()} do not fit {np.dtype(dtype).name} "
                         f"({info.min}..{info.max})")
    return arr.astype(dtype)


def _count(field_name: str, value: object, low: int) -> int:
    """`value` as an int >= low; ValueError naming `field_name` otherwise (bools and fractions refused)."""
    if not _is_real(value) or not math.isfinite(value) or int(value) != value or value < low:
        raise ValueError(f"{field_name}: {quote(value)} must be an integer >= {low}")
    return int(value)


def _check_names(names: tuple) -> None:
    """ValueError unless `names` (a trace's populations) are non-empty, unique strings."""
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"trace.populations: {quote(list(names))} must be non-empty, unique names")


def _check_sizes(sizes: dict | None, populations: tuple[str, ...]) -> dict[str, int] | None:
    """`sizes` as {population: int >= 1} over known populations (None stays None); ValueError otherwise."""
    if sizes is None:
        return None
    out = {}
    for pop, size in dict(sizes).items():
        if pop not in populations:
            raise ValueError(f"trace.sizes: population {quote(pop)} is not one of {', '.join(populations)}")
        out[pop] = _count(f"trace.sizes[{pop!r}]", size, 1)
    return out


def _merged(traces: list[EventTrace], key: str):
    """The common `key` ("sizes" or "graph_fingerprint") of `traces`: None when one lacks it; ValueError when
    two differ (traces recorded on different graphs)."""
    known = [getattr(tr, key) for tr in traces if getattr(tr, key) is not None]
    if any(v != known[0] for v in known[1:]):
        raise ValueError(f"concat_traces: traces differ in {key} ({quote(known[0])} vs "
                         f"{quote(next(v for v in known if v != known[0]))}); they come from different graphs")
    return known[0] if len(known) == len(traces) else None


def concat_traces(traces: list[EventTrace]) -> EventTrace:
    """Concatenate traces with the same populations and timesteps along the sample axis.

    Activity is kept for the populations every trace records (others fall back to the default rule); labels,
    predictions, sizes and the graph fingerprint when every trace has them. Raises ValueError when populations,
    timestep counts, sizes or graph fingerprints differ, or the list is empty.
    """
    if not traces:
        raise ValueError("concat_traces: needs at least one trace")
    first = traces[0]
    for tr in traces[1:]:
        if tr.populations != first.populations or tr.n_timesteps != first.n_timesteps:
            raise ValueError("concat_traces: populations and n_timesteps must match")
    offsets, base = [np.zeros(1, np.int64)], 0
    for tr in traces:
        offsets.append(tr.offsets[1:] + base)
        base += int(tr.offsets[-1])
    any_vals = any(tr.values is not None for tr in traces)
    values = np.concatenate([tr.values if tr.values is not None else np.ones(len(tr.indices), np.float32)
                             for tr in traces]) if any_vals else None
    labels, predictions = (np.concatenate([getattr(tr, k) for tr in traces])
                           if all(getattr(tr, k) is not None for tr in traces) else None
                           for k in ("labels", "predictions"))
    shared = set.intersection(*(set(tr.activity) for tr in traces))
    activity = {n: np.concatenate([tr.activity[n] for tr in traces]) for n in first.activity if n in shared}
    return EventTrace(first.populations, sum(tr.n_samples for tr in traces), first.n_timesteps,
                      np.concatenate(offsets), np.concatenate([tr.indices for tr in traces]), values, labels,
                      activity, predictions, _merged(traces, "sizes"), _merged(traces, "graph_fingerprint"))
