"""A weight stage to the float32 weights of its Projection in one compiled pass (workloads.lowering.build.emit):
the stage's float64 weights times its pending row factors (folded BatchNorm scales, workloads.lowering.values.
Stage.rows), rounded to float32, where the eager form wrote a float64 product per BatchNorm and then a float32
copy (~3x the passes and fresh pages over VGG-11's 9 M weights).

Bit for bit the eager form's: each factor is a float64 product per element in the same order (numba contracts
nothing without fastmath), and the float64 -> float32 conversion rounds to nearest even like numpy's astype.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit


def stage_weight_f32(w: torch.Tensor, rows: tuple[torch.Tensor, ...]) -> np.ndarray:
    """New float32 array of w's shape: float32(float64(w) * rows[0] * rows[1] ...) with rows[i] (w.shape[0],)
    factors of the output rows (made float64, as torch's promotion does). w: a float32 tensor (a layer's own
    weight, exact in float64) or a float64 one; other dtypes and empty arrays take numpy's passes."""
    a = w.detach().cpu().numpy()
    if a.dtype not in (np.float32, np.float64) or a.size == 0 or a.ndim == 0:
        return eager_weight(w, rows).numpy().astype(np.float32)
    a = np.ascontiguousarray(a)
    scales = np.stack([r.detach().cpu().double().numpy().reshape(-1) for r in rows]) if rows else \
        np.empty((0, a.shape[0]), np.float64)
    out = np.empty(a.shape, np.float32)
    _rows_f32(a.reshape(a.shape[0], -1), scales, out.reshape(a.shape[0], -1))
    return out


def eager_weight(w: torch.Tensor, rows: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """float64 w * rows[0] * rows[1] ... (each factor (w.shape[0],) per output row, made float64), one float64
    product per element and factor, in order: the reference stage_weight_f32 rounds to float32 in one pass."""
    out = w.detach().cpu().double()
    for r in rows:
        out = out * r.detach().cpu().double().reshape((-1,) + (1,) * (out.dim() - 1))
    return out


@njit(cache=True, nogil=True)
def _rows_f32(w, scales, out) -> None:
    """out[r, k] = float32(float64(w[r, k]) * scales[0, r] * scales[1, r] ...) for w (R, K) float32 or float64,
    scales (P, R) float64."""
    n_p = scales.shape[0]
    for r in range(w.shape[0]):
        if n_p == 0:
            _row_cast(w[r], out[r])
        elif n_p == 1:
            _row_scale(w[r], scales[0, r], out[r])
        else:
            _row_scales(w[r], scales[:, r], out[r])


@njit(cache=True, nogil=True)
def _row_cast(w, out) -> None:
    for k in range(w.shape[0]):
        out[k] = np.float32(np.float64(w[k]))


@njit(cache=True, nogil=True)
def _row_scale(w, s, out) -> None:
    for k in range(w.shape[0]):
        out[k] = np.float32(np.float64(w[k]) * s)


@njit(cache=True, nogil=True)
def _row_scales(w, s, out) -> None:
    for k in range(w.shape[0]):
        v = np.float64(w[k])
        for p in range(s.shape[0]):
            v = v * s[p]
        out[k] = np.float32(v)
