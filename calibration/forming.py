"""Forming with a gate-ramp compliance, stopping per cell as it forms.

Every pristine cell gets FORM pulses on the bit line (3.3 V, 1 ms) while its gate voltage
ramps from 1.3 V in 0.05 V steps (Stanford NI-RRAM-Python 1T1R controller settings —
docs/references.md); the gate caps the forming current so the filament is not overshot. After each
pulse the pending cells are read; a cell whose conductance exceeds ``formed_threshold_S`` is
formed and gets no more pulses. Cells still below it after the top gate voltage are reported
unformable and marked ``unformed`` in the chip's calibration record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from calibration import region as reg
from labctl.core.backend import Backend, ChipInfo, PulseKind
from labctl.core.cells import Cells
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine import Checkpoint, PulseBatch, RoutineSpec, StepContext
from labctl.core.routine_params import Float, Int, Param, ParamError

PENDING, FORMED, UNFORMABLE = 0, 1, 2
OUTCOMES = {"pending": PENDING, "formed": FORMED, "unformable": UNFORMABLE}

PARAMS: dict[str, Param] = {
    **reg.PULSE_PARAMS,
    "bitline_V": Float("FORM bit-line amplitude", unit="V", min=0.5, max=5.0, default=3.3),
    "gate_start_V": Float("first gate voltage of the ramp", unit="V", min=0.0, max=6.0,
                          default=1.3),
    "gate_step_V": Float("gate increase per pulse", unit="V", min=0.001, max=1.0, default=0.05),
    "gate_stop_V": Float("last gate voltage of the ramp", unit="V", min=0.0, max=6.0,
                         default=4.0),
    "width_s": Float("FORM pulse width", unit="s", min=1e-9, max=1e-2, default=1e-3),
    "formed_threshold_S": Float("a cell reading above this is formed", unit="S", min=1e-8,
                                max=1e-3, default=5e-6),
    "read_V": Float("verify-read voltage", unit="V", min=0.05, max=0.3, default=0.2),
    "n_average": Int("reads averaged per verify", min=1, max=64, default=1),
}


def check(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    reg.check_region(params["region"], chip)
    if params["bitline_V"] > env.max_bitline_V:
        raise ParamError("bitline_V", f"must be ≤ {env.max_bitline_V:g} V (the safety envelope);"
                         f" got {params['bitline_V']:g}")
    if params["gate_stop_V"] > env.max_gate_V:
        raise ParamError("gate_stop_V", f"must be ≤ {env.max_gate_V:g} V (the safety envelope);"
                         f" got {params['gate_stop_V']:g}")
    if params["gate_start_V"] > params["gate_stop_V"]:
        raise ParamError("gate_start_V", "must not exceed gate_stop_V")
    if not env.min_width_s <= params["width_s"] <= env.max_width_s:
        raise ParamError("width_s", f"must be within {env.min_width_s:g} s ≤ value ≤ "
                         f"{env.max_width_s:g} s (the safety envelope)")
    if params["read_V"] > env.max_read_V:
        raise ParamError("read_V", f"must be ≤ {env.max_read_V:g} V (the safety envelope)")


def n_levels(p: Mapping[str, Any]) -> int:
    """Gate voltages in the ramp, both ends included."""
    return int(np.floor((p["gate_stop_V"] - p["gate_start_V"]) / p["gate_step_V"] + 1e-9)) + 1


def new_state(n: int) -> dict[str, np.ndarray]:
    return {"outcome": np.zeros(n, np.int8), "level": np.zeros(n, np.int64),
            "gate_at_form_V": np.full(n, np.nan)}


def iterate(be: Backend, cells: Cells, p: Mapping[str, Any],
            st: dict[str, np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Read → decide, until no cell is pending. Yields the indices of the cells to pulse next
    and their gate voltages; the caller applies the FORM pulses (directly, or through the
    runner's checkpoints) before resuming. ``p`` holds the ramp parameters of :data:`PARAMS`."""
    levels = n_levels(p)
    while True:
        act = np.flatnonzero(st["outcome"] == PENDING)
        if act.size == 0:
            return
        g = be.read(cells.subset(act), p["read_V"], n_average=p["n_average"])
        formed = g > p["formed_threshold_S"]
        st["outcome"][act[formed]] = FORMED
        last = st["level"][act] - 1
        st["gate_at_form_V"][act[formed]] = np.where(  # NaN: read formed before any pulse
            last[formed] >= 0, p["gate_start_V"] + last[formed] * p["gate_step_V"], np.nan)
        rest = act[~formed]
        spent = st["level"][rest] >= levels
        st["outcome"][rest[spent]] = UNFORMABLE
        go = rest[~spent]
        gate = np.minimum(p["gate_start_V"] + st["level"][go] * p["gate_step_V"],
                          p["gate_stop_V"])
        st["level"][go] += 1
        yield go, gate


