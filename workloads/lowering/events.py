"""Recorded tensors to the trace's CSR rows: the non-zero entries of one population in one batch, rows in the
tensor's own (t, sample) order (`row_events`, one compiled pass the recorder takes on CPU float tensors;
`population_events` = `mask_events` of `event_mask`, numpy, for any tensor), and their merge, without sorting,
into the trace's rows (sample, t, population) (`merge_events`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hwmodels.trace import Population
from workloads.lowering.events_kernel import copy_rows, nonzero_rows


@dataclass(frozen=True)
class Events:
    """The non-zero entries of one population in one batch of B samples and T timesteps.

    counts: int64 (T * B,) entries per row, row t * B + b; indices: int32 neuron indices (C order of the
    population's shape), row after row, ascending within a row; values: float32 (len(indices),) or None (no values
    kept: merge_events gives every entry 1.0 when the trace keeps values).
    """

    counts: np.ndarray
    indices: np.ndarray
    values: np.ndarray | None


def population_events(spikes: torch.Tensor, pop: Population, n_t: int, n_b: int, with_values: bool) -> Events:
    """The Events of `spikes` (T, B, ...) or (T*B, ...), a population's recorded values: values are the
    tensor's own (as float32) for a graded population, 1.0 for others, None unless with_values.

    Raises ValueError when the tensor does not have `pop.size` neurons per sample and timestep.
    """
    return mask_events(*event_mask(spikes, pop, n_t, n_b, with_values), with_values)


def event_mask(spikes: torch.Tensor, pop: Population, n_t: int, n_b: int,
               with_values: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(bool (T * B, pop.size) mask of the non-zero entries of `spikes` (T, B, ...) or (T*B, ...), row t * B + b;
    float32 values of those entries in C order for a graded population when with_values, else None): new arrays,
    which stay valid whatever later happens to the tensor (mask_events turns them into Events).

    Raises ValueError when the tensor does not have `pop.size` neurons per sample and timestep.
    """
    tokens = None if with_values and pop.graded else _swapped_view(spikes, n_t, n_b)
    a = spikes.reshape(n_t, n_b, -1) if tokens is None else None
    n = a.shape[2] if tokens is None else tokens.shape[2] * tokens.shape[3]
    if n != pop.size:
        raise ValueError(f"population {pop.name!r}: recorded {n} neurons per step, expected {pop.size} "
                         f"for shape {pop.shape}")
    if tokens is not None:  # compared in the tensor's own order, then the 4x smaller mask transposed
        return np.ascontiguousarray(np.not_equal(tokens, 0).transpose(0, 1, 3, 2)).reshape(n_t * n_b, n), None
    active = _nonzero_mask(a).reshape(n_t * n_b, pop.size)
    values = None
    if with_values and pop.graded:
        values = a.float().contiguous().cpu().numpy().reshape(n_t * n_b, pop.size)[active]
    return active, values


def row_events(spikes: torch.Tensor, pop: Population, n_t: int, n_b: int, graded: bool, packed: bool,
               jobs=None) -> tuple[Events, np.ndarray | None] | None:
    """(Events, packed flags uint8 (T * B, ceil(size / 8)) of the non-zero entries in hwmodels.activity's bit order,
    or None unless `packed`) of `spikes` (T, B, ...) or (T*B, ...) on a CPU float32/float64 tensor, as
    mask_events(*event_mask(...)) and packing their mask give them, in one compiled pass
    (workloads.lowering.events_kernel.nonzero_rows) reading the tensor's own memory: a token population's
    transposed view in place, whose mask event_mask transposes and copies. graded: keep the values (float32).
    Rows are split over the workers of `jobs` (a workloads.lowering.jobs.Jobs, or None) from _SPLIT_ELEMENTS
    elements. None when the tensor is on another device or of another dtype, or when `packed` is asked of a
    token view whose L is not a multiple of 8 (a channel's flags would not end on a byte): the caller then takes
    event_mask. Raises ValueError when the tensor does not have `pop.size` neurons per sample and timestep."""
    if spikes.device.type != "cpu" or spikes.dtype not in (torch.float32, torch.float64):
        return None
    tokens = _swapped_view(spikes, n_t, n_b)
    if tokens is not None:  # neuron d * L + l of a (T, B, L, D) memory
        a = tokens.reshape(n_t * n_b, tokens.shape[2], tokens.shape[3])
    else:
        a = spikes.detach().reshape(n_t, n_b, -1).numpy().reshape(n_t * n_b, -1)
    n = int(np.prod(a.shape[1:]))
    if n != pop.size:
        raise ValueError(f"population {pop.name!r}: recorded {n} neurons per step, expected {pop.size} for shape "
                         f"{pop.shape}")
    if packed and tokens is not None and a.shape[1] % 8:
        return None  # a channel's flags would not end on a byte: event_mask's mask is packed instead
    pieces = _row_parts(a, lambda part: nonzero_rows(part, graded, packed, tokens is not None), jobs)
    counts, indices, values, flags = (None if p[0] is None else join_arrays(p) for p in zip(*pieces))
    return Events(counts, indices, values), flags


