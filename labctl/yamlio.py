"""YAML reading for protocol, station and preset files.

PyYAML follows YAML 1.1, where ``1e-4`` (no dot) is a *string*; lab users write SI values
exactly that way. This loader is ``yaml.SafeLoader`` with the YAML 1.2 float rule, so
``1e-4``, ``2.5E3`` and ``.5`` are numbers. Nothing else changes (still safe: no objects).
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class SafeLoader(yaml.SafeLoader):
    """SafeLoader that reads 1e-4 as a float."""


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
