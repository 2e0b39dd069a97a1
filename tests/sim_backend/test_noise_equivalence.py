"""MVM read noise is drawn output-referred (one Gaussian per output) instead of per cell;
check that it is statistically the same as drawing every cell's noise explicitly."""

from __future__ import annotations

import numpy as np
from scipy import stats

from labctl.core.cells import Cells
from sim_backend import SimBackend, load_preset
from sim_backend.preset import uS
from tests.sim_backend.helpers import place


def test_output_referred_noise_equals_per_cell_noise() -> None:
    rows, cols, trials = 64, 16, 4000
    preset = load_preset("default_180nm").with_changes(
        periphery={"output_noise_rel": 0.0, "adc_bits": 24, "dac_bits": 16, "ir_drop": False},
        read={"lf_relative_sigma": 0.0},
        faults={"stuck_lrs_rate": 0.0, "stuck_hrs_rate": 0.0, "unformable_rate": 0.0})
    be = SimBackend(preset, seed=2)
    rng = np.random.default_rng(0)
    G = rng.uniform(1, 40, (rows, cols)) * uS
    place(be.macro, Cells.block(0, slice(0, rows), slice(0, cols)), G.ravel())
    x = rng.uniform(-0.2, 0.2, rows)
    X = np.repeat(x[None, :], trials, axis=0)
    y_chip = be.mvm(0, X, rows=slice(0, rows), cols=slice(0, cols), adc_range_A=1e-2)
    # explicit per-cell noise: every cell current x_i·G_ij·(1 + η ξ_ij)
    eta = preset.read.relative_sigma
    xq = np.rint(x / (0.2 / 32767)) * (0.2 / 32767)
    xi = rng.standard_normal((trials, rows, cols))
    y_cell = np.einsum("i,ij,tij->tj", xq, G, 1 + eta * xi)
    mean_ref = xq @ G
    # means agree with the noiseless product
    assert np.allclose(y_chip.mean(0), mean_ref, atol=5 * y_cell.std(0).max() / np.sqrt(trials))
    # variances agree: F-test per output, and the analytic variance η² Σ x² G²
    analytic = eta**2 * (xq**2) @ G**2
    var_chip = y_chip.astype(np.float64).var(0, ddof=1)
    var_cell = y_cell.var(0, ddof=1)
    f = var_chip / var_cell
    lo, hi = stats.f.ppf([0.0005, 0.9995], trials - 1, trials - 1)
    assert np.all((f > lo) & (f < hi)), f
    assert np.allclose(var_chip, analytic, rtol=0.12)
    # and the output noise is Gaussian, as a sum of independent cell noises is
    z = (y_chip - mean_ref) / np.sqrt(analytic)
    assert stats.kstest(z[:, 0], "norm").pvalue > 1e-3


def test_mvm_noise_is_seeded_and_varies_between_calls() -> None:
    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        be = SimBackend("default_180nm", seed=seed)
        place(be.macro, Cells.block(0, slice(0, 32), slice(0, 32)), np.full(1024, 20 * uS))
        x = np.full((4, 32), 0.1)
        return (be.mvm(0, x, rows=slice(0, 32), cols=slice(0, 32)),
                be.mvm(0, x, rows=slice(0, 32), cols=slice(0, 32)))

    a1, a2 = run(1)
    b1, b2 = run(1)
    assert np.array_equal(a1, b1) and np.array_equal(a2, b2)
    assert not np.array_equal(a1, a2)
