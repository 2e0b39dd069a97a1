"""1T1R device physics: static per-cell parameters and the switching update.

Pure, vectorized functions of arrays of cells. Randomness comes only from
:mod:`sim_backend.rng`, keyed by (seed, cell, event), so each cell's history is independent
of batching. Equations and their sources are in :mod:`sim_backend.preset`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sim_backend import rng
from sim_backend.preset import Preset

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Truncations of the device-to-device normals (each keeps a drawn value physical; listed in
# the table of assumptions, docs/simulator.md). Fractions of the parameter's own mean.
HRS_MIN_FRACTION = 0.2
"""An HRS floor is at least 0.2 × ``hrs_mean_S`` (no cell conducts less than its HRS)."""
STUCK_LRS_MIN_FRACTION = 0.5
"""A stuck-at-LRS cell conducts at least 0.5 × ``stuck_lrs_mean_S``."""
FORM_CURRENT_MIN_FRACTION = 0.1
"""A cell's minimum forming current is at least 0.1 × ``form_current_mean_A``."""
AS_FORMED_MIN_HRS = 2.0
"""A formed cell conducts at least 2 × ``hrs_mean_S`` (formed is distinguishable from HRS)."""


class Fault(enum.IntEnum):
    NONE = 0
    STUCK_LRS = 1
    STUCK_HRS = 2
    UNFORMABLE = 3


