"""A YAML loader that runs no code (yaml.SafeLoader) and refuses a mapping that holds one key twice, where
PyYAML keeps the last value without a word (YAML 1.2 requires keys to be unique, spec section 3.2.1.1): a
config, sweep spec, claims file or chip file with `seed: 1` ... `seed: 2` then fails in one line instead of
silently running with seed 2."""
from __future__ import annotations

from typing import Any

import yaml

_MERGE = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader whose mappings refuse a key given twice (merge keys `<<` aside: explicit keys may override
    merged ones, as YAML's merge type defines)."""


def _unique_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    """SafeLoader's mapping, after checking that no explicit key repeats; raises yaml.constructor.ConstructorError
    naming the key and its line."""
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            again = key in seen
        except TypeError:  # an unhashable key: SafeLoader refuses it itself
            continue
        if again:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping (line {key_node.start_mark.line + 1}); "
                            "keep one", None)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def strict_load(stream) -> Any:
    """yaml.load of a str, bytes or open file with StrictLoader. Raises yaml.YAMLError (a repeated key included)."""
    return yaml.load(stream, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
