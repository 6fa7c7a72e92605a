"""Model exchange through NIR (Neuromorphic Intermediate Representation, Pedersen et al., Nat. Commun. 2024):
export a NetworkGraph to NIR, import a NIR graph (ours, or one written by snnTorch, Norse or Sinabs) as a
SpikingJelly model that `workloads.lower` turns into a NetworkGraph + EventTrace, and read/write `.nir` files.
"""
from __future__ import annotations

import os
import re
from dataclasses import replace

import h5py
import nir
import numpy as np
import torch

from hwmodels.atomic import write_atomic
from hwmodels.npzfile import file_name, one_line

from hwmodels.trace import EventTrace, NetworkGraph, Population
from workloads.exchange.nir_export import DT_S, to_nir
from workloads.exchange.nir_import import IMPORTERS, NirModel, build_model
from workloads.exchange.recurrent import make_graph
from workloads.lowering import lower

__all__ = ["DT_S", "IMPORTERS", "NirModel", "from_nir", "graph_from_nir", "load_nir", "nir_workload",
           "save_nir", "to_nir"]


#: exceptions of a NIR file or graph that nir, h5py or the import raise for malformed content (made one-line
#: ValueErrors naming the file by load_nir and from_nir; the import's own ValueErrors name the node already)
_MALFORMED = (OSError, KeyError, IndexError, TypeError, AttributeError, AssertionError, OverflowError, RuntimeError,
              ZeroDivisionError)


def save_nir(graph: NetworkGraph, path: str | os.PathLike, dt: float = DT_S, portable: bool = False) -> None:
    """Write `to_nir(graph, dt, portable)` to an HDF5 `.nir` file (nir.write), atomically: the graph is converted
    first (nothing is written when to_nir refuses it), then written to a temporary file in the same folder and
    renamed (hwmodels.atomic.write_atomic), so a failed write leaves an existing file as it was. Raises
    ValueError as to_nir does; OSError when the folder is missing or not writable."""
    nir_graph = to_nir(graph, dt, portable)
    write_atomic(path, lambda tmp: nir.write(tmp, nir_graph))


