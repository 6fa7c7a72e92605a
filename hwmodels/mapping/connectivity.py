"""Synaptic fan-out and fan-in of projections: per neuron, per destination core, and per range of targets.

Two counts, as the peers define them (../shared/PEERS.md):
- "structural": every in-bounds kernel position / matrix entry, zero weights included (SpikingJelly's
  `SynOpCounter`, and what a dense, bitmap-less crossbar or a shared-kernel storage format walks);
- "nonzero": only synapses with a non-zero weight (NeuroBench's effective ACs, and what a compressed sparse or
  bitmap format visits).

Convolutions are never unrolled: a core holding whole output channels sees every input through the same
per-tap "cover" map, so its fan-out is one small matrix product (kernel sums x cover); only channels split
between cores get their own cover. Memory and time are O(kernel + cores x inputs), not O(unrolled synapses).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import scipy.sparse as sp

from hwmodels.kernels.arrays import truncated
from hwmodels.kernels.conv_rows import conv_rows, dense_csr, pair_sums, tap_sums
from hwmodels.kernels.unique import dense_unique, first_of_classes
from hwmodels.trace import EventTrace, NetworkGraph, Projection, conv_output_shape

COUNT_KINDS = ("structural", "nonzero")
#: which count a storage format pays per synaptic event: a dense crossbar row and a shared conv kernel are
#: walked entry by entry, zeros included; a compressed sparse format stores only the non-zeros, and a bitmap
#: format skips the zero bits of its bitmap (hwmodels.mapping.storage gives each format's memory rule)
PAID_COUNT = {"dense": "structural", "conv": "structural", "sparse": "nonzero", "bitmap": "nonzero"}
_BLOCK_FLOATS = 1 << 22  # floats per streamed block of conv fan-out (16 MB in float32)
NO_OWNER = np.iinfo(np.int64).min  # _ConvGeom.piece_owners where no output position reads an input


def _check_count(count: str) -> None:
    if count not in COUNT_KINDS:
        raise ValueError(f"count: {count!r} is not one of {', '.join(COUNT_KINDS)}")


def _mask(proj: Projection, count: str) -> np.ndarray:
    """float32 array shaped like proj.weight: 1 where a synapse is counted (all entries, or the non-zeros)."""
    _check_count(count)
    return (proj.weight != 0).astype(np.float32) if count == "nonzero" else np.ones(proj.weight.shape, np.float32)


@dataclass(frozen=True)
class _ConvGeom:
    """Geometry of a conv projection: source (C_in, H, W), target (C_out, Ho, Wo), kernel, stride/pad/dilation."""

    c_in: int
    h: int
    w: int
    c_out: int
    ho: int
    wo: int
    kh: int
    kw: int
    c_in_g: int
    out_per_g: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    @classmethod
    def of(cls, proj: Projection, src_shape: tuple[int, ...]) -> "_ConvGeom":
        c_out, ho, wo = conv_output_shape(proj, src_shape)
        _, c_in_g, kh, kw = proj.weight.shape
        return cls(src_shape[0], src_shape[1], src_shape[2], c_out, ho, wo, kh, kw, c_in_g, c_out // proj.groups,
                   proj.stride, proj.padding, proj.dilation)

    def _taps(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Input (y, x) read by every kernel tap (rows) of every output position in `pos` (flat, columns), and
        the in-bounds mask; int64 / bool arrays of shape (kh*kw, len(pos))."""
        oy, ox = np.divmod(np.asarray(pos, np.int64), self.wo)
        ky, kx = np.divmod(np.arange(self.kh * self.kw), self.kw)
        y = oy[None, :] * self.stride[0] - self.padding[0] + ky[:, None] * self.dilation[0]
        x = ox[None, :] * self.stride[1] - self.padding[1] + kx[:, None] * self.dilation[1]
        return y, x, (y >= 0) & (y < self.h) & (x >= 0) & (x < self.w)

    def cover(self, pos: np.ndarray) -> np.ndarray:
        """float32 (kh*kw, H*W): [tap, input position] = 1 where some output position in `pos` (flat indices
        over Ho x Wo) reads that input through that kernel tap (0/1: a tap maps positions one to one)."""
        y, x, ok = self._taps(pos)
        tap = np.broadcast_to(np.arange(self.kh * self.kw)[:, None], y.shape)
        idx = (tap[ok] * self.h + y[ok]) * self.w + x[ok]
        n = self.kh * self.kw * self.h * self.w
        return np.bincount(idx, minlength=n).reshape(self.kh * self.kw, self.h * self.w).astype(np.float32)

    def readers(self) -> np.ndarray:
        """int32 (kh*kw, H*W), read-only: the output position (flat over Ho x Wo) that reads each input position
        through each kernel tap, or -1 (a tap maps positions one to one), so that cover(pos)[t, p] = 1 exactly
        where readers()[t, p] is in pos (_readers: a pure function of the geometry, memoised)."""
        return _readers(self)

    def tap_lists(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """readers() as lists per input position: (ptr int64 (H*W + 1,), tap int32, output position int32), the
        taps that read input position p being tap[ptr[p]:ptr[p + 1]] in tap order (_tap_lists: memoised)."""
        return _tap_lists(self)

    def piece_owners(self, tc: np.ndarray, o: int, readers: np.ndarray) -> np.ndarray:
        """Owner (tc[o] value) of the output position of channel o read through each tap at each position,
        int64 (tc's dtype) shaped like `readers` (readers() or some of its columns); NO_OWNER where no output
        reads it. The cover of the positions of channel o held by owner g is (piece_owners(...) == g)."""
        return np.where(readers >= 0, tc[o][readers], NO_OWNER)

    def in_bounds(self) -> np.ndarray:
        """float32 (kh*kw, Ho*Wo): 1 where that kernel tap of that output position reads an in-bounds input."""
        return self._taps(np.arange(self.ho * self.wo))[2].astype(np.float32)


@lru_cache(maxsize=32)
def _readers(geom: _ConvGeom) -> np.ndarray:
    """_ConvGeom.readers, made once per geometry (a fan-out table build asks for each several times); int32
    (positions < 2^31), so the 32 kept take at most 32 x 1.8 MB at 224x224 inputs with 3x3 kernels."""
    out = np.full((geom.kh * geom.kw, geom.h * geom.w), -1, np.int32)
    y, x, ok = geom._taps(np.arange(geom.ho * geom.wo))
    tap, pos = np.nonzero(ok)
    out[tap, (y * geom.w + x)[ok]] = pos
    out.setflags(write=False)
    return out


@lru_cache(maxsize=32)
def _tap_lists(geom: _ConvGeom) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """_ConvGeom.tap_lists, made once per geometry from its readers map (read-only arrays; int32 like the readers,
    so the 32 kept take at most 32 x 3.7 MB at 224x224 inputs with 3x3 kernels)."""
    pos, tap = np.nonzero(geom.readers().T >= 0)  # position-major, taps ascending within a position
    ptr = _group_ptr(pos, geom.h * geom.w)
    out = (ptr, tap.astype(np.int32), geom.readers()[tap, pos])
    for a in out:
        a.setflags(write=False)
    return out


def _group_kernel_sums(mask: np.ndarray, geom: _ConvGeom, owner: np.ndarray, chans: np.ndarray,
                       n_owner: int) -> np.ndarray:
    """Sum the kernels (mask rows, (C_out, c_in_g, k2), 0/1 as bool or float) of output channels `chans`
    (sorted) per owner, placed at their group's input channels: float32 (n_owner, C_in, k2) (_pair_kernel_sums
    scattered)."""
    groups = geom.c_out // geom.out_per_g
    out = np.zeros((n_owner, groups, geom.c_in_g * geom.kh * geom.kw), np.float32)
    if len(chans):
        pairs, sums = _pair_kernel_sums(mask, geom, owner, chans)
        out[pairs // groups, pairs % groups] = sums
    return out.reshape(n_owner, groups * geom.c_in_g, geom.kh * geom.kw)


def _pair_kernel_sums(mask: np.ndarray, geom: _ConvGeom, owner: np.ndarray,
                      chans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pairs, sums): the (owner, group) pairs of the output channels `chans` (non-empty, sorted; owner[i] holds
    chans[i]) as sorted int64 keys owner * groups + group, and float32 (n_pairs, c_in_g * k2) the sum of each
    pair's kernels (mask rows, (C_out, c_in_g, k2), 0/1 as bool or float; hwmodels.kernels.conv_rows.pair_sums,
    exact: integer sums < 2^24)."""
    groups = geom.c_out // geom.out_per_g
    key = np.asarray(owner, np.int64) * groups + chans // geom.out_per_g
    order = np.argsort(key, kind="stable")
    pairs, starts = np.unique(key[order], return_index=True)
    rows = mask.reshape(geom.c_out, -1)
    rows = rows.view(np.uint8) if rows.dtype == np.bool_ else np.asarray(rows, np.float32)
    return pairs, pair_sums(rows, np.asarray(chans, np.int64)[order], starts.astype(np.int64))


def _whole_channel_counts(kern: np.ndarray, cover: np.ndarray, used: np.ndarray, n_src: int,
                          n_owner: int) -> sp.csr_matrix:
    """CSR float64 (n_src, n_owner) of the owners `used` (sorted) that hold whole channels: column o is
    kern[o] @ cover flattened over (C_in, H*W). Built row-major, block of owners by block (bounded memory), so
    no COO sort is needed; the blocks cover disjoint columns."""
    step = max(1, _BLOCK_FLOATS // max(1, n_src))
    out = None
    for lo in range(0, len(used), step):
        block = used[lo:lo + step]
        ft = np.ascontiguousarray((kern[block] @ cover).reshape(len(block), -1).T)  # (n_src, len(block))
        on = ft != 0
        indptr = np.concatenate([[0], np.cumsum(on.sum(axis=1))])
        part = sp.csr_matrix((ft[on].astype(np.float64), np.broadcast_to(block, ft.shape)[on], indptr),
                             shape=(n_src, n_owner))
        out = part if out is None else out + part
    return out


def _conv_counts(proj: Projection, src_shape: tuple[int, ...], owner: np.ndarray, n_owner: int,
                 count: str, rows: np.ndarray | None = None, dense: bool = False) -> sp.csr_matrix | np.ndarray:
    """Synapses from every source neuron to the targets of each owner: CSR float64 (n_source, n_owner), or
    the same as a float64 array when `dense`.

    owner: int array (n_target,) in C-order, the owner (0..n_owner-1) of each target, or -1 (not counted).
    Whole channels of one owner share one cover map (one matrix product per block of owners); channels split
    between owners get a cover of their own positions. Exact: every count is an integer < 2^24 in float32, so
    sums of the parts are exact in any order. rows: only these source neurons (the rows of the result, in
    this order; None: all), counted at their own input positions only (_conv_rows).
    """
    geom = _ConvGeom.of(proj, src_shape)
    k2, hw_in, hw_out = geom.kh * geom.kw, geom.h * geom.w, geom.ho * geom.wo
    n_src = geom.c_in * hw_in
    tc = np.asarray(owner, np.int64).reshape(geom.c_out, hw_out)
    whole = (tc == tc[:, :1]).all(axis=1) & (tc[:, 0] >= 0)
    if rows is not None:
        rows = np.asarray(rows, np.int64)
        if _row_by_row(len(rows), n_owner):
            _check_count(count)
            mask = None if count == "structural" else (proj.weight != 0).reshape(geom.c_out, geom.c_in_g, k2)
            out = _conv_rows(geom, mask, tc, whole, n_owner, rows)
            return out if dense else sp.csr_matrix(out)
        out = _conv_counts(proj, src_shape, owner, n_owner, count)[rows]
        return out.toarray() if dense else out
    if dense:
        return _conv_counts(proj, src_shape, owner, n_owner, count).toarray()
    mask = _mask(proj, count).reshape(geom.c_out, geom.c_in_g, k2)
    out = sp.csr_matrix((n_src, n_owner))
    chans = np.flatnonzero(whole)
    if len(chans):
        kern = _group_kernel_sums(mask, geom, tc[chans, 0], chans, n_owner)
        out = _whole_channel_counts(kern, geom.cover(np.arange(hw_out)), np.unique(tc[chans, 0]), n_src, n_owner)
    rows, cols, vals = [], [], []
    readers = geom.readers()
    for o in np.flatnonzero(~whole & (tc >= 0).any(axis=1)):
        first_in = (o // geom.out_per_g) * geom.c_in_g
        owners = geom.piece_owners(tc, o, readers)
        for g in np.unique(tc[o][tc[o] >= 0]):
            f = mask[o] @ (owners == g).astype(np.float32)  # the cover of channel o's positions held by g
            r, s = np.nonzero(f)
            rows.append((first_in + r) * hw_in + s)
            cols.append(np.full(len(r), g))
            vals.append(f[r, s])
    if rows:
        out = out + sp.coo_matrix((np.concatenate(vals).astype(np.float64),
                                   (np.concatenate(rows), np.concatenate(cols))), shape=(n_src, n_owner)).tocsr()
    return out


def _row_by_row(n_rows: int, n_owner: int) -> bool:
    """_conv_counts of n_rows source neurons over n_owner owners counts row by row (_conv_rows, a dense float64
    table) rather than slicing the whole map: when the table fits in _BLOCK_FLOATS entries."""
    return n_rows * n_owner <= _BLOCK_FLOATS


def _conv_rows(geom: _ConvGeom, mask: np.ndarray | None, tc: np.ndarray, whole: np.ndarray, n_owner: int,
               rows: np.ndarray) -> np.ndarray:
    """_conv_counts of the source neurons `rows` only: float64 (len(rows), n_owner), counted row by row from the
    taps that read each row's input position (hwmodels.kernels.conv_rows: owners holding whole channels of the
    row's group through their kernel sums, channels split between owners through the owner of the position the
    tap reads), so every count is the same exact integer as in the whole map. mask: the 0/1 kernel mask (C_out,
    c_in_g, k2), bool or float; None: the structural count (all ones), whose kernel sums are channel counts."""
    groups = geom.c_out // geom.out_per_g
    c_r, p_r = np.divmod(rows, geom.h * geom.w)
    chans = np.flatnonzero(whole)
    if not len(chans):
        pairs, sums = np.zeros(0, np.int64), np.zeros((0, 1, 1), np.float32)
    elif mask is None:  # kernel sums of all-ones kernels: the owner's channels in each group, at every entry
        pairs, counts = np.unique(tc[chans, 0] * groups + chans // geom.out_per_g, return_counts=True)
        sums = counts.astype(np.float32).reshape(-1, 1, 1)
    else:
        pairs, sums = _pair_kernel_sums(mask, geom, tc[chans, 0], chans)
        sums = sums.reshape(len(pairs), geom.c_in_g, geom.kh * geom.kw)
    by_group = np.argsort(pairs % groups, kind="stable")
    split = np.flatnonzero(~whole & (tc >= 0).any(axis=1))  # ascending, hence grouped by group
    bits = np.zeros((1, 1, 1), np.uint8) if mask is None else mask.reshape(geom.c_out, geom.c_in_g, -1)
    bits = bits.view(np.uint8) if bits.dtype == np.bool_ else bits.astype(np.uint8)
    return conv_rows(c_r, p_r, *geom.tap_lists(), _group_ptr(pairs[by_group] % groups, groups),
                     pairs[by_group] // groups, np.ascontiguousarray(sums[by_group]),
                     _group_ptr(split // geom.out_per_g, groups), split, tc, bits, mask is None, geom.c_in_g,
                     n_owner)


def _group_ptr(group: np.ndarray, groups: int) -> np.ndarray:
    """int64 (groups + 1,): the entries of group g are group_ptr[g]:group_ptr[g + 1] of the ascending `group`."""
    return np.concatenate([[0], np.cumsum(np.bincount(group, minlength=groups))]).astype(np.int64)


def _column_classes(*parts: np.ndarray) -> np.ndarray:
    """int64 (n,): the same number for equal columns of the 2-D arrays `parts` (each (rows, n), any dtype) stacked
    on each other."""
    n = parts[0].shape[1]
    cols = [np.ascontiguousarray(a.T).view(np.uint8).reshape(n, -1) for a in parts if a.shape[0]]
    if not cols:
        return np.zeros(n, np.int64)
    cols = cols[0] if len(cols) == 1 else np.concatenate(cols, axis=1)
    keys = cols.view(np.dtype((np.void, cols.shape[1]))).reshape(-1)
    return np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _owner_ranks(tc: np.ndarray) -> np.ndarray:
    """The owners `tc` (int, (channels, positions)) renumbered 1..k per row in increasing order (equal values
    equal ranks), in the smallest unsigned type that holds them (the pattern of owners is all source_classes
    reads)."""
    order = np.argsort(tc, axis=1, kind="stable")
    ranked = np.take_along_axis(tc, order, axis=1)
    steps = np.concatenate([np.ones((len(tc), 1), np.int64), (np.diff(ranked, axis=1) != 0).astype(np.int64)], 1)
    ranks = np.empty_like(steps)
    np.put_along_axis(ranks, order, np.cumsum(steps, axis=1), axis=1)
    top = int(ranks.max(initial=0))
    return ranks.astype(np.uint8 if top < 2 ** 8 else np.uint16 if top < 2 ** 16 else np.uint32)


def _refine(classes: np.ndarray, other: np.ndarray) -> np.ndarray:
    """The classes (0..k-1, int64) of the pairs (classes[i], other[i])."""
    return np.unique(classes * (int(other.max(initial=0)) + 1) + other, return_inverse=True)[1].reshape(-1)


def source_classes(proj: Projection, src_shape: tuple[int, ...], target_core: np.ndarray) -> np.ndarray:
    """int64 (n_source,): a class of every source neuron such that neurons of one class have equal rows of
    core_fanout(proj, src_shape, target_core, count) and equal fanout(proj, src_shape, count), for both counts.

    Dense: equal weight-mask columns. Conv: the same input channel and an input position read by the same
    kernel taps of every cover map the counts use (all output positions, and the positions of each channel
    split between cores): a count is a sum over taps of kernel sums x cover, so it reads a position only
    through its column of the cover maps. Hence the rows of one class are equal, whatever the weights.
    """
    if proj.kind == "dense":
        return _column_classes(np.packbits(proj.weight != 0, axis=0))
    geom = _ConvGeom.of(proj, src_shape)
    hw_out = geom.ho * geom.wo
    tc = np.asarray(target_core, np.int64).reshape(geom.c_out, hw_out)
    whole = (tc == tc[:, :1]).all(axis=1)
    # the input positions' columns of every cover map stacked: equal stacked columns <=> the same column in every
    # map (the counts' only dependence on the position). The cover of the positions of a split channel o held by
    # core g is (owner of the output position each tap reads == g), so the maps of o over all its cores are
    # equal at two input positions exactly where the owners read through each tap are: the owners stand for them
    readers = geom.readers()
    split = np.flatnonzero(~whole)
    maps = [np.packbits(readers >= 0, axis=0)]  # the cover of all output positions
    if split.size:
        owners = _owner_ranks(tc[split])[:, np.maximum(readers, 0)]  # (split channels, taps, positions)
        owners[:, readers < 0] = 0  # no reader: rank 0, below every owner's
        maps.append(owners.reshape(-1, owners.shape[-1]))
    pat = _column_classes(*maps)
    n_pat = int(pat.max(initial=-1)) + 1
    return (np.arange(geom.c_in, dtype=np.int64)[:, None] * n_pat + pat[None, :]).reshape(-1)


def conv_core_fanout(proj: Projection, src_shape: tuple[int, ...], indicator: np.ndarray,
                     count: str = "structural") -> np.ndarray:
    """Synapses from every source neuron into each group of target neurons (a transposed convolution).

    indicator: (G, C_out, H_out, W_out) 0/1 array, G target groups (e.g. cores; groups may overlap).
    Returns float64 array (n_source, G): entry [i, g] = number of synapses from source neuron i (C-order over
    (C_in, H, W)) to targets marked in group g. Streams one group at a time (hwmodels.mapping.connectivity module doc).
    """
    ind = np.asarray(indicator).reshape(len(indicator), -1)
    cols = [_conv_counts(proj, src_shape, np.where(row > 0, 0, -1), 1, count).toarray() for row in ind]
    return np.hstack(cols) if cols else np.zeros((int(np.prod(src_shape)), 0))


def fan_in(proj: Projection, src_shape: tuple[int, ...], count: str) -> np.ndarray:
    """Synapses into every target neuron of `proj` (C-order), shape (n_target,), int64.

    count "structural": every matrix entry / in-bounds kernel tap, zeros included; "nonzero": non-zero weights.
    """
    mask = _mask(proj, count)
    if proj.kind == "dense":
        return mask.sum(axis=1).astype(np.int64)
    geom = _ConvGeom.of(proj, src_shape)
    taps = mask.sum(axis=1).reshape(geom.c_out, -1)  # (C_out, k2): counted input channels per tap
    return np.rint(taps @ geom.in_bounds()).astype(np.int64).reshape(-1)


def range_counter(proj: Projection, src_shape: tuple[int, ...], count: str) -> Callable[[int, int], np.ndarray]:
    """A function (start, end) -> float64 (n_source,): synapses from each source neuron into the targets
    start..end-1 (C-order; end is clipped to the target count). Used to count a core's input axons (sources
    with a count > 0) while chunking."""
    _check_count(count)
    if proj.kind == "dense":
        n_target = proj.weight.shape[0]
        if count == "structural":
            return lambda start, end: np.full(proj.weight.shape[1], float(max(min(end, n_target) - start, 0)))
        nonzero = proj.weight != 0
        return lambda start, end: nonzero[start:end].sum(axis=0, dtype=np.float64)
    n_target = int(np.prod(conv_output_shape(proj, src_shape)))

    def counts(start: int, end: int) -> np.ndarray:
        owner = np.full(n_target, -1, np.int64)
        owner[start:end] = 0
        return _conv_counts(proj, src_shape, owner, 1, count).toarray()[:, 0]
    return counts


def fanout(proj: Projection, src_shape: tuple[int, ...], count: str = "structural",
           rows: np.ndarray | None = None) -> np.ndarray:
    """Fan-out (number of synapses) of every source neuron of `proj`, shape (n_source,), int64 (rows: of these
    source neurons only, shape (len(rows),)).

    Dense weight (n_target, n_source): column counts. Conv: a transposed convolution of an all-ones output map
    with the kernel pattern (zeros included for count="structural", excluded for "nonzero"), in closed form:
    source neuron (c, p) reaches, through each kernel tap t that some output position reads p with, the
    output channels of c's group whose kernel counts tap t at c, so its fan-out is sum over those taps of
    per_tap[c, t] (out_per_g for "structural", the non-zeros of the group's kernels at (c, t) for "nonzero"),
    summed over the position's tap list by hwmodels.kernels.conv_rows.tap_sums (integer sums; a BLAS product
    instead woke its threads beside build_fanout's and made Spikformer-4-384's tables 39 ms slower on 2 cores).
    """
    _check_count(count)
    if proj.kind == "dense":
        if count == "structural":
            out = np.full(proj.weight.shape[1], proj.weight.shape[0], np.int64)
        else:
            out = np.count_nonzero(proj.weight, axis=0).astype(np.int64)
        return out if rows is None else out[rows]
    geom = _ConvGeom.of(proj, src_shape)
    hw = geom.h * geom.w
    rows = np.arange(geom.c_in * hw) if rows is None else np.asarray(rows, np.int64)
    ptr, tap, _ = geom.tap_lists()
    if count == "structural":  # every output channel of the group through every in-bounds tap
        return geom.out_per_g * np.diff(ptr)[rows % hw]
    width = geom.c_in_g * geom.kh * geom.kw  # a group's (input channel, tap) entries, contiguous in a kernel
    nonzero = (proj.weight != 0).reshape(geom.c_out // geom.out_per_g, geom.out_per_g, width)
    per_tap = nonzero.sum(axis=1, dtype=np.int32).reshape(geom.c_in, geom.kh * geom.kw)  # < 2^31 channels
    return tap_sums(per_tap, ptr, tap, rows // hw, rows % hw)


def core_fanout(proj: Projection, src_shape: tuple[int, ...], target_core: np.ndarray,
                count: str = "structural", rows: np.ndarray | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
    """Synapses from each source neuron into each destination core holding part of the target population.

    target_core: (n_target,) int array, the core id of every target neuron (C-order numbering).
    Returns (F, cores): F is a CSR int64 matrix (n_source, len(cores)) of synapse counts and `cores` the sorted
    core ids of its columns. A spike of source neuron i sends one message to every core with F[i, k] > 0 and
    causes F[i, k] synaptic events there. rows: only these source neurons (F then has len(rows) rows).
    """
    _check_count(count)
    target_core = np.asarray(target_core)
    if len(target_core) and target_core.min() >= 0:  # core ids: a lookup table, not a sort
        cores, col = dense_unique(target_core, int(target_core.max()) + 1)
        cores = cores.astype(target_core.dtype, copy=False)
    else:
        cores, col = np.unique(target_core, return_inverse=True)
    if proj.kind == "dense":
        onehot = sp.csr_matrix((np.ones(len(col)), (np.arange(len(col)), col)), shape=(len(col), len(cores)))
        w = proj.weight if rows is None else proj.weight[:, rows]
        f = sp.csr_matrix(w != 0 if count == "nonzero" else np.ones(w.shape)).T @ onehot
        return sp.csr_matrix(f, dtype=np.int64), cores
    if rows is not None and _row_by_row(len(rows), len(cores)):  # _conv_counts gives a dense table there
        return counts_csr(_conv_counts(proj, src_shape, col, len(cores), count, rows, dense=True)), cores
    f = _conv_counts(proj, src_shape, col, len(cores), count, rows)
    f.data = np.rint(f.data)
    return sp.csr_matrix(f, dtype=np.int64), cores


def counts_csr(counts: np.ndarray) -> sp.csr_matrix:
    """CSR int64 of a dense float64 (rows, cols) table of exact integer counts: the matrix
    sp.csr_matrix(counts) rounded to int64 gives (non-zeros only, columns ascending, int32 indices when they
    fit), made in one compiled scan (hwmodels.kernels.conv_rows.dense_csr) instead of scipy's COO detour
    (Spikformer-4-384's build_fanout: ~25 ms of its numpy nonzero and COO sorting per call)."""
    n_rows, n_cols = counts.shape
    idx = np.int32 if max(n_rows, n_cols, counts.size) < 2 ** 31 else np.int64
    indptr, indices = np.empty(n_rows + 1, idx), np.empty(counts.size, idx)
    data = dense_csr(np.ascontiguousarray(counts, np.float64), indptr, indices)
    return sp.csr_matrix((data, truncated(indices, len(data)), indptr), shape=(n_rows, n_cols))


#: a store of core fan-outs shared by the callers of one assignment (hwmodels.mapping.check and
#: hwmodels.events.actions.build_fanout, within one hwmodels.simulate call): (projection name, count) ->
#: (F, cores, the target_core it was counted for[, the class of every source neuron when F has one row per
#: class, stored_core_fanout])
FanoutStore = dict


def stored_core_fanout(store: FanoutStore | None, proj: Projection, src_shape: tuple[int, ...],
                       target_core: np.ndarray, count: str = "structural", rows: np.ndarray | None = None,
                       classes: np.ndarray | None = None) -> tuple[sp.csr_matrix, np.ndarray]:
    """core_fanout(proj, src_shape, target_core, count), made once per (projection, count) in `store` and reused
    while it is asked for an equal target_core (None: made on every call). The caller must not modify the
    returned matrix in place (canonicalising its indices, which changes no value, excepted). rows: only these
    source neurons; the store then keeps one row per source_classes class of the projection (F of the class's
    first neuron, and the class of every neuron), and every caller takes its rows from that table. classes:
    source_classes(proj, src_shape, target_core) when the caller has it already (not recomputed)."""
    if store is None:
        return core_fanout(proj, src_shape, target_core, count, rows)
    key, target_core = (proj.name, count), np.asarray(target_core)
    got = store.get(key)
    if rows is not None:
        if got is None or not np.array_equal(got[2], target_core):
            of = source_classes(proj, src_shape, target_core) if classes is None else classes
            got = store[key] = (*core_fanout(proj, src_shape, target_core, count, class_firsts(of)), target_core, of)
        rows = np.asarray(rows, np.int64)
        return take_rows(got[0], got[3][rows] if len(got) > 3 else rows), got[1]
    if got is not None and len(got) > 3 and np.array_equal(got[2], target_core):
        return got[0][got[3]], got[1]  # a class table: expanded to every neuron
    if got is None or not np.array_equal(got[2], target_core):
        got = store[key] = (*core_fanout(proj, src_shape, target_core, count), target_core)
    return got[:2]


def class_firsts(of: np.ndarray) -> np.ndarray:
    """np.unique(of, return_index=True)[1] of the classes `of` (int (n,)): the first neuron of every class, int64,
    in class order; one compiled scan (hwmodels.kernels.unique.first_of_classes) when the classes are 0..k-1, as
    source_classes numbers them (np.unique's sort cost Spikformer-4-384's build_fanout ~16 ms on one thread),
    np.unique itself otherwise (a negative class, or one missing below the largest)."""
    of = np.asarray(of, np.int64)
    if len(of) and int(of.min()) < 0:
        return np.unique(of, return_index=True)[1]
    first = first_of_classes(of, int(of.max(initial=-1)) + 1)
    return np.unique(of, return_index=True)[1] if len(first) and int(first.max()) == len(of) else first


def take_rows(f: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """f[rows] (CSR), or f itself when rows is 0..f.shape[0]-1 in order (a population with one out-projection
    asks for every class row of it: scipy's fancy row indexing would copy the matrix)."""
    if len(rows) == f.shape[0] and bool((rows == np.arange(len(rows))).all()):
        return f
    return f[rows]


def spike_counts(trace: EventTrace, population: str, size: int) -> np.ndarray:
    """Spikes per neuron of `population` summed over all samples and timesteps of `trace`, int64 (size,)."""
    pop_i = trace.populations.index(population)
    rows = np.arange(trace.n_samples * trace.n_timesteps) * len(trace.populations) + pop_i
    lo, hi = trace.offsets[rows], trace.offsets[rows + 1]
    pos = np.repeat(lo - np.cumsum(hi - lo) + (hi - lo), hi - lo) + np.arange(int((hi - lo).sum()))
    return np.bincount(trace.indices[pos], minlength=size).astype(np.int64)


def _step_rows(trace: EventTrace, population: str) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) offsets of every (sample, timestep) row of `population`, in sample-major order."""
    pop_i = trace.populations.index(population)
    rows = np.arange(trace.n_samples * trace.n_timesteps) * len(trace.populations) + pop_i
    return np.asarray(trace.offsets[rows]), np.asarray(trace.offsets[rows + 1])


def gated_events(graph: NetworkGraph, trace: EventTrace, proj: Projection) -> int:
    """Non-zero synaptic events of a gated projection (trace.Projection.gate) over the whole trace.

    At each (sample, timestep) the counted synapses are the non-zero weight entries whose gate neuron emitted a
    value at that timestep; each source spike counts its fan-out over them (a conv's in-bounds taps, as
    `fanout`). E.g. spiking attention's K^T V stage (source K, gate V) counts, per timestep, the pairs of
    coincident K and V spikes of the same token and head. The hardware model pays gated projections their
    structural count (storage "dense"/"conv"); its SimResult.synops_nonzero reports their static non-zero pattern,
    not this count. Raises ValueError for an ungated projection.
    """
    if proj.gate is None:
        raise ValueError(f"projection {proj.name!r}: not gated (gate is None)")
    src, gate = graph.populations[proj.source], graph.populations[proj.gate]
    (s_lo, s_hi), (g_lo, g_hi) = _step_rows(trace, proj.source), _step_rows(trace, proj.gate)
    stored = proj.weight != 0
    total = 0
    for r in np.flatnonzero(s_hi > s_lo):
        fired = np.zeros(gate.size, bool)
        fired[trace.indices[g_lo[r]:g_hi[r]]] = True
        mask = (stored & fired[proj.gate_index]).astype(np.float32)
        plain = Projection(proj.name, proj.source, proj.target, proj.kind, mask, proj.stride, proj.padding,
                           proj.dilation, proj.groups)
        total += int(fanout(plain, src.shape, "nonzero")[trace.indices[s_lo[r]:s_hi[r]]].sum())
    return total


def synaptic_events(graph: NetworkGraph, trace: EventTrace, count: str = "structural") -> dict[str, int]:
    """Total synaptic events per projection over the whole trace: sum over spikes of the source's fan-out.

    Graded spikes count one event per synapse, as binary ones do. A gated projection's "nonzero" count is
    `gated_events` (only synapses whose gate fired); its "structural" count is the static fan-out.
    Returns {projection name: events}.
    """
    out = {}
    for proj in graph.projections:
        src = graph.populations[proj.source]
        if proj.gate is not None and count == "nonzero":
            out[proj.name] = gated_events(graph, trace, proj)
            continue
        out[proj.name] = int(spike_counts(trace, proj.source, src.size) @ fanout(proj, src.shape, count))
    return out


def axons_per_core(graph: NetworkGraph, name: str, cores: np.ndarray, n: int,
                   fanouts: FanoutStore | None = None) -> np.ndarray:
    """Distinct source neurons with a stored synapse (paid count > 0) into each core of population `name`, int64
    (n,); cores: the core of each of its neurons (C order). Projections from one source are summed before
    counting, so a source neuron reaching a core through two projections is one axon. The core fan-outs come
    through `fanouts` (stored_core_fanout)."""
    out = np.zeros(n, np.int64)
    projs: dict[str, list[Projection]] = {}
    for proj in graph.in_projections(name):
        projs.setdefault(proj.source, []).append(proj)
    for source, group in projs.items():
        # one row per class of source neurons with equal rows in every projection (source_classes), counted
        # as many times as the class has neurons
        shape = graph.populations[source].shape
        of = np.zeros(int(np.prod(shape)), np.int64)
        per_proj = [source_classes(proj, shape, cores) for proj in group]
        for cls in per_proj:
            of = _refine(of, cls)
        first, size = np.unique(of, return_index=True)[1], np.bincount(of)
        f = None
        for proj, cls in zip(group, per_proj):
            part, cols = stored_core_fanout(fanouts, proj, shape, cores, PAID_COUNT[proj.storage], first, cls)
            f = part.copy() if f is None else f + part  # part may be shared
        f.sum_duplicates()  # counts are >= 0: a stored entry > 0 is one source axon of its column per neuron
        rows = np.repeat(np.arange(f.shape[0]), np.diff(f.indptr))
        on = f.data > 0
        out[cols] += np.rint(np.bincount(f.indices[on], weights=size[rows[on]],
                                         minlength=len(cols))).astype(np.int64)
    return out
