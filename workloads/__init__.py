"""Workloads: datasets, encoders, SpikingJelly models, training, compression methods and lowering.

`workloads.lower(model, inputs)` turns a trained (and compressed) SpikingJelly model into the hardware model's
contract, a `hwmodels.trace.NetworkGraph` plus an `EventTrace`.
"""
from importlib import import_module

_LAZY = {"lower": "workloads.lowering"}


def __getattr__(name: str):
    """Import public entry points on first use (keeps `import workloads.data` light)."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workloads' has no attribute {name!r}")
