"""Weight fit of a lowered graph: do a projection's stored weights fit the weight_bits it declares, and what to do
when they do not (workloads.lowering.lower's weight_fit policies "error", "widen", "quantize").

Fit rule. Per output channel (a row of a dense weight = one target neuron, an output channel of a conv), the
stored values (every value for storage "dense"/"conv"; the non-zeros only for "sparse"/"bitmap", which store no
zeros) must lie on an affine grid offset + step * k, k = 0..2^b - 1, offset and step free per channel (BatchNorm
and AvgPool folding scale a channel, so a b-bit layer stays on a b-bit grid after folding). A value is on the grid
when it is within GRID_TOL x the channel's range of a grid point (float32 folding noise; the grid search is
workloads.lowering.grid). The bits a channel needs are ceil(log2(levels)), levels = the points of the coarsest
grid through its values (1 bit at least); the projection needs the most any channel needs. A grid is only
accepted while its step is >= 20 x the tolerance (MAX_INTERVALS steps over the range): finer grids cannot be told
from float weights at float32 precision, so such weights (every float layer, and quantizations finer than 12 bits)
need 32 bits, except a layer lower() itself quantized (weight_fit "quantize", fit_graph). Channels of fewer than
grid.SHORT_ROW values lie within the tolerance of some grid by chance (3 float values fit one of a few thousand
steps), so a weight made only of them keeps its grid only when its channels lie on it as closely as quantized
values do (grid.chance_of_grid <= grid.CHANCE_MAX), else it is float. Max-pool and identity
projections (weights 1) fit 1 bit; gated (attention) projections are exempt: their weights are spikes.
"""
from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from hwmodels.trace import NetworkGraph, Projection
from workloads.compression.quant import weight_layers
from workloads.lowering.fit_kernel import uniform_rows
from workloads.lowering.jobs import Jobs
from workloads.lowering.grid import (CHANCE_MAX, MAX_INTERVALS, SHORT_ROW, bits_for_intervals, bits_for_steps,
                                     chance_of_grid, grid_intervals, row_steps)

#: policies of lower(..., weight_fit=)
FIT_POLICIES = ("widen", "error", "quantize")
#: the finest symmetric grid the fit tells from float32 weights (2^b - 2 steps <= MAX_INTERVALS): 12 bits
CHECKED_BITS = max(b for b in range(2, 33) if 2 ** b - 2 <= MAX_INTERVALS)
_SPARSE = ("sparse", "bitmap")
_LOG = logging.getLogger("workloads.lowering")


def channel_rows(weight: np.ndarray, nonzero_only: bool) -> list[np.ndarray]:
    """The stored values of each output channel of a weight (C_out, ...): all of them, or the non-zeros only."""
    rows = np.asarray(weight).reshape(len(weight), -1)
    return [r[r != 0] for r in rows] if nonzero_only else list(rows)


def channel_grids(weight: np.ndarray, nonzero_only: bool, limit: int = MAX_INTERVALS) -> np.ndarray:
    """Steps of each output channel's coarsest grid (workloads.lowering.grid), int64 (C_out,), -1 where none of at
    most `limit` steps holds the channel, of a weight (C_out, ...): over all its values (every channel at once,
    grid.row_steps), or over its non-zeros only (channel by channel)."""
    if nonzero_only:
        found = [grid_intervals(r, limit) for r in channel_rows(weight, True)]
        return np.array([-1 if m is None else m for m in found], np.int64)
    return row_steps(np.asarray(weight).reshape(len(weight), -1), limit)


def weight_grid(weight: np.ndarray, nonzero_only: bool) -> int | None:
    """Steps of the coarsest per-channel grid a weight (C_out, ...) needs (max over channels; None: no grid, or a
    grid its short channels would lie on by chance, _by_chance)."""
    steps = channel_grids(weight, nonzero_only)
    if (steps < 0).any():
        return None
    m = int(steps.max(initial=0))
    return None if m >= 2 and _by_chance(weight, nonzero_only, steps) else m


