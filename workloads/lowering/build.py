"""The graph under construction: the settings a lowering was asked for (`Settings`), what it has emitted so far
(`Build`: populations, projections, metadata, what the trace recorder must capture) and the functions that turn
values (workloads.lowering.values) into populations and projections.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from hwmodels.trace import NeuronModel, Population, Projection
from workloads.lowering.fold_kernel import stage_weight_f32
from workloads.lowering.naming import fresh_name
from workloads.lowering.values import Current, Feed, Stage, identity_stage, layout_fn

#: projection-name prefix by the origin of a weight stage (others use "fc")
PREFIX = {"Conv1d": "conv", "Conv2d": "conv", "Linear": "fc", "Identity": "identity"}


@dataclass(frozen=True)
class Settings:
    """What lower() was asked for: default weight bits, a storage format forced on every projection (or None),
    per-layer settings by module name from a CompressionResult (layer_bits: weight bits, layer_storage: storage
    format, state_bits: membrane bits of a neuron layer) and line: the input holds 1-D signals (C, L) as
    (C, 1, L) (Conv1d models, workloads.lowering.geometry)."""

    weight_bits: int
    storage: str | None = None
    layer_bits: dict[str, int] = field(default_factory=dict)
    layer_storage: dict[str, str] = field(default_factory=dict)
    state_bits: dict[str, int] = field(default_factory=dict)
    line: bool = False

    def storage_for(self, kind: str, layer: str | None = None) -> str:
        """Storage format of a projection of `kind`: the requested one (lower's storage=, for every projection),
        else the layer's own (`layer`, e.g. "sparse" after unstructured pruning), else "conv"/"dense" by kind; a
        "conv" request applies to conv projections only (dense projections stay "dense")."""
        wanted = self.storage if self.storage is not None else layer
        if wanted is None or (wanted == "conv" and kind != "conv"):
            return "conv" if kind == "conv" else "dense"
        return wanted

    def stamp(self, stage: Stage, key: str) -> Stage:
        """`stage` with the weight bits and storage of module `key` (None when the compression sets none; the
        stage's own storage, e.g. a diagonal's "sparse", when it sets no storage)."""
        stage.bits, stage.storage = self.layer_bits.get(key), self.layer_storage.get(key, stage.storage)
        return stage


@dataclass
class Build:
    """What one lowering has emitted: populations and projections in order, graph metadata (origin {projection:
    layer type}, layers {"populations"|"projections": {name: tags}}, recurrent {projection: delay}, input_current
    [population], notes {projection: why it is not exact}) and, for the trace recorder, captures {population:
    (where, fn(output, args) -> (T, B, n) tensor in the population's C-order)}, where is an fx node name or a
    module (read by a forward hook), and readout: the layout of the model output when it is the input current of
    the readout "output" (None otherwise). counters: name counters (see next_name)."""

    settings: Settings
    populations: list[Population] = field(default_factory=list)
    projections: list[Projection] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)
    layers: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {"populations": {}, "projections": {}})
    recurrent: dict[str, int] = field(default_factory=dict)
    input_current: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    captures: dict[str, tuple[object, object]] = field(default_factory=dict)
    readout: str | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def next_name(self, prefix: str) -> str:
        """`prefix` followed by a 1-based counter per prefix (conv1, conv2, fc1, pool1, ...; "" numbers neurons)."""
        self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}{self.counters[prefix]}"

    def metadata(self, n_timesteps: int) -> dict:
        """graph.metadata of the finished lowering (see workloads.lowering.engine.lower)."""
        out = {"origin": self.origin, "layers": self.layers, "n_timesteps": int(n_timesteps)}
        if self.notes:
            out["approximations"] = dict(self.notes)
        if self.input_current:
            out["input_current"] = list(self.input_current)
        if self.recurrent:
            out["recurrent"] = dict(self.recurrent)
        return out


def add_projection(build: Build, proj: Projection, origin: str, tags: list[str]) -> None:
    """Append `proj` with its origin (layer type) and the tags of the layers folded into it."""
    build.projections.append(proj)
    build.origin[proj.name] = origin
    build.layers["projections"][proj.name] = list(tags)


def add_population(build: Build, pop: Population, tags: list[str], at: object, fn) -> None:
    """Register `pop` (tags: the layers behind it) with its capture: the value `fn(output, args)` of fx node or
    module `at` (None: nothing recorded). ValueError if the name is taken."""
    if any(p.name == pop.name for p in build.populations):
        raise ValueError(f"{tags[0]}: population name {pop.name!r} is used twice")
    build.populations.append(pop)
    build.layers["populations"][pop.name] = list(tags)
    if at is not None:
        build.captures[pop.name] = (at, fn)


def emit(build: Build, current: Current, pop: Population, tags: list[str], at: object, fn) -> None:
    """Add population `pop` (captured from `at` through fn, see add_population) and one projection per stage of
    `current` into it, named by the stage or by PREFIX of its origin; the current's bias goes to the first
    projection (repeated over each channel's neurons). Gated stages are stored structurally (conv/dense). A named
    stage whose name a projection has already is named by _free_name."""
    settings = build.settings
    if pop.shape != current.out_shape:
        raise ValueError(f"{tags[0]}: population shape {pop.shape} != current shape {current.out_shape}")
    for i, t in enumerate(current.stages):
        name = _free_name(build, t.name) if t.name else build.next_name(PREFIX.get(t.origin, "fc"))
        bias = None
        if i == 0 and current.bias is not None:
            bias = np.repeat(current.bias.numpy().astype(np.float32), pop.size // len(current.bias))
        gated = "conv" if t.kind == "conv" else "dense"
        storage = gated if t.gate is not None else settings.storage_for(t.kind, t.storage)
        add_projection(build, Projection(
            name=name, source=t.source, target=pop.name, kind=t.kind, weight=stage_weight_f32(t.w, t.rows),
            stride=t.stride, padding=t.padding, dilation=t.dilation, groups=t.groups,
            weight_bits=t.bits or settings.weight_bits, storage=storage, bias=bias, gate=t.gate,
            gate_index=t.gate_index), t.origin, t.tags)
    add_population(build, pop, tags, at, fn)


def _free_name(build: Build, name: str) -> str:
    """A stage's given name (a low-rank factor's "<base>_a"), or "<name>_2", "_3", ... when a projection already
    has it: a current emitted twice (a pre-activation net folds one conv's output into the BatchNorms of two
    blocks) gives two projections."""
    return fresh_name(name, {p.name for p in build.projections})


def relay_of_sum(build: Build, a: Feed, b: Feed, tag: str, at: object) -> Feed:
    """spikes + spikes (SEW-style residual after the neurons): a graded relay population "add<k>" (NeuronModel
    "relay", it forwards its summed value every timestep) fed by one identity projection from each addend."""
    if a.pop.shape != b.pop.shape or a.layout != b.layout:
        raise ValueError(f"{tag}: cannot add {a.pop.name} {a.pop.shape} ({a.layout}) and {b.pop.name} "
                         f"{b.pop.shape} ({b.layout})")
    return relay_of(build, [identity_stage(a, tag), identity_stage(b, tag)], a, tag, at)


def relay_of(build: Build, stages: list[Stage], like: Feed, tag: str, at: object) -> Feed:
    """A graded relay population "add<k>" (NeuronModel "relay": it forwards its summed value every timestep) of
    `like`'s shape and layout, fed by `stages` (one projection each); returns its Feed."""
    pop = Population(build.next_name("add"), like.pop.shape, NeuronModel("relay"), graded=True)
    emit(build, Current(stages, None, like.pop.shape, like.layout, like.line), pop, [tag], at, layout_fn(like.layout))
    return Feed(pop, like.layout, line=like.line)


def reshape_population(build: Build, pop: Population, shape: tuple[int, ...], tag: str) -> Population:
    """`pop` given another shape of the same size, its C-order neuron numbering kept, and put in its place.
    Raises ValueError naming `tag` when a conv projection targets it (the convolution fixes its shape)."""
    if any(p.target == pop.name and p.kind == "conv" for p in build.projections):
        raise ValueError(f"layer {tag}: {pop.name!r} is the output of a convolution, shape {pop.shape}; it cannot "
                         f"be reshaped to {shape}")
    new = replace(pop, shape=shape)
    build.populations[[p.name for p in build.populations].index(pop.name)] = new
    return new


def drop_unread_input(build: Build) -> None:
    """When spiking nodes take the input tensor as their current (build.input_current), remove the input
    populations no projection reads (as source or gate): nothing on the chip sends their values."""
    if not build.input_current:
        return
    read = {p.source for p in build.projections} | {p.gate for p in build.projections if p.gate is not None}
    for pop in [p for p in build.populations if p.is_input and p.name not in read]:
        build.populations.remove(pop)
        build.layers["populations"].pop(pop.name, None)
