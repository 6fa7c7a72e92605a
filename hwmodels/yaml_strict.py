"""YAML read with yaml.safe_load (no code runs), after refusing a mapping that holds one key twice, where
PyYAML keeps the last value without a word (YAML 1.2 requires keys to be unique, spec section 3.2.1.1): a
config, sweep spec, claims file or chip file with `seed: 1` ... `seed: 2` then fails in one line instead of
silently running with seed 2."""
from __future__ import annotations

from typing import Any

import yaml

_MERGE = "tag:yaml.org,2002:merge"


def strict_load(stream) -> Any:
    """yaml.safe_load of a str, bytes or open file, after check_unique_keys on its node tree (yaml.compose with
    the SafeLoader: nodes only, nothing constructed). Raises yaml.YAMLError (a repeated key included)."""
    text = stream.read() if hasattr(stream, "read") else stream
    check_unique_keys(yaml.compose(text, Loader=yaml.SafeLoader))
    return yaml.safe_load(text)


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
