"""Fast max pooling while the trace recorder runs: torch's CPU max_pool2d also computes and writes an int64 argmax
per output, which the recording never reads, so a plain MaxPool2d (torch's, or SpikingJelly's multi-step layer)
takes the compiled kernel of workloads.lowering.pool_kernel instead, with torch's values bit for bit
(tests/workloads/test_fused_pool.py). On the benchmark nets this is ~10x faster than torch's kernel for 2x2
pools (benchmarks/test_bench_lowering.py). Inputs the kernel does not cover take the module's own forward.
"""
from __future__ import annotations

import torch
from spikingjelly.activation_based import layer
from torch import nn

from workloads.lowering.fused import Shadow
from workloads.lowering.pool_kernel import max_pool_planes, pool_shape

#: output values per thread below which a pooling runs on the caller's thread only
_SPLIT_OUTPUTS = 1 << 15


def _pair(v) -> tuple[int, int] | None:
    """(a, b) of an int or a 2-sequence of ints, else None."""
    if isinstance(v, int):
        return v, v
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(a, int) for a in v):
        return int(v[0]), int(v[1])
    return None


def fusable_pool(module: nn.Module) -> bool:
    """True for exactly torch's nn.MaxPool2d or SpikingJelly's layer.MaxPool2d (a subclass or an instance with
    its own forward may compute something else) in floor mode, dilation 1, without indices, with a padding at
    most half the kernel (torch's own limit)."""
    if type(module) not in (nn.MaxPool2d, layer.MaxPool2d) or "forward" in module.__dict__:
        return False
    k, s, p, d = (_pair(v) for v in (module.kernel_size, module.stride or module.kernel_size, module.padding,
                                     module.dilation))
    if None in (k, s, p, d) or module.ceil_mode or module.return_indices or d != (1, 1):
        return False
    return min(k) >= 1 and min(s) >= 1 and all(0 <= pi <= ki // 2 for pi, ki in zip(p, k))


class FusedPool(Shadow):
    """Callable set as a fusable pool's `forward` for the recording (install / remove): on a CPU float32
    C-contiguous input (N, C, H, W) or (C, H, W), or (T, B, C, H, W) for a SpikingJelly layer in multi-step mode,
    with grad off, it returns torch's max-pool values as a new contiguous float32 tensor; any other input goes
    to the module's own forward. run: fn(call, ranges) (workloads.lowering.jobs.Jobs.map), workers: its threads.
    """

    def __init__(self, module: nn.Module, run=None, workers: int = 1):
        self.module, self.run, self.workers = module, run, workers
        self.own = type(module).forward.__get__(module)
        m = module
        self.kernel, self.stride, self.padding = (_pair(v) for v in (m.kernel_size, m.stride or m.kernel_size,
                                                                     m.padding))

    def __call__(self, x: torch.Tensor, *args, **kwargs):
        """The module's forward on x (see the class)."""
        planes = self._planes(x) if not args and not kwargs else None
        if planes is None:
            return self.own(x, *args, **kwargs)
        n_p, h, w = planes
        oh, ow = (pool_shape(n, k, s, p) for n, k, s, p in zip((h, w), self.kernel, self.stride, self.padding))
        parts = min(self.workers, max(1, n_p * oh * ow // _SPLIT_OUTPUTS))
        out = max_pool_planes(x.detach().numpy().reshape(n_p, h, w), self.kernel, self.stride, self.padding,
                              parts, self.run)
        return torch.from_numpy(out).reshape(tuple(x.shape[:-2]) + (oh, ow))

    def _planes(self, x: torch.Tensor) -> tuple[int, int, int] | None:
        """(planes, H, W) of an input the kernel covers, else None."""
        multi = getattr(self.module, "step_mode", "s") == "m"
        if x.dim() != (5 if multi else 4) and not (not multi and x.dim() == 3):
            return None
        if x.device.type != "cpu" or x.dtype != torch.float32 or not x.is_contiguous() or x.numel() == 0 \
                or (x.requires_grad and torch.is_grad_enabled()):
            return None
        h, w = x.shape[-2:]
        if min(pool_shape(n, k, s, p) for n, k, s, p in zip((h, w), self.kernel, self.stride, self.padding)) < 1:
            return None
        return x.numel() // (h * w), h, w


class FusedPools:
    """Context manager that installs a FusedPool on every fusable max pool among `model`'s modules (fusable_pool)
    and gives each its own forward back on exit, exception or not. jobs: a workloads.lowering.jobs.Jobs whose
    threads split large poolings, or None."""

    def __init__(self, model: nn.Module, jobs=None):
        run, workers = (None, 1) if jobs is None else (jobs.map, jobs.workers)
        self.fused = [FusedPool(m, run, workers) for m in model.modules() if fusable_pool(m)]

    def __enter__(self) -> "FusedPools":
        for f in self.fused:
            f.install()
        return self

    def __exit__(self, *exc) -> None:
        for f in self.fused:
            f.remove()
