"""Logging settings shared by the CLI process and dask worker processes (imports nothing heavy: a worker runs
this before it imports torch)."""
from __future__ import annotations

import logging


def quiet_torch_logs() -> None:
    """Silence torch's one-line 'Triton not available' warnings (CPU machines); call before torch is imported
    to silence them at import time."""
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
