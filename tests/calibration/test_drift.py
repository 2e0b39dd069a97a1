"""Drift compensation (global, per-column affine) and refresh on the simulated chip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration import compensation as cp
from calibration import programming as pg
from calibration.faults import form_block
from calibration.policies import default_policy
from calibration.refresh_core import refresh_direct
from labctl.core.errors import ConfigError
from sim_backend import SimBackend

from .conftest import block, run_protocol, uniform_targets

N = 64


def _programmed(preset: str) -> tuple[SimBackend, np.ndarray, np.ndarray, cp.MvmView]:
    be = SimBackend(preset, seed=13)
    cells = block(N, N)
    unformed = form_block(be, cells)
    target = uniform_targets(len(cells), seed=3)
    st = pg.program_direct(be, cells, target, pg.Settings(), default_policy(), skip=unformed)
    bad = unformed | (st["outcome"] == pg.STUCK)
    g0 = be.read(cells, n_average=8)
    teff = np.where(bad, g0, target)
    return be, teff, ~bad, cp.MvmView(0, (0, N), (0, N), differential=True)


def test_global_compensation_removes_a_common_gain_exactly() -> None:
    """On ``ideal`` every cell is identical, so a weak RESET on all cells scales every
    G − G_hrs by the same factor: the differential matrix scales by one gain, which the
    global compensation (AIHWKit) removes up to converter resolution."""
    be, teff, _, view = _programmed("ideal")
    W = view.weights_S(teff.reshape(N, N))
    x = cp.reference_inputs(N, 64, 0.2, 1)
    glob = cp.GlobalDriftCompensation(view, cp.reference_inputs(N, 16, 0.2, 2))
    glob.baseline(be)
    e0 = cp.relative_error(view.mvm(be, x), x @ W)
    be.pulse(block(N, N), "RESET", 1.0, 5.0, 1e-6)
    y = view.mvm(be, x)
    raw = cp.relative_error(y, x @ W)
    scale = glob.update(be)
    assert scale > 1.02
    assert raw > 0.03
    assert cp.relative_error(glob.apply(y), x @ W) < e0 + 0.005


@pytest.fixture(scope="module")
def drifted_day() -> dict[str, float]:
    be, teff, usable, view = _programmed("default_180nm")
    W = view.weights_S(teff.reshape(N, N))
    x_test = cp.reference_inputs(N, 128, 0.2, 5)
    x_cal = cp.reference_inputs(N, 128, 0.2, 6)
    y_ref = x_test @ W
    glob = cp.GlobalDriftCompensation(view, cp.reference_inputs(N, 32, 0.2, 7))
    glob.baseline(be)
    out = {"t0": cp.relative_error(view.mvm(be, x_test), y_ref)}
    be.clock.wait(86400.0)
    y = view.mvm(be, x_test)
    out["raw"] = cp.relative_error(y, y_ref)
    glob.update(be)
    out["global"] = cp.relative_error(glob.apply(y), y_ref)
    aff = cp.ColumnAffineCorrection(view, x_cal)
    aff.fit(be, W, glob.apply(view.mvm(be, x_cal)))
    out["compensated"] = cp.relative_error(aff.apply(glob.apply(y)), y_ref)
    sel, st = refresh_direct(be, block(N, N), teff, 0.5e-6, pg.Settings(), default_policy(),
                             usable)
    out["refreshed_fraction"] = float(sel.mean())
    out["refreshed"] = cp.relative_error(view.mvm(be, x_test), y_ref)
    out["refresh_success"] = pg.summary(st, teff[sel], teff[sel])["success_rate"]
    return out


def test_compensation_reduces_drift_error(drifted_day: dict[str, float]) -> None:
    """t0 is the moment programming ends: the clock ran while it programmed, so the cells
    written first have relaxed for the whole loop already; a day adds about as much again."""
    d = drifted_day
    assert d["raw"] > 1.8 * d["t0"]                # a day of drift matters
    # on a 32 × 32 block the day's drift is nearly all random (cell by cell): compensation
    # fitted on noisy calibration MVMs may not beat raw; it must not make it materially worse
    assert d["global"] < 1.05 * d["raw"]
    assert d["compensated"] < 1.05 * d["raw"]


def test_refresh_restores_accuracy(drifted_day: dict[str, float]) -> None:
    """Re-programming the cells > 0.5 µS off target brings the MVM error back to within
    1.2 × the error right after programming (without any compensation)."""
    d = drifted_day
    assert 0.5 < d["refreshed_fraction"] < 1.0
    assert d["refresh_success"] >= 0.99
    assert d["refreshed"] <= 1.2 * d["t0"]


def test_compensate_and_refresh_routines(tmp_path: Path, cal_dir: Path) -> None:
    target = "{kind: random_uniform, low_S: 1.0e-6, high_S: 40.0e-6}"
    region = "{tile: 0, rows: [0, 32], cols: [0, 32]}"
    res, arr = run_protocol(tmp_path, f"""