def _by_chance(weight: np.ndarray, nonzero_only: bool, steps: np.ndarray) -> bool:
    """Whether every channel holds fewer than grid.SHORT_ROW stored values and random values would lie on grids of
    `steps` as closely with a chance above grid.CHANCE_MAX (grid.chance_of_grid): e.g. the float second factor of
    a rank-4 DSP layer, 4 weights a channel, fits a 12-bit grid within GRID_TOL (the fit called it 12-bit weights,
    not 32-bit ones), where a quantized channel lies on its grid to float32's resolution."""
    rows = np.asarray(weight).reshape(len(weight), -1)
    if not len(rows) or (rows.shape[1] >= SHORT_ROW and not nonzero_only):
        return False
    if nonzero_only:
        kept = channel_rows(weight, True)
        if max(len(r) for r in kept) >= SHORT_ROW:
            return False
        keep = np.array([len(r) > 0 for r in kept])  # a channel of zeros only has no stored value
        width = max(len(r) for r in kept)
        rows = np.array([np.resize(r, width) for r in kept if len(r)]).reshape(-1, max(width, 1))
        steps = np.asarray(steps)[keep]
    return chance_of_grid(rows, steps) > CHANCE_MAX


def projection_fit(proj: Projection) -> tuple[int, int | None]:
    """(bits needed, grid levels or None) of a projection's stored weights (fit rule of the module docstring)."""
    m = weight_grid(proj.weight, proj.storage in _SPARSE)
    return bits_for_intervals(m), None if m is None else m + 1


def fit_graph(graph: NetworkGraph, policy: str, errors: dict[str, float] | None = None,
              jobs: Jobs | None = None, fits: dict[str, tuple[int, int | None]] | None = None) -> NetworkGraph:
    """`graph` with every projection's weight_bits checked against its weights (gated projections exempt) and the
    report graph.metadata["weight_fit"] = {projection: {"declared", "needed", "stored", "policy", "levels"
    (grid levels, None for floats), "max_abs_error" (policy "quantize": the largest |w_q - w| of its layers'
    weights, before folding)}}. A projection whose weights need more bits than declared raises under "error"
    and stores the bits needed under "widen" and "quantize"; a one-line warning names the projections widened
    or quantized. Under "quantize", a projection of one weight layer quantized to weight_bits > CHECKED_BITS
    (finer than the fit can tell from float32 weights) is stored at its weight_bits, as quantize_rows made it
    ("needed" = weight_bits, "levels" None); a projection composing two weight layers is checked as any other.

    errors: {module name: max |w_q - w|} of quantize_model, matched to projections by their layer tags.
    jobs: a workloads.lowering.jobs.Jobs whose threads fit the projections (the same report in projection order),
    or None (one by one). fits: {projection: projection_fit(projection)} of every projection without a gate when
    already computed (e.g. on threads started earlier, workloads.lowering.engine.LateFit), or None.
    Raises ValueError (policy "error") naming the projection, its declared bits and the bits its weights need.
    """
    report, projections = {}, []
    if fits is None:
        weighted = [p for p in graph.projections if p.gate is None]
        fits = dict(zip((p.name for p in weighted), (jobs.map if jobs else map)(projection_fit, weighted)))
    for proj in graph.projections:
        if proj.gate is not None:
            projections.append(proj)
            continue
        needed, levels = fits[proj.name]
        tags = graph.metadata.get("layers", {}).get("projections", {}).get(proj.name, [])
        if policy == "quantize" and needed > proj.weight_bits > CHECKED_BITS and \
                sum(t.split(":")[0] in (errors or {}) for t in tags) == 1:
            needed, levels = proj.weight_bits, None  # its one layer quantize_rows put on a weight_bits grid
        if policy == "error" and needed > proj.weight_bits:
            raise ValueError(f"weight_fit: projection {proj.name!r} declares weight_bits {proj.weight_bits} but its "
                             f"weights need {needed} bits; accepted policies: widen, quantize (or more weight_bits)")
        entry = {"declared": proj.weight_bits, "needed": needed, "stored": max(proj.weight_bits, needed),
                 "policy": policy, "levels": levels}
        if policy == "quantize":
            entry["max_abs_error"] = max((errors or {}).get(t.split(":")[0], 0.0) for t in tags) if tags else 0.0
        report[proj.name] = entry
        projections.append(proj if entry["stored"] == proj.weight_bits else replace(proj, weight_bits=entry["stored"]))
    _warn(report)
    metadata = dict(graph.metadata, weight_fit=report)
    return type(graph)(list(graph.populations.values()), projections, name=graph.name, metadata=metadata)


