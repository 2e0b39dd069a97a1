"""Protocol files: which routines to run, in which order, with which parameters.

A protocol names one routine, or a list of steps::

    name: program-checkerboard            # optional
    description: form, then program       # optional
    steps:
      - routine: forming
        params: {region: {tile: 0, rows: [0, 32], cols: [0, 32]}}
      - routine: verify_write
        params: {...}

or, for a single routine, ``routine:`` and ``params:`` at the top level. The whole file is
validated — top-level keys, step keys, every routine's parameters against its declared spec
— before a backend is even opened, every problem reported at once; a second pass
(:func:`check_against_chip`) checks what depends on the chip (regions inside the array,
voltages inside the safety envelope) after the backend is opened and before any operation.
Errors are ``ConfigErrors(file, [(dotted key, problem), ...])``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, TypeAdapter, create_model

from labctl.core import yamlio
from labctl.core.backend import ChipInfo
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import ConfigError, ConfigErrors
from labctl.core.routine import RoutineSpec
from labctl.core.routine_params import ParamError, model_for, validate
from labctl.core.validation import control_characters, did_you_mean, shown

TOP_KEYS = ("name", "description", "routine", "params", "steps")
STEP_KEYS = ("routine", "params", "name")
MAX_STEPS = 64


@dataclass(frozen=True)
class Step:
    index: int
    routine: str
    params: dict[str, Any]
    name: str
    key: str
    """Where this step's parameters live in the file, for error messages (e.g. ``steps[1]``)."""


@dataclass(frozen=True)
class Protocol:
    source: str
    text: str
    name: str
    description: str
    steps: tuple[Step, ...]
    base_dir: Path