steps:
  - routine: forming
    params: {{region: {region}, formed_threshold_S: 2.0e-6}}
  - routine: verify_write
    params: {{region: {region}, target: {target}}}
  - routine: compensate
    params: {{region: {region}, target: {target}, wait_s: 86400.0}}
  - routine: refresh
    params: {{region: {region}, target: {target}, interval_s: 3600.0, n_rounds: 2}}
""")
    c, r = res[2], res[3]
    assert c["mvm_error_compensated"] < 1.05 * c["mvm_error_raw"]  # drift is mostly random
    # every figure states its age since the end of programming (default baseline: 1 s)
    assert c["baseline_age_s"] == pytest.approx(1.0, abs=1e-3)
    assert c["measurement_age_s"] == pytest.approx(86401.0, abs=0.1)
    assert 0.9 < c["global_scale"] < 1.1
    assert arr[2]["column_gain"].shape == (16,)
    assert len(r["rms_after_uS"]) == 2
    # read when the refresh ends: relaxation during its loop and 1/f read noise are in it
    assert all(a < 1.0 < b for a, b in zip(r["rms_after_uS"], r["rms_before_uS"], strict=True))
    from labctl.runs.store import CalibrationRecord

    rec = CalibrationRecord.load("sim-180nm-0001-seed7", (8, 256, 512))  # seed 7: its own chip
    assert rec.drift["global_y0_mean_abs_A"][0] > 0
    # the refresh re-programmed cells, so the block's age restarts at its last round (which
    # began 2 h after the compensate step's baseline, itself 1 s + 1 day after programming)
    ended = rec.programming["programmed_end_s"]["tile0:r0-32:c0-32"]
    assert ended > 86401.0 + 2 * 3600.0
    assert not np.all(rec.column_gain[0, :32] == 1.0)
    assert "compensation" in rec.programming and "refresh" in rec.programming


def test_refresh_refuses_a_target_other_than_the_programmed_one(tmp_path: Path,
                                                                 cal_dir: Path) -> None:
    """Refresh re-programs cells to their programmed targets: given a protocol whose target
    differs from what verify-write programmed on this chip (another pattern, or on an
    instrument station another --seed), it refuses before touching the chip."""
    from labctl.runs.store import CalibrationRecord

    region = "{tile: 0, rows: [0, 8], cols: [0, 8]}"
    run_protocol(tmp_path, f"""
steps:
  - routine: forming
    params: {{region: {region}, formed_threshold_S: 2.0e-6}}
  - routine: verify_write
    params: {{region: {region}, target: {{kind: random_uniform, low_S: 1.0e-6,
              high_S: 40.0e-6}}}}
""")
    rec = CalibrationRecord.load("sim-180nm-0001-seed7", (8, 256, 512))
    assert "tile0:r0-8:c0-8" in rec.programming["targets"]
    other = "{kind: random_uniform, low_S: 1.0e-6, high_S: 30.0e-6}"
    with pytest.raises(ConfigError, match="not the one verify-write programmed"):
        run_protocol(tmp_path, name="again", text=f"""
routine: refresh
params: {{region: {region}, target: {other}, interval_s: 60.0, n_rounds: 1}}
""")


def test_compensate_without_a_recorded_programming_states_no_age(tmp_path: Path,
                                                                  cal_dir: Path) -> None:
    """A region the record does not say was programmed (here: formed only) gets its
    baseline at once, and no age is claimed for any figure."""
    region = "{tile: 1, rows: [0, 16], cols: [0, 16]}"
    res, _ = run_protocol(tmp_path, f"""
steps:
  - routine: forming
    params: {{region: {region}, formed_threshold_S: 2.0e-6}}
  - routine: compensate
    params: {{region: {region}, target: {{kind: random_uniform, low_S: 1.0e-6,
              high_S: 40.0e-6}}, wait_s: 60.0, n_test: 16, n_calibration: 16}}
""")
    c = res[1]
    assert "mvm_error_baseline" in c
    assert "baseline_age_s" not in c and "measurement_age_s" not in c
