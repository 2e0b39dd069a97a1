"""Figures as a person reads them: one display unit per quantity, and "not measured" for NaN.

Names carry their SI unit (``rms_error_usable_S``, ``levels_uS``, ``energy_J_per_sample``);
reports, ``labctl show`` and ``labctl demo`` print them through :func:`display`, so the
same quantity is never shown in two units side by side (µS beside S):

- conductance in µS and current in µA, whatever the size (the unit the field uses, e.g.
  NeuRRAM's ±1 µS bands);
- energy, time and frequency with an SI prefix of their unit (``330 nJ``, ``40 µs``); a
  minute or more of time in whole seconds and in words (``86,400 s (1 day)``);
- voltage in V, decibels in dB;
- NaN — a figure the backend cannot measure, such as energy on real instruments, which keep
  no energy ledger — as ``not measured``, never ``nan µJ``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["NOT_MEASURED", "display", "quantity", "split_unit"]

NOT_MEASURED = "not measured"
_FIXED: dict[str, tuple[float, str]] = {"S": (1e6, "µS"), "uS": (1.0, "µS"),
                                        "A": (1e6, "µA"), "uA": (1.0, "µA"),
                                        "V": (1.0, "V"), "db": (1.0, "dB"), "dB": (1.0, "dB")}
_PREFIXED = ("J", "s", "Hz", "W")
_PREFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"),
             (1e-9, "n"), (1e-12, "p"), (1e-15, "f"))


def split_unit(key: str) -> tuple[str, str]:
    """``("rms_error_usable", "S")`` from ``rms_error_usable_S``; ``(key, "")`` when the
    name carries no unit. The unit is the first ``_``-separated part that is a unit symbol."""
    parts = key.split("_")
    for i, p in enumerate(parts[1:], start=1):
        if p in _FIXED or p in _PREFIXED:
            return "_".join(parts[:i] + parts[i + 1:]), p
    return key, ""


def _duration(s: float) -> str:
    for unit_s, name in ((86400.0, "days"), (3600.0, "h"), (60.0, "min")):
        if s >= unit_s:
            n = s / unit_s
            return f"{n:.3g} {'day' if name == 'days' and round(n, 2) == 1 else name}"
    return f"{s:.3g} s"


def _number(v: float, digits: int) -> str:
    return f"{v:.{digits}g}"


def quantity(value: Any, unit: str = "", digits: int = 4) -> str:
    """``value`` (SI) in its display unit: ``quantity(3.9e-7, "S")`` → ``0.39 µS``;
    ``quantity(3.3e-7, "J")`` → ``330 nJ``; NaN → ``not measured``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    v = float(value)
    if math.isnan(v):
        return NOT_MEASURED
    if unit in _FIXED:
        scale, shown = _FIXED[unit]
        return f"{_number(v * scale, digits)} {shown}"
    if unit == "s" and abs(v) >= 60:
        return f"{v:,.0f} s ({_duration(abs(v))})"
    if unit in _PREFIXED:
        if v == 0 or not math.isfinite(v):
            return f"{v:g} {unit}"
        for scale, prefix in _PREFIXES:
            if abs(v) >= scale * (1 - 0.5 * 10 ** (1 - digits)):
                return f"{_number(v / scale, digits)} {prefix}{unit}"
        return f"{_number(v, digits)} {unit}"
    if isinstance(value, int):
        return str(value)
    return _number(v, digits)


def display(key: str, value: Any, digits: int = 4) -> tuple[str, str]:
    """(name without its unit, value in the display unit) for one named figure; lists are
    shown element by element with the unit once, mappings as ``k: v`` pairs."""
    name, unit = split_unit(key)
    if isinstance(value, Mapping):
        return name, ", ".join(f"{k}: {quantity(v, unit, digits)}" for k, v in value.items())
    if isinstance(value, Sequence) and not isinstance(value, str):
        shown = [quantity(v, unit, digits) for v in value]
        suffix = ""
        if unit in _FIXED and all(s.endswith(_FIXED[unit][1]) for s in shown):
            suffix = " " + _FIXED[unit][1]
            shown = [s.removesuffix(suffix) for s in shown]
        return name, "[" + ", ".join(shown) + "]" + suffix
    return name, quantity(value, unit, digits)