def load_protocol(path: str | Path, registry: Mapping[str, RoutineSpec]) -> Protocol:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(str(p), "(file)", "is a directory; give a protocol file (e.g. "
                          "protocols/quickstart.yaml)")
    if not p.is_file():
        raise ConfigError(str(p), "(file)", "protocol file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(str(p), "(file)", f"cannot read as UTF-8 text: {e}") from None
    return parse_protocol_text(text, str(p), registry, p.resolve().parent)


def parse_protocol_text(text: str, source: str, registry: Mapping[str, RoutineSpec],
                        base_dir: Path) -> Protocol:
    """Validate a whole protocol text; every problem in it is reported at once
    (:class:`ConfigErrors`), before any backend is opened."""
    data = yamlio.load(text, source)
    if not isinstance(data, Mapping):
        raise ConfigError(source, "(top level)",
                          f"must be a mapping of keys, got {type(data).__name__}")
    problems: list[tuple[str, str]] = []
    for key in data:
        if key not in TOP_KEYS:
            problems.append((str(key), f"unknown top-level key{did_you_mean(str(key), TOP)}; "
                             f"allowed: {', '.join(TOP_KEYS)}"))
    name = _opt_str(data, "name", problems, default=Path(source).stem)
    if (problem := control_characters(name)) is not None:
        problems.append(("name", problem))
    description = _opt_str(data, "description", problems, default="")
    raw_steps: list[Any] = []
    keys: list[str] = []
    if ("steps" in data) == ("routine" in data):
        problems.append(("steps", "give either 'steps' (a list) or 'routine' and 'params' at "
                         "the top level, not both and not neither"))
    elif "routine" in data:
        raw_steps = [{"routine": data["routine"], "params": data.get("params")}]
        keys = ["(top level)"]
    else:
        if "params" in data:
            problems.append(("params", "top-level params go with a top-level routine; with "
                             "steps, give params inside each step"))
        if (not isinstance(data["steps"], list) or not data["steps"]
                or len(data["steps"]) > MAX_STEPS):
            problems.append(("steps", f"must be a list of 1 to {MAX_STEPS} steps"))
        else:
            raw_steps = data["steps"]
            keys = [f"steps[{i}]" for i in range(len(raw_steps))]
    steps = []
    for i, (raw, key) in enumerate(zip(raw_steps, keys)):
        step = _parse_step(i, raw, key, registry, base_dir, problems)
        if step is not None:
            steps.append(step)
    if problems:
        raise ConfigErrors(source, problems)
    return Protocol(source, text, name, description, tuple(steps), base_dir)


TOP = list(TOP_KEYS)


def _parse_step(i: int, raw: Any, key: str, registry: Mapping[str, RoutineSpec],
                base_dir: Path, problems: list[tuple[str, str]]) -> Step | None:
    prefix = "" if key == "(top level)" else f"{key}."
    if not isinstance(raw, Mapping):
        problems.append((key, f"a step must be a mapping with routine and params, got "
                         f"{type(raw).__name__}"))
        return None
    for k in raw:
        if k not in STEP_KEYS:
            problems.append((f"{prefix}{k}", f"unknown step key"
                             f"{did_you_mean(str(k), list(STEP_KEYS))}; allowed: "
                             f"{', '.join(STEP_KEYS)}"))
    routine = raw.get("routine")
    name = raw.get("name", routine)
    if not isinstance(name, str):
        problems.append((f"{prefix}name", "must be a string"))
    elif (problem := control_characters(name)) is not None:
        problems.append((f"{prefix}name", problem))
    if not isinstance(routine, str) or routine not in registry:
        hint = did_you_mean(routine, list(registry)) if isinstance(routine, str) else ""
        problems.append((f"{prefix}routine", f"must be one of {', '.join(sorted(registry))}"
                         f"{hint}; got {shown(routine)}"))
        return None
    try:
        params = validate(registry[routine].params, raw.get("params"), base_dir=base_dir,
                          prefix=f"{prefix}params.")
    except ParamError as e:
        problems.extend(e.problems)
        return None
    return Step(i, routine, params, name if isinstance(name, str) else routine, key)


def check_against_chip(protocol: Protocol, registry: Mapping[str, RoutineSpec], chip: ChipInfo,
                       envelope: SafetyEnvelope) -> None:
    """The chip-dependent half of validation; call after opening the backend, before any
    operation."""
    for step in protocol.steps:
        check = registry[step.routine].check
        if check is None:
            continue
        prefix = "" if step.key == "(top level)" else f"{step.key}."
        try:
            check(step.params, chip, envelope)
        except ParamError as e:
            raise ConfigErrors(protocol.source, [(f"{prefix}params.{k}", p)
                                                 for k, p in e.problems]) from None


def _opt_str(data: Mapping[str, Any], key: str, problems: list[tuple[str, str]],
             default: str) -> str:
    v = data.get(key, default)
    if not isinstance(v, str):
        problems.append((key, f"must be a string, got {type(v).__name__}"))
        return default
    return v


def protocol_json_schema(registry: Mapping[str, RoutineSpec]) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a protocol file, for editors: a top-level ``routine``
    with its ``params``, or ``steps``; each routine's ``params`` is the model its declared
    spec generates (:func:`labctl.core.routine_params.model_for`), the same one
    :func:`validate` checks with."""
    single: list[Any] = []
    steps: list[Any] = []
    for name in sorted(registry):
        params_model = model_for(registry[name].params, f"{name}_params")
        required = any(f.is_required() for f in params_model.model_fields.values())
        params_field: Any = (params_model, ...) if required else (params_model | None, None)
        doc = registry[name].doc.strip().splitlines()[0] if registry[name].doc else name
        tag: Any = Literal[name]
        common: dict[str, Any] = {"routine": (tag, Field(description=doc)),
                                  "params": params_field}
        steps.append(create_model(f"step_{name}", __config__=_SCHEMA_CONFIG,
                                  name=(str | None, None), **common))
        single.append(create_model(f"protocol_{name}", __config__=_SCHEMA_CONFIG,
                                   name=(str | None, None), description=(str | None, None),
                                   **common))
    step: Any = Annotated[Union[tuple(steps)], Field(discriminator="routine")]  # noqa: UP007
    step_list: Any = Annotated[list[step], Field(min_length=1, max_length=MAX_STEPS)]
    multi = create_model("protocol_steps", __config__=_SCHEMA_CONFIG,
                         name=(str | None, None), description=(str | None, None),
                         steps=(step_list, ...))
    either: Any = Union[(multi, *single)]
    schema = TypeAdapter(either).json_schema()
    schema["title"] = "labctl protocol file"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


_SCHEMA_CONFIG = ConfigDict(extra="forbid", strict=True)
