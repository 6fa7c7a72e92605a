"""YAML read with yaml.safe_load (no code runs), after refusing a mapping that holds one key twice, where
PyYAML keeps the last value without a word (YAML 1.2 requires keys to be unique, spec section 3.2.1.1): a
config, sweep spec, claims file or chip file with `seed: 1` ... `seed: 2` then fails in one line instead of
silently running with seed 2."""
from __future__ import annotations

import re
from typing import Any

import yaml

_MERGE = "tag:yaml.org,2002:merge"
#: YAML 1.2's float (core schema, spec section 10.3.2): PyYAML's YAML 1.1 resolver needs a '.', so it reads 5e-11
#: or 1E9 as strings, which a chip file or config then refuses as "not a number"
FLOAT_12 = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader (its SafeConstructor: no code runs) that also reads YAML 1.2 exponent floats without a '.'
    (FLOAT_12)."""


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT_12, list("-+0123456789."))


def strict_load(stream) -> Any:
    """What yaml.safe_load gives for a str, bytes or open file, with YAML 1.2's exponent floats (StrictLoader:
    5e-11 is a number, as YAML 1.2 and JSON read it), parsed once: the node tree is composed (nodes only, nothing
    constructed), checked by check_unique_keys, then built by the SafeLoader's constructor (plain types only, no
    code runs). Raises yaml.YAMLError (a repeated key included)."""
    text = stream.read() if hasattr(stream, "read") else stream
    loader = StrictLoader(text)
    try:
        tree = loader.get_single_node()
        check_unique_keys(tree)
        return None if tree is None else loader.construct_document(tree)
    finally:
        loader.dispose()


def error_line(exc: yaml.YAMLError) -> str:
    """One line of a PyYAML error: what is wrong and where (line, column), with its context, without the quoted
    source lines and carets PyYAML adds."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(str(exc).split())
    parts = []
    for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark)):
        if text:
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            parts.append(f"{text}{at}")
    return "; ".join(parts) or " ".join(str(exc).split())


def check_unique_keys(root: yaml.Node | None) -> None:
    """Raise yaml.YAMLError naming the key and its line when a mapping of the node tree `root` holds one scalar
    key twice (same resolved tag and text). Merge keys `<<` are skipped: explicit keys may override merged ones,
    as YAML's merge type defines. Each node is visited once (aliases share nodes), without recursion."""
    seen_nodes, todo = set(), [root] if root is not None else []
    while todo:
        node = todo.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            _check_mapping(node)
            todo += [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value


def _check_mapping(node: yaml.MappingNode) -> None:
    """Raise yaml.YAMLError when two explicit scalar keys of `node` are equal."""
    keys = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = (key_node.tag, key_node.value)
        if key in keys:
            raise yaml.YAMLError(f"key {key_node.value!r} appears twice in one mapping (line "
                                 f"{key_node.start_mark.line + 1}); keep one")
        keys.add(key)
