"""Digital twin: fit the simulator's device-model parameters to a chip's own measurements.

Two entry points. :func:`fit_twin` fits a preset to the twin measurement table
(:mod:`calibration.twin_data`: from ``protocols/twin.yaml``'s run file or a lab's CSV), with
a standard error per parameter and the list of parameters the data cannot identify — what
``labctl fit`` runs; docs/simulator.md lists what is fitted from what. The functions below
it (``fit_relaxation`` …) are the quick fit the ``characterize`` routine writes from its
level reads alone.

The result is written as a preset YAML file with the same keys as the simulator's preset
schema (``sim_backend.preset.Preset``; only the fitted fields are written, the rest keep the
simulator's defaults), so ``SimBackend(path)`` / a station's ``preset: path`` loads it.
Calibration never imports the simulator: the keys are repeated here on purpose.

What is fitted, and from what:

- **Relaxation spread table** (``relaxation.table_G_S``, ``sigma_1s_S``, ``sigma_1day_S``):
  the spread of the averaged level reads at 1 s and 1 day — what the simulator's table
  means (the spread reads measure, low-frequency read noise included; docs/simulator.md).
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

from calibration import twin_data as td
from labctl.core.calibration_record import FAULT_CODES

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


def fit_relaxation(d: CharacterizationData) -> dict[str, Any]:
    """The ``relaxation`` section: spread table at 1 s and 1 day, and the mean shift."""
    tab1 = _level_std(d.g_S[_row_at(d, 1.0)], d)
    tabd = np.maximum(_level_std(d.g_S[_row_at(d, DAY_S)], d), tab1)
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


# ---------------------------------------------------------------------------------------
# The twin fit (labctl fit)
# ---------------------------------------------------------------------------------------
# Model constants the fit holds (the simulator's documented defaults, repeated here because
# calibration never imports the simulator; docs/simulator.md, table of assumptions).
HELD = {
    "switching.set_V_mean": 1.3,
    "switching.reset_V_mean": 1.1,
    "switching.t_ref_s": 1e-6,
    "read.floor_sigma_S": 0.005e-6,
    "read.lf_ref_G_S": 20e-6,
    "read.lf_tau_min_s": 1e-4,
    "read.lf_tau_max_s": 1e3,
}
STUCK_LRS_ABOVE_S = 20e-6
"""A cell reading above this before forming is stuck at LRS (pristine cells read ~0.01 µS)."""
STUCK_HRS_MADS = 10.0
"""A cell reading more than this many robust σ (1.4826 · MAD) above the median pristine read
(and below ``STUCK_LRS_ABOVE_S``) before forming conducts like an HRS: stuck at HRS."""
FORMED_ABOVE_S = 1.5e-6
"""A cell reading above this after forming is formed."""
P_RANGE = (0.03, 0.97)
"""Kinetics: switched fractions outside this range carry no slope information."""

UNIDENTIFIED = {
    "switching.form_V_mean": "every cell forms on the first pulse its gate allows at the "
                             "FORM bit line: the voltage threshold is not reached in the data",
    "switching.form_V_sigma": "as form_V_mean",
    "switching.form_V0": "as form_V_mean",
    "switching.form_t_ref_s": "as form_V_mean",
    "switching.overform_current_A": "measuring it destroys cells (hard breakdown)",
    "switching.set_V_mean": "only gain·exp(−V_set/V0) is identified; V_set is held, the "
                            "gain fitted relative to it",
    "switching.reset_V_mean": "as set_V_mean, for RESET",
    "switching.t_ref_s": "degenerate with the gains",
    "switching.set_V_sigma": "the scatter of one-pulse kinetics identifies only the sum "
                             "σ_c2c² + σ_gain² + (σ_V/V0)² (reported as kinetics_scatter)",
    "switching.reset_V_sigma": "as set_V_sigma",
    "switching.gain_d2d_sigma": "as set_V_sigma",
    "switching.step_c2c_sigma": "as set_V_sigma",
    "switching.cap_d2d_sigma": "the gate curve identifies only the quadrature sum with "
                               "cap_c2c_sigma (reported as cap_scatter)",
    "switching.cap_c2c_sigma": "as cap_d2d_sigma",
    "relaxation.sigma_prog_S": "absorbed by the walk: the spread at 1 s is fitted directly",
    "relaxation.mean_shift_full_above_S": "the model's G scaling below 8 µS is held",
    "relaxation.tau_max": "a property of the model's grid, not of the chip",
    "relaxation.grid_levels": "as tau_max",
    "read.floor_sigma_S": "below the resolution of reads at ≥ 1 µS",
    "read.lf_tau_min_s": "the series' delays cover the held decades, not their ends",
    "read.lf_tau_max_s": "as lf_tau_min_s",
    "read.lf_ref_G_S": "a convention (where lf_relative_sigma is quoted)",
    "array.*": "the chip's description, not a fit",
    "periphery.*": "DAC/ADC and wires: MVM calibration, not this protocol",
    "energy.*": "the ledger's assumptions; not measured",
}


@dataclass(frozen=True)
class Estimate:
    value: float | list[float]
    stderr: float | list[float]
    source: str


@dataclass
class TwinFit:
    estimates: dict[str, Estimate]
    """``section.field`` → estimate (the preset's own names)."""
    notes: dict[str, float]
    """Figures the data identify that are not preset fields (e.g. combined scatters)."""
    unidentified: dict[str, str]
    """``section.field`` → why the data cannot identify it (kept at the simulator default)."""

    def sections(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for key, e in self.estimates.items():
            sec, name = key.split(".", 1)
            out.setdefault(sec, {})[name] = e.value
        return out


def _se_mean(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / np.sqrt(max(x.size, 1))) if x.size > 1 else float("nan")


def _se_std(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / np.sqrt(2.0 * max(x.size - 1, 1)))


def _i_sat(gate_V: np.ndarray, beta: float, v_th: float) -> np.ndarray:
    ov = np.maximum(np.asarray(gate_V, dtype=np.float64) - v_th, 0.0)
    out: np.ndarray = 0.5 * beta * ov * ov
    return out


def _lf_shape(delay_s: float) -> float:
    """Fraction of the low-frequency variance two reads ``delay_s`` apart do not share:
    mean over the held components of min(1, Δ/τ_j) (docs/simulator.md, read noise)."""
    lo, hi = np.log10(HELD["read.lf_tau_min_s"]), np.log10(HELD["read.lf_tau_max_s"])
    taus = np.logspace(lo, hi, round(float(hi - lo)) + 1)
    return float(np.mean(np.minimum(1.0, delay_s / taus)))


class _Fitter:
    def __init__(self, t: td.Table) -> None:
        self.t = t
        self.est: dict[str, Estimate] = {}
        self.notes: dict[str, float] = {}
        self.stuck: set[int] = set()

    def put(self, key: str, value: float, se: float, source: str) -> None:
        self.est[key] = Estimate(float(value), float(se), source)

    def val(self, key: str, default: float) -> float:
        e = self.est.get(key)
        return float(e.value) if e is not None and isinstance(e.value, float) else default

    def lf_var(self, g_S: np.ndarray) -> np.ndarray:
        """Low-frequency read-noise variance at ``g_S`` with the fitted figures, S²."""
        rel = self.val("read.lf_relative_sigma", 0.0)
        gam = self.val("read.lf_g_exponent", 0.5)
        ref = HELD["read.lf_ref_G_S"]
        out: np.ndarray = (rel * ref**gam * np.maximum(g_S, 0.0) ** (1 - gam)) ** 2
        return out

    def white_var(self, g_S: np.ndarray, n_average: np.ndarray) -> np.ndarray:
        w = self.val("read.relative_sigma", 0.0)
        out: np.ndarray = ((w * g_S) ** 2 + HELD["read.floor_sigma_S"] ** 2) / n_average
        return out

    # ---- the parts, in dependency order ----
    def survey(self) -> None:
        sv = self.t.only("survey")
        if not len(sv):
            return
        g = sv.g_S
        n = g.size
        lrs = g > STUCK_LRS_ABOVE_S
        med = float(np.median(g[~lrs]))
        mad = 1.4826 * float(np.median(np.abs(g[~lrs] - med)))
        hrs = ~lrs & (g > med + STUCK_HRS_MADS * mad)
        for key, m in (("faults.stuck_lrs_rate", lrs), ("faults.stuck_hrs_rate", hrs)):
            r = float(m.mean())
            self.put(key, r, np.sqrt(max(r * (1 - r), 1.0 / n) / n), "survey: pre-forming reads")
        if lrs.sum() > 2:
            self.put("faults.stuck_lrs_mean_S", g[lrs].mean(), _se_mean(g[lrs]), "survey")
            self.put("faults.stuck_lrs_sigma_S", g[lrs].std(ddof=1), _se_std(g[lrs]), "survey")
        pr = g[~lrs & ~hrs]
        self.put("switching.pristine_S", pr.mean(), _se_mean(pr), "survey: pristine reads")
        self.stuck = set(sv.key()[lrs | hrs].tolist())

    def _healthy(self, t: td.Table) -> np.ndarray:
        return ~np.isin(t.key(), list(self.stuck))

    def transistor(self) -> None:
        tr = self.t.only("transistor")
        if not len(tr):
            return
        ok = self._healthy(tr) & (tr["current_A"] > 0)
        top = tr["gate_V"] == tr["gate_V"].max()
        i_top = np.median(tr["current_A"][ok & top])
        cell_ok = set(tr.key()[ok & top & (tr["current_A"] > 0.5 * i_top)].tolist())
        ok &= np.isin(tr.key(), list(cell_ok))
        x, y = tr["gate_V"][ok], np.sqrt(tr["current_A"][ok])
        (a, b), cov = np.polyfit(x, y, 1, cov=True)
        v_th, beta = -b / a, 2 * a * a
        se_a, se_b = np.sqrt(np.diag(cov))
        self.put("transistor.beta_A_per_V2", beta, 4 * abs(a) * se_a,
                 "transistor: √I linear in the read gate where the transistor saturates")
        self.put("transistor.v_th_V", v_th, float(np.hypot(se_b / a, b * se_a / a**2)),
                 "transistor: the same line's intercept")

    def gate_curve(self) -> None:
        gc = self.t.only("gate_curve")
        if not len(gc) or "transistor.beta_A_per_V2" not in self.est:
            return
        beta, v_th = self.val("transistor.beta_A_per_V2", 0), self.val("transistor.v_th_V", 0)
        i_sat = _i_sat(gc["stimulus_V"], beta, v_th)
        g = gc.g_S
        ok = self._healthy(gc) & (g > FORMED_ABOVE_S) & (i_sat > 0)
        ratio = g[ok] / i_sat[ok]  # = cap_factor · c2c / V_hold
        self.put("transistor.v_hold_V", 1.0 / ratio.mean(),
                 _se_mean(ratio) / ratio.mean() ** 2, "gate curve: G_cap = I_sat(V_g) / V_hold")
        self.notes["cap_scatter"] = float(np.std(ratio * (1.0 / ratio.mean()), ddof=1))

    def read_noise(self) -> None:
        nz = self.t.only("noise")
        if not len(nz):
            return
        base = nz["delay_s"] == 0.0
        key_b = dict(zip(nz.key()[base].tolist(), nz.g_S[base].tolist(), strict=True))
        later = ~base & np.isin(nz.key(), list(key_b))
        delays = np.unique(np.round(nz["delay_s"][later], 9))
        rows_a, rows_b, levels = [], [], []
        for lv in np.unique(nz["target_S"][later]):
            d_rel, f = [], []
            for d in delays:
                m = later & (np.round(nz["delay_s"], 9) == d) & (nz["target_S"] == lv)
                if m.sum() < 10:
                    continue
                gb = np.array([key_b[k] for k in nz.key()[m].tolist()])
                diff = nz.g_S[m] - gb
                floor2 = 2 * HELD["read.floor_sigma_S"] ** 2
                d_rel.append((np.var(diff, ddof=1) - floor2) / lv**2)
                f.append(_lf_shape(float(d)))
            if len(f) < 3:
                continue
            (b, a), *_ = np.linalg.lstsq(np.stack([np.array(f), np.ones(len(f))], 1),
                                         np.array(d_rel), rcond=None)
            rows_a.append(a / 2)
            rows_b.append(b / 2)
            levels.append(lv)
        if not levels:
            return
        wa = np.maximum(np.array(rows_a), 0.0)
        self.put("read.relative_sigma", np.sqrt(wa.mean()),
                 _se_mean(wa) / (2 * np.sqrt(max(wa.mean(), 1e-30))),
                 "noise series: the part of read-to-read variance shared by no delay")
        lb = np.log(np.maximum(np.array(rows_b), 1e-30))
        lg = np.log(np.array(levels) / HELD["read.lf_ref_G_S"])
        if len(levels) >= 3:
            (slope, icpt), cov = np.polyfit(lg, lb, 1, cov=True)
            se_s, se_i = np.sqrt(np.diag(cov))
            self.put("read.lf_g_exponent", -slope / 2, se_s / 2,
                     "noise series: low-frequency variance against level")
        else:
            icpt, se_i = float(lb.mean()), float("nan")
        rel = float(np.exp(icpt / 2))
        self.put("read.lf_relative_sigma", rel, rel * se_i / 2,
                 "noise series: growth of read-to-read variance with delay (1/f components)")

    def forming(self) -> None:
        fm = self.t.only("form")
        if len(fm) and "transistor.beta_A_per_V2" in self.est:
            beta, v_th = self.val("transistor.beta_A_per_V2", 0), self.val("transistor.v_th_V", 0)
            gates = fm["stimulus_V"]
            ok = self._healthy(fm) & np.isfinite(gates)
            steps = np.diff(np.unique(gates[ok]))
            step = float(steps.min()) if steps.size else 0.05
            g0 = float(np.nanmin(gates[ok]))
            hi = _i_sat(gates[ok], beta, v_th)
            lo = np.where(gates[ok] <= g0 + 1e-9, 0.0, _i_sat(gates[ok] - step, beta, v_th))
            mu, sd, se_mu, se_sd = _interval_normal(lo, hi)
            src = "forming ramp: gate at which each cell formed, through the transistor curve"
            self.put("switching.form_current_mean_A", mu, se_mu, src)
            self.put("switching.form_current_sigma_A", sd, se_sd, src)
        af = self.t.only("as_formed")
        unformed, n_known = 0, 0
        if len(fm):
            h = self._healthy(fm)
            unformed += int((h & ~np.isfinite(fm["stimulus_V"])).sum())
            n_known += int(h.sum())
        if len(af):
            h = self._healthy(af)
            g = af.g_S
            formed = h & (g > FORMED_ABOVE_S)
            unformed += int((h & ~formed).sum())
            n_known += int(h.sum())
            x = g[formed]
            noise = self.lf_var(x) + self.white_var(x, af["n_average"][formed])
            var = np.var(x, ddof=1) - np.mean(noise)
            self.put("switching.as_formed_mean_S", x.mean(), _se_mean(x),
                     "one FORM at a gate that does not cap the filament")
            self.put("switching.as_formed_sigma_S", np.sqrt(max(var, 0.0)), _se_std(x),
                     "the same, read noise removed (early relaxation is not)")
        if n_known:
            r = unformed / n_known
            self.put("faults.unformable_rate", r, np.sqrt(max(r * (1 - r), 1 / n_known) / n_known),
                     "cells of neither fault class that never formed")

    def hrs(self) -> None:
        hr = self.t.only("hrs")
        if not len(hr):
            return
        g = hr.g_S
        ok = self._healthy(hr) & (g > 0)
        x = g[ok & (g < np.quantile(g[ok], 0.99))]
        var = np.var(x, ddof=1) - np.mean(self.lf_var(x) + self.white_var(x, hr["n_average"][0]))
        self.put("switching.hrs_mean_S", x.mean(), _se_mean(x), "full RESET, read")
        self.put("switching.hrs_sigma_S", np.sqrt(max(var, 0.0)), _se_std(x),
                 "full RESET, read noise removed")

    def kinetics(self) -> None:
        for kind, v_key, g_key, held in (("set_kinetics", "switching.set_V0", "switching.set_gain",
                                          "switching.set_V_mean"),
                                         ("reset_kinetics", "switching.reset_V0",
                                          "switching.reset_gain", "switching.reset_V_mean")):
            k = self.t.only(kind)
            if not len(k):
                continue
            g0 = k["before_A"] / k["read_V"]
            g1 = k.g_S
            if kind == "set_kinetics":
                if "transistor.v_hold_V" not in self.est:
                    continue
                cap = _i_sat(k["pulse_gate_V"], self.val("transistor.beta_A_per_V2", 0),
                             self.val("transistor.v_th_V", 0)) / self.val("transistor.v_hold_V", 1)
                p = (g1 - g0) / (cap - g0)
            else:
                p = (g0 - g1) / (g0 - self.val("switching.hrs_mean_S", 0.5e-6))
            ok = self._healthy(k) & (p > P_RANGE[0]) & (p < P_RANGE[1]) & (g0 > 0)
            if ok.sum() < 20:
                continue
            y = np.log(-np.log1p(-p[ok])) - np.log(k["width_s"][ok] / HELD["switching.t_ref_s"])
            (slope, icpt), cov = np.polyfit(k["stimulus_V"][ok], y, 1, cov=True)
            se_s, se_i = np.sqrt(np.diag(cov))
            v0 = 1.0 / slope
            gain = float(np.exp(icpt + HELD[held] / v0))
            src = f"{kind}: ln(−ln(1 − p)) linear in the amplitude"
            self.put(v_key, v0, se_s / slope**2, src)
            self.put(g_key, gain, gain * float(np.hypot(se_i, HELD[held] * se_s)), src)
            resid = y - (slope * k["stimulus_V"][ok] + icpt)
            self.notes[f"{kind}_scatter"] = float(np.std(resid, ddof=2))

    def relaxation(self) -> None:
        lv = self.t.only("levels")
        if not len(lv):
            return
        ok = self._healthy(lv)
        levels = np.unique(lv["target_S"][ok])
        ages = lv["age_s"]
        s1: list[float] = []
        sd: list[float] = []
        se1: list[float] = []
        sed: list[float] = []
        for level in levels:
            for age, out, se in ((1.0, s1, se1), (86400.0, sd, sed)):
                m = ok & (lv["target_S"] == level) & (np.abs(ages - age) <= 0.1 * age)
                if m.sum() < 10:
                    return
                x = lv.g_S[m]
                var = np.var(x, ddof=1) - np.mean(self.white_var(x, lv["n_average"][m]))
                out.append(float(np.sqrt(max(var, 1e-30))))
                se.append(_se_std(x))
        sd = [max(a, b) for a, b in zip(s1, sd, strict=True)]
        src = "levels read at 1 s and 1 day (white read noise removed)"
        self.est["relaxation.table_G_S"] = Estimate([float(x) for x in levels],
                                                    [0.0] * len(levels), "programmed levels")
        self.est["relaxation.sigma_1s_S"] = Estimate(s1, se1, src)
        self.est["relaxation.sigma_1day_S"] = Estimate(sd, sed, src)
        hi = ok & (lv["target_S"] >= MEAN_SHIFT_FIT_ABOVE_S)
        keys = lv.key()[hi]
        _, inv = np.unique(keys, return_inverse=True)
        x = np.log1p(ages[hi])
        y = lv.g_S[hi]
        cnt = np.bincount(inv).astype(float)
        mx, my = np.bincount(inv, x) / cnt, np.bincount(inv, y) / cnt
        sxy = np.bincount(inv, (x - mx[inv]) * (y - my[inv]))
        sxx = np.bincount(inv, (x - mx[inv]) ** 2)
        use = (cnt >= 3) & (sxx > 0)
        slopes = sxy[use] / sxx[use]
        self.put("relaxation.mean_shift_S_per_ln_t", slopes.mean(), _se_mean(slopes),
                 "levels ≥ 8 µS: per-cell slope of G against ln(1 + age), averaged")


def _interval_normal(lo: np.ndarray, hi: np.ndarray) -> tuple[float, float, float, float]:
    """(μ, σ, se μ, se σ) of a normal from interval-censored values lo < x ≤ hi."""
    from scipy.optimize import minimize
    from scipy.stats import norm

    def nll(th: np.ndarray) -> float:
        mu, ls = th
        s = np.exp(ls)
        pr = norm.cdf((hi - mu) / s) - norm.cdf((lo - mu) / s)
        return float(-np.sum(np.log(np.maximum(pr, 1e-300))))

    mid = 0.5 * (lo + hi)
    r = minimize(nll, np.array([mid.mean(), np.log(max(mid.std(), 1e-9))]), method="BFGS")
    mu, ls = r.x
    cov = np.asarray(r.hess_inv)
    s = float(np.exp(ls))
    return float(mu), s, float(np.sqrt(abs(cov[0, 0]))), s * float(np.sqrt(abs(cov[1, 1])))


def fit_twin(t: td.Table) -> TwinFit:
    """Fit every preset parameter the table identifies (docs/simulator.md)."""
    f = _Fitter(t)
    f.survey()
    f.transistor()
    f.gate_curve()
    f.read_noise()
    f.forming()
    f.hrs()
    f.kinetics()
    f.relaxation()
    return TwinFit(f.est, f.notes, dict(UNIDENTIFIED))


def write_twin_preset(fit: TwinFit, path: str | Path, *, name: str, description: str) -> Path:
    """The fitted fields as a preset file (the preset's own section and field names) that
    loads as a station's ``preset:``; standard errors, sources and the unidentified
    parameters go under ``fit:``, which the preset loader skips."""
    body: dict[str, Any] = {"format": PRESET_FORMAT, "name": name, "description": description}
    body.update(fit.sections())
    body["fit"] = {
        "stderr": {k: e.stderr for k, e in fit.estimates.items()},
        "source": {k: e.source for k, e in fit.estimates.items()},
        "notes": fit.notes,
        "unidentified": fit.unidentified,
    }
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(yaml.safe_dump(_plain(body), sort_keys=False, allow_unicode=True),
                 encoding="utf-8")
    return p


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.floating | np.integer):
        return x.item()
    return x
