"""Bench section ``calibration``: verify-write quality and speed, and MVM accuracy over a day
of drift with compensation and refresh, on the simulated chip (default preset: the clock
runs during programming, IR drop and low-frequency read noise on).

Every figure states its age: the time since the programming (or refresh) it judges ended,
on the chip's clock. Setup: a 256 × 256 block of tile 0 is formed (gate ramp, Stanford
settings) and verify-written with the default policy (gate-voltage ladder) to random targets
uniform over the 1–40 µS window with a ±1 µS band (NeuRRAM, Wan et al. 2022). Figures:

- ``verify_write_converged_fraction``: converged / cells not flagged stuck or unformed
  (target ≥ 0.995); ``verify_write_rms_error_at_1s_uS``: RMS of (8-read average − target)
  over those cells 1 s after programming ends (target ≤ 0.6 µS at t0; relaxation adds to
  it); ``verify_write_mean_pulses_per_cell``; ``verify_write_cells_per_s`` (wall time of the
  batched loop on the simulator); ``verify_write_device_time_s`` (chip time it took).
- The block as a differential 256 × 128 matrix W = G(even col) − G(odd col). Relative error
  ‖y_chip − x·W‖ / ‖x·W‖ on 256 random input vectors (uniform ±0.2 V):
  ``mvm_error_at_1s`` 1 s after programming ends, ``mvm_error_1day_raw`` a (virtual) day
  after it, ``mvm_error_1day_compensated`` with global drift compensation then the
  per-column affine correction fitted on 128 other calibration inputs,
  ``mvm_error_refreshed_at_1s`` 1 s after re-programming every cell more than 0.5 µS off
  target at the 1-day mark, re-calibrated (so compare it with
  ``mvm_error_at_1s_compensated``), ``mvm_error_refreshed_1day`` a day after that refresh
  ends, with the same compensation.
  W uses the targets for working cells and the 1 s read for cells known faulty (unformed or
  stuck): faults are a fault-map / remapping problem, not drift;
  ``mvm_error_at_1s_faults_as_targets`` shows their effect when ignored.
  ``mvm_error_at_1s_compensated``: at 1 s with the per-column affine correction (it removes
  most of the IR-drop error, which is systematic and there from the start).
- ``drift_systematic_fraction``: share of the error power a day of drift adds
  (raw_1day² − raw_1s²) that compensation removes beyond what it removes at 1 s (IR drop);
  the rest is random, cell-by-cell drift that needs refresh. At or below 0, compensation
  removes nothing of the drift itself.
"""

from __future__ import annotations

import time

import numpy as np

from labctl.core.backend import BackendBase
from labctl.core.cells import Cells

N_ROWS, N_COLS = 256, 256
DAY_S = 86400.0
REFRESH_TOLERANCE_S = 0.5e-6


def _wait_until(be: BackendBase, t_s: float) -> None:
    """Let the chip's clock reach ``t_s`` (the clock has run during the operations)."""
    be.clock.wait(max(t_s - be.clock.now(), 0.0))


def run(quick: bool = False) -> dict[str, float]:
    from calibration import compensation as cp
    from calibration import programming as pg
    from calibration.faults import form_block
    from calibration.policies import default_policy
    from calibration.refresh_core import refresh_direct
    from sim_backend import SimBackend

    n_rows, n_cols = (128, 128) if quick else (N_ROWS, N_COLS)
    be = SimBackend("default_180nm", seed=11)
    cells = Cells.block(0, range(n_rows), range(n_cols))
    unformed = form_block(be, cells)
    target = np.random.default_rng(1).uniform(be.chip.g_min_S, be.chip.g_max_S, len(cells))
    settings, policy = pg.Settings(), default_policy()
    t0 = time.perf_counter()
    t_chip = be.clock.now()
    st = pg.program_direct(be, cells, target, settings, policy, skip=unformed)
    dt = time.perf_counter() - t0
    t_end = be.clock.now()
    _wait_until(be, t_end + 1.0)
    g1 = be.read(cells, n_average=8)
    bad = unformed | (st["outcome"] == pg.STUCK)
    s = pg.summary(st, g1, target)
    out: dict[str, float] = {
        "verify_write_converged_fraction": s["success_rate"],
        "verify_write_rms_error_at_1s_uS": s["rms_error_usable_S"] * 1e6,
        "verify_write_mean_pulses_per_cell": float(st["n_pulses"][~bad].mean()),
        "verify_write_cells_per_s": len(cells) / dt,
        "verify_write_device_time_s": t_end - t_chip,
        "verify_write_flagged_faulty_fraction": float(bad.mean()),
    }
    view = cp.MvmView(0, (0, n_rows), (0, n_cols), differential=True)
    teff = np.where(bad, g1, target).reshape(n_rows, n_cols)
    W = view.weights_S(teff)
    x_ref = cp.reference_inputs(n_rows, 32, be.chip.mvm_input_max_V, 100)
    x_cal = cp.reference_inputs(n_rows, 128, be.chip.mvm_input_max_V, 101)
    x_test = cp.reference_inputs(n_rows, 256, be.chip.mvm_input_max_V, 102)
    y_float = x_test @ W
    glob = cp.GlobalDriftCompensation(view, x_ref)
    glob.baseline(be)
    y0 = view.mvm(be, x_test)
    out["mvm_error_at_1s"] = cp.relative_error(y0, y_float)
    out["mvm_error_at_1s_faults_as_targets"] = cp.relative_error(
        y0, x_test @ view.weights_S(target.reshape(n_rows, n_cols)))
    aff0 = cp.ColumnAffineCorrection(view, x_cal)
    aff0.fit(be, W)
    out["mvm_error_at_1s_compensated"] = cp.relative_error(aff0.apply(y0), y_float)
    _wait_until(be, t_end + DAY_S)
    y1 = view.mvm(be, x_test)
    out["mvm_error_1day_raw"] = cp.relative_error(y1, y_float)
    glob.update(be)
    out["mvm_error_1day_global_only"] = cp.relative_error(glob.apply(y1), y_float)
    aff = cp.ColumnAffineCorrection(view, x_cal)
    aff.fit(be, W, glob.apply(view.mvm(be, x_cal)))
    out["mvm_error_1day_compensated"] = cp.relative_error(aff.apply(glob.apply(y1)), y_float)
    sel, _ = refresh_direct(be, cells, teff.reshape(-1), REFRESH_TOLERANCE_S, settings, policy,
                            ~bad)
    out["refresh_fraction_of_cells"] = float(sel.mean())
    t_refreshed = be.clock.now()
    _wait_until(be, t_refreshed + 1.0)
    glob.baseline(be)
    aff.fit(be, W)
    out["mvm_error_refreshed_at_1s"] = cp.relative_error(aff.apply(view.mvm(be, x_test)),
                                                         y_float)
    _wait_until(be, t_refreshed + DAY_S)
    glob.update(be)
    out["mvm_error_refreshed_1day"] = cp.relative_error(
        aff.apply(glob.apply(view.mvm(be, x_test))), y_float)
    raw2, comp2 = out["mvm_error_1day_raw"] ** 2, out["mvm_error_1day_compensated"] ** 2
    base2, base_comp2 = out["mvm_error_at_1s"] ** 2, out["mvm_error_at_1s_compensated"] ** 2
    removed = (raw2 - comp2) - (base2 - base_comp2)
    out["drift_systematic_fraction"] = float(removed / max(raw2 - base2, 1e-30))
    return out
