"""Compiled multi-step IF/LIF node for the trace recorder (workloads.lowering.fused): one pass over a node's input
current gives its spikes, final membrane potential and activity rows, where SpikingJelly's torch loop makes ~8
tensor passes per timestep, stacks the potentials kept by store_v_seq and the activity hook reads them again.

The arithmetic is SpikingJelly 2.0's, operation by operation in float32 and in the same order (no fused
multiply-add: numba contracts nothing without fastmath), so spikes and potentials are bit for bit the node's own
(spikingjelly/_ops/lif/reference.py and cpu.py, _ops/if_/reference.py, _ops/reset.py):
- LIF, decay_input: h = v + (x - (v - r)) / tau; without decay_input: h = v - (v - r) / tau + x (r = v_reset, 0
  for a soft reset); IF: h = v + x
- PLIF (spikingjelly/_ops/plif/reference.py and cpu.py), with k = sigmoid(w) in float32: decay_input: h = v +
  (x - (v - r)) * k; without: h = v - (v - r) * k + x
- spike s = float(h - v_threshold >= 0)
- hard reset: v = s * v_reset + (1 - s) * h; soft reset: v = h - s * v_threshold.
Activity rows are workloads.lowering.activity.node_activity's (IEEE !=, rest in float32), without the initial
potential's term in row 0 (the caller adds it as node_activity does).
"""
from __future__ import annotations

import numpy as np
from numba import njit

#: charge kinds of node_rows
IF, LIF_DECAY_INPUT, LIF, PLIF_DECAY_INPUT, PLIF = 0, 1, 2, 3, 4


def node_rows(x: np.ndarray, v0: np.ndarray, kind: int, tau: float, threshold: float, reset: float | None,
              parts: int = 1, run=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spikes float32 (T, n), v float32 (n,), activity bool (T + 1, n)) of a node stepped over x float32 (T, n)
    C-contiguous, T >= 1, from potential v0 float32 (n,).

    kind: IF, LIF_DECAY_INPUT, LIF, PLIF_DECAY_INPUT or PLIF (module constants); tau: the LIF time constant, or
    PLIF's factor k = sigmoid(w) (float32), ignored by IF; reset:
    v_reset, None for a soft reset (rest potential 0). parts, run: the neurons are split into `parts` ranges and
    run(fn, ranges) calls fn on each (e.g. workloads.lowering.jobs.Jobs.map; None: in turn on this thread).
    """
    n_t, n = x.shape
    spikes = np.empty((n_t, n), np.float32)
    v = np.array(v0, np.float32, copy=True)
    act = np.empty((n_t + 1, n), bool)
    f32 = np.float32
    args = (x, kind, f32(tau), f32(threshold), reset is not None, f32(0.0 if reset is None else reset), spikes, v,
            act)
    bounds = np.linspace(0, n, max(1, min(parts, n)) + 1).astype(np.int64)
    ranges = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    call = lambda r: _step_all(*args, r[0], r[1])
    list((run or map)(call, ranges))  # Jobs.map runs a single range on the caller's thread
    return spikes, v, act


@njit(cache=True, nogil=True, error_model="numpy")
def _step_all(x, kind, tau, thr, hard, r, spikes, v, act, lo, hi) -> None:
    """node_rows on neurons [lo, hi): v holds the potential before each step and the final one after; r is the
    rest potential (v_reset, or 0 for a soft reset, which is also LIF's reset value in its charge). One row
    call per timestep on 1-D views (which LLVM vectorizes; 2-D indexing in the inner loop defeats it, ~7x
    slower). Releases the GIL."""
    n_t = x.shape[0]
    for t in range(n_t):
        _step(x[t, lo:hi], kind, tau, thr, hard, r, spikes[t, lo:hi], v[lo:hi], act[t, lo:hi], t > 0)
    for j in range(lo, hi):
        act[n_t, j] = v[j] != r


@njit(cache=True, nogil=True, error_model="numpy")
def _step(x, kind, tau, thr, hard, r, spikes, v, act, later) -> None:
    """One timestep of _step_all on 1-D views: x the input current, v the potential (updated in place); act
    includes v before the step != r when `later` (t > 0)."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for j in range(x.shape[0]):
        vj = v[j]
        xj = x[j]
        if kind == 0:
            h = vj + xj
        elif kind == 1:
            h = vj + (xj - (vj - r)) / tau
        elif kind == 2:
            h = vj - (vj - r) / tau + xj
        elif kind == 3:
            h = vj + (xj - (vj - r)) * tau
        else:
            h = vj - (vj - r) * tau + xj
        s = np.float32(h - thr >= zero)
        spikes[j] = s
        if hard:
            v[j] = s * r + (one - s) * h
        else:
            v[j] = h - s * thr
        act[j] = (xj != zero) | (s != zero) | (later & (vj != r))
