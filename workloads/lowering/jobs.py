"""The lowering's worker threads (Jobs): data-parallel numpy work in item order, so results never depend on
timing."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import torch


class Jobs:
    """Threads for the lowering's data-parallel numpy work (numpy's loops and hashlib release the GIL): map()
    runs a function over items and returns the results in item order, so they never depend on timing; submit()
    runs one call beside the caller. Used where torch's own threads are idle (weight quantization, the weight
    fit and fingerprint, a population's events while the forward waits in its hook), never beside a running
    forward pass, whose threads would then compete for the cores. workers: None for torch.get_num_threads()
    (the cores torch itself uses)."""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, int(torch.get_num_threads() if workers is None else workers))
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="lowering")

    def map(self, fn: Callable, items) -> list:
        """[fn(item) for item in items], computed on the threads (one item: on the caller's); re-raises the first
        exception in item order."""
        items = list(items)
        return [fn(items[0])] if len(items) == 1 else list(self.pool.map(fn, items))

    def submit(self, fn: Callable, *args) -> Future:
        """Start fn(*args) on a thread; returns its future."""
        return self.pool.submit(fn, *args)

    def close(self) -> None:
        """Stop the threads after the calls started."""
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Jobs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
