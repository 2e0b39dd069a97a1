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
— before a backend is even opened; a second pass (:func:`check_against_chip`) checks what
depends on the chip (regions inside the array, voltages inside the safety envelope) after the
backend is opened and before any operation. Errors are ``ConfigError(file, key, problem)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.core import yamlio
from labctl.core.backend import ChipInfo
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import ConfigError
from labctl.core.routine import RoutineSpec
from labctl.core.routine_params import ParamError, validate

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
    if not p.is_file():
        raise ConfigError(str(p), "(file)", "protocol file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise ConfigError(str(p), "(file)", f"cannot read as UTF-8 text: {e}") from None
    return parse_protocol_text(text, str(p), registry, p.resolve().parent)


def parse_protocol_text(text: str, source: str, registry: Mapping[str, RoutineSpec],
                        base_dir: Path) -> Protocol:
    try:
        data = yamlio.load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, "(syntax)",
                          f"not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    except (ValueError, TypeError, RecursionError) as e:  # e.g. unhashable keys
        raise ConfigError(source, "(syntax)", f"not valid YAML: {e}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(source, "(top level)",
                          f"must be a mapping of keys, got {type(data).__name__}")
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(source, str(key),
                              f"unknown top-level key; allowed: {', '.join(TOP_KEYS)}")
    name = _opt_str(data, "name", source, default=Path(source).stem)
    description = _opt_str(data, "description", source, default="")
    if ("steps" in data) == ("routine" in data):
        raise ConfigError(source, "steps", "give either 'steps' (a list) or 'routine' and "
                          "'params' at the top level, not both and not neither")
    if "routine" in data:
        raw_steps: list[Any] = [{"routine": data["routine"], "params": data.get("params")}]
        keys = ["(top level)"]
    else:
        if "params" in data:
            raise ConfigError(source, "params", "top-level params go with a top-level routine; "
                              "with steps, give params inside each step")
        raw_steps = data["steps"]
        if not isinstance(raw_steps, list) or not raw_steps or len(raw_steps) > MAX_STEPS:
            raise ConfigError(source, "steps", f"must be a list of 1 to {MAX_STEPS} steps")
        keys = [f"steps[{i}]" for i in range(len(raw_steps))]
    steps = []
    for i, (raw, key) in enumerate(zip(raw_steps, keys)):
        steps.append(_parse_step(i, raw, key, source, registry, base_dir))
    return Protocol(source, text, name, description, tuple(steps), base_dir)


def _parse_step(i: int, raw: Any, key: str, source: str,
                registry: Mapping[str, RoutineSpec], base_dir: Path) -> Step:
    prefix = "" if key == "(top level)" else f"{key}."
    if not isinstance(raw, Mapping):
        raise ConfigError(source, key, f"a step must be a mapping with routine and params, got "
                          f"{type(raw).__name__}")
    for k in raw:
        if k not in STEP_KEYS:
            raise ConfigError(source, f"{prefix}{k}",
                              f"unknown step key; allowed: {', '.join(STEP_KEYS)}")
    routine = raw.get("routine")
    if not isinstance(routine, str) or routine not in registry:
        raise ConfigError(source, f"{prefix}routine",
                          f"must be one of {', '.join(sorted(registry))}; got {routine!r}")
    name = raw.get("name", routine)
    if not isinstance(name, str):
        raise ConfigError(source, f"{prefix}name", "must be a string")
    try:
        params = validate(registry[routine].params, raw.get("params"), base_dir=base_dir,
                          prefix=f"{prefix}params.")
    except ParamError as e:
        raise ConfigError(source, e.key, e.problem) from None
    return Step(i, routine, params, name, key)


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
            raise ConfigError(protocol.source, f"{prefix}params.{e.key}", e.problem) from None


def _opt_str(data: Mapping[str, Any], key: str, source: str, default: str) -> str:
    v = data.get(key, default)
    if not isinstance(v, str):
        raise ConfigError(source, key, f"must be a string, got {type(v).__name__}")
    return v
