"""Declarative parameter specs: what a routine accepts, checked before anything runs.

A routine declares its parameters once as a mapping of name → :class:`Param` (type, unit,
range, default, doc). From that declaration :func:`model_for` builds a pydantic v2 model
(https://docs.pydantic.dev/latest/concepts/strict_mode/), and :func:`validate` checks a
protocol's parameter mapping with it completely — unknown keys (with the closest allowed
key suggested), missing keys, wrong types, out-of-range values — reporting every problem at
once, and fills in the defaults. Errors are :class:`ParamErrors` naming each dotted key and
its allowed range in the words of the declaration; the protocol loader turns them into one
``ConfigErrors(file, problems)``. The same specs print as documentation (:func:`describe`)
and as the JSON Schema editors use (``labctl schema``), so neither can drift from the checks.

Types are strict: protocol files are read as YAML 1.2 (``labctl.core.yamlio``), so ``1e-6`` is a
number and ``"1e-6"`` (quoted), ``true`` or ``12.5`` where an integer belongs are errors,
never converted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
)
from pydantic_core import PydanticCustomError

from labctl.core.errors import LabctlError
from labctl.core.validation import did_you_mean, shown


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
        self.problems = [(key, problem)]
        super().__init__(f"{key}: {problem}")


class ParamErrors(ParamError):
    """Several parameters failed their specs, all found in one pass; ``problems`` holds
    every (dotted key, problem), ``key`` / ``problem`` the first."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(*problems[0])
        self.problems = list(problems)
        self.args = ("; ".join(f"{k}: {p}" for k, p in self.problems),)


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


# ---- validation: pydantic models generated from the declarations ----
def validate(spec: Mapping[str, Param], data: Any, *, base_dir: Path | None = None,
             prefix: str = "") -> dict[str, Any]:
    """Check ``data`` against ``spec`` and return it with defaults filled in.

    Every problem is found in one pass (pydantic) and raised together as
    :class:`ParamErrors`, each with its dotted key (``prefix`` + the path inside ``data``),
    the allowed values and, for a misspelt key, the closest allowed one."""
    if data is None:
        data = {}
    model = model_for(spec)
    try:
        out = model.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as e:
        raise ParamErrors([_problem(spec, err, prefix) for err in e.errors()]) from None
    return _plain(out)


def _plain(model: BaseModel) -> dict[str, Any]:
    # Tagged variants carry their ``kind`` as a field; model_dump keeps declaration order.
    return model.model_dump()


_MODELS: dict[int, tuple[Mapping[str, Param], type[BaseModel]]] = {}


def model_for(spec: Mapping[str, Param], name: str = "Params") -> type[BaseModel]:
    """The pydantic model of a parameter spec (built once per spec object): strict types
    (a seed is an integer; ``"1e-4"`` or ``true`` is not a number), inclusive ranges, finite
    numbers, no unknown keys. Also the source of the JSON Schema (``labctl schema``)."""
    hit = _MODELS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    fields_: dict[str, Any] = {}
    for key, p in spec.items():
        default: Any = ... if p.default is REQUIRED else p.default
        fields_[key] = (_annotation(p, f"{name}_{key}"),
                        Field(default=default, description=_describe_one(p),
                              validate_default=p.kind in ("section", "tagged")
                              and default is not ...))
    model: type[BaseModel] = create_model(name, __config__=_CONFIG, **fields_)
    _MODELS[id(spec)] = (spec, model)
    return model


_CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
_INT64 = 2**63 - 1