def _warn(report: dict[str, dict]) -> None:
    """One warning line naming the widened and the quantized projections (nothing when there are none)."""
    widened = [f"{n} {e['declared']}->{e['stored']}" for n, e in report.items() if e["stored"] > e["declared"]]
    quantized = [n for n, e in report.items() if e.get("max_abs_error", 0.0) > 0.0]
    parts = ([f"weights widened beyond weight_bits ({', '.join(widened)})"] if widened else []) + \
        ([f"weights quantized to weight_bits ({', '.join(quantized)})"] if quantized else [])
    if parts:
        _LOG.warning("lower: %s; see graph.metadata['weight_fit']", "; ".join(parts))


# ------------------------------------------------------------------------------------------- quantize policy

def quantize_rows(w: torch.Tensor, bits: int, nonzero_only: bool) -> tuple[torch.Tensor, float]:
    """(w_q, max |w_q - w|) of w (C_out, ...): every output channel not already on a `bits`-bit grid quantized, per
    channel: b >= 2 symmetric uniform, step = max|w| / (2^(b-1) - 1), round to nearest (no clipping: the peak is
    a level); b = 1 sign(w) x mean|w| over the channel's non-zeros (pruned zeros stay zero). Channels already on a
    grid are returned bit for bit. w_q has w's dtype and device; the error is taken in float64 after the cast to
    w's dtype (0.0 for an empty w)."""
    src = w.detach().cpu().reshape(len(w), -1)
    grid_rows = src if src.dtype in (torch.float32, torch.float64) else src.double()  # float32: exact in float64
    keep = bits_for_steps(channel_grids(grid_rows.numpy(), nonzero_only, 2 ** bits - 1)) <= bits
    if bits >= 2 and src.dtype in (torch.float32, torch.float64):
        q, error = _uniform_rows(src.numpy(), bits, keep)
        return torch.from_numpy(q).reshape(w.shape).to(w.device), error
    rows = src.double()
    if bits == 1:
        nz = (rows != 0).double()
        q = torch.sign(rows) * ((rows.abs() * nz).sum(1) / nz.sum(1).clamp_min(1.0))[:, None]
    else:  # |w| and its row max are exact in w's dtype: the same step as from the float64 rows
        step = src.abs().amax(1, keepdim=True).double() / (2 ** (bits - 1) - 1)
        q = rows / torch.where(step > 0, step, 1.0)
        q.round_()
        q.mul_(step)
    keep = torch.from_numpy(keep)
    if bool(keep.any()):
        q[keep] = rows[keep]
    q = q.to(w.dtype)
    error = float((q.double() - rows).abs_().max()) if w.numel() else 0.0
    return q.reshape(w.shape).to(w.device), error


def _uniform_rows(a: np.ndarray, bits: int, keep: np.ndarray) -> tuple[np.ndarray, float]:
    """quantize_rows for b >= 2 on a float32/float64 array a (C, n), rows `keep` (bool (C,)) left as they are:
    per row w / step rounded half to even, times step, cast to a's dtype, step = max |w| / (2^(b-1) - 1) in
    float64, in one compiled pass per row (workloads.lowering.fit_kernel). Returns (w_q of a's dtype and shape,
    max |w_q - w| in float64)."""
    return uniform_rows(a, 2 ** (bits - 1) - 1, keep)


def _setting(per_layer: dict, name: str):
    """A per-layer setting of module `name`, or of the low-rank layer it is a factor of ("9.first" -> "9")."""
    parent, _, leaf = name.rpartition(".")
    return per_layer.get(name, per_layer.get(parent) if leaf in ("first", "second") else None)


def _set_weight(mod: nn.Module, w: torch.Tensor) -> None:
    """Make `w` the plain weight of `mod` (a parametrization or a torch.nn.utils.prune mask is baked first)."""
    if parametrize.is_parametrized(mod, "weight"):
        parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)
    if hasattr(mod, "weight_orig"):
        torch.nn.utils.prune.remove(mod, "weight")
    with torch.no_grad():
        mod.weight.copy_(w)