def default_params() -> dict[str, Any]:
    """The ramp parameters of :data:`PARAMS` at their defaults (no region)."""
    return {k: v.default for k, v in PARAMS.items() if k not in reg.PULSE_PARAMS}


def form_direct(be: Backend, cells: Cells, p: Mapping[str, Any] | None = None,
                skip: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Form ``cells`` applying the FORM pulses directly (no run file, no checkpoints): the
    same ramp and per-cell stop as the routine. ``p`` overrides :func:`default_params`;
    ``skip`` marks cells to leave alone (outcome FORMED, never pulsed — e.g. cells already
    known to be formed). Returns the state (``outcome``, ``level`` = pulses,
    ``gate_at_form_V``)."""
    q = {**default_params(), **(p or {})}
    st = new_state(len(cells))
    if skip is not None:
        st["outcome"][skip] = FORMED
    for go, gate in iterate(be, cells, q, st):
        if go.size:
            be.pulse(cells.subset(go), PulseKind.FORM, q["bitline_V"], gate, q["width_s"])
    return st


def run(ctx: StepContext) -> Iterator[Checkpoint]:
    p = ctx.params
    be = ctx.backend
    region = p["region"]
    shape = reg.region_shape(region)
    cells = reg.region_cells(region)
    n = len(cells)
    if ctx.resume is None:
        st = new_state(n)
    else:
        st = {k: np.array(v) for k, v in ctx.resume.state.items()}
        ctx.event("resumed from a checkpoint: pending cells are re-read and re-planned; formed "
                  "cells get no pulse and are re-read in the closing read")

    for go, gate in iterate(be, cells, p, st):
        batches = ([PulseBatch(cells.subset(go), PulseKind.FORM, p["bitline_V"], gate,
                               p["width_s"])] if go.size else [])
        yield Checkpoint(state=st, pulses=batches, done=int((st["outcome"] != PENDING).sum()),
                         total=n)

    g_final = be.read(cells, p["read_V"], n_average=p["n_average"])
    out = st["outcome"]
    ctx.save_arrays(g_formed_S=g_final.reshape(shape), outcome=out.reshape(shape),
                    gate_at_form_V=st["gate_at_form_V"].reshape(shape),
                    n_pulses=st["level"].reshape(shape))
    formed = out == FORMED
    ctx.result(formed=int(formed.sum()), unformable=int((out == UNFORMABLE).sum()),
               n_cells=n, yield_fraction=float(formed.mean()) if n else 0.0,
               mean_gate_at_form_V=float(np.nanmean(st["gate_at_form_V"])) if formed.any()
               else float("nan"),
               mean_pulses=float(st["level"].mean()) if n else 0.0,
               outcome_codes=OUTCOMES)
    for mask, fault in ((formed, "ok"), (out == UNFORMABLE, "unformed")):
        c = cells.subset(mask)
        ctx.calibration.mark_faults(c.tile, c.row, c.col, fault)
    ctx.calibration.programming["forming"] = {
        k: p[k] for k in ("bitline_V", "gate_start_V", "gate_step_V", "gate_stop_V", "width_s")}
    ctx.touch_calibration()


ROUTINE = RoutineSpec("forming", __doc__ or "", PARAMS, run, check)
