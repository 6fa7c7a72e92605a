"""Model exchange: NIR export/import (`workloads.exchange.nir_io`) and Brian2 import
(`workloads.exchange.brian2_io`). Submodules are imported on first use so `import workloads.exchange` pulls in
neither nir nor brian2.
"""
from importlib import import_module

_LAZY = {"to_nir": "nir_io", "from_nir": "nir_io", "nir_workload": "nir_io", "graph_from_nir": "nir_io",
         "save_nir": "nir_io", "load_nir": "nir_io", "from_brian2": "brian2_io", "RecurrentGraph": "recurrent",
         "load_graph": "recurrent"}


def __getattr__(name: str):
    """Import public entry points lazily."""
    if name in _LAZY:
        return getattr(import_module(f"workloads.exchange.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'workloads.exchange' has no attribute {name!r}")
