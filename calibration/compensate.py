"""Routine ``compensate``: calibrate drift compensation of a programmed block, let it drift,
and measure how much of the MVM error compensation removes.

The block (even number of columns, read as a differential matrix W = G(even) − G(odd), the
NeuRRAM / AIHWKit pair layout — docs/references.md "Weight mapping") was programmed to ``target``
(the same target spec and seed as the verify-write step). At the baseline — ``baseline_age_s``
after the region's programming ended (verify-write and refresh record when, in the calibration
record; if it is already older, at once) — the reference input of
:class:`~calibration.compensation.GlobalDriftCompensation` is run and mean |y0| stored (the
drift baseline), and the MVM error against x·W is measured on test inputs
(``mvm_error_baseline``). Every figure states its age: ``baseline_age_s`` and
``measurement_age_s`` are the time since programming ended (absent when the record does not
say when that was). After
``wait_s`` (virtual on the simulator) the error is measured raw, with global compensation,
and with global compensation followed by the per-column affine correction fitted on separate
calibration inputs (:class:`~calibration.compensation.ColumnAffineCorrection`). Cells the
chip's calibration record marks faulty enter W with their measured conductance (they are a
remapping problem, not drift). The baseline, the scale and the per-column gain / offset go
into the calibration record (gain and offset of output k at both columns of its pair).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from calibration import compensation as cp
from calibration import region as reg
from calibration.faults import is_bad
from calibration.targets import TARGET, check_target, make_target, programmed_end_s
from labctl.core.backend import ChipInfo
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine import Checkpoint, RoutineSpec, StepContext
from labctl.core.routine_params import Float, Int, Param, ParamError

PARAMS: dict[str, Param] = {
    **reg.PARAMS,
    "target": TARGET,
    "baseline_age_s": Float("age of the block at the baseline: time since its programming "
                            "ended", unit="s", min=0.0, max=1e8, default=1.0),
    "wait_s": Float("drift time between baseline and measurement", unit="s", min=0.0,
                    max=1e8, default=86400.0),
    "n_reference": Int("reference input vectors (global compensation)", min=1, max=4096,
                       default=32),
    "n_calibration": Int("calibration input vectors (per-column affine fit)", min=2,
                         max=4096, default=128),
    "n_test": Int("test input vectors for the error figures", min=1, max=4096, default=256),
    "input_seed": Int("seed of the reference / calibration / test inputs", min=0,
                      default=100),
    "n_average": Int("reads averaged for faulty cells' conductance", min=1, max=64, default=8),
}


def check(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    reg.check_region(params["region"], chip)
    check_target(params["target"], reg.region_shape(params["region"]), chip)
    if reg.region_shape(params["region"])[1] % 2:
        raise ParamError("region.cols", "needs an even number of columns (differential pairs)")


def _inputs(p: Mapping[str, Any], n_rows: int, vmax: float) -> dict[str, np.ndarray]:
    s = p["input_seed"]
    return {"ref": cp.reference_inputs(n_rows, p["n_reference"], vmax, s),
            "cal": cp.reference_inputs(n_rows, p["n_calibration"], vmax, s + 1),
            "test": cp.reference_inputs(n_rows, p["n_test"], vmax, s + 2)}


def run(ctx: StepContext) -> Iterator[Checkpoint]:
    p = ctx.params
    be = ctx.backend
    region = p["region"]
    shape = reg.region_shape(region)
    cells = reg.region_cells(region)
    view = cp.MvmView(region["tile"], tuple(region["rows"]), tuple(region["cols"]),
                      differential=True)
    x = _inputs(p, shape[0], ctx.chip.mvm_input_max_V)
    glob = cp.GlobalDriftCompensation(view, x["ref"])
    if ctx.resume is None:
        t_prog = programmed_end_s(ctx.calibration.programming, region)
        if t_prog is None:
            ctx.event("the calibration record does not say when this region was programmed: "
                      "the baseline is taken now and the figures carry no age")
        elif t_prog + p["baseline_age_s"] > be.clock.now():
            be.clock.wait(t_prog + p["baseline_age_s"] - be.clock.now())
        target = make_target(p["target"], shape, ctx.seed).reshape(-1)
        bad = is_bad(ctx.calibration.fault_map[cells.tile, cells.row, cells.col])
        g = be.read(cells, n_average=p["n_average"]) if bad.any() else target
        teff = np.where(bad, g, target).reshape(shape)
        W = view.weights_S(teff)
        t0 = be.clock.now()  # the baseline's instant
        y0 = view.mvm(be, x["test"])
        st = {"w_S": W, "t0_s": np.array(t0),
              "age0_s": np.array(np.nan if t_prog is None else t0 - t_prog),
              "y0_mean_abs_A": np.array(glob.baseline(be)),
              "err_baseline": np.array(cp.relative_error(y0, x["test"] @ W))}
        yield Checkpoint(state=st, done=0, total=1)
    else:
        st = {k: np.array(v) for k, v in ctx.resume.state.items()}
        glob.y0_mean_abs_A = float(st["y0_mean_abs_A"])
    W = st["w_S"]
    wait = float(st["t0_s"]) + p["wait_s"] - be.clock.now()
    if wait > 0:
        be.clock.wait(wait)
    y_ref = x["test"] @ W
    age0 = float(st.get("age0_s", np.nan))  # (absent in checkpoints of older runs)
    ages = {} if np.isnan(age0) else {
        "baseline_age_s": age0, "measurement_age_s": age0 + be.clock.now() - float(st["t0_s"])}
    y = view.mvm(be, x["test"])
    scale = glob.update(be)
    aff = cp.ColumnAffineCorrection(view, x["cal"])
    aff.fit(be, W, glob.apply(view.mvm(be, x["cal"])))
    e0 = float(st["err_baseline"] if "err_baseline" in st else st["err_t0"])
    raw = cp.relative_error(y, y_ref)
    comp = cp.relative_error(aff.apply(glob.apply(y)), y_ref)
    ctx.result(mvm_error_baseline=e0, **ages, mvm_error_raw=raw,
               mvm_error_global=cp.relative_error(glob.apply(y), y_ref),
               mvm_error_compensated=comp, global_scale=scale, wait_s=p["wait_s"],
               systematic_fraction=(raw**2 - comp**2) / max(raw**2 - e0**2, 1e-30))
    ctx.save_arrays(column_gain=aff.gain, column_offset_A=aff.offset_A)
    t, (c0, c1) = region["tile"], region["cols"]
    rec = ctx.calibration
    rec.column_gain[t, c0:c1] = np.repeat(aff.gain * scale, 2)
    rec.column_offset_A[t, c0:c1] = np.repeat(aff.offset_A, 2)
    rec.drift["global_y0_mean_abs_A"] = np.array([glob.y0_mean_abs_A])
    rec.drift["global_scale"] = np.array([scale])
    rec.programming["compensation"] = {"region": region, "input_seed": p["input_seed"],
                                       "n_reference": p["n_reference"], "differential": True,
                                       "gain_includes_global_scale": True}
    ctx.touch_calibration()


ROUTINE = RoutineSpec("compensate", __doc__ or "", PARAMS, run, check)
