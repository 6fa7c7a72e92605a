"""Neuron activity in the trace contract: which neurons a time-stepped chip must update, per sample, timestep and
population (hwmodels.trace.EventTrace.activity), packed one bit per neuron.

A neuron is *active* (updated) at timestep t when it received input (a non-zero input current), has a bias, or
holds a non-zero membrane potential before the step; a neuron at rest with no input only needs to be accessed.
This is the rule of SANA-FE's soma model (Boyle et al., IEEE TCAD 2025: the update cost is paid when input
arrived, a bias is set or the potential is non-zero) and of Loihi's compartment update (Davies et al. 2018).
It cannot be read off a spike train: it is recorded while the model runs (workloads.lowering).

Layout: {population: uint8 array (n_samples, n_timesteps + 1, ceil(size / 8))}, `np.packbits(..., axis=-1,
bitorder="little")` over the C-order neuron index. Row t < n_timesteps: neurons updated at timestep t (every
neuron that spiked at t must be set). Row n_timesteps: neurons that hold a non-zero potential after the last
timestep, which a time-stepped chip keeps updating in every later hardware step of the inference (pipeline
drain). A population absent from the dict follows the format-1 rule: every neuron is updated in each of its
timesteps and none afterwards.
"""
from __future__ import annotations

import numpy as np

from hwmodels.kernels.count import chunk_bits
from hwmodels.kernels.unique import sorted_unique

BITORDER = "little"


def n_bytes(size: int) -> int:
    """Bytes of one packed row of `size` neurons."""
    return (int(size) + 7) // 8


def pack(active: np.ndarray) -> np.ndarray:
    """Pack a bool array (n_samples, n_timesteps + 1, size) into the uint8 layout of the module docstring."""
    return np.packbits(np.asarray(active, bool), axis=-1, bitorder=BITORDER)


def unpack(packed: np.ndarray, size: int) -> np.ndarray:
    """bool array (..., size) of a packed array (..., ceil(size / 8))."""
    return np.unpackbits(np.asarray(packed), axis=-1, count=int(size), bitorder=BITORDER).astype(bool)


def check(activity: dict[str, np.ndarray], populations: tuple[str, ...], n_samples: int, n_timesteps: int,
          sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Validated activity dict (arrays kept as given, e.g. memory maps): uint8, shape (n_samples, n_timesteps + 1,
    bytes), bytes = ceil(size / 8) when `sizes` ({population: neurons}) is given.

    Raises ValueError naming the population when it is not one of `populations` or its array is malformed.
    """
    out = {}
    for name, arr in activity.items():
        if name not in populations:
            raise ValueError(f"trace.activity: population {name!r} is not one of {', '.join(populations)}")
        arr = arr if isinstance(arr, np.ndarray) else np.asarray(arr)
        dtype, shape = arr.dtype, arr.shape
        ok = dtype == np.uint8 and len(shape) == 3 and shape[:2] == (n_samples, n_timesteps + 1)
        if ok and sizes is not None and name in sizes:
            ok = shape[2] == n_bytes(sizes[name])
        if not ok:
            raise ValueError(f"trace.activity[{name!r}]: {dtype} {shape} should be uint8 ({n_samples}, "
                             f"{n_timesteps + 1}, ceil(neurons / 8))")
        out[name] = arr
    return out


def _chunk_counts(packed: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray | None:
    """Set bits of every row in each chunk [starts[k], starts[k+1]) (last chunk to `size`), int64 (rows, chunks),
    counted on the packed bytes (hwmodels.kernels.count.chunk_bits); None when two chunks start in the same byte
    (use the unpacked path)."""
    byte = starts >> 3
    if len(byte) > 1 and np.any(np.diff(byte) == 0):
        return None
    return chunk_bits(np.ascontiguousarray(packed), np.asarray(starts, np.int64), int(size))


def window_counts(packed: np.ndarray, size: int, core_of_neuron: np.ndarray, n_cores: int,
                  spiked: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Active neurons per core, int64 (n_samples, n_timesteps + 1, n_cores), from one population's packed rows.

    spiked: optional (sample, timestep, neuron) int arrays of the population's spikes, OR-ed into the rows (a
    neuron that spiked was updated, whatever the record says). Cores holding contiguous chunks (as
    hwmodels.mapping.partition makes them) are counted on the packed bytes; other assignments unpack.
    """
    packed = np.asarray(packed, np.uint8)
    n_s, n_r, _ = packed.shape
    cores = np.asarray(core_of_neuron, np.int64)
    out = np.zeros((n_s, n_r, n_cores), np.int64)
    starts = np.flatnonzero(np.r_[True, cores[1:] != cores[:-1]]) if size else np.zeros(0, np.int64)
    chunks = None
    if size and np.all(cores[1:] >= cores[:-1]):
        chunks = _chunk_counts(packed.reshape(n_s * n_r, -1), starts, size)
    if chunks is not None:
        out[:, :, cores[starts]] = chunks.reshape(n_s, n_r, len(starts))
    else:
        bits = unpack(packed, size)
        rows, neurons = np.nonzero(bits.reshape(n_s * n_r, size))
        out += np.bincount(rows * n_cores + cores[neurons], minlength=n_s * n_r * n_cores).reshape(out.shape)
    if spiked is not None and len(spiked[0]):
        s, t, i = (np.asarray(v, np.int64) for v in spiked)
        row = s * n_r + t
        flat = packed.reshape(-1).take(row * packed.shape[2] + (i >> 3))
        missed = np.flatnonzero(((flat >> (i & 7).astype(np.uint8)) & 1) == 0)  # spikes the record did not mark
        if len(missed):  # each (sample, step, neuron) once, even if listed twice
            neuron_keys = sorted_unique(row[missed] * size + i[missed])
            rows, neuron = np.divmod(neuron_keys, size)
            out += np.bincount(rows * n_cores + cores[neuron], minlength=out.size).reshape(out.shape)
    return out
