"""A module tree as plain data: `describe` turns an nn.Module into a JSON-safe description plus a flat dict of
tensors, and `rebuild` makes the module again from that data without pickle, so a checkpoint never runs code.

Only classes on the allow-list are rebuilt (`resolve_class`: nn.Module subclasses of torch.nn.modules, SpikingJelly's
layer, neuron, surrogate and base modules, and this project, already imported, found by their exact name). A
class is rebuilt as pickle rebuilds a module, `cls.__new__(cls)` then `__setstate__(attributes)`, but every
attribute is data: None, bool, int, float, str, tuples, lists, sets and dicts of them, tensors and torch dtypes.
The only callables restored are the state-dict load hooks of STATE_HOOKS.
"""
from __future__ import annotations

import functools
import sys
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.modules.module import _WrappedHook
from torch.utils.hooks import RemovableHandle

from workloads import neurons

#: packages whose (already imported) nn.Module subclasses `rebuild` may construct
ALLOWED_PACKAGES = ("torch.nn.modules", "spikingjelly.activation_based.layer", "spikingjelly.activation_based.neuron",
                    "spikingjelly.activation_based.surrogate", "spikingjelly.activation_based.base", "workloads")
#: name -> function registered with `register_load_state_dict_pre_hook` that a saved module may carry
STATE_HOOKS: dict[str, Callable] = {
    "workloads.neurons:_materialize_from_state": neurons._materialize_from_state,
}
_CONTAINERS = ("_parameters", "_buffers", "_modules")
_LOAD_HOOKS = "_load_state_dict_pre_hooks"


@functools.cache
def _hook_fields() -> tuple[str, ...]:
    """Names of the hook dicts every nn.Module carries (taken from a fresh Module, so new torch fields count)."""
    return tuple(k for k, v in vars(nn.Module()).items() if isinstance(v, OrderedDict) and k not in _CONTAINERS)


def _join(where: str, key: str) -> str:
    """Dotted path of attribute or child `key` of the module at `where` ('' = the root)."""
    return f"{where}.{key}" if where else str(key)


def qualified_name(obj) -> str:
    """'module:qualname' of a class or function (the name `resolve_class` and STATE_HOOKS use)."""
    return f"{obj.__module__}:{obj.__qualname__}"


def resolve_class(name: str) -> type[nn.Module]:
    """The class named 'module:qualname' if it is on the allow-list: an nn.Module subclass defined in an already
    imported module of ALLOWED_PACKAGES and reachable there under exactly that name. Nothing is imported.
    Raises ValueError naming the class otherwise."""
    module_name, _, qual = str(name).partition(":")
    allowed = any(module_name == p or module_name.startswith(p + ".") for p in ALLOWED_PACKAGES)
    obj = sys.modules.get(module_name) if allowed and qual else None
    for part in qual.split(".") if obj is not None else ():
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, nn.Module) and qualified_name(obj) == name):
        raise ValueError(f"class {name!r} is not an allowed module class (nn.Module subclasses of "
                         f"{', '.join(ALLOWED_PACKAGES)})")
    return obj


