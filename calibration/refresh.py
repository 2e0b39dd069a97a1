"""Routine ``refresh``: on a schedule, re-program the cells whose measured drift exceeds a
tolerance (:mod:`calibration.refresh_core`).

Round k (k = 1 … ``n_rounds``) happens ``k·interval_s`` after the step starts (virtual time
on the simulator): every cell of the region is read (averaged), the cells further than
``drift_tolerance_S`` from their target are verify-written again with the chosen policy, and
the RMS error before and after is reported (and, with ``mvm_error``, the relative MVM
error of the block against its targets after the round). The default tolerance, 0.5 µS, is the
verify-write aim band (:mod:`calibration.programming`), so a refreshed block is as accurate
as a freshly programmed one; with the NeuRRAM-fitted spread of 2.8–3.9 µS after a day
(docs/references.md) that means most cells. Cells known faulty are left alone. Checkpointed before
every pulse batch, like verify-write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from calibration import compensation as cp
from calibration import programming as pg
from calibration import region as reg
from calibration.faults import is_bad
from calibration.policies import POLICY, check_policy, make_policy, ramp_section
from calibration.refresh_core import drifted
from calibration.targets import (
    TARGET,
    check_target,
    fingerprint,
    make_target,
    record_programmed_end,
    region_key,
)
from labctl.core.backend import ChipInfo
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import ConfigError
from labctl.core.routine import Checkpoint, PulseBatch, RoutineSpec, StepContext
from labctl.core.routine_params import Bool, Float, Int, Param, ParamError

PARAMS: dict[str, Param] = {
    **reg.PULSE_PARAMS,
    "target": TARGET,
    "policy": POLICY,
    "reset": ramp_section("RESET amplitude ramp (source line, gate fully on)", 1.2, 2.5, 5.0,
                          1e-6),
    "drift_tolerance_S": Float("re-program cells further than this from target", unit="S",
                               min=0.0, max=20e-6, default=0.5e-6),
    "tolerance_S": Float("verify-write band half-width (NeuRRAM ±1 µS)", unit="S", min=1e-8,
                         max=20e-6, default=1e-6),
    "interval_s": Float("time between refresh rounds (first round after one interval)",
                        unit="s", min=0.0, max=1e8, default=86400.0),
    "n_rounds": Int("refresh rounds", min=1, max=1000, default=1),
    "n_average": Int("reads averaged for the drift measurement", min=1, max=64, default=8),
    "mvm_error": Bool("after each round, also report the relative MVM error of the block read "
                      "as a differential matrix against its targets (needs even columns)",
                      default=False),
}


def check(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    reg.check_region(params["region"], chip)
    check_target(params["target"], reg.region_shape(params["region"]), chip)
    if params["reset"]["stop_V"] > env.max_sourceline_V:
        raise ParamError("reset.stop_V", f"must be ≤ {env.max_sourceline_V:g} V (the safety "
                         "envelope)")
    check_policy(params["policy"], env, chip)
    if params["mvm_error"] and reg.region_shape(params["region"])[1] % 2:
        raise ParamError("mvm_error", "needs an even number of region columns (pairs)")


def _mvm_error(ctx: StepContext, g_S: np.ndarray, target_S: np.ndarray,
               usable: np.ndarray) -> float:
    """‖y − x·W‖/‖x·W‖ on 128 fixed random inputs; faulty cells enter W as read."""
    r = ctx.params["region"]
    shape = reg.region_shape(r)
    view = cp.MvmView(r["tile"], tuple(r["rows"]), tuple(r["cols"]), differential=True)
    W = view.weights_S(np.where(usable, target_S, g_S).reshape(shape))
    x = cp.reference_inputs(shape[0], 128, ctx.chip.mvm_input_max_V, 102)
    return cp.relative_error(view.mvm(ctx.backend, x), x @ W)


def run(ctx: StepContext) -> Iterator[Checkpoint]:
    p = ctx.params
    be = ctx.backend
    cells = reg.region_cells(p["region"])
    n = len(cells)
    target = make_target(p["target"], reg.region_shape(p["region"]), ctx.seed).reshape(-1)
    programmed = ctx.calibration.programming.get("targets", {}).get(region_key(p["region"]))
    if programmed is not None and programmed != fingerprint(target):
        raise ConfigError(
            "refresh", "target",
            f"the target this protocol and seed ({ctx.seed}) give for region "
            f"{region_key(p['region'])} is not the one verify-write programmed on chip "
            f"{ctx.chip.chip_id}; refresh re-programs cells to their programmed targets, so "
            "use the same target and --seed as the programming run (nothing was applied)")
    usable = ~is_bad(ctx.calibration.fault_map[cells.tile, cells.row, cells.col])
    settings = pg.Settings(tolerance_S=p["tolerance_S"])
    policy = make_policy(p["policy"], {}, p["reset"])
    rounds = p["n_rounds"]
    if ctx.resume is None:
        st: dict[str, np.ndarray] = {
            "k": np.array(0), "phase": np.array(0), "t0_s": np.array(be.clock.now()),
            "fraction": np.full(rounds, np.nan), "rms_before_S": np.full(rounds, np.nan),
            "rms_after_S": np.full(rounds, np.nan), "mvm_error": np.full(rounds, np.nan),
            **pg.new_state(n, policy)}
    else:
        st = {k: np.array(v) for k, v in ctx.resume.state.items()}
    while int(st["k"]) < rounds:
        k = int(st["k"])
        if int(st["phase"]) == 0:
            wait = float(st["t0_s"]) + (k + 1) * p["interval_s"] - be.clock.now()
            if wait > 0:
                be.clock.wait(wait)
            g = be.read(cells, n_average=p["n_average"])
            sel = drifted(g, target, p["drift_tolerance_S"], usable)
            st |= pg.new_state(n, policy)
            st["outcome"][~sel] = pg.SKIPPED
            st["fraction"][k] = sel.mean()
            st["rms_before_S"][k] = np.sqrt(np.mean((g - target)[usable] ** 2))
            st["phase"] = np.array(1)
        for planned in pg.iterate(be, cells, target, settings, policy, st):
            yield Checkpoint(state=st, pulses=[
                PulseBatch(cells.subset(q.idx), q.kind, q.amplitude_V, q.gate_V, q.width_s)
                for q in planned], meta={"round": k},
                done=int((st["outcome"] != pg.PENDING).sum()), total=n)
        if st["fraction"][k] > 0:  # re-programmed cells: the block's age restarts here
            record_programmed_end(ctx.calibration.programming, p["region"], be.clock.now())
        g = be.read(cells, n_average=p["n_average"])
        st["rms_after_S"][k] = np.sqrt(np.mean((g - target)[usable] ** 2))
        if p["mvm_error"]:
            st["mvm_error"][k] = _mvm_error(ctx, g, target, usable)
        st["k"], st["phase"] = np.array(k + 1), np.array(0)
        yield Checkpoint(state=st, meta={"round": k}, done=n, total=n)
    ctx.save_arrays(refresh_fraction=st["fraction"], refresh_rms_before_S=st["rms_before_S"],
                    refresh_rms_after_S=st["rms_after_S"])
    ctx.result(rounds=rounds, fraction_refreshed=[round(float(f), 4) for f in st["fraction"]],
               rms_before_uS=[round(float(v) * 1e6, 3) for v in st["rms_before_S"]],
               rms_after_uS=[round(float(v) * 1e6, 3) for v in st["rms_after_S"]],
               drift_tolerance_S=p["drift_tolerance_S"],
               **({"mvm_error_after": [round(float(v), 4) for v in st["mvm_error"]]}
                  if p["mvm_error"] else {}))
    ctx.calibration.programming["refresh"] = {"drift_tolerance_S": p["drift_tolerance_S"],
                                              "interval_s": p["interval_s"]}
    ctx.touch_calibration()


ROUTINE = RoutineSpec("refresh", __doc__ or "", PARAMS, run, check)
