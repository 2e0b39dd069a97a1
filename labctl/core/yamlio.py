"""YAML reading for protocol, station and preset files.

PyYAML follows YAML 1.1, where ``1e-4`` (no dot) is a *string*; lab users write SI values
exactly that way. This loader is ``yaml.SafeLoader`` with the YAML 1.2 float rule, so
``1e-4``, ``2.5E3`` and ``.5`` are numbers. Nothing else changes (still safe: no objects).
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice (YAML would silently keep the last)."""


class SafeLoader(yaml.SafeLoader):
    """SafeLoader that reads 1e-4 as a float and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                break  # the base class reports unhashable keys
            if key in seen:
                raise DuplicateKeyError(
                    None, None,
                    f"key {key!r} appears twice (first at line {seen[key].line + 1}); "
                    "keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load(text: str) -> Any:
    """Parse YAML text safely, with YAML 1.2 floats."""
    return yaml.load(text, Loader=SafeLoader)
