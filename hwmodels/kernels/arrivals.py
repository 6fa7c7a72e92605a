"""Compiled contention-free head arrivals (hwmodels.timing.analytic.head_arrival): one pass over the deliveries
instead of about ten numpy passes that hold the GIL (the DES computes them on a second thread beside its own
finish, hwmodels.timing.des._finish). Every value is the same floating-point operation, in the same order, as
hwmodels.events.network.Network._pair_latency's, so the arrivals are bit-identical.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux


@njit(cache=True, nogil=True)
def head_arrivals(ready: np.ndarray, flow: np.ndarray, flow_src: np.ndarray, dst: np.ndarray, x: np.ndarray,
                  y: np.ndarray, cx: np.ndarray, cy: np.ndarray, ew_s: float, ns_s: float, chip_s: float,
                  link_s: float) -> np.ndarray:
    """float64 (len(flow),): ready[flow[i]] + latency of the XY route from core flow_src[flow[i]] to core dst[i]
    + link_s, s. ready: float64 (n_flows,) s; flow, dst: int64 (n_deliv,); flow_src: int64 (n_flows,); x, y, cx,
    cy: int64 (n_cores,) each core's tile and chip column / row (zeros on one chip); a route's latency is
    (|dx| - |dcx|) ew_s + (|dy| - |dcy|) ns_s + (|dcx| + |dcy|) chip_s, summed left to right."""
    out = np.empty(len(flow))
    for i in range(len(flow)):
        f = flow[ux(i)]
        s, d = flow_src[ux(f)], dst[ux(i)]
        dx, dy = abs(x[ux(s)] - x[ux(d)]), abs(y[ux(s)] - y[ux(d)])
        bx, by = abs(cx[ux(s)] - cx[ux(d)]), abs(cy[ux(s)] - cy[ux(d)])
        lat = float(dx - bx) * ew_s + float(dy - by) * ns_s + float(bx + by) * chip_s
        out[ux(i)] = ready[ux(f)] + lat + link_s
    return out
