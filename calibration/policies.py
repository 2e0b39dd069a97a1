"""Verify-write policies: how the next pulse of each cell is chosen (strategy objects).

The verify-write engine (:mod:`calibration.programming`) reads, decides which cells need a
SET (below target) or a RESET (above), and asks a policy for the per-cell pulse parameters.
A policy keeps its own per-cell arrays inside the engine's state (so checkpoints and resume
carry them) and never loops over cells.

- :class:`AmplitudeStepping`: NeuRRAM's scheme — fixed gate, the bit-line (SET) or
  source-line (RESET) amplitude ramps 0.1 V per pulse from 1.2 V, restarting when the cell
  changes direction (Wan et al., Nature 608, 504, 2022 — docs/references.md "1T1R operation").
- :class:`GateStepping`: SET with the gate as compliance. The access transistor's saturation
  current ½β(V_g − V_th)² caps the current and so the LRS conductance (I_C / V_hold,
  Ielmini 2016); the policy starts the gate low and raises it in small steps of the implied
  cap until the cell is in band — the physically natural fine control of a 1T1R cell
  (docs/references.md: "Gate voltage is the compliance"). Overshoots are corrected with the RESET
  amplitude ramp, after which the gate ladder restarts just above the cell's conductance.
- :class:`WidthStepping`: fixed amplitudes, the pulse width grows geometrically (NeuRRAM
  widths 100 ns–1 µs), using the exponential voltage–time kinetics: a short pulse switches
  a small fraction.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import numpy as np

from labctl.core.backend import ChipInfo
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine_params import Float, Param, ParamError, Section, Tagged

Arr = np.ndarray
PulseParams = tuple[Arr, Arr, Arr]
"""(amplitude_V, gate_V, width_s), one entry per cell of the batch."""


def ramp_section(doc: str, start: float, stop: float, gate: float, width: float) -> Param:
    """An amplitude ramp (NeuRRAM: from 1.2 V, +0.1 V per pulse — docs/references.md)."""
    return Section(doc, {
        "start_V": Float("first pulse amplitude", unit="V", min=0.1, max=5.0, default=start),
        "step_V": Float("amplitude increase per pulse", unit="V", min=0.0, max=1.0, default=0.1),
        "stop_V": Float("largest amplitude", unit="V", min=0.1, max=5.0, default=stop),
        "gate_V": Float("word-line (gate) voltage", unit="V", min=0.0, max=6.0, default=gate),
        "width_s": Float("pulse width", unit="s", min=1e-9, max=1e-3, default=width),
    }, default={})


# Gate → compliance-cap coefficients: the square-law access transistor of the 180 nm design
# (V_th 0.7 V, β 10.2 µA/V², V_hold 0.5 V: gate 1.0–2.7 V spans 1–40 µS, matching the
# NeuRRAM SET gate range 2.5–3.0 V for the top of the window — docs/references.md,
# docs/simulator.md).
# A fitted chip model (calibration.fitting) may replace them.
_GATE = {
    "set_V": Float("SET bit-line amplitude (partial switching per pulse)", unit="V", min=0.1,
                   max=5.0, default=1.6),
    "cap_start_below_S": Float("first gate: implied cap this far below the target", unit="S",
                               min=0.0, max=40e-6, default=2e-6),
    "cap_step_S": Float("gate raise per SET pulse, as a step of the implied cap", unit="S",
                        min=1e-9, max=10e-6, default=0.3e-6),
    "set_width_s": Float("SET pulse width (NeuRRAM: 100 ns–1 µs)", unit="s", min=1e-9,
                         max=1e-3, default=1e-6),
    "gate_min_V": Float("lowest gate voltage used", unit="V", min=0.0, max=6.0, default=0.9),
    "gate_stop_V": Float("highest SET gate voltage (top of the ladder)", unit="V", min=0.0,
                         max=6.0, default=3.0),
    "vth_V": Float("access-transistor threshold for the gate→cap relation", unit="V", min=0.0,
                   max=3.0, default=0.7),
    "beta_A_per_V2": Float("transconductance factor β for the gate→cap relation", unit="A/V2",
                           min=1e-7, max=1e-3, default=10.2e-6),
    "v_hold_V": Float("voltage across a just-SET filament: cap = I_sat / V_hold", unit="V",
                      min=0.05, max=2.0, default=0.5),
}
_WIDTH = {
    "width_start_s": Float("first pulse width", unit="s", min=1e-9, max=1e-3, default=20e-9),
    "width_factor": Float("width multiplier per pulse in one direction", min=1.0, max=10.0,
                          default=1.5),
    "width_stop_s": Float("longest pulse width", unit="s", min=1e-9, max=1e-3, default=1e-6),
    "set_V": Float("SET bit-line amplitude", unit="V", min=0.1, max=5.0, default=1.5),
    "set_gate_V": Float("SET gate voltage (compliance above the window)", unit="V", min=0.0,
                        max=6.0, default=3.0),
    "reset_V": Float("RESET source-line amplitude", unit="V", min=0.1, max=5.0, default=1.3),
    "reset_gate_V": Float("RESET gate voltage (fully on)", unit="V", min=0.0, max=6.0,
                          default=5.0),
}
POLICY = Tagged("how the next pulse is chosen: amplitude (NeuRRAM ramps, uses set/reset), "
                "gate (gate-voltage ladder for SET, reset ramp for RESET), pulse_width", {
                    "amplitude": {},
                    "gate": _GATE,
                    "pulse_width": _WIDTH,
                }, default={"kind": "gate"})


class Policy(abc.ABC):
    """Chooses per-cell pulse parameters. ``st`` is the engine's state dict; a policy keeps
    its arrays there under its own keys (created by :meth:`new_state`)."""

    name = ""

    def new_state(self, n: int) -> dict[str, Arr]:
        return {}

    @abc.abstractmethod
    def set_pulses(self, st: dict[str, Arr], idx: Arr, g_S: Arr, target_S: Arr,
                   fresh: Arr) -> PulseParams:
        """SET parameters for cells ``idx``; ``fresh`` marks cells whose previous pulse was
        not a SET (a new ramp starts)."""

    @abc.abstractmethod
    def reset_pulses(self, st: dict[str, Arr], idx: Arr, g_S: Arr, target_S: Arr,
                     fresh: Arr) -> PulseParams:
        """RESET parameters, as :meth:`set_pulses`."""

    def at_top(self, st: dict[str, Arr], idx: Arr) -> Arr:
        """Cells whose last pulse was at the top of their ramp."""
        return np.zeros(idx.size, bool)


class _RampMixin:
    """A per-cell amplitude ramp under the state key ``key``."""

    @staticmethod
    def ramp(st: dict[str, Arr], key: str, idx: Arr, fresh: Arr,
             r: Mapping[str, Any]) -> PulseParams:
        level = np.where(fresh, 0, st[key][idx])
        amp = np.minimum(r["start_V"] + level * r["step_V"], r["stop_V"])
        st[key][idx] = level + 1
        st["top"][idx] = amp >= r["stop_V"] - 1e-12
        n = idx.size
        return amp, np.full(n, r["gate_V"]), np.full(n, r["width_s"])


class AmplitudeStepping(Policy, _RampMixin):
    name = "amplitude"

    def __init__(self, set_ramp: Mapping[str, Any], reset_ramp: Mapping[str, Any]) -> None:
        self.s, self.r = set_ramp, reset_ramp

    def new_state(self, n: int) -> dict[str, Arr]:
        return {"set_level": np.zeros(n, np.int64), "reset_level": np.zeros(n, np.int64),
                "top": np.zeros(n, bool)}

    def set_pulses(self, st: dict[str, Arr], idx: Arr, g_S: Arr, target_S: Arr,
                   fresh: Arr) -> PulseParams:
        return self.ramp(st, "set_level", idx, fresh, self.s)

    def reset_pulses(self, st: dict[str, Arr], idx: Arr, g_S: Arr, target_S: Arr,
                     fresh: Arr) -> PulseParams:
        return self.ramp(st, "reset_level", idx, fresh, self.r)

    def at_top(self, st: dict[str, Arr], idx: Arr) -> Arr:
        return st["top"][idx]


class GateStepping(AmplitudeStepping):
    name = "gate"

    def __init__(self, p: Mapping[str, Any], reset_ramp: Mapping[str, Any]) -> None:
        super().__init__({}, reset_ramp)
        self.p = p

    def new_state(self, n: int) -> dict[str, Arr]:
        return {**super().new_state(n), "cap_S": np.zeros(n)}

    def gate_for_cap(self, cap_S: Arr) -> Arr:
        """Invert cap = ½β(V_g − V_th)² / V_hold for the gate voltage."""
        p = self.p
        return p["vth_V"] + np.sqrt(2.0 * p["v_hold_V"] * np.maximum(cap_S, 0.0)
                                    / p["beta_A_per_V2"])

    def set_pulses(self, st: dict[str, Arr], idx: Arr, g_S: Arr, target_S: Arr,
                   fresh: Arr) -> PulseParams:
        p = self.p
        start = np.maximum(target_S - p["cap_start_below_S"], g_S + p["cap_step_S"])
        cap = np.where(fresh, start, st["cap_S"][idx] + p["cap_step_S"])
        gate = np.clip(self.gate_for_cap(cap), p["gate_min_V"], p["gate_stop_V"])
        st["cap_S"][idx] = cap
        st["top"][idx] = gate >= p["gate_stop_V"] - 1e-12
        n = idx.size
        return np.full(n, p["set_V"]), gate, np.full(n, p["set_width_s"])


class WidthStepping(AmplitudeStepping):
    name = "pulse_width"

    def __init__(self, p: Mapping[str, Any]) -> None:
        super().__init__({}, {})
        self.p = p

    def _widths(self, st: dict[str, Arr], key: str, idx: Arr, fresh: Arr) -> Arr:
        p = self.p
        level = np.where(fresh, 0, st[key][idx])
        w = np.minimum(p["width_start_s"] * p["width_factor"] ** level, p["width_stop_s"])
        st[key][idx] = level + 1
        st["top"][idx] = w >= p["width_stop_s"] * (1 - 1e-9)
        return w

    def set_pulses(self, st: dict[str, Arr], idx: Arr, g_S: Arr, target_S: Arr,
                   fresh: Arr) -> PulseParams:
        w = self._widths(st, "set_level", idx, fresh)
        return np.full(idx.size, self.p["set_V"]), np.full(idx.size, self.p["set_gate_V"]), w

    def reset_pulses(self, st: dict[str, Arr], idx: Arr, g_S: Arr, target_S: Arr,
                     fresh: Arr) -> PulseParams:
        w = self._widths(st, "reset_level", idx, fresh)
        return (np.full(idx.size, self.p["reset_V"]), np.full(idx.size, self.p["reset_gate_V"]),
                w)


def make_policy(spec: Mapping[str, Any], set_ramp: Mapping[str, Any],
                reset_ramp: Mapping[str, Any]) -> Policy:
    """The policy a validated ``policy`` parameter names."""
    kind = spec["kind"]
    if kind == "amplitude":
        return AmplitudeStepping(set_ramp, reset_ramp)
    if kind == "gate":
        return GateStepping(spec, reset_ramp)
    return WidthStepping(spec)


def check_policy(spec: Mapping[str, Any], env: SafetyEnvelope, chip: ChipInfo) -> None:
    """Chip-dependent checks of a policy's voltages and widths against the envelope."""
    def over(key: str, value: float, limit: float, what: str) -> None:
        if value > limit:
            raise ParamError(f"policy.{key}", f"must be ≤ {limit:g} {what} (the safety "
                             f"envelope); got {value:g}")

    if spec["kind"] == "gate":
        over("set_V", spec["set_V"], env.max_bitline_V, "V")
        over("gate_stop_V", spec["gate_stop_V"], env.max_gate_V, "V")
        if spec["gate_min_V"] > spec["gate_stop_V"]:
            raise ParamError("policy.gate_min_V", "must not exceed gate_stop_V")
        if not env.min_width_s <= spec["set_width_s"] <= env.max_width_s:
            raise ParamError("policy.set_width_s", f"must be within {env.min_width_s:g} s ≤ "
                             f"value ≤ {env.max_width_s:g} s (the safety envelope)")
    elif spec["kind"] == "pulse_width":
        over("set_V", spec["set_V"], env.max_bitline_V, "V")
        over("reset_V", spec["reset_V"], env.max_sourceline_V, "V")
        over("set_gate_V", spec["set_gate_V"], env.max_gate_V, "V")
        over("reset_gate_V", spec["reset_gate_V"], env.max_gate_V, "V")
        for key in ("width_start_s", "width_stop_s"):
            if not env.min_width_s <= spec[key] <= env.max_width_s:
                raise ParamError(f"policy.{key}", f"must be within {env.min_width_s:g} s ≤ "
                                 f"value ≤ {env.max_width_s:g} s (the safety envelope)")
        if spec["width_start_s"] > spec["width_stop_s"]:
            raise ParamError("policy.width_start_s", "must not exceed width_stop_s")


def default_policy() -> Policy:
    """The default policy with default parameters (gate ladder; NeuRRAM RESET ramp)."""
    from labctl.core.routine_params import validate

    p = validate({"policy": POLICY, "reset": ramp_section("", 1.2, 2.5, 5.0, 1e-6)}, {})
    return make_policy(p["policy"], {}, p["reset"])
