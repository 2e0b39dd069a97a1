"""YAML reading for protocol, station and preset files: YAML 1.2, data only, bounded.

Files are data, never code, and a file someone else wrote must not be able to hang or
exhaust the machine that reads it. So every YAML text labctl reads goes through
:func:`load`, which

- parses **YAML 1.2** with ruamel.yaml's safe, pure-Python loader (https://yaml.org/spec/
  1.2.2/): ``1e-4`` is a number, while the YAML 1.1 leftovers that PyYAML still resolves —
  ``1:40`` as the base-60 integer 100, ``yes``/``no``/``on``/``off`` as booleans — stay
  strings, which the schema then rejects with a message naming the key;
- builds plain Python data only (mappings, lists, str, int, float, bool, None, dates):
  no tags that construct objects;
- refuses a duplicate key (YAML would silently keep the last one);
- limits the text's size, its nesting depth, the number of aliases and the size of the
  document with every alias expanded (:data:`LIMITS`), *before* building anything, so an
  alias bomb ("billion laughs") is refused in milliseconds instead of being expanded by the
  validation that walks it.

Every problem is a :class:`~labctl.core.errors.ConfigError` naming the file, the line and what to
do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from labctl.core.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    """Bounds on one YAML document. A lab's protocol or station file is a few kB, a fitted
    preset a few tens of kB; these leave a wide margin and still keep a hostile file cheap."""

    max_bytes: int = 1 << 20
    """Size of the text (1 MiB)."""
    max_depth: int = 32
    """Nesting of mappings and lists."""
    max_aliases: int = 64
    """``*alias`` references in the document."""
    max_nodes: int = 200_000
    """Scalars, lists and mappings with every alias expanded."""


LIMITS = Limits()


def _yaml() -> YAML:
    y = YAML(typ="safe", pure=True)
    y.allow_duplicate_keys = False
    return y


def load(text: str, source: str = "(YAML text)", limits: Limits = LIMITS) -> Any:
    """Parse one YAML 1.2 document into plain data, or raise :class:`ConfigError`."""
    if len(text) > limits.max_bytes or len(text.encode("utf-8", "replace")) > limits.max_bytes:
        raise ConfigError(source, "(file)", f"larger than {limits.max_bytes} bytes; a protocol "
                          "or station file is a few kB (is this the right file?)")
    y = _yaml()
    try:
        node = y.compose(text)
        if node is None:
            return None
        _check_shape(node, source, limits)
        return y.constructor.construct_document(node)
    except ConfigError:
        raise
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = e.problem or e.context or str(e)
        if "duplicate key" in str(problem) or "duplicate key" in str(e.context):
            # ruamel prints a mapping or list value as {} or []: drop that clause, it shows nothing
            problem = re.sub(r' with value "(\{\}|\[\])" \(original value: "(\{\}|\[\])"\)',
                             "", str(problem).strip())
            problem = f"{problem} (a key appears twice; keep one)"
        raise ConfigError(source, "(syntax)", f"not valid YAML{where}: {problem}") from None
    except YAMLError as e:
        raise ConfigError(source, "(syntax)", f"not valid YAML: {e}") from None
    except RecursionError:
        raise ConfigError(source, "(syntax)", f"nested too deeply (more than "
                          f"{limits.max_depth} levels)") from None
    except (ValueError, TypeError, OverflowError) as e:
        if "digits" in str(e):
            raise ConfigError(source, "(syntax)", "a number has thousands of digits; no "
                              "setting needs that") from None
        raise ConfigError(source, "(syntax)", f"not valid YAML data: {e}") from None


def _check_shape(root: Node, source: str, limits: Limits) -> None:
    """Depth, alias count and expanded size of a composed document, without expanding it."""
    expanded: dict[int, int] = {}
    seen_anchor: set[int] = set()
    n_alias = 0
    # Iterative post-order walk (a hostile file must not exhaust the Python stack).
    stack: list[tuple[Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        if done:
            expanded[key] = 1 + sum(expanded[id(c)] for c in _children(node))
            if expanded[key] > limits.max_nodes:
                raise ConfigError(source, "(syntax)", f"the document expands to more than "
                                  f"{limits.max_nodes} values (anchors and aliases "
                                  f"multiplying each other?); refused")
            continue
        if depth > limits.max_depth:
            line = node.start_mark.line + 1 if node.start_mark else "?"
            raise ConfigError(source, "(syntax)", f"nested more than {limits.max_depth} levels "
                              f"deep (line {line}); refused")
        if key in expanded or key in seen_anchor:
            # A node reached a second time is an alias of an anchored node; one reached
            # again inside its own subtree is a recursive alias.
            if key not in expanded:
                raise ConfigError(source, "(syntax)", "an alias refers to a mapping or list "
                                  "that contains it (recursive); refused")
            n_alias += 1
            if n_alias > limits.max_aliases:
                raise ConfigError(source, "(syntax)", f"more than {limits.max_aliases} "
                                  "aliases (*name); refused")
            continue
        seen_anchor.add(key)
        stack.append((node, depth, True))
        for child in _children(node):
            stack.append((child, depth + 1, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []
