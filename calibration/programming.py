"""The batched verify-write engine, independent of the runner.

One iteration reads every pending cell in one call, decides per cell (vectorized) and plans
at most one SET batch and one RESET batch, whose parameters a :mod:`calibration.policies`
policy chooses. The routine ``verify_write`` wraps it in checkpoints; :func:`program_direct`
applies it straight to a backend (bench, refresh, tests).

Acceptance (NeuRRAM chip test code, Wan et al. 2022 — docs/references.md): a cell stops being
pulsed when an averaged read lands within ``aim_S`` of its target, and is *converged* when
the next read (no pulse between) confirms it within the ±``tolerance_S`` band. ``aim_S``
defaults to half the band so that the accepted cells sit near the centre of the band, not at
its edges (with 1.5 % read noise, accepting at the band edge would leave an RMS error above
the uniform-band 0.58 µS). Per-cell limits, all from NeuRRAM: pulses (30 at the top
voltage per polarity there; here a total budget), SET/RESET alternations (20–50) and device
time (10 s per cell). A cell is *stuck* when ``stuck_pulses`` consecutive pulses in one
direction brought it no closer to its target by ``stuck_delta_S``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration.policies import Policy
from labctl.core.backend import Backend, PulseKind
from labctl.core.cells import Cells

PENDING, CONVERGED, GAVE_UP, STUCK, SKIPPED = 0, 1, 2, 3, 4
OUTCOMES = {"pending": PENDING, "converged": CONVERGED, "gave_up": GAVE_UP, "stuck": STUCK,
            "skipped": SKIPPED}
LIMIT_NONE, LIMIT_PULSES, LIMIT_ALTERNATIONS, LIMIT_TIME = 0, 1, 2, 3
LIMITS = {"none": LIMIT_NONE, "pulses": LIMIT_PULSES, "alternations": LIMIT_ALTERNATIONS,
          "device_time": LIMIT_TIME}


@dataclass(frozen=True)
class Settings:
    """Acceptance band and per-cell limits (defaults: NeuRRAM — docs/references.md)."""

    tolerance_S: float = 1e-6
    """Acceptance band half-width (NeuRRAM ±1 µS)."""
    aim_S: float = 0.5e-6
    """Stop pulsing when a read is this close to the target; the confirming read then
    only has to fall in the band."""
    read_V: float = 0.2
    """Verify read (NeuRRAM 0.1–0.2 V)."""
    n_average: int = 3
    """Reads averaged per verify (NeuRRAM 3–8)."""
    confirm: bool = True
    max_pulses: int = 60
    max_alternations: int = 20
    max_device_time_s: float = 10.0
    read_time_s: float = 1e-6
    """Device time booked per single read, for the device-time limit."""
    stuck_pulses: int = 12
    stuck_delta_S: float = 0.2e-6

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> Settings:
        keys = cls.__dataclass_fields__
        aim = p.get("aim_S")
        kw = {k: p[k] for k in keys if k in p and k != "aim_S"}
        s = cls(**kw)
        a = 0.5 * s.tolerance_S if aim is None or aim <= 0 else min(aim, s.tolerance_S)
        return cls(**{**kw, "aim_S": a})


@dataclass(frozen=True)
class Planned:
    """One pulse call the engine wants: indices into the batch and per-cell parameters."""

    kind: PulseKind
    idx: np.ndarray
    amplitude_V: np.ndarray
    gate_V: np.ndarray
    width_s: np.ndarray


def new_state(n: int, policy: Policy) -> dict[str, np.ndarray]:
    return {"outcome": np.zeros(n, np.int8), "limit": np.zeros(n, np.int8),
            "n_pulses": np.zeros(n, np.int64), "n_set": np.zeros(n, np.int64),
            "n_reset": np.zeros(n, np.int64), "alternations": np.zeros(n, np.int64),
            "last_dir": np.zeros(n, np.int8), "candidate": np.zeros(n, bool),
            "ref_err_S": np.full(n, np.inf), "no_progress": np.zeros(n, np.int64),
            "device_time_s": np.zeros(n), **policy.new_state(n)}


def plan(st: dict[str, np.ndarray], act: np.ndarray, g_S: np.ndarray, target_S: np.ndarray,
         s: Settings, policy: Policy) -> list[Planned]:
    """Update ``st`` for the reads ``g_S`` of cells ``act`` and plan their next pulses."""
    st["device_time_s"][act] += s.read_time_s * s.n_average
    err = g_S - target_S[act]
    aerr = np.abs(err)
    in_band = aerr <= s.tolerance_S
    accept = in_band & st["candidate"][act] if s.confirm else aerr <= s.aim_S
    st["outcome"][act[accept]] = CONVERGED
    close = (aerr <= s.aim_S) & ~accept & s.confirm
    st["candidate"][act] = close
    need = ~accept & ~close
    direction = np.where(err < 0, 1, -1).astype(np.int8)
    # stuck: no progress over consecutive pulses in one direction
    same = direction == st["last_dir"][act]
    progress = aerr < st["ref_err_S"][act] - s.stuck_delta_S
    restart = ~same | progress
    st["ref_err_S"][act] = np.where(restart, aerr, st["ref_err_S"][act])
    st["no_progress"][act] = np.where(restart, 0, st["no_progress"][act] + 1)
    stuck = need & (st["no_progress"][act] >= s.stuck_pulses)
    st["outcome"][act[stuck]] = STUCK
    go = need & ~stuck
    flip = go & (st["last_dir"][act] != 0) & ~same
    limits = ((st["n_pulses"][act] >= s.max_pulses, LIMIT_PULSES),
              (st["alternations"][act] + flip >= s.max_alternations + 1, LIMIT_ALTERNATIONS),
              (st["device_time_s"][act] >= s.max_device_time_s, LIMIT_TIME))
    for hit, code in limits:
        h = go & hit
        st["outcome"][act[h]] = GAVE_UP
        st["limit"][act[h]] = code
        go &= ~hit
    out: list[Planned] = []
    for sign, kind in ((1, PulseKind.SET), (-1, PulseKind.RESET)):
        m = go & (direction == sign)
        if not m.any():
            continue
        idx = act[m]
        fresh = st["last_dir"][idx] != sign
        fn = policy.set_pulses if sign == 1 else policy.reset_pulses
        amp, gate, width = fn(st, idx, g_S[m], target_S[idx], fresh)
        st["alternations"][idx] += (st["last_dir"][idx] == -sign)
        st["last_dir"][idx] = sign
        st["n_pulses"][idx] += 1
        st["n_set" if sign == 1 else "n_reset"][idx] += 1
        st["device_time_s"][idx] += width
        out.append(Planned(kind, idx, amp, gate, width))
    return out


def iterate(be: Backend, cells: Cells, target_S: np.ndarray, s: Settings, policy: Policy,
            st: dict[str, np.ndarray]) -> Iterator[list[Planned]]:
    """Read → plan, until no cell is pending. Yields each iteration's planned pulses; the
    caller applies them (directly, or through the runner's checkpoints) before resuming."""
    while True:
        act = np.flatnonzero(st["outcome"] == PENDING)
        if act.size == 0:
            return
        g = be.read(cells.subset(act), s.read_V, n_average=s.n_average)
        yield plan(st, act, g, target_S, s, policy)


def program_direct(be: Backend, cells: Cells, target_S: np.ndarray, s: Settings,
                   policy: Policy, skip: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Verify-write ``cells`` to ``target_S`` applying pulses directly (no run file).
    ``skip`` marks cells to leave alone (outcome SKIPPED)."""
    st = new_state(len(cells), policy)
    if skip is not None:
        st["outcome"][skip] = SKIPPED
    for planned in iterate(be, cells, np.asarray(target_S, float), s, policy, st):
        for p in planned:
            be.pulse(cells.subset(p.idx), p.kind, p.amplitude_V, p.gate_V, p.width_s)
    return st


def summary(st: dict[str, np.ndarray], g_final_S: np.ndarray,
            target_S: np.ndarray) -> dict[str, Any]:
    """Key figures of a finished verify-write: outcome counts, converged fraction over cells
    not stuck or skipped, RMS error of the converged cells and of all non-stuck cells."""
    out = st["outcome"]
    conv = out == CONVERGED
    usable = (out != STUCK) & (out != SKIPPED)
    err = g_final_S - target_S
    counts = {name: int((out == code).sum()) for name, code in OUTCOMES.items() if code}
    n = max(int(out.size), 1)
    return {**counts, "n_cells": int(out.size),
            "success_rate": float(conv.sum() / max(int(usable.sum()), 1)),
            "mean_pulses": float(st["n_pulses"].mean()) if out.size else 0.0,
            "mean_set_pulses": float(st["n_set"].sum() / n),
            "mean_reset_pulses": float(st["n_reset"].sum() / n),
            "max_pulses_used": int(st["n_pulses"].max()) if out.size else 0,
            "mean_alternations": float(st["alternations"].mean()) if out.size else 0.0,
            "rms_error_converged_S": float(np.sqrt(np.mean(err[conv] ** 2))) if conv.any()
            else float("nan"),
            "rms_error_usable_S": float(np.sqrt(np.mean(err[usable] ** 2))) if usable.any()
            else float("nan"),
            "gave_up_by_limit": {k: int(((out == GAVE_UP) & (st["limit"] == c)).sum())
                                 for k, c in LIMITS.items() if c}}
