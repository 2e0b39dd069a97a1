"""DAC/ADC and IR drop against docs/references.md and an exact nodal solve."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from labctl.core.cells import Cells
from sim_backend import SimBackend, load_preset
from sim_backend.periphery import ir_drop_matrix
from sim_backend.preset import uS
from tests.sim_backend.helpers import place


def test_ir_drop_worst_case_matches_reference_estimate() -> None:
    """One row of N = 128 cells at 40 µS, 0.35 Ω per segment: far-end drop ≈ r·g·N²/2 ≈ 11 %."""
    N, r, g = 128, 0.35, 40 * uS
    M = ir_drop_matrix(np.full((1, N), g), r)
    epsilon = g / M[0, -1] - 1  # the first-order relative loss at the far end
    assert epsilon == pytest.approx(r * g * N * N / 2, rel=0.02)
    assert 0.10 < epsilon < 0.12
    assert 0.09 < 1 - M[0, -1] / g < 0.11  # the resummed drop itself


def _exact_outputs(G: np.ndarray, r: float, x: np.ndarray) -> np.ndarray:
    """Column currents of the full resistive network (nodal analysis)."""
    R, C = G.shape
    n = R * C
    row_node = lambda i, j: i * C + j  # noqa: E731
    col_node = lambda i, j: n + i * C + j  # noqa: E731
    A = sp.lil_matrix((2 * n, 2 * n))
    b = np.zeros(2 * n)
    gw = 1.0 / r
    for i in range(R):
        for j in range(C):
            a, c = row_node(i, j), col_node(i, j)
            A[a, a] += G[i, j]; A[c, c] += G[i, j]; A[a, c] -= G[i, j]; A[c, a] -= G[i, j]  # noqa: E702
            if j == 0:  # driver → first row node through one segment
                A[a, a] += gw; b[a] += gw * x[i]  # noqa: E702
            else:
                p = row_node(i, j - 1)
                A[a, a] += gw; A[p, p] += gw; A[a, p] -= gw; A[p, a] -= gw  # noqa: E702
            if i == R - 1:  # last column node → virtual ground through one segment
                A[c, c] += gw
            else:
                q = col_node(i + 1, j)
                A[c, c] += gw; A[q, q] += gw; A[c, q] -= gw; A[q, c] -= gw  # noqa: E702
    v = spla.spsolve(A.tocsr(), b)
    return np.array([v[col_node(R - 1, j)] * gw for j in range(C)])


def test_first_order_ir_drop_matches_nodal_solution() -> None:
    rng = np.random.default_rng(1)
    R, C, r = 24, 16, 2.0  # larger r to make the effect visible on a small array
    G = rng.uniform(1, 40, (R, C)) * uS
    x = rng.uniform(-0.2, 0.2, R)
    exact = _exact_outputs(G, r, x)
    ideal = x @ G
    model = x @ ir_drop_matrix(G, r)
    # the model removes almost all of the error of ignoring IR drop
    assert np.linalg.norm(model - exact) < 0.02 * np.linalg.norm(ideal - exact)


def test_ideal_preset_mvm_is_quantized_arithmetic() -> None:
    be = SimBackend("ideal", seed=0)
    rng = np.random.default_rng(2)
    G = rng.uniform(1, 40, (32, 8)) * uS
    place(be.macro, Cells.block(0, slice(0, 32), slice(0, 8)), G.ravel())
    x = rng.uniform(-0.2, 0.2, (5, 32))
    y = be.mvm(0, x, rows=slice(0, 32), cols=slice(0, 8), adc_range_A=200e-6)
    lsb_in = 0.2 / (2**15 - 1)
    lsb_out = 200e-6 / (2**15 - 1)
    expected = np.rint((np.rint(x / lsb_in) * lsb_in) @ G / lsb_out) * lsb_out
    assert np.allclose(y, expected, atol=lsb_out * 1.01, rtol=0)


def test_adc_saturates_at_its_range() -> None:
    be = SimBackend("ideal", seed=0)
    place(be.macro, Cells.block(0, slice(0, 64), slice(0, 2)), np.full(128, 40 * uS))
    y = be.mvm(0, np.full((1, 64), 0.2), rows=slice(0, 64), cols=slice(0, 2), adc_range_A=100e-6)
    assert np.allclose(y, 100e-6)  # 64 × 40 µS × 0.2 V = 512 µA saturates at full scale


def test_differential_pairs_subtract_neighbouring_columns() -> None:
    be = SimBackend("ideal", seed=0)
    G = np.tile([30 * uS, 10 * uS], (16, 4))
    place(be.macro, Cells.block(0, slice(0, 16), slice(0, 8)), G.ravel())
    x = np.full((1, 16), 0.1)
    y = be.mvm(0, x, rows=slice(0, 16), cols=slice(0, 8), differential=True, adc_range_A=1e-4)
    assert y.shape == (1, 4)
    assert np.allclose(y, 16 * 0.1 * 20 * uS, rtol=1e-3)


def test_ir_drop_option_lowers_large_array_outputs() -> None:
    base = load_preset("default_180nm").with_changes(
        read={"relative_sigma": 0.0}, periphery={"output_noise_rel": 0.0},
        faults={"stuck_lrs_rate": 0.0, "stuck_hrs_rate": 0.0, "unformable_rate": 0.0})
    outs = []
    for ir in (False, True):
        be = SimBackend(base.with_changes(periphery={"ir_drop": ir, "output_noise_rel": 0.0}))
        place(be.macro, Cells.block(0, slice(0, 256), slice(0, 256)), np.full(65536, 40 * uS))
        outs.append(be.mvm(0, np.full((1, 256), 0.02), rows=slice(0, 256), cols=slice(0, 256),
                           adc_range_A=1e-3))
    assert np.all(outs[1] < outs[0])
    assert 0.01 < 1 - outs[1].mean() / outs[0].mean() < 0.5


def test_ir_drop_of_a_block_accounts_for_the_whole_tile() -> None:
    """The same cells and inputs give the same outputs whether their columns are selected
    alone or as part of a wider MVM: IR drop is a property of the whole tile."""
    p = load_preset("ideal").with_changes(periphery={"ir_drop": True, "dac_bits": 16,
                                                     "adc_bits": 20})
    be = SimBackend(p, seed=0)
    place(be.macro, Cells.block(0, slice(0, 256), slice(0, 512)), np.full(256 * 512, 30 * uS))
    x = np.full((1, 256), 0.05)
    wide = be.mvm(0, x, rows=slice(0, 256), cols=slice(0, 512), adc_range_A=2e-3)
    alone = be.mvm(0, x, rows=slice(0, 256), cols=slice(500, 508), adc_range_A=2e-3)
    assert np.allclose(wide[:, 500:508], alone, rtol=1e-4)