def load_nir(path: str | os.PathLike) -> nir.NIRGraph:
    """Read a `.nir` file (nir.read without NIR's type check: nir 1.0.8 derives a Conv2d's input channels from
    weight.shape[1], ignoring groups, so grouped convs, e.g. our max-pools, fail it; shapes are checked on import
    instead). Raises FileNotFoundError when the file does not exist and a one-line ValueError naming the file
    when it is not a readable NIR file (empty, truncated, not HDF5, a node without its fields)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: {path} does not exist")
    try:
        check_self_contained(path)
    except _MALFORMED as exc:
        raise ValueError(f"{file_name(path)}: not a readable NIR file ({one_line(exc)})") from None
    try:
        return nir.read(path, type_check=False)
    except (*_MALFORMED, ValueError) as exc:  # nir's own ValueErrors too, e.g. an edges array of 3 columns
        raise ValueError(f"{file_name(path)}: not a readable NIR file ({one_line(exc)})") from None


def check_self_contained(path: str | os.PathLike) -> None:
    """ValueError naming the file and the HDF5 object when the `.nir` file at `path` would read another file: an
    external link (another HDF5 file), or a dataset whose bytes live in external raw files or are a virtual
    dataset's mapping of other files. A NIR file (nir.write) holds its arrays itself; reading one must never read
    a file it names (a shared file could otherwise copy e.g. a private key into the weights)."""
    found = []

    def visit(name: str, link) -> None:
        if isinstance(link, h5py.ExternalLink):
            found.append(f"{name!r} is an external link to {link.filename!r}")
        elif isinstance(link, h5py.HardLink) and not found:
            obj = fh[name]
            if isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
                found.append(f"dataset {name!r} reads {'a virtual mapping' if obj.is_virtual else 'external files'}")

    with h5py.File(path, "r") as fh:
        fh.visititems_links(visit)
    if found:
        raise ValueError(f"{file_name(path)}: not a self-contained NIR file ({found[0]}); NIR files hold their "
                         "arrays themselves")


def from_nir(source: nir.NIRGraph | str | os.PathLike, dt: float | None = None) -> NirModel:
    """SpikingJelly model of a NIR graph or `.nir` file (`workloads.exchange.nir_import`; acyclic but for recurrent
    loops neuron -> Affine/Linear or Conv2d -> neuron).

    dt: seconds per timestep for LIF time constants; None: the graph's metadata["dt"] (written by to_nir), else
    DT_S = 1e-4 s (snnTorch). Norse graphs usually need dt=1e-3, Sinabs graphs (tau in timesteps) dt=1.
    Raises ValueError for unsupported nodes or shapes (the message names the node), for complex-valued node
    arrays, and (one line naming the file, or "NIR graph") for malformed content the import trips on otherwise
    (an edge to a missing node, a parameter of the wrong shape or type, an infinite time constant).
    """
    graph = source if isinstance(source, nir.NIRGraph) else load_nir(source)
    where = "NIR graph" if isinstance(source, nir.NIRGraph) else file_name(source)
    _check_real(graph, where)
    try:
        return build_model(graph, dt)
    except _MALFORMED as exc:
        raise ValueError(f"{where}: cannot be imported ({one_line(exc)})") from None


def _check_real(graph: nir.NIRGraph, where: str) -> None:
    """ValueError naming the node and field of the first complex-valued array of `graph` (weights and
    parameters are real; a cast would drop the imaginary part silently)."""
    for key, node in graph.nodes.items():
        for field, value in vars(node).items():
            if isinstance(value, np.ndarray) and np.iscomplexobj(value):
                raise ValueError(f"{where}: node {key!r} field {field!r} is complex ({value.dtype}); NIR weights and "
                                 "parameters must be real")


#: the names lowering gives weight and max-pool projections (workloads.lower), which to_nir's nodes keep
PROJECTION_NAME = re.compile(r"(conv|fc|maxpool|identity)[0-9]+")


def nir_workload(source: nir.NIRGraph | str | os.PathLike, inputs: torch.Tensor, *, dt: float | None = None,
                 labels=None, weight_bits: int = 8, batch_size: int = 128,
                 device=None) -> tuple[NetworkGraph, EventTrace]:
    """Import a NIR graph and run it on `inputs`: the NetworkGraph + EventTrace the hardware model simulates.

    inputs: (T, N, *input_shape) with input_shape the Input node's shape. weight_bits: bits of weight layers whose
    node metadata gives none. Per-layer weight bits, storage format and state bits written by to_nir are kept, and
    so is the PLIF/sLIF kind. graph.metadata["nir"] = {"dt", "nodes": {population/projection: NIR node key},
    "readout" (with a trailing LI / I node): {"node", "type", "predictions": how trace.predictions read it}}.
    A graph with recurrent loops gives a workloads.exchange.recurrent.RecurrentGraph whose "rec<k>" projections
    (graph.metadata["recurrent"]: delay 1 timestep) map to the loops' Affine/Linear/Conv2d nodes.
    Raises ValueError as from_nir and workloads.lower do.
    """
    res = from_nir(source, dt)
    graph, trace = lower(res.model, inputs, labels=labels, weight_bits=weight_bits, compression=res.compression,
                         batch_size=batch_size, name=_name(source), device=device)
    restored = _restore(graph, res, graded_input=None)
    return restored, _retagged(trace, graph, restored)


def _retagged(trace: EventTrace, lowered: NetworkGraph, restored: NetworkGraph) -> EventTrace:
    """`trace` (recorded on `lowered`) for `restored`, the same network after _restore: populations renamed as
    _restore renamed them (lif<k> -> plif<k>/slif<k>, in graph order) and the restored graph's fingerprint, which
    the neuron kind enters, so hwmodels.simulate takes the pair. The arrays are shared, not copied."""
    renamed = dict(zip(lowered.populations, restored.populations))
    fingerprint = restored.fingerprint() if trace.graph_fingerprint is not None else None
    if all(a == b for a, b in renamed.items()) and fingerprint == trace.graph_fingerprint:
        return trace
    return EventTrace([renamed.get(p, p) for p in trace.populations], trace.n_samples, trace.n_timesteps,
                      trace.offsets, trace.indices, trace.values, trace.labels,
                      {renamed.get(p, p): a for p, a in trace.activity.items()}, trace.predictions,
                      None if trace.sizes is None else {renamed.get(p, p): n for p, n in trace.sizes.items()},
                      fingerprint)


def graph_from_nir(source: nir.NIRGraph | str | os.PathLike, dt: float | None = None) -> NetworkGraph:
    """The NetworkGraph of a NIR graph without running it on data (the input population's `graded` flag comes
    from the Input node's metadata). For a graph written by `to_nir` from a lowered model this gives back the
    same populations and projections (names, shapes, neuron models, weights, biases, bits, storage)."""
    res = from_nir(source, dt)
    zeros = torch.zeros((1, 1) + tuple(res.input_shape))
    graph, _ = lower(res.model, zeros, compression=res.compression, batch_size=1, name=_name(source),
                     device="cpu")
    return _restore(graph, res, graded_input=res.graded_input)


def _name(source) -> str:
    """The graph name stored by to_nir, else "nir"."""
    if isinstance(source, nir.NIRGraph):
        return str((source.metadata or {}).get("name", "nir"))
    return os.path.splitext(os.path.basename(str(source)))[0]


def _index(graph: NetworkGraph, kind: str, name: str) -> str | None:
    """Module index lowering recorded for population/projection `name` (its first "<index>:<Type>" tag)."""
    tags = graph.metadata.get("layers", {}).get(kind, {}).get(name) or []
    weights = [t for t in tags if any(w in t for w in ("Conv2d", "Linear", "MaxPool2d"))]
    picked = weights or tags
    return picked[0].split(":")[0] if picked else None


def _restore(graph: NetworkGraph, res: NirModel, graded_input: bool | None) -> NetworkGraph:
    """Give back the neuron kinds (PLIF/sLIF, renaming "lif<k>" to "plif<k>"/"slif<k>" as lowering names them) and,
    when not None, the input's graded flag that NIR keeps only in metadata; record dt and the NIR node of every
    population and projection in metadata["nir"]."""
    pops: list[Population] = []
    renamed, nodes = {}, {}
    for name, pop in graph.populations.items():
        index = _index(graph, "populations", name)
        kind = res.kinds.get(index) if index is not None else None
        if kind in ("PLIF", "sLIF") and kind != pop.neuron.kind:
            old = pop.neuron.kind.lower()
            new_name = kind.lower() + name[len(old):] if name.startswith(old) else name
            renamed[name] = new_name
            pop = replace(pop, name=new_name, neuron=replace(pop.neuron, kind=kind))
        if pop.is_input and graded_input is not None:
            pop = replace(pop, graded=graded_input)
        pops.append(pop)
        if index is not None and index in res.nodes:
            nodes[pop.name] = res.nodes[index]
    names = _projection_names(graph, res)
    projs = [replace(p, name=names.get(p.name, p.name), source=renamed.get(p.source, p.source),
                     target=renamed.get(p.target, p.target)) for p in graph.projections]
    recurrent = graph.metadata.get("recurrent", {})
    for old, proj in zip(graph.projections, projs):
        index = _index(graph, "projections", old.name)
        if index is not None and index in res.nodes:
            key = res.nodes[index]
            nodes[proj.name] = res.loops[key][0] if proj.name in recurrent and key in res.loops else key
    layers = dict(graph.metadata.get("layers", {}))
    layers["populations"] = {renamed.get(k, k): v for k, v in layers.get("populations", {}).items()}
    layers["projections"] = {names.get(k, k): v for k, v in layers.get("projections", {}).items()}
    origin = {names.get(k, k): ("Identity" if names.get(k, "").startswith("identity") else v)
              for k, v in graph.metadata.get("origin", {}).items()}
    nir_meta = {"dt": res.dt, "nodes": nodes} | ({"readout": res.readout} if res.readout else {})
    meta = dict(graph.metadata, layers=layers, origin=origin, nir=nir_meta)
    return make_graph(pops, projs, name=graph.name, metadata=meta)


def _projection_names(graph: NetworkGraph, res: NirModel) -> dict[str, str]:
    """{lowered projection name: NIR node key} that gives projections back the names to_nir wrote: its weight
    nodes are named like the projections ("conv<k>", "fc<k>", "maxpool<k>", "identity<k>"), and a residual
    identity, written as a Conv2d node, comes back as a conv module that lowering numbers among the convs
    ("identity1" -> "conv3", the convs after it shifted). Only when every such key is distinct from the names it
    does not replace; other keys (a peer's "0", "fc") leave the lowered names."""
    out = {}
    for proj in graph.projections:
        index = _index(graph, "projections", proj.name)
        key = res.nodes.get(index) if index is not None else None
        if key is not None and key != proj.name and PROJECTION_NAME.fullmatch(key):
            out[proj.name] = key
    names = [out.get(p.name, p.name) for p in graph.projections]
    return out if len(set(names)) == len(names) else {}
