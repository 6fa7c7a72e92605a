"""Synaptic fan-out of projections: per source neuron, and per source neuron and destination core.

Two counts, as the peers define them (../shared/PEERS.md):
- "structural": every in-bounds kernel position / matrix entry, zero weights included (SpikingJelly's
  `SynOpCounter`, and what a dense or shared-kernel storage format walks);
- "nonzero": only synapses with a non-zero weight (NeuroBench's effective ACs, and what a compressed sparse
  format walks).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hwmodels.trace import EventTrace, NetworkGraph, Projection, conv_output_shape

COUNT_KINDS = ("structural", "nonzero")
#: which count a storage format pays per synaptic event (dense crossbar rows and shared conv kernels are walked
#: entry by entry, zeros included; a compressed sparse format stores and visits only the non-zeros)
PAID_COUNT = {"dense": "structural", "conv": "structural", "sparse": "nonzero"}


def _mask(proj: Projection, count: str) -> np.ndarray:
    if count not in COUNT_KINDS:
        raise ValueError(f"count: {count!r} is not one of {', '.join(COUNT_KINDS)}")
    return (proj.weight != 0).astype(np.float64) if count == "nonzero" else np.ones(proj.weight.shape)


def _valid_offsets(n_in: int, n_out: int, k: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """V[k_idx, out_idx, in_idx] = 1 where input position in_idx feeds output out_idx through kernel tap k_idx."""
    v = np.zeros((k, n_out, n_in))
    out = np.arange(n_out)
    for kk in range(k):
        pos = out * stride - pad + kk * dil
        ok = (pos >= 0) & (pos < n_in)
        v[kk, out[ok], pos[ok]] = 1.0
    return v


def conv_core_fanout(proj: Projection, src_shape: tuple[int, ...], indicator: np.ndarray,
                     count: str = "structural") -> np.ndarray:
    """Synapses from every source neuron into each group of target neurons (a transposed convolution).

    indicator: (G, C_out, H_out, W_out) 0/1 array, G target groups (e.g. cores).
    Returns float64 array (n_source, G): entry [i, g] = number of synapses from source neuron i (C-order over
    (C_in, H, W)) to targets marked in group g.
    """
    c_out, c_in_g, kh, kw = proj.weight.shape
    mask = _mask(proj, count)
    vy = _valid_offsets(src_shape[1], indicator.shape[2], kh, proj.stride[0], proj.padding[0], proj.dilation[0])
    vx = _valid_offsets(src_shape[2], indicator.shape[3], kw, proj.stride[1], proj.padding[1], proj.dilation[1])
    g = proj.groups
    out_per_g = c_out // g
    n_groups = indicator.shape[0]
    result = np.zeros((n_groups, src_shape[0], src_shape[1], src_shape[2]))
    for grp in range(g):
        o_sl = slice(grp * out_per_g, (grp + 1) * out_per_g)
        # ind[G, o, oy, ox] * mask[o, c, ky, kx] * vy[ky, oy, y] * vx[kx, ox, x] -> [G, c, y, x]
        t = np.einsum("goyx,ockl->gcklyx", indicator[:, o_sl], mask[o_sl], optimize=True)
        t = np.einsum("gcklyx,kyY->gclYx", t, vy, optimize=True)
        t = np.einsum("gclYx,lxX->gcYX", t, vx, optimize=True)
        result[:, grp * c_in_g:(grp + 1) * c_in_g] = t
    return result.reshape(n_groups, -1).T


def fanout(proj: Projection, src_shape: tuple[int, ...], count: str = "structural") -> np.ndarray:
    """Fan-out (number of synapses) of every source neuron of `proj`, shape (n_source,), int64.

    Dense weight (n_target, n_source): column counts. Conv: a transposed convolution of an all-ones output map
    with the kernel pattern (zeros included for count="structural", excluded for "nonzero").
    """
    if proj.kind == "dense":
        return _mask(proj, count).sum(axis=0).astype(np.int64)
    dst = conv_output_shape(proj, src_shape)
    ones = np.ones((1,) + dst)
    return np.rint(conv_core_fanout(proj, src_shape, ones, count)[:, 0]).astype(np.int64)


def core_fanout(proj: Projection, src_shape: tuple[int, ...], target_core: np.ndarray,
                count: str = "structural") -> tuple[sp.csr_matrix, np.ndarray]:
    """Synapses from each source neuron into each destination core holding part of the target population.

    target_core: (n_target,) int array, the core id of every target neuron (C-order numbering).
    Returns (F, cores): F is a CSR int64 matrix (n_source, len(cores)) of synapse counts and `cores` the sorted
    core ids of its columns. A spike of source neuron i sends one message to every core with F[i, k] > 0 and
    causes F[i, k] synaptic events there.
    """
    cores, col = np.unique(np.asarray(target_core), return_inverse=True)
    if proj.kind == "dense":
        onehot = sp.csr_matrix((np.ones(len(col)), (np.arange(len(col)), col)), shape=(len(col), len(cores)))
        f = sp.csr_matrix(_mask(proj, count).T) @ onehot
        return sp.csr_matrix(f, dtype=np.int64), cores
    dst = conv_output_shape(proj, src_shape)
    indicator = np.zeros((len(cores), int(np.prod(dst))))
    indicator[col, np.arange(len(col))] = 1.0
    f = conv_core_fanout(proj, src_shape, indicator.reshape((len(cores),) + dst), count)
    return sp.csr_matrix(np.rint(f).astype(np.int64)), cores


def synaptic_events(graph: NetworkGraph, trace: EventTrace, count: str = "structural") -> dict[str, int]:
    """Total synaptic events per projection over the whole trace: sum over spikes of the source's fan-out.

    Graded spikes count one event per synapse, as binary ones do. Returns {projection name: events}.
    """
    out = {}
    for proj in graph.projections:
        src = graph.populations[proj.source]
        fo = fanout(proj, src.shape, count)
        hits = np.zeros(src.size, np.int64)
        pop_i = trace.populations.index(proj.source)
        rows = np.arange(trace.n_samples * trace.n_timesteps) * len(trace.populations) + pop_i
        for r in rows:
            np.add.at(hits, trace.indices[trace.offsets[r]:trace.offsets[r + 1]], 1)
        out[proj.name] = int(hits @ fo)
    return out