class _Writer:
    """Collects tensors under short keys while a tree is described (a tensor seen twice is stored once)."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}
        self._keys: dict[int, str] = {}
        self._modules: dict[int, str] = {}

    def tensor(self, t: torch.Tensor) -> str:
        key = self._keys.get(id(t))
        if key is None:
            key = self._keys[id(t)] = str(len(self.tensors))
            self.tensors[key] = t.detach().to("cpu", copy=True)
        return key

    def value(self, v: Any, where: str) -> Any:
        """JSON-safe form of an attribute value; ValueError naming `where` for anything that is not data."""
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, np.generic) and isinstance(v.item(), (bool, int, float)):
            return v.item()
        if isinstance(v, torch.Tensor) and type(v) in (torch.Tensor, nn.Parameter):
            return {"tensor": self.tensor(v)}
        if isinstance(v, torch.dtype):
            return {"dtype": str(v).removeprefix("torch.")}
        if isinstance(v, (tuple, list, set, frozenset)) and type(v) in (tuple, list, set, frozenset, torch.Size):
            kind = "tuple" if isinstance(v, tuple) else "list" if isinstance(v, list) else "set"
            items = sorted(v, key=repr) if kind == "set" else v
            return {kind: [self.value(x, f"{where}[{i}]") for i, x in enumerate(items)]}
        if type(v) is dict:
            return {"dict": [[self.value(k, where), self.value(x, f"{where}[{k!r}]")] for k, x in v.items()]}
        raise ValueError(f"{where}: a {type(v).__name__} cannot be saved (only data: numbers, strings, tensors, "
                         "tuples, lists, sets, dicts)")

    def hooks(self, mod: nn.Module, where: str) -> list[str]:
        """Names of the STATE_HOOKS functions on `mod`; ValueError for any other hook."""
        names = []
        for field in _hook_fields():
            for hook in getattr(mod, field, {}).values():
                fn = hook.hook if isinstance(hook, _WrappedHook) and hook.with_module else None
                name = qualified_name(fn) if fn is not None else None
                if field != _LOAD_HOOKS or STATE_HOOKS.get(name) is not fn:
                    raise ValueError(f"module {where or '<root>'}: its {field} hook {hook!r} cannot be saved; remove "
                                     f"it (saved hooks: load_state_dict pre-hooks of {sorted(STATE_HOOKS)})")
                names.append(name)
        return names

    def module(self, mod: nn.Module, where: str) -> dict:
        if id(mod) in self._modules:
            return {"same_as": self._modules[id(mod)]}
        self._modules[id(mod)] = where
        name = qualified_name(type(mod))
        try:
            resolve_class(name)
        except ValueError as exc:
            raise ValueError(f"module {where or '<root>'}: {exc}") from None
        fields = set(_hook_fields()) | set(_CONTAINERS)
        params = {}
        for key, p in mod._parameters.items():
            if isinstance(p, nn.parameter.UninitializedParameter):
                raise ValueError(f"module {where or '<root>'}: parameter {key!r} is uninitialised; run one "
                                 "forward first")
            params[key] = None if p is None else {"tensor": self.tensor(p), "requires_grad": p.requires_grad}
        return {"class": name,
                "attrs": {k: self.value(v, _join(where, k)) for k, v in vars(mod).items() if k not in fields},
                "parameters": params,
                "buffers": {k: None if b is None else self.tensor(b) for k, b in mod._buffers.items()},
                "modules": [[k, None if m is None else self.module(m, _join(where, k))]
                            for k, m in mod._modules.items()],
                "hooks": self.hooks(mod, where)}


def describe(model: nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
    """(tree, tensors): a JSON-safe description of `model` and its tensors (CPU copies, keyed by short strings the
    tree refers to). `model` is left unchanged. Raises ValueError naming the module or attribute that cannot be
    described: a class outside the allow-list (e.g. a module with torch parametrizations: bake them first), an
    attribute that is not data, a hook outside STATE_HOOKS or an uninitialised (lazy) parameter."""
    writer = _Writer()
    tree = writer.module(model, "")
    return tree, writer.tensors


class _Reader:
    """Rebuilds modules from a tree and its tensors (shared tensors and modules stay shared)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self._params: dict[str, nn.Parameter] = {}
        self._modules: dict[str, nn.Module] = {}

    def tensor(self, key: str) -> torch.Tensor:
        if not isinstance(key, str) or key not in self.tensors:
            raise ValueError(f"tensor {key!r} is missing")
        return self.tensors[key]

    def value(self, v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if not (isinstance(v, dict) and len(v) == 1):
            raise ValueError(f"malformed value {v!r}")
        (kind, x), = v.items()
        if kind == "tensor":
            return self.tensor(x)
        if kind == "dtype":
            dtype = getattr(torch, str(x), None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown dtype {x!r}")
            return dtype
        if kind in ("tuple", "list", "set") and isinstance(x, list):
            return {"tuple": tuple, "list": list, "set": set}[kind](self.value(i) for i in x)
        if kind == "dict" and isinstance(x, list):
            return {self.value(k): self.value(i) for k, i in x}
        raise ValueError(f"malformed value {v!r}")

    def parameter(self, spec: dict) -> nn.Parameter:
        key = spec["tensor"]
        if key not in self._params:
            self._params[key] = nn.Parameter(self.tensor(key), requires_grad=bool(spec["requires_grad"]))
        return self._params[key]

    def module(self, node: dict, where: str) -> nn.Module:
        if "same_as" in node:
            if node["same_as"] not in self._modules:
                raise ValueError(f"module {where!r} refers to {node['same_as']!r}, which comes later or is absent")
            return self._modules[node["same_as"]]
        cls = resolve_class(node["class"])
        attrs = {k: self.value(v) for k, v in node["attrs"].items()}
        reserved = (set(_hook_fields()) | set(_CONTAINERS)) & set(attrs)
        if reserved:
            raise ValueError(f"module {where!r}: attributes {sorted(reserved)} are reserved")
        state = {**{k: OrderedDict() for k in _hook_fields()}, **attrs,
                 "_parameters": {k: None if s is None else self.parameter(s) for k, s in node["parameters"].items()},
                 "_buffers": {k: None if b is None else self.tensor(b) for k, b in node["buffers"].items()},
                 "_modules": {}}
        mod = cls.__new__(cls)
        mod.__setstate__(state)
        self._modules[where] = mod
        for key, child in node["modules"]:
            mod._modules[str(key)] = None if child is None else self.module(child, _join(where, key))
        for name in node["hooks"]:
            if name not in STATE_HOOKS:
                raise ValueError(f"module {where!r}: hook {name!r} is not one of {sorted(STATE_HOOKS)}")
            hooks = getattr(mod, _LOAD_HOOKS)
            hooks[RemovableHandle(hooks).id] = _WrappedHook(STATE_HOOKS[name], mod)
        return mod


def rebuild(tree: dict, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The module `describe` described, from its tree and tensors; no code from the data is run (classes from
    the allow-list only, attributes as data). Raises ValueError (one line) for a class outside the allow-list, a
    missing tensor or a malformed tree."""
    try:
        return _Reader(tensors).module(tree, "")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed module tree ({type(exc).__name__}: {exc})") from None