def _swapped_view(t: torch.Tensor, n_t: int, n_b: int) -> np.ndarray | None:
    """numpy (T, B, L, D) array under a CPU float32/float64 tensor t (T, B, D, L) that is the transpose of its last
    two axes of a C-contiguous (T, B, L, D) tensor (token populations read channel-major,
    workloads.lowering.values.layout_fn), else None."""
    if t.dim() != 4 or tuple(t.shape[:2]) != (n_t, n_b) or t.is_contiguous() or t.device.type != "cpu" \
            or t.dtype not in (torch.float32, torch.float64):
        return None
    base = t.transpose(-1, -2)
    return base.detach().numpy() if base.is_contiguous() else None


#: mask elements from which mask_events splits the rows over the workers of its Jobs
_SPLIT_ELEMENTS = 1 << 20


def mask_events(active: np.ndarray, values: np.ndarray | None, with_values: bool, jobs=None) -> Events:
    """The Events of a mask of event_mask (values: its graded values, or None for 1.0 when with_values). jobs:
    a workloads.lowering.jobs.Jobs over whose workers the rows of a large mask are split (in row order, so the
    result is the same), or None."""
    counts, indices = (join_arrays(p) for p in zip(*_row_parts(active, _row_events, jobs)))
    if with_values and values is None:
        values = np.ones(len(indices), np.float32)
    return Events(counts, indices, values if with_values else None)


def _row_parts(a: np.ndarray, fn, jobs) -> list:
    """[fn(part) for each part of the rows of `a`], the rows cut into as many consecutive parts as the workers of
    `jobs` (a workloads.lowering.jobs.Jobs) when `a` has _SPLIT_ELEMENTS elements or more, else one part: the
    results in row order, so joining them gives the result of one part."""
    n = 1 if jobs is None or a.size < _SPLIT_ELEMENTS else min(jobs.workers, len(a))
    cuts = [len(a) * i // n for i in range(n + 1)]
    parts = [a[lo:hi] for lo, hi in zip(cuts[:-1], cuts[1:])]
    return jobs.map(fn, parts) if n > 1 else [fn(parts[0])]


def join_arrays(parts) -> np.ndarray:
    """The arrays `parts` end to end: the only one itself (a batch's arrays are its own, so the trace of one batch
    takes them without a copy), else np.concatenate."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _row_events(active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 entries per row, int32 neuron indices row after row) of a bool mask (rows, size)."""
    n_rows, size = active.shape
    flat = np.flatnonzero(active)  # (row, neuron) C order, ascending
    row_start = np.arange(n_rows + 1, dtype=np.int64) * size
    counts = np.diff(np.searchsorted(flat, row_start))  # entries per row, read off the sorted flat positions
    indices = np.subtract(flat, np.repeat(row_start[:-1], counts),
                          out=np.empty(len(flat), np.int32), casting="unsafe")  # neuron < size fits int32
    return counts, indices


def _nonzero_mask(a: torch.Tensor) -> np.ndarray:
    """bool array, C order, of a != 0 for a tensor a of any shape: numpy's comparison on a CPU float32/float64
    tensor's own memory (no copy; IEEE != 0 as torch's: -0.0 is zero, NaN is not), torch's for other dtypes or
    devices."""
    if a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64):
        return np.not_equal(a.detach().numpy(), 0, order="C")
    return (a != 0).contiguous().cpu().numpy()


def merge_events(events: dict[int, Events], n_p: int, n_t: int, n_b: int,
                 with_values: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """CSR pieces of one batch from the Events of its populations ({population index in the graph: Events};
    populations without events have empty rows): (int64 counts per row (sample, t, population), B * T * P of
    them in that order; int32 indices; float32 values or None). Each (t, b) row of a population is one block in
    its Events and one in the trace, copied to its place (workloads.lowering.events_kernel), no sort.

    Raises ValueError when an Events' counts do not match its entries."""
    counts = np.zeros((n_b, n_t, n_p), np.int64)
    for p, ev in events.items():
        counts[:, :, p] = ev.counts.reshape(n_t, n_b).T
    flat_counts = counts.reshape(-1)
    start = (np.cumsum(flat_counts) - flat_counts).reshape(n_b, n_t, n_p)
    indices = np.empty(int(flat_counts.sum()), np.int32)
    values = np.ones(len(indices), np.float32) if with_values else None
    for p, ev in events.items():
        rows = start[:, :, p].T.reshape(-1)  # int64 (T * B,): where each (t, b) row of ev goes
        copy_rows(ev.indices, ev.counts, rows, indices)
        if with_values and ev.values is not None:
            copy_rows(ev.values, ev.counts, rows, values)
    return flat_counts, indices, values