@dataclass(frozen=True)
class StaticCells:
    """Device-to-device parameters of a set of cells (drawn once per cell from its key)."""

    form_V: F64
    form_I_A: F64
    """Least compliance current that completes forming, A."""
    set_V: F64
    reset_V: F64
    set_gain: F64
    reset_gain: F64
    cap_factor: F64
    as_formed_S: F64
    hrs_S: F64
    fault: npt.NDArray[np.int8]
    stuck_S: F64
    """Conductance of stuck cells (LRS or HRS value); unused for other cells."""

    @classmethod
    def zeros(cls, n: int) -> StaticCells:
        """Storage for ``n`` cells, filled tile by tile as tiles are first used."""
        arrays: dict[str, Any] = {name: np.zeros(n) for name in cls.__dataclass_fields__}
        arrays["fault"] = np.zeros(n, dtype=np.int8)
        return cls(**arrays)

    def take(self, idx: I64) -> StaticCells:
        return StaticCells(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def draw_static(preset: Preset, seed: int, cells: I64) -> StaticCells:
    """Device-to-device parameters for global cell indices ``cells``."""
    s, f = preset.switching, preset.faults

    def n(stream: rng.Stream) -> F64:
        if not preset.variation_on:
            return np.zeros(cells.shape)
        return rng.normal(seed, cells, 0, stream)

    gain_sigma = s.gain_d2d_sigma
    u = rng.uniform(seed, cells, 0, rng.Stream.D2D_STUCK)
    fault = np.zeros(cells.shape, dtype=np.int8)
    c1 = f.stuck_lrs_rate
    c2 = c1 + f.stuck_hrs_rate
    c3 = c2 + f.unformable_rate
    fault[u < c1] = Fault.STUCK_LRS
    fault[(u >= c1) & (u < c2)] = Fault.STUCK_HRS
    fault[(u >= c2) & (u < c3)] = Fault.UNFORMABLE
    hrs = np.maximum(s.hrs_mean_S + s.hrs_sigma_S * n(rng.Stream.D2D_HRS),
                     HRS_MIN_FRACTION * s.hrs_mean_S)
    z_stuck = rng.normal(seed, cells, 0, rng.Stream.D2D_STUCK_G)
    stuck = np.where(
        fault == Fault.STUCK_LRS,
        np.maximum(f.stuck_lrs_mean_S + f.stuck_lrs_sigma_S * z_stuck,
                   STUCK_LRS_MIN_FRACTION * f.stuck_lrs_mean_S),
        hrs,
    )
    return StaticCells(
        form_V=s.form_V_mean + s.form_V_sigma * n(rng.Stream.D2D_FORM_V),
        form_I_A=np.maximum(
            s.form_current_mean_A + s.form_current_sigma_A * n(rng.Stream.D2D_FORM_I),
            FORM_CURRENT_MIN_FRACTION * s.form_current_mean_A,
        ),
        set_V=s.set_V_mean + s.set_V_sigma * n(rng.Stream.D2D_SET_V),
        reset_V=s.reset_V_mean + s.reset_V_sigma * n(rng.Stream.D2D_RESET_V),
        set_gain=s.set_gain * np.exp(gain_sigma * n(rng.Stream.D2D_SET_GAIN)),
        reset_gain=s.reset_gain * np.exp(gain_sigma * n(rng.Stream.D2D_RESET_GAIN)),
        cap_factor=1.0 + s.cap_d2d_sigma * n(rng.Stream.D2D_CAP),
        as_formed_S=np.maximum(
            s.as_formed_mean_S + s.as_formed_sigma_S * n(rng.Stream.D2D_AS_FORMED),
            AS_FORMED_MIN_HRS * s.hrs_mean_S,
        ),
        hrs_S=hrs,
        fault=fault,
        stuck_S=stuck,
    )


def saturation_current_A(preset: Preset, gate_V: F64) -> F64:
    """Access-transistor saturation current ½·β·(V_g − V_th)², A (square law)."""
    t = preset.transistor
    ov = np.maximum(gate_V - t.v_th_V, 0.0)
    return 0.5 * t.beta_A_per_V2 * ov * ov


def compliance_cap_S(preset: Preset, gate_V: F64, compliance_A: F64 | None) -> tuple[F64, F64]:
    """(current limit A, conductance cap S): G_LRS ≈ I_C / v_hold [Ielmini]."""
    i_c = saturation_current_A(preset, gate_V)
    if compliance_A is not None:
        i_c = np.minimum(i_c, compliance_A)
    return i_c, i_c / preset.transistor.v_hold_V


@dataclass
class PulseOutcome:
    g_new_S: F64
    formed_now: npt.NDArray[np.bool_]
    broken_now: npt.NDArray[np.bool_]
    current_A: F64
    """Current through the cell during the pulse (for the energy ledger), A."""


def switched_fraction(
    preset: Preset,
    seed: int,
    cells: I64,
    events: I64,
    gain: F64,
    overdrive_V: F64,
    v0_V: float,
    width_s: F64,
    stream: rng.Stream,
) -> F64:
    """Fraction of the way a SET or RESET pulse moves G:
    p = 1 − exp(−gain · exp(overdrive / V0) · width / t_ref · c2c), with a log-normal
    cycle-to-cycle factor keyed by (seed, cell, event) (see ``SwitchingParams``)."""
    s = preset.switching
    rate = gain * np.exp(overdrive_V / v0_V) * (width_s / s.t_ref_s)
    if preset.variation_on:
        rate = rate * np.exp(s.step_c2c_sigma * rng.normal(seed, cells, events, stream))
    return -np.expm1(-rate)


def apply_bitline_pulse(
    preset: Preset,
    seed: int,
    cells: I64,
    events: I64,
    st: StaticCells,
    g_S: F64,
    formed: npt.NDArray[np.bool_],
    amplitude_V: F64,
    gate_V: F64,
    width_s: F64,
    compliance_A: F64 | None,
) -> PulseOutcome:
    """A SET or FORM pulse: forms pristine cells (stochastically, above threshold) and SETs
    formed ones toward the gate-limited cap. Which happens depends on the cell, not the
    kind requested, as on a real chip."""
    s = preset.switching
    i_c, cap = compliance_cap_S(preset, gate_V, compliance_A)
    cap = cap * st.cap_factor
    if preset.variation_on:
        cap = cap * (1.0 + s.cap_c2c_sigma * rng.normal(seed, cells, events, rng.Stream.C2C_CAP))
    g_new = g_S.copy()
    formable = ~formed & (st.fault == Fault.NONE)
    # forming: probability of breakdown in this pulse
    rate_f = np.exp((amplitude_V - st.form_V) / s.form_V0) * (width_s / s.form_t_ref_s)
    p_form = -np.expm1(-rate_f)
    u = rng.uniform(seed, cells, events, rng.Stream.C2C_FORM)
    # the filament only forms if the gate lets enough current through to grow it
    formed_now = formable & (u < p_form) & (i_c >= st.form_I_A)
    broken_now = formed_now & (i_c > s.overform_current_A)
    g_new[formed_now] = np.minimum(st.as_formed_S[formed_now], cap[formed_now])
    # SET on formed cells below their cap
    active = formed & (st.fault == Fault.NONE) & (g_S < cap)
    if active.any():
        p = switched_fraction(
            preset,
            seed,
            cells,
            events,
            st.set_gain,
            amplitude_V - st.set_V,
            s.set_V0,
            width_s,
            rng.Stream.C2C_SET,
        )
        g_new = np.where(active, g_S + p * (cap - g_S), g_new)
    current = np.minimum(amplitude_V * np.maximum(g_new, g_S), i_c)
    return PulseOutcome(g_new, formed_now, broken_now, current)


def apply_sourceline_pulse(
    preset: Preset,
    seed: int,
    cells: I64,
    events: I64,
    st: StaticCells,
    g_S: F64,
    formed: npt.NDArray[np.bool_],
    amplitude_V: F64,
    gate_V: F64,
    width_s: F64,
) -> PulseOutcome:
    """A RESET pulse: moves formed cells toward their HRS floor. When the gate cannot pass
    the current the cell needs at this amplitude, the drive is reduced in proportion."""
    s = preset.switching
    i_sat = saturation_current_A(preset, gate_V)
    need = amplitude_V * np.maximum(g_S, 1e-12)
    drive = np.minimum(1.0, i_sat / need)
    active = formed & (st.fault == Fault.NONE) & (g_S > st.hrs_S)
    g_new = g_S.copy()
    if active.any():
        p = switched_fraction(
            preset,
            seed,
            cells,
            events,
            st.reset_gain * drive,
            amplitude_V - st.reset_V,
            s.reset_V0,
            width_s,
            rng.Stream.C2C_RESET,
        )
        g_new = np.where(active, g_S - p * (g_S - st.hrs_S), g_S)
    current = np.minimum(amplitude_V * g_S, i_sat)
    none = np.zeros(g_S.shape, dtype=bool)
    return PulseOutcome(g_new, none, none, current)