def _annotation(p: Param, name: str) -> Any:
    if p.kind == "float":
        return Annotated[float, Field(strict=True, allow_inf_nan=False, ge=p.min, le=p.max)]
    if p.kind == "int":
        return Annotated[int, Field(strict=True, ge=-_INT64 if p.min is None else p.min,
                                    le=_INT64 if p.max is None else p.max)]
    if p.kind == "bool":
        return Annotated[bool, Field(strict=True)]
    if p.kind == "str":
        return Annotated[str, Field(strict=True)]
    if p.kind == "choice":
        return Literal[p.choices]
    if p.kind == "int_pair":
        item = Annotated[int, Field(strict=True, ge=p.min, le=_INT64 if p.max is None
                                    else p.max)]
        return Annotated[list[item], Field(min_length=2, max_length=2),
                         AfterValidator(_ordered_pair)]
    if p.kind == "path":
        return Annotated[str, Field(strict=True, min_length=1), AfterValidator(_existing_file)]
    if p.kind == "section":
        return model_for(p.fields, name)
    variants = []
    for tag, fields_ in p.variants.items():
        with_kind = {"kind": Param("choice", "variant", choices=(tag,)), **fields_}
        variants.append(model_for(_frozen_variant(p, tag, with_kind), f"{name}_{tag}"))
    return Annotated[Union[tuple(variants)], Field(discriminator="kind")]  # noqa: UP007


_VARIANTS: dict[tuple[int, str], Mapping[str, Param]] = {}


def _frozen_variant(p: Param, tag: str, spec: Mapping[str, Param]) -> Mapping[str, Param]:
    """One spec object per (tagged param, tag), so its model is built once."""
    return _VARIANTS.setdefault((id(p.variants), tag), spec)


def _ordered_pair(v: list[int]) -> list[int]:
    if v[1] <= v[0]:
        raise PydanticCustomError("pair_order", "stop must exceed start; got {pair}",
                                  {"pair": str(v)})
    return v


def _existing_file(v: str, info: ValidationInfo) -> str:
    base = (info.context or {}).get("base_dir")
    path = Path(v)
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    if not path.is_file():
        raise PydanticCustomError("file_not_found", "file not found: {path}",
                                  {"path": str(path)})
    return str(path)


def _describe_one(p: Param) -> str:
    return f"{p.doc} — {p.allowed()}"


def _problem(spec: Mapping[str, Param], err: Any, prefix: str) -> tuple[str, str]:
    """A pydantic error as (dotted key, message in the words of the spec)."""
    loc: tuple[Any, ...] = tuple(err["loc"])
    cur: Mapping[str, Param] | None = spec
    param: Param | None = None
    parts: list[str] = []
    i = 0
    while i < len(loc):
        el = loc[i]
        if param is not None and param.kind == "tagged" and el in param.variants:
            cur, param = {"kind": Param("choice", "variant", choices=(el,)),
                          **param.variants[el]}, None
        elif param is not None and param.kind == "section":
            cur, param = param.fields, None
            continue
        elif param is not None and param.kind == "int_pair":
            break
        else:
            parts.append(str(el))
            param = cur.get(el) if cur is not None and isinstance(el, str) else None
            if param is None:
                cur = cur if i == len(loc) - 1 else None
        i += 1
    key = prefix + ".".join(parts) if parts else (prefix.rstrip(".") or "(params)")
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = list(cur or {})
        return key, f"unknown key{did_you_mean(parts[-1], allowed)}; allowed: " \
                    f"{', '.join(allowed) or '(none)'}"
    if kind in ("union_tag_invalid", "union_tag_not_found") and param is not None:
        tag = err.get("ctx", {}).get("tag")
        hint = did_you_mean(str(tag), list(param.variants)) if tag is not None else ""
        return f"{key}.kind", f"must be one of {', '.join(param.variants)}{hint}; got {tag!r}"
    if kind in ("pair_order", "file_not_found"):
        return key, str(err["msg"])
    if param is None:
        if kind in ("model_type", "dict_type", "model_attributes_type"):
            return key, f"must be a mapping of parameters, got {type(err['input']).__name__}"
        return key, str(err["msg"])
    if kind == "missing":
        return key, f"missing; must be {param.allowed()} — {param.doc}"
    if param.kind in ("section", "tagged"):
        return key, f"must be {param.allowed()}; got {type(err['input']).__name__}"
    return key, f"must be {param.allowed()}; got {shown(err['input'])}"


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
