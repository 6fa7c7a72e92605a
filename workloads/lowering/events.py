"""Recorded tensors to the trace's CSR rows: the non-zero entries of one population in one batch
(`population_events`, rows in the tensor's own (t, sample) order) and their merge, without sorting, into the
trace's rows (sample, t, population) (`merge_events`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hwmodels.trace import Population


@dataclass(frozen=True)
class Events:
    """The non-zero entries of one population in one batch of B samples and T timesteps.

    counts: int64 (T * B,) entries per row, row t * B + b; indices: int32 neuron indices (C order of the
    population's shape), row after row, ascending within a row; values: float32 (len(indices),) or None.
    """

    counts: np.ndarray
    indices: np.ndarray
    values: np.ndarray | None


def population_events(spikes: torch.Tensor, pop: Population, n_t: int, n_b: int, with_values: bool) -> Events:
    """The Events of `spikes` (T, B, ...) or (T*B, ...), a population's recorded values: values are the
    tensor's own (as float32) for a graded population, 1.0 for others, None unless with_values.

    Raises ValueError when the tensor does not have `pop.size` neurons per sample and timestep.
    """
    a = spikes.reshape(n_t, n_b, -1)
    if a.shape[2] != pop.size:
        raise ValueError(f"population {pop.name!r}: recorded {a.shape[2]} neurons per step, expected {pop.size} "
                         f"for shape {pop.shape}")
    active = _nonzero_mask(a).reshape(n_t * n_b, pop.size)  # row t * B + b
    flat = np.flatnonzero(active)  # (t, b, neuron) C order
    counts = np.count_nonzero(active, axis=1).astype(np.int64)
    indices = np.subtract(flat, np.repeat(np.arange(n_t * n_b, dtype=np.int64) * pop.size, counts),
                          out=np.empty(len(flat), np.int32), casting="unsafe")  # neuron < pop.size fits int32
    values = None
    if with_values:
        values = a.float().contiguous().cpu().numpy().reshape(-1)[flat] if pop.graded else \
            np.ones(len(flat), np.float32)
    return Events(counts, indices, values)


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
    them in that order; int32 indices; float32 values or None). Each population's entries are scattered to
    their rows in one pass, no sort."""
    counts = np.zeros((n_b, n_t, n_p), np.int64)
    for p, ev in events.items():
        counts[:, :, p] = ev.counts.reshape(n_t, n_b).T
    flat_counts = counts.reshape(-1)
    start = (np.cumsum(flat_counts) - flat_counts).reshape(n_b, n_t, n_p)
    indices = np.empty(int(flat_counts.sum()), np.int32)
    values = np.empty(len(indices), np.float32) if with_values else None
    for p, ev in events.items():
        own_start = np.cumsum(ev.counts) - ev.counts  # first entry of each (t, b) row in ev
        shift = start[:, :, p].T.reshape(-1) - own_start  # destination - source, per (t, b) row
        pos = np.repeat(shift, ev.counts) + np.arange(len(ev.indices), dtype=np.int64)
        indices[pos] = ev.indices
        if with_values:
            values[pos] = ev.values
    return flat_counts, indices, values
