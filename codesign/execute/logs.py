"""Logging settings shared by the CLI process and dask worker processes (imports nothing heavy: a worker runs
this before it imports torch)."""
from __future__ import annotations

import logging


def quiet_logs() -> None:
    """Silence torch's one-line 'Triton not available' warnings (CPU machines) and workloads.lowering's note, at
    every lowering, that weights were quantized or widened to fit (the policy is the config's
    hardware.weight_fit, and every projection's fit is recorded in the lowered graph's metadata['weight_fit']).
    Call before torch is imported to silence torch at import time."""
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
    logging.getLogger("workloads.lowering").setLevel(logging.ERROR)


class DropComputeFailed(logging.Filter):
    """Drops distributed.worker's "Compute Failed" record (the task, its exception and traceback, ~10 lines on
    stderr) for a task that raised: the task's exception reaches the CLI, which prints it as one line (--debug:
    its traceback, the worker's frames included); other worker warnings and errors are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the "Compute Failed" record only."""
        return not str(record.msg).startswith("Compute Failed")


def dask_setup(worker) -> None:
    """dask preload hook, run in each local worker process as it starts (codesign.execute.executor preloads this
    module): quiet_logs, no "Compute Failed" record (DropComputeFailed), and ignore SIGINT (the CLI process
    handles Ctrl-C and stops the cluster)."""
    import signal
    quiet_logs()
    logging.getLogger("distributed.worker").addFilter(DropComputeFailed())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
