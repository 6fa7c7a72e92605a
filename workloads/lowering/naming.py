"""How the lowering names a module in metadata and in its error messages.

A module is named by its qualified name in the model ("4", "3.1", "stages.layer1.0.conv1"): `tag` gives the
metadata form "<name>:<type>" (graph.metadata["layers"]), `described` the message form "<name> (<type>)", and
`layer_error` the ValueError "layer <where>: <message>" with either form.
"""
from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize


def base_type(module: nn.Module) -> type:
    """type(module), seen through torch.nn.utils.parametrize (which swaps in a dynamic subclass)."""
    if parametrize.is_parametrized(module):
        return type(module).__bases__[0]
    return type(module)


def tag(name: str, module: nn.Module) -> str:
    """"<name>:<type>" of module `name` (its base type, see base_type)."""
    return f"{name}:{base_type(module).__name__}"


def described(name: str, module: nn.Module) -> str:
    """"<name> (<type>)" of module `name`, as error messages name a layer."""
    return f"{name} ({type(module).__name__})"


def layer_error(where: str, msg: str) -> ValueError:
    """ValueError "layer <where>: <msg>" (where: a tag or a described module)."""
    return ValueError(f"layer {where}: {msg}")


def fresh_name(name: str, taken: set[str]) -> str:
    """`name`, or "<name>_2", "_3", ... the first not in `taken` (a graph's projection names, a NIR graph's node
    names); the name returned joins `taken`."""
    k, out = 1, name
    while out in taken:
        k += 1
        out = f"{name}_{k}"
    taken.add(out)
    return out
