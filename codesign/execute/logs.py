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


class DropWhileClosing(logging.Filter):
    """Drops every record once `worker` is closing: a local worker closes when the CLI process closes its cluster
    (Ctrl-C), and dask then logs the tasks it cancels ("Async instruction ... ended with CancelledError") and
    the heartbeats its closing connection pool refuses ("Failed to communicate with scheduler during heartbeat"
    and a ~40-line traceback), none of them errors of the run."""

    def __init__(self, worker):
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        """False once the worker's status is closing, closing_gracefully, closed or failed."""
        return str(getattr(getattr(self.worker, "status", None), "name", "")) not in _CLOSING


_CLOSING = ("closing", "closing_gracefully", "closed", "failed")


def quiet_shutdown() -> None:
    """No dask, tornado or asyncio records for the rest of this process: for the CLI on Ctrl-C, before a local
    cluster closes mid-task, where distributed's client, scheduler and nannies log what they cancel or kill
    ("Worker process still alive after 4.0 seconds, killing", heartbeat errors) and asyncio reports the client's
    cancelled gather ("Task exception was never retrieved ... AllExit" and its traceback), none of them errors of
    the run, which stops with exit status 130 (codesign.cli.main.main)."""
    for name in ("distributed", "asyncio", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def dask_setup(worker) -> None:
    """dask preload hook, run in each local worker process as it starts (codesign.execute.executor preloads this
    module): quiet_logs, no "Compute Failed" record (DropComputeFailed) nor any dask record once the worker
    closes (DropWhileClosing, on the handlers of dask's loggers), ignore SIGINT (the CLI process handles
    Ctrl-C and stops the cluster), and tqdm's lock a thread lock: tqdm's default one holds a multiprocessing
    semaphore, which a worker killed mid-task (its nanny kills a busy worker 4 s after the cluster closes) leaves
    for the resource tracker to report at exit ("There appear to be 1 leaked semaphore objects"); a worker's
    tasks run on its one thread, so no other process shares its progress bars."""
    import signal
    import threading

    from tqdm import tqdm
    quiet_logs()
    logging.getLogger("distributed.worker").addFilter(DropComputeFailed())
    closing = DropWhileClosing(worker)
    for name in ("distributed", "distributed.client", "tornado", "tornado.application"):
        for handler in logging.getLogger(name).handlers:  # handler filters see the records of child loggers too
            handler.addFilter(closing)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())
