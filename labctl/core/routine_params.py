"""Declarative parameter specs: what a routine accepts, checked before anything runs.

A routine declares its parameters once as a mapping of name → :class:`Param` (type, unit,
range, default, doc). :func:`validate` then checks a protocol's parameter mapping
completely — unknown keys, missing keys, wrong types, out-of-range values — and fills in the
defaults. Errors are :class:`ParamError` naming the dotted key and the allowed range; the
protocol loader turns them into ``ConfigError(file, key, problem)``. The same specs print as
documentation (:func:`describe`), so the docs cannot drift from the checks.

Numbers: protocol files are read with YAML 1.2 floats (``labctl.core.yamlio``), so ``1e-6`` is a
number; float parameters also accept a string that parses as a finite number, so a mapping
loaded by plain PyYAML (YAML 1.1: ``1e-6`` is a string) validates the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.core.errors import LabctlError


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
KINDS = ("float", "int", "bool", "str", "choice", "int_pair", "path", "section", "tagged")


class ParamError(LabctlError):
    """A parameter failed its spec. ``key`` is dotted relative to the mapping checked."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


@dataclass(frozen=True)
class Param:
    """One parameter. ``min`` / ``max`` are inclusive; ``unit`` is an SI symbol."""

    kind: str
    doc: str
    default: Any = REQUIRED
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    fields: Mapping[str, Param] = field(default_factory=dict)
    """For ``section``: the nested parameters."""
    variants: Mapping[str, Mapping[str, Param]] = field(default_factory=dict)
    """For ``tagged``: value of the ``kind`` key → that variant's parameters."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown parameter kind {self.kind!r}")

    def allowed(self) -> str:
        """The allowed values, in words (used in error messages and docs)."""
        u = f" {self.unit}" if self.unit else ""
        if self.kind in ("float", "int", "int_pair"):
            what = {"float": "a number", "int": "an integer",
                    "int_pair": "a list [start, stop] of integers"}[self.kind]
            if self.min is not None and self.max is not None:
                return f"{what} with {self.min:g}{u} ≤ value ≤ {self.max:g}{u}"
            if self.min is not None:
                return f"{what} ≥ {self.min:g}{u}"
            if self.max is not None:
                return f"{what} ≤ {self.max:g}{u}"
            return what + (f" ({self.unit})" if self.unit else "")
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "tagged":
            return "a mapping with kind: " + " | ".join(self.variants)
        return {"bool": "true or false", "str": "a string", "path": "a path to an existing file",
                "section": "a mapping"}[self.kind]


# ---- constructors (read better in routine modules than Param(kind=...)) ----
def Float(doc: str, *, unit: str = "", min: float | None = None, max: float | None = None,
          default: Any = REQUIRED) -> Param:
    return Param("float", doc, default, unit, min, max)


def Int(doc: str, *, min: int | None = None, max: int | None = None,
        default: Any = REQUIRED) -> Param:
    return Param("int", doc, default, "", min, max)


def Bool(doc: str, *, default: Any = REQUIRED) -> Param:
    return Param("bool", doc, default)


def Choice(doc: str, choices: tuple[str, ...], *, default: Any = REQUIRED) -> Param:
    return Param("choice", doc, default, choices=choices)


def IntPair(doc: str, *, min: int = 0, max: int | None = None, default: Any = REQUIRED) -> Param:
    return Param("int_pair", doc, default, "", min, max)


def PathParam(doc: str, *, default: Any = REQUIRED) -> Param:
    return Param("path", doc, default)


def Section(doc: str, fields: Mapping[str, Param], *, default: Any = REQUIRED) -> Param:
    return Param("section", doc, default, fields=fields)


def Tagged(doc: str, variants: Mapping[str, Mapping[str, Param]], *,
           default: Any = REQUIRED) -> Param:
    return Param("tagged", doc, default, variants=variants)


# ---- validation ----
def validate(spec: Mapping[str, Param], data: Any, *, base_dir: Path | None = None,
             prefix: str = "") -> dict[str, Any]:
    """Check ``data`` against ``spec`` and return it with defaults filled in."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ParamError(prefix.rstrip(".") or "(params)",
                         f"must be a mapping of parameters, got {type(data).__name__}")
    for key in data:
        if key not in spec:
            allowed = ", ".join(spec) or "(none)"
            raise ParamError(f"{prefix}{key}", f"unknown key; allowed: {allowed}")
    out: dict[str, Any] = {}
    for name, p in spec.items():
        key = f"{prefix}{name}"
        if name in data:
            out[name] = _check(p, data[name], key, base_dir)
        elif p.default is REQUIRED:
            raise ParamError(key, f"missing; must be {p.allowed()} — {p.doc}")
        elif p.kind in ("section", "tagged") and isinstance(p.default, Mapping):
            out[name] = _check(p, p.default, key, base_dir)
        else:
            out[name] = p.default
    return out


def _check(p: Param, v: Any, key: str, base_dir: Path | None) -> Any:
    def bad(got: Any = v) -> ParamError:
        return ParamError(key, f"must be {p.allowed()}; got {got!r}")

    if p.kind == "float":
        if isinstance(v, bool):
            raise bad()
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                raise bad() from None
        if not isinstance(v, int | float) or not math.isfinite(v):
            raise bad()
        _range(p, float(v), bad)
        return float(v)
    if p.kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise bad()
        _range(p, v, bad)
        return int(v)
    if p.kind == "bool":
        if not isinstance(v, bool):
            raise bad()
        return v
    if p.kind == "str":
        if not isinstance(v, str):
            raise bad()
        return v
    if p.kind == "choice":
        if not isinstance(v, str) or v not in p.choices:
            raise bad()
        return v
    if p.kind == "int_pair":
        if (not isinstance(v, list | tuple) or len(v) != 2
                or any(isinstance(x, bool) or not isinstance(x, int) for x in v)):
            raise bad()
        lo, hi = int(v[0]), int(v[1])
        _range(p, lo, bad)
        _range(p, hi, bad)
        if hi <= lo:
            raise ParamError(key, f"stop must exceed start; got {[lo, hi]}")
        return [lo, hi]
    if p.kind == "path":
        if not isinstance(v, str) or not v:
            raise bad()
        path = Path(v)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise ParamError(key, f"file not found: {path}")
        return str(path)
    if p.kind == "section":
        return validate(p.fields, v, base_dir=base_dir, prefix=f"{key}.")
    # tagged
    if not isinstance(v, Mapping):
        raise bad(type(v).__name__)
    tag = v.get("kind")
    if not isinstance(tag, str) or tag not in p.variants:
        raise ParamError(f"{key}.kind", f"must be one of {', '.join(p.variants)}; got {tag!r}")
    rest = {k: x for k, x in v.items() if k != "kind"}
    return {"kind": tag, **validate(p.variants[tag], rest, base_dir=base_dir, prefix=f"{key}.")}


def _range(p: Param, x: float, bad: Any) -> None:
    if (p.min is not None and x < p.min) or (p.max is not None and x > p.max):
        raise bad()


def describe(spec: Mapping[str, Param], indent: str = "") -> list[str]:
    """Human-readable documentation of a spec, one line per parameter."""
    lines = []
    for name, p in spec.items():
        default = "" if p.default is REQUIRED else f" (default {p.default!r})"
        lines.append(f"{indent}{name}: {p.allowed()}{default} — {p.doc}")
        if p.kind == "section":
            lines += describe(p.fields, indent + "  ")
        for tag, fields in p.variants.items():
            lines.append(f"{indent}  kind: {tag}")
            lines += describe(fields, indent + "    ")
    return lines