def quantize_model(model: nn.Module, weight_bits: int, storage: str | None, layer_bits: dict[str, int],
                   layer_storage: dict[str, str], jobs: Jobs | None = None) -> tuple[nn.Module, dict[str, float]]:
    """A deep copy of `model` whose Conv1d/Conv2d/Linear weights (DSP low-rank factors included) are quantized by
    quantize_rows to their layer's bits (layer_bits by module name, a low-rank layer's for its factors, else
    weight_bits); zeros of layers stored "sparse"/"bitmap" (storage, else layer_storage) need not fit.
    Returns (copy, {module name: max |w_q - w|}); `model` is left as it is.

    A plain contiguous weight Parameter (no parametrization, no pruning mask, used by one layer) is quantized
    from `model` itself and its quantized Parameter handed to the deep copy in place of a copy of the original
    (deepcopy's memo), on the threads of `jobs` (a workloads.lowering.jobs.Jobs) when given; other weights are
    quantized on the copy."""
    layers = weight_layers(model)
    plain = _plain_weights(layers)
    memo, errors, later, now = {}, {}, [], []
    for name, mod in layers:
        (now if name in plain else later).append((name, mod, *_layer_fit(name, weight_bits, storage, layer_bits,
                                                                          layer_storage)))
    done = (jobs.map if jobs else map)(lambda job: quantize_rows(job[1].weight, job[2], job[3]), now)
    for (name, mod, _, _), (q, errors[name]) in zip(now, done):
        if errors[name] > 0.0:
            memo[id(mod.weight)] = type(mod.weight)(q, mod.weight.requires_grad)
    work = copy.deepcopy(model, memo)
    modules = dict(work.named_modules())
    for name, _, bits, sparse in later:
        q, errors[name] = quantize_rows(modules[name].weight, bits, sparse)
        if errors[name] > 0.0:
            _set_weight(modules[name], q)
    return work, {name: errors[name] for name, _ in layers}


@contextmanager
def quantized_model(model: nn.Module, weight_bits: int, storage: str | None, layer_bits: dict[str, int],
                    layer_storage: dict[str, str], jobs: Jobs | None = None):
    """Context manager giving (model with quantized weights, {module name: max |w_q - w|}): the weights and errors
    of quantize_model, without its deep copy when it can. When every Conv/Linear weight of `model` is a plain
    contiguous Parameter of its own (_plain_weights), each quantized one is swapped into `model` itself as a new
    Parameter for the duration of the block and the original Parameter objects (data, grad, identity) are put
    back on exit, exception or not; `model` is then the one yielded, so whatever the block does to the model
    besides its weights (neuron states, device, modes) it does to `model` (workloads.lower restores those).
    Otherwise (a parametrized, pruned or shared weight) it yields quantize_model's deep copy. A deep copy of a
    model of many modules costs tens of ms of Python (Spikformer-4-384: ~33 ms, with 27k calls) and the memory
    of every buffer; the swap costs neither."""
    layers = weight_layers(model)
    plain = _plain_weights(layers)
    if any(name not in plain for name, _ in layers):
        yield quantize_model(model, weight_bits, storage, layer_bits, layer_storage, jobs)
        return
    jobs_in = [(mod, _layer_fit(name, weight_bits, storage, layer_bits, layer_storage)) for name, mod in layers]
    done = (jobs.map if jobs else map)(lambda job: quantize_rows(job[0].weight, *job[1]), jobs_in)
    errors, swapped = {}, []
    try:
        for (name, mod), (q, errors[name]) in zip(layers, done):
            if errors[name] > 0.0:
                old = mod._parameters["weight"]
                swapped.append((mod, old))
                mod._parameters["weight"] = type(old)(q, old.requires_grad)
        yield model, errors
    finally:
        for mod, old in reversed(swapped):
            mod._parameters["weight"] = old


def _layer_fit(name: str, weight_bits: int, storage: str | None, layer_bits: dict[str, int],
               layer_storage: dict[str, str]) -> tuple[int, bool]:
    """(bits, nonzero only) that quantize_rows applies to the weight of layer `name`: its per-layer bits (or its
    low-rank layer's) else weight_bits; sparse when its storage (the forced one, else per layer) stores no
    zeros."""
    bits = int(_setting(layer_bits, name) or weight_bits)
    return bits, (storage if storage is not None else _setting(layer_storage, name)) in _SPARSE


def _plain_weights(layers: list[tuple[str, nn.Module]]) -> set[str]:
    """Names of the layers whose weight is a contiguous Parameter of their own (not parametrized, not pruned,
    not shared with another layer): quantize_model replaces it in the copy without copying it first."""
    owners = {}
    for name, mod in layers:
        p = mod._parameters.get("weight")
        if isinstance(p, nn.Parameter) and not parametrize.is_parametrized(mod) and not hasattr(mod, "weight_orig") \
                and p.is_contiguous():
            owners.setdefault(id(p), []).append(name)
    return {names[0] for names in owners.values() if len(names) == 1}
