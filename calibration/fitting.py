"""Digital twin: fit the simulator's device-model parameters to characterization data.

The result is written as a preset YAML file with the same keys as the simulator's preset
schema (``sim_backend.preset.Preset``; only the fitted fields are written, the rest keep the
simulator's defaults), so ``SimBackend(path)`` / a station's ``preset: path`` loads it.
Calibration never imports the simulator: the keys are repeated here on purpose.

What is fitted, and from what:

- **Relaxation spread table** (``relaxation.table_G_S``, ``sigma_1s_S``, ``sigma_1day_S``):
  from level reads at t = 0, 1 s and 1 day. The simulator's table is the spread *including*
  a ±1 µS uniform write-verify band (σ_prog = 0.577 µS, AIHWKit ``ReRamWan2022NoiseModel``
  fitted to NeuRRAM — docs/references.md), so the fitted value is
  √(σ_meas(t)² − σ_meas(0)² + σ_prog²): the growth since programming (which also cancels
  the averaged read noise) on top of the reference band.
- **Mean relaxation** (``relaxation.mean_shift_S_per_ln_t``): mean shift of levels ≥ 8 µS
  (the range of the AIHWKit CMO fit) from t = 0 to the last time, per ln(1 + t/1 s).
- **Read noise** (``read.relative_sigma``, ``read.floor_sigma_S``): two single reads at one
  instant differ only by read noise; var/2 per level fitted as (rel·G)² + floor².
- **As-formed conductance** (``switching.as_formed_mean_S`` / ``_sigma_S``, HKU
  N(14.25, 2.46) µS): mean and σ of cells formed with a gate high enough not to cap them.
- **Fault rates** (``faults.*_rate``): fractions of a fault map.
- **Gate → G compliance** (``transistor.v_th_V``, ``beta_A_per_V2``): G = ½β(V_g − V_th)²/V_hold
  after one strong SET from HRS at known gates; √G is linear in V_g (V_hold held fixed: only
  β/V_hold is identifiable from G).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labctl.core.calibration_record import FAULT_CODES

SIGMA_PROG_REF_S = 0.577e-6
"""Write-verify spread the reference table assumes: ±1 µS uniform band, 1/√3 µS (NeuRRAM)."""
MEAN_SHIFT_FIT_ABOVE_S = 8e-6
"""Levels used for the mean-shift fit (AIHWKit CMO fit range 8–90 µS)."""
DAY_S = 86400.0
PRESET_FORMAT = "labctl-preset/1"


@dataclass(frozen=True)
class CharacterizationData:
    """Reads of a level characterization (:mod:`calibration.characterize`)."""

    levels_S: np.ndarray
    level: np.ndarray
    """Level index per cell."""
    ok: np.ndarray
    """Cells that converged (the others are ignored)."""
    t_s: np.ndarray
    """Read times after programming, s (rows 1.. of ``g_S``; row 0 is t = 0)."""
    g_S: np.ndarray
    """(1 + len(t_s), cells) averaged reads."""
    g_pair_S: np.ndarray
    """(2, cells) single reads at t = 0."""
    n_average: int


def _level_std(g: np.ndarray, d: CharacterizationData) -> np.ndarray:
    return np.array([g[d.ok & (d.level == i)].std(ddof=1) for i in range(d.levels_S.size)])


def _row_at(d: CharacterizationData, t: float) -> int:
    hit = np.flatnonzero(np.isclose(d.t_s, t, rtol=1e-6))
    if hit.size == 0:
        raise ValueError(f"characterization has no read at t = {t:g} s (have {d.t_s.tolist()})")
    return int(hit[0]) + 1


def fit_relaxation(d: CharacterizationData,
                   sigma_prog_S: float = SIGMA_PROG_REF_S) -> dict[str, Any]:
    """The ``relaxation`` section: spread table at 1 s and 1 day, and the mean shift."""
    s0 = _level_std(d.g_S[0], d)
    s1 = _level_std(d.g_S[_row_at(d, 1.0)], d)
    sd = _level_std(d.g_S[_row_at(d, DAY_S)], d)
    tab1 = np.sqrt(np.maximum(s1**2 - s0**2, 0.0) + sigma_prog_S**2)
    tabd = np.maximum(np.sqrt(np.maximum(sd**2 - s0**2, 0.0) + sigma_prog_S**2), tab1)
    hi = d.ok & (d.levels_S[d.level] >= MEAN_SHIFT_FIT_ABOVE_S)
    last = d.g_S.shape[0] - 1
    shift = float(np.mean(d.g_S[last][hi] - d.g_S[0][hi])) if hi.any() else 0.0
    m = shift / np.log1p(float(d.t_s[-1]))
    return {"relaxation": {"table_G_S": d.levels_S.tolist(), "sigma_1s_S": tab1.tolist(),
                           "sigma_1day_S": tabd.tolist(), "mean_shift_S_per_ln_t": m}}


def fit_read_noise(d: CharacterizationData) -> dict[str, float]:
    """``read`` section from two single reads at one instant."""
    diff = d.g_pair_S[0] - d.g_pair_S[1]
    lv = range(d.levels_S.size)
    var = np.array([np.var(diff[d.ok & (d.level == i)], ddof=1) / 2 for i in lv])
    G = np.array([np.mean(d.g_pair_S[:, d.ok & (d.level == i)]) for i in lv])
    A = np.stack([G**2, np.ones_like(G)], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, var, rcond=None)
    return {"relative_sigma": float(np.sqrt(max(a, 0.0))),
            "floor_sigma_S": float(np.sqrt(max(b, 0.0)))}


def fit_as_formed(g_formed_S: np.ndarray, formed: np.ndarray) -> dict[str, float]:
    """``switching`` as-formed mean and σ from reads right after forming."""
    g = g_formed_S[formed]
    return {"as_formed_mean_S": float(g.mean()), "as_formed_sigma_S": float(g.std(ddof=1))}


def fit_fault_rates(fault_map: np.ndarray) -> dict[str, float]:
    """``faults`` rates from a fault map (cells with unknown status are left out)."""
    known = fault_map[fault_map >= 0]
    n = max(known.size, 1)
    return {"stuck_lrs_rate": float((known == FAULT_CODES["stuck_lrs"]).sum() / n),
            "stuck_hrs_rate": float((known == FAULT_CODES["stuck_hrs"]).sum() / n),
            "unformable_rate": float((known == FAULT_CODES["unformed"]).sum() / n)}


def fit_gate_compliance(gate_V: np.ndarray, g_S: np.ndarray,
                        v_hold_V: float = 0.5) -> dict[str, float]:
    """``transistor`` v_th and β from G after strong SETs at known gates: √G = a·(V_g − V_th),
    a = √(β / (2 V_hold))."""
    a, b = np.polyfit(gate_V, np.sqrt(np.maximum(g_S, 0.0)), 1)
    return {"v_th_V": float(-b / a), "beta_A_per_V2": float(2.0 * v_hold_V * a * a)}


def write_preset(fit: Mapping[str, Any], path: str | Path, *, name: str,
                 description: str = "") -> Path:
    """Write fitted sections as a simulator preset YAML (keys of ``sim_backend.Preset``)."""
    body: dict[str, Any] = {"format": PRESET_FORMAT, "name": name,
                            "description": description or "fitted by calibration.fitting"}
    for section, values in fit.items():
        body[section] = {k: (list(v) if isinstance(v, tuple | list) else float(v))
                         for k, v in values.items()}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return p
