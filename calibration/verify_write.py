"""Batched verify-write with a pluggable policy, until every cell is in its band.

Each iteration reads all pending cells in one call, decides per cell (vectorized) and plans
one SET batch and one RESET batch — never a Python loop over cells. The engine and its
acceptance rules are :mod:`calibration.programming`; how the next pulse is chosen is a
policy (:mod:`calibration.policies`), selected in the protocol with ``policy: {kind: ...}``:
``gate`` (default: gate-voltage ladder for SET, the ``reset`` amplitude ramp for RESET),
``amplitude`` (NeuRRAM ramps ``set`` / ``reset``, Wan et al. 2022 — docs/references.md) or
``pulse_width``. Cells the chip's calibration record already marks unformed or stuck are
*skipped* (never pulsed); cells found stuck are marked in it.

Resumable: the state is checkpointed before every pulse batch. A resumed run re-reads the
pending cells and re-plans them from the checkpointed state; cells that had finished are never
pulsed again and are re-read in the closing read of the region — the same read an
uninterrupted run makes, so on the simulator (whose noise is keyed per cell and per event) a
resumed run repeats the uninterrupted run exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from calibration import programming as pg
from calibration import region as reg
from calibration.faults import classify
from calibration.policies import POLICY, check_policy, make_policy, ramp_section
from calibration.targets import (
    TARGET,
    check_target,
    fingerprint,
    make_target,
    record_programmed_end,
    region_key,
)
from labctl.core.backend import ChipInfo
from labctl.core.calibration_record import FAULT_CODES
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine import Checkpoint, PulseBatch, RoutineSpec, StepContext
from labctl.core.routine_params import Bool, Float, Int, Param, ParamError, validate

PENDING, CONVERGED, GAVE_UP, STUCK, SKIPPED = (pg.PENDING, pg.CONVERGED, pg.GAVE_UP, pg.STUCK,
                                               pg.SKIPPED)
OUTCOMES = pg.OUTCOMES
KNOWN_BAD = [FAULT_CODES[k] for k in ("unformed", "stuck_lrs", "stuck_hrs")]

PARAMS: dict[str, Param] = {
    **reg.PULSE_PARAMS,
    "target": TARGET,
    "policy": POLICY,
    "tolerance_S": Float("acceptance band half-width (NeuRRAM: ±1 µS)", unit="S",
                         min=1e-8, max=20e-6, default=1e-6),
    "aim_S": Float("stop pulsing when a read is this close to the target (0: half the band)",
                   unit="S", min=0.0, max=20e-6, default=0.0),
    "read_V": Float("verify-read voltage across the cell (NeuRRAM 0.1–0.2 V)", unit="V",
                    min=0.05, max=0.3, default=0.2),
    "n_average": Int("reads averaged per verify (NeuRRAM: 3–8)", min=1, max=64, default=3),
    "confirm": Bool("require a second read in the band before accepting (NeuRRAM)",
                    default=True),
    "skip_known_faults": Bool("leave cells the chip's calibration record marks unformed or "
                              "stuck unpulsed (outcome 'skipped')", default=True),
    "max_pulses": Int("pulses per cell before giving up (NeuRRAM: 30 at the top voltage per "
                      "polarity)", min=1, max=10000, default=60),
    "max_alternations": Int("SET/RESET direction changes per cell (NeuRRAM: 20–50)", min=0,
                            max=10000, default=20),
    "max_device_time_s": Float("device time per cell: pulse widths plus reads (NeuRRAM: 10 s)",
                               unit="s", min=1e-6, max=1e4, default=10.0),
    "stuck_pulses": Int("consecutive pulses in one direction without progress before calling "
                        "a cell stuck", min=1, max=1000, default=12),
    "stuck_delta_S": Float("progress toward the target below which a pulse counts as none",
                           unit="S", min=0.0, max=1e-4, default=0.2e-6),
    "set": ramp_section("SET amplitude ramp (bit line; gate 2.5–3.0 V per NeuRRAM)", 1.2, 3.3,
                        2.8, 1e-6),
    "reset": ramp_section("RESET amplitude ramp (source line, gate fully on)", 1.2, 2.5, 5.0,
                          1e-6),
}


_DEFAULT_SET = validate({"set": PARAMS["set"]}, {})["set"]


def check(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    reg.check_region(params["region"], chip)
    check_target(params["target"], reg.region_shape(params["region"]), chip)
    for key, limit in (("set", env.max_bitline_V), ("reset", env.max_sourceline_V)):
        r = params[key]
        if r["stop_V"] > limit:
            raise ParamError(f"{key}.stop_V", f"must be ≤ {limit:g} V (the safety envelope); "
                             f"got {r['stop_V']:g}")
        if r["start_V"] > r["stop_V"]:
            raise ParamError(f"{key}.start_V", "must not exceed stop_V")
        if r["gate_V"] > env.max_gate_V:
            raise ParamError(f"{key}.gate_V", f"must be ≤ {env.max_gate_V:g} V (the safety "
                             f"envelope); got {r['gate_V']:g}")
        if not env.min_width_s <= r["width_s"] <= env.max_width_s:
            raise ParamError(f"{key}.width_s", f"must be within {env.min_width_s:g} s ≤ value ≤ "
                             f"{env.max_width_s:g} s (the safety envelope)")
    check_policy(params["policy"], env, chip)
    if params["policy"]["kind"] != "amplitude" and params["set"] != _DEFAULT_SET:
        raise ParamError("set", f"is used only by policy kind 'amplitude'; the "
                         f"'{params['policy']['kind']}' policy takes its SET settings from "
                         "policy (e.g. policy.set_V, policy.set_width_s) — remove 'set' or "
                         "choose policy: {kind: amplitude}")
    if params["read_V"] > env.max_read_V:
        raise ParamError("read_V", f"must be ≤ {env.max_read_V:g} V (the safety envelope)")


def run(ctx: StepContext) -> Iterator[Checkpoint]:
    p = ctx.params
    be = ctx.backend
    cells = reg.region_cells(p["region"])
    shape = reg.region_shape(p["region"])
    n = len(cells)
    target = make_target(p["target"], shape, ctx.seed).reshape(-1)
    settings = pg.Settings.from_params(p)
    policy = make_policy(p["policy"], p["set"], p["reset"])

    if ctx.resume is None:
        st = pg.new_state(n, policy)
        if p["skip_known_faults"]:
            known = ctx.calibration.fault_map[cells.tile, cells.row, cells.col]
            st["outcome"][np.isin(known, KNOWN_BAD)] = SKIPPED
        iteration = 0
    else:
        st = {k: np.array(v) for k, v in ctx.resume.state.items()}
        iteration = int(ctx.resume.meta["iteration"])
        ctx.event("resumed from a checkpoint: pending cells are re-read and re-planned; "
                  "finished cells get no pulse and are re-read in the closing read",
                  iteration=iteration, converged=int((st["outcome"] == CONVERGED).sum()))

    for planned in pg.iterate(be, cells, target, settings, policy, st):
        iteration += 1
        batches = [PulseBatch(cells.subset(q.idx), q.kind, q.amplitude_V, q.gate_V, q.width_s)
                   for q in planned]
        yield Checkpoint(state=st, pulses=batches, meta={"iteration": iteration},
                         done=int((st["outcome"] != PENDING).sum()), total=n)

    t_end = be.clock.now()  # programming ends here; the closing read comes after it
    g_final = be.read(cells, settings.read_V, n_average=settings.n_average)
    _report(ctx, st, target, g_final, shape, iteration, t_end)


def _report(ctx: StepContext, st: Mapping[str, np.ndarray], target: np.ndarray,
            g_final: np.ndarray, shape: tuple[int, int], iterations: int,
            t_end_s: float) -> None:
    out = st["outcome"]
    conv = out == CONVERGED
    ctx.save_arrays(target_S=target.reshape(shape), g_final_S=g_final.reshape(shape),
                    outcome=out.reshape(shape), n_pulses=st["n_pulses"].reshape(shape))
    ctx.result(**pg.summary(dict(st), g_final, target), iterations=iterations,
               policy=ctx.params["policy"]["kind"], outcome_codes=OUTCOMES)
    cells = reg.region_cells(ctx.params["region"])
    stuck = out == STUCK
    if stuck.any():
        code = classify(np.zeros(stuck.shape, bool), stuck, g_final, target,
                        went_up=st["last_dir"] > 0,
                        window_S=(ctx.chip.g_min_S, ctx.chip.g_max_S))
        for fault in ("stuck_lrs", "stuck_hrs"):  # the rest switched: no fault to record
            c = cells.subset(stuck & (code == FAULT_CODES[fault]))
            ctx.calibration.mark_faults(c.tile, c.row, c.col, fault)
    if conv.any():
        ok = cells.subset(conv)
        ctx.calibration.mark_faults(ok.tile, ok.row, ok.col, "ok")
        ctx.calibration.programming["verify_write"] = {
            k: ctx.params[k] for k in ("tolerance_S", "aim_S", "read_V", "n_average", "policy",
                                       "set", "reset", "max_pulses")
        } | {"success_rate": float(conv.sum() / max(int((out != SKIPPED).sum()), 1))}
        targets = ctx.calibration.programming.setdefault("targets", {})
        targets[region_key(ctx.params["region"])] = fingerprint(target)
    record_programmed_end(ctx.calibration.programming, ctx.params["region"], t_end_s)
    ctx.touch_calibration()


ROUTINE = RoutineSpec("verify_write", __doc__ or "", PARAMS, run, check)
