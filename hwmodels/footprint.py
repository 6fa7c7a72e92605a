"""Memory held by a simulation input kept in a SimCache: the bytes of the numpy arrays (and the Python objects) a
value reaches, without the graph, trace and chip it was made from (the caller holds those).
"""
from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np
from pydantic import BaseModel

from hwmodels.trace import EventTrace, NetworkGraph

#: objects a cached value may reference but does not own: never counted
SHARED_TYPES = (NetworkGraph, EventTrace, BaseModel)
#: containers deeper than this are counted by their own size only (a cached value is a few levels deep)
MAX_DEPTH = 8
#: a dict, list, tuple or set of more items (keys and values) is counted from its first SAMPLE, scaled up
SAMPLE = 32
#: how _walk reads an object of a type (_kind_of)
ARRAY, ATOM, SHARED, FRAME, MAPPING, SEQUENCE, OBJECT = range(7)


def footprint_bytes(value, skip: tuple = ()) -> int:
    """Bytes `value` holds: each numpy array's buffer once (a view counts its base), Python objects by
    sys.getsizeof, walking dicts, lists, tuples, sets, dataclass/`__dict__`/`__slots__` attributes and pandas
    objects (memory_usage); a container of more than SAMPLE items from its first SAMPLE (scaled to its length);
    objects in `skip` (by identity) and instances of SHARED_TYPES count 0. An estimate for bounding a cache, not
    an exact allocator figure (allocator overhead and interned objects are not counted)."""
    seen: set[int] = {id(obj) for obj in skip}
    return _walk(value, seen, 0)


@lru_cache(maxsize=256)
def _kind_of(cls: type) -> tuple[int, tuple[str, ...]]:
    """(how _walk reads an instance of `cls`, the names of its __slots__ along the MRO): memoised per type, so a
    walk pays one dictionary lookup per object instead of a chain of isinstance and hasattr tests."""
    if issubclass(cls, np.ndarray):
        return ARRAY, ()
    if issubclass(cls, (str, bytes, int, float, bool, complex, type(None))):
        return ATOM, ()
    if issubclass(cls, SHARED_TYPES):
        return SHARED, ()
    if hasattr(cls, "memory_usage") and hasattr(cls, "index"):  # pandas DataFrame / Series
        return FRAME, ()
    if issubclass(cls, dict):
        return MAPPING, ()
    if issubclass(cls, (list, tuple, set, frozenset)):
        return SEQUENCE, ()
    slots = tuple(name for c in cls.__mro__ for name in getattr(c, "__slots__", ()) if isinstance(name, str))
    return OBJECT, slots


def _walk(value, seen: set[int], depth: int) -> int:
    if id(value) in seen:
        return 0
    kind, slots = _kind_of(type(value))
    if kind == SHARED:
        return 0
    seen.add(id(value))
    if kind == ARRAY:
        base = value
        while isinstance(base.base, np.ndarray):
            base = base.base
        return int(value.nbytes) if base is value else _walk(base, seen, depth)
    if kind == ATOM:
        return sys.getsizeof(value)
    if kind == FRAME:
        usage = value.memory_usage(deep=False)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    size = sys.getsizeof(value)
    if depth >= MAX_DEPTH:
        return size
    if kind == MAPPING:
        children = [obj for item in value.items() for obj in item]  # key, value, key, ...: a sample holds both
    elif kind == SEQUENCE:
        children = list(value)
    else:
        children = list(getattr(value, "__dict__", {}).values())
        children += [getattr(value, name) for name in slots if hasattr(value, name)]
        return size + sum(_walk(child, seen, depth + 1) for child in children)
    if len(children) > SAMPLE:
        head = sum(_walk(child, seen, depth + 1) for child in children[:SAMPLE])
        return size + head * len(children) // SAMPLE
    return size + sum(_walk(child, seen, depth + 1) for child in children)
