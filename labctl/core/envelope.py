"""The per-chip safety envelope.

A backend is constructed with one frozen :class:`SafetyEnvelope` and checks every request
against it *before* anything reaches a terminal: out-of-envelope requests raise
:class:`~labctl.core.errors.EnvelopeViolation`; nothing is ever clipped into range.

Terminal names follow the 1T1R convention used throughout labctl:
``BL`` bit line (top electrode: SET, FORM and reads), ``SL`` source line (RESET),
``WL`` word line (the access transistor's gate; its voltage is the SET/FORM compliance).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.core.errors import ConfigError, EnvelopeViolation
from labctl.core.validation import shown

TERMINALS = ("BL", "SL", "WL")

RATED_MAX: dict[str, float] = {
    "max_bitline_V": 10.0,
    "max_sourceline_V": 10.0,
    "max_gate_V": 10.0,
    "max_read_V": 10.0,
    "max_width_s": 1.0,
    "min_width_s": 1.0,
    "max_compliance_A": 0.1,
}
"""Plausibility bounds on an envelope: no station may declare limits beyond these. Voltages:
the pulse sources labctl drives a chip's terminals with are rated ±10 V (Keysight 33500B
and 81150A into high impedance; the test board's DACs below that), and a 1T1R test chip
breaks down far below. Widths: forming pulses are milliseconds (NeuRRAM, Wan et al. 2022,
https://doi.org/10.1038/s41586-022-04992-8); a second is already a DC stress. Compliance: a
1T1R cell draws at most a few mA; 0.1 A is the SMUs' 100 mA range. A file asking for 400 V
or 1e6 s is a typo or a wrong unit, refused before anything opens."""


@dataclass(frozen=True)
class SafetyEnvelope:
    """Hard limits for one chip. Defaults suit a 180 nm 1T1R test chip.

    Sources for the defaults (docs/references.md): NeuRRAM programs with SET bit line up to
    3.3–4.0 V, RESET source line up to 2.5 V with the gate at 5 V, widths 100 ns–1 µs, verify
    reads at 0.1–0.2 V (Wan et al., Nature 608, 504, 2022); the Stanford 1T1R controller forms
    with 1 ms pulses at 3.3 V bit line and gate up to 4 V (NI-RRAM-Python).
    """

    max_bitline_V: float = 4.0
    """Largest |V| on a bit line (SET, FORM, read), volts."""
    max_sourceline_V: float = 3.3
    """Largest |V| on a source line (RESET), volts."""
    max_gate_V: float = 5.0
    """Largest word-line (gate) voltage, volts."""
    max_read_V: float = 0.3
    """Largest voltage across a cell during a read or an MVM input, volts (read disturb)."""
    max_width_s: float = 1e-3
    """Longest pulse, seconds."""
    min_width_s: float = 1e-9
    """Shortest pulse the envelope accepts, seconds."""
    max_compliance_A: float = 200e-6
    """Largest instrument compliance current that may be set, amperes."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if (
                not isinstance(v, int | float)
                or isinstance(v, bool)
                or not math.isfinite(v)
                or v <= 0
            ):
                raise ConfigError(
                    "safety envelope", f.name, f"must be a positive number, got {v!r}"
                )
            if v > RATED_MAX[f.name]:
                raise ConfigError(
                    "safety envelope", f.name, f"{v:g} is beyond what any instrument labctl "
                    f"drives is rated for (at most {RATED_MAX[f.name]:g}); check the unit"
                )
        if self.min_width_s > self.max_width_s:
            raise ConfigError("safety envelope", "min_width_s", "must not exceed max_width_s")

    def terminal_limit_V(self, terminal: str) -> float:
        return {"BL": self.max_bitline_V, "SL": self.max_sourceline_V, "WL": self.max_gate_V}[
            terminal
        ]

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], source: str = "safety envelope"
    ) -> SafetyEnvelope:
        """Build from a station-file mapping; unknown keys and bad values name the key."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(
                    source, str(key), f"unknown key; allowed: {', '.join(sorted(known))}"
                )
        values: dict[str, float] = {}
        for key, raw in data.items():
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ConfigError(source, key, f"must be a number, got {shown(raw)}")
            try:
                values[key] = float(raw)
            except OverflowError:
                raise ConfigError(source, key, f"must be a number, got {shown(raw)}") from None
        try:
            return cls(**values)
        except ConfigError as e:
            raise ConfigError(source, e.key, e.problem) from None

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    # ---- checks (vectorized; raise before anything is applied) ----

    def check_voltage(
        self,
        name: str,
        values: npt.ArrayLike,
        limit_V: float,
        *,
        allow_negative: bool = False,
        limit_name: str = "",
    ) -> None:
        """Reject values outside [0, limit] (or [−limit, limit]); ``limit_name`` says which
        limit it is when it is not the envelope itself (e.g. a DAC's full scale)."""
        lo = -limit_V if allow_negative else 0.0
        if isinstance(values, np.ndarray) and values.dtype in (np.float32, np.float64):
            v = values  # the MVM hot path: no float64 copy of a float32 batch
        else:
            v = as_float64(values, name)
        if v.size == 0:
            return
        # Fast path: two reductions (NaN propagates through min/max and fails the test),
        # compared as Python floats, i.e. in float64 whatever arrived: a float32 comparison
        # would round the limit up (0.3 → 0.30000001), letting values a few nV above it
        # through, while a float32 extreme widens to float64 exactly.
        if float(v.min()) >= lo and float(v.max()) <= limit_V:
            return
        v = as_float64(v, name)
        _check_finite(name, v)
        bad = (v < lo) | (v > limit_V)
        if bad.any():
            worst = v[bad][np.argmax(np.abs(v[bad]))]
            v_txt, (lo_txt, hi_txt) = _shown(worst, lo, limit_V)
            rng = f"{lo_txt} V ≤ {name} ≤ {hi_txt} V"
            hint = f"Scale the request into {limit_name}." if limit_name else ""
            raise EnvelopeViolation(name, rng, f"{v_txt} V",
                                    int(bad.sum()), hint=hint)

    def check_pulse(
        self,
        terminal: str,
        amplitude_V: npt.ArrayLike,
        gate_V: npt.ArrayLike,
        width_s: npt.ArrayLike,
        compliance_A: npt.ArrayLike | None = None,
    ) -> None:
        """Check a pulse on ``terminal`` (``BL`` or ``SL``) with its gate, width and compliance."""
        self.check_voltage(f"{terminal} amplitude", amplitude_V, self.terminal_limit_V(terminal))
        self.check_voltage("gate (WL)", gate_V, self.max_gate_V)
        w = as_float64(width_s, "width")
        _check_finite("width", w)
        bad = (w < self.min_width_s) | (w > self.max_width_s)
        if bad.any():
            worst = w[bad][0]
            v_txt, (lo_txt, hi_txt) = _shown(worst, self.min_width_s, self.max_width_s)
            raise EnvelopeViolation(
                "width",
                f"{lo_txt} s ≤ width ≤ {hi_txt} s",
                f"{v_txt} s",
                int(bad.sum()),
            )
        if compliance_A is not None:
            self.check_compliance(compliance_A)

    def check_compliance(self, compliance_A: npt.ArrayLike) -> None:
        c = as_float64(compliance_A, "compliance")
        _check_finite("compliance", c)
        bad = (c <= 0) | (c > self.max_compliance_A)
        if bad.any():
            v_txt, (hi_txt,) = _shown(c[bad][0], self.max_compliance_A)
            raise EnvelopeViolation(
                "compliance",
                f"0 A < compliance ≤ {hi_txt} A",
                f"{v_txt} A",
                int(bad.sum()),
            )

    def check_read(self, read_V: npt.ArrayLike, gate_V: npt.ArrayLike) -> None:
        self.check_voltage("read voltage", read_V, self.max_read_V, allow_negative=True)
        self.check_voltage("gate (WL)", gate_V, self.max_gate_V)


def _shown(value: float, *limits: float) -> tuple[str, tuple[str, ...]]:
    """``value`` and ``limits`` as text: ``%g``, or all in full where ``%g`` would print the
    value as one of the limits it broke (4.0000001 V against 4 V would read "4 V is outside
    0 V ≤ … ≤ 4 V") or a limit rounded past the value (2.5432061 against 2.543206)."""
    v_txt, lim_txt = f"{value:g}", tuple(f"{lim:g}" for lim in limits)
    misleading = v_txt in lim_txt or any(  # a rounded limit on the value or across it
        (float(t) - value) * (lim - value) <= 0 for t, lim in zip(lim_txt, limits, strict=True))
    if not misleading:
        return v_txt, lim_txt
    return repr(float(value)), tuple(repr(float(lim)) for lim in limits)


def as_float64(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    """``values`` as float64, refusing what is not a real number (strings, booleans, objects,
    complex) instead of converting it. Checks run on the float64 values that will be applied:
    a backend hands the converted array on, never the caller's float32 or longdouble."""
    try:
        a = np.asarray(values)
    except (ValueError, TypeError) as e:
        raise EnvelopeViolation(name, "real numbers", f"an unreadable value ({e})") from None
    if a.dtype.kind not in "iuf":
        raise EnvelopeViolation(name, "real numbers", f"values of dtype {a.dtype}",
                                int(a.size), hint="Give numbers (not strings or booleans).")
    return a.astype(np.float64, copy=False)


def _check_finite(name: str, v: np.ndarray) -> None:
    if not np.all(np.isfinite(v)):
        raise EnvelopeViolation(
            name, "a finite number", "NaN or infinity", int((~np.isfinite(v)).sum())
        )
