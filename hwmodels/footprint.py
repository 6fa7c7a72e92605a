"""Memory held by a simulation input kept in a SimCache: the bytes of the numpy arrays (and the Python objects) a
value reaches, without the graph, trace and chip it was made from (the caller holds those).
"""
from __future__ import annotations

import sys

import numpy as np
from pydantic import BaseModel

from hwmodels.trace import EventTrace, NetworkGraph

#: objects a cached value may reference but does not own: never counted
SHARED_TYPES = (NetworkGraph, EventTrace, BaseModel)
#: containers deeper than this are counted by their own size only (a cached value is a few levels deep)
MAX_DEPTH = 8
#: a dict, list, tuple or set of more items (keys and values) is counted from its first SAMPLE, scaled up
SAMPLE = 32


def footprint_bytes(value, skip: tuple = ()) -> int:
    """Bytes `value` holds: each numpy array's buffer once (a view counts its base), Python objects by
    sys.getsizeof, walking dicts, lists, tuples, sets, dataclass/`__dict__`/`__slots__` attributes and pandas
    objects (memory_usage); a container of more than SAMPLE items from its first SAMPLE (scaled to its length);
    objects in `skip` (by identity) and instances of SHARED_TYPES count 0. An estimate for bounding a cache, not
    an exact allocator figure (allocator overhead and interned objects are not counted)."""
    seen: set[int] = {id(obj) for obj in skip}
    return _walk(value, seen, 0)


def _walk(value, seen: set[int], depth: int) -> int:
    if id(value) in seen or isinstance(value, SHARED_TYPES):
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        base = value
        while isinstance(base.base, np.ndarray):
            base = base.base
        return int(value.nbytes) if base is value else _walk(base, seen, depth)
    if isinstance(value, (str, bytes, int, float, bool, complex, type(None))):
        return sys.getsizeof(value)
    if hasattr(value, "memory_usage") and hasattr(value, "index"):  # pandas DataFrame / Series
        usage = value.memory_usage(deep=False)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    size = sys.getsizeof(value)
    if depth >= MAX_DEPTH:
        return size
    children = _children(value)
    if len(children) > SAMPLE and isinstance(value, (dict, list, tuple, set, frozenset)):
        head = sum(_walk(child, seen, depth + 1) for child in children[:SAMPLE])
        return size + head * len(children) // SAMPLE
    return size + sum(_walk(child, seen, depth + 1) for child in children)


def _children(value) -> list:
    """The objects `value` refers to that a cache entry may own."""
    if isinstance(value, dict):
        return [obj for item in value.items() for obj in item]  # key, value, key, ...: a sample holds both
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    out = list(getattr(value, "__dict__", {}).values())
    for cls in type(value).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if isinstance(name, str) and hasattr(value, name):
                out.append(getattr(value, name))
    return out
