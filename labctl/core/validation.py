"""Reporting pydantic validation errors the way labctl reports a bad file.

A file's problems are all reported at once, each with its dotted key (``station.envelope.
max_bitline_V``, ``steps[1].params.region.rows``), what the key allows, what the file says
(bounded: a 400-digit number is named, not printed) and, for a misspelt key, the closest
allowed key (:func:`difflib.get_close_matches`, the same ratio ``difflib`` documents).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from labctl.core.errors import ConfigErrors

Problems = list[tuple[str, str]]


def did_you_mean(word: object, allowed: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest allowed key, or nothing."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, allowed, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def shown(value: Any) -> str:
    """``repr`` for an error message, bounded (a 400-digit number is named, not printed)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    try:
        text = repr(value)
    except ValueError:  # an object whose repr exceeds Python's digit limit
        return f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def control_characters(text: str) -> str | None:
    """The problem with a name holding control characters (NUL, newline, escape …), else
    ``None``. Names go into HDF5 string attributes, file names and one-line reports; NUL
    cannot be stored in the first at all."""
    bad = sorted({c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0})
    if not bad:
        return None
    codes = ", ".join(f"U+{ord(c):04X}" for c in bad[:4])
    return f"must not contain control characters (found {codes}); use printable text"


def no_control_characters(text: str) -> str:
    """A pydantic ``AfterValidator`` form of :func:`control_characters`."""
    problem = control_characters(text)
    if problem is not None:
        raise ValueError(problem)
    return text


def dotted(loc: tuple[Any, ...], prefix: str = "") -> str:
    """``('steps', 1, 'params')`` → ``steps[1].params`` (after ``prefix``)."""
    out = prefix.rstrip(".")
    for el in loc:
        out += f"[{el}]" if isinstance(el, int) else (f".{el}" if out else str(el))
    return out or "(top level)"


def key_error(key: str, problem: str) -> ValueError:
    """For a model validator: an error about ``key`` (dotted, relative to the model)."""
    return ValueError(f"@{key}: {problem}")


def validate_model(model: type[BaseModel], data: Any, source: str, prefix: str = "",
                   context: Mapping[str, Any] | None = None) -> BaseModel:
    """``model.model_validate(data)``, or :class:`ConfigErrors` listing every problem."""
    try:
        return model.model_validate(data, context=dict(context or {}))
    except ValidationError as e:
        raise ConfigErrors(source, problems(e, model, prefix)) from None


def problems(exc: ValidationError, model: type[BaseModel], prefix: str = "") -> Problems:
    """Every error of ``exc`` as (dotted key, problem)."""
    out: Problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = dotted(loc, prefix)
        kind = err["type"]
        parent = _model_at(model, loc[:-1])
        if kind == "extra_forbidden":
            keys = list(parent.model_fields) if parent is not None else []
            out.append((key, f"unknown key{did_you_mean(loc[-1] if loc else '', keys)}; "
                        f"allowed: {', '.join(keys)}"))
            continue
        field = parent.model_fields.get(str(loc[-1])) if parent is not None and loc else None
        what = f" ({field.description})" if field is not None and field.description else ""
        allowed = _allowed(field) if field is not None else None
        if field is not None and allowed is not None and kind in _VALUE_ERRORS:
            doc = f" — {field.description}" if field.description else ""
            out.append((key, f"must be {allowed}; got {shown(err['input'])}{doc}"))
        elif kind == "missing":
            out.append((key, f"missing{what}"))
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            out.append((key, f"must be a mapping of keys, got {type(err['input']).__name__}"))
        elif kind.startswith("value_error") or kind == "assertion_error":
            text = str(err.get("ctx", {}).get("error", err["msg"]))
            if text.startswith("@"):  # a model check naming the key it is about: "@key: ..."
                sub, _, text = text[1:].partition(": ")
                key = dotted(loc + tuple(sub.split(".")), prefix)
            out.append((key, text))
        else:
            out.append((key, f"{_lower(err['msg'])}{what}; got {shown(err['input'])}"))
    return out


_VALUE_ERRORS = {"int_type", "float_type", "int_from_float", "finite_number", "greater_than",
                 "greater_than_equal", "less_than", "less_than_equal", "bool_type",
                 "string_type", "int_parsing", "float_parsing"}


def _allowed(field: FieldInfo) -> str | None:
    """What a scalar field allows, in words: ``a number with 0 < value ≤ 10``."""
    metadata = list(field.metadata)
    t: Any = field.annotation
    while True:  # Optional[Annotated[X, ...]] keeps X's bounds inside the annotation
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            args = typing.get_args(t)
            t = args[0]
            for a in args[1:]:
                metadata += list(getattr(a, "metadata", [a]))
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(t) if a is not type(None)]
            if len(members) != 1:
                return None
            t = members[0]
        else:
            break
    what = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}.get(t)
    if what is None:
        return None
    lo = hi = ""
    for m in metadata:
        for attr, sign in (("gt", "<"), ("ge", "≤")):
            if getattr(m, attr, None) is not None:
                lo = f"{_num(getattr(m, attr))} {sign} "
        for attr, sign in (("lt", "<"), ("le", "≤")):
            if getattr(m, attr, None) is not None:
                hi = f" {sign} {_num(getattr(m, attr))}"
    return f"{what} with {lo}value{hi}" if lo or hi else what


def _num(x: Any) -> str:
    return "2**63 - 1" if x == 2**63 - 1 else f"{x:g}"


_WORDS = {"a valid integer": "an integer", "a valid number": "a number",
          "a valid string": "a string", "a valid boolean": "true or false",
          "a valid dictionary": "a mapping", "a valid list": "a list"}


def _lower(msg: str) -> str:
    msg = msg.replace("Input should be", "must be")
    for pyd, ours in _WORDS.items():
        msg = msg.replace(pyd, ours)
    return msg[:1].lower() + msg[1:]


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at ``loc`` (``None`` if not a model)."""
    t: Any = model
    for el in loc:
        t = _inner(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            f = t.model_fields.get(str(el))
            if f is None:
                return None
            t = f.annotation
        elif typing.get_origin(t) in (dict, Mapping):
            t = typing.get_args(t)[1]
        elif typing.get_origin(t) in (list, tuple):
            t = typing.get_args(t)[0]
        else:
            return None
    t = _inner(t)
    return t if isinstance(t, type) and issubclass(t, BaseModel) else None


def _inner(t: Any) -> Any:
    """Strip ``Annotated`` and ``X | None``."""
    while True:
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            t = typing.get_args(t)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(t) if a is not type(None)]
            if len(args) != 1:
                return t
            t = args[0]
        else:
            return t
