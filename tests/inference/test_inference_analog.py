"""Analog linear layers on the in-test backend: mapping, tiling, residual cells, affine."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from labctl.core.cells import Cells, FloatArray
from labctl.core.errors import AddressError
from labctl.inference import (
    MLP,
    AnalogLinear,
    DifferentialMapping,
    ResidualMapping,
    SiLU,
    TileAllocator,
    to_analog,
)
from tests.inference.helpers import FakeBackend, ideal_program


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_differential_layout_and_ideal_product(fake_backend: FakeBackend) -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 10))
    al = AnalogLinear(w, None, fake_backend, TileAllocator(fake_backend.chip), ideal_program,
                      DifferentialMapping(percentile=100.0), replicas=1)
    blk = al.blocks[0].pairs[0]
    g = fake_backend.g[0, :20, :20]
    # W+ on even columns, W- on odd ones, one of them at g_min
    assert np.all((w > 0) == (g[:, 0::2] > g[:, 1::2] + 1e-12)) or np.all(w != 0)
    assert np.allclose(np.minimum(g[:, 0::2], g[:, 1::2]), fake_backend.chip.g_min_S)
    np.testing.assert_allclose(al.weight_estimate(), w, rtol=1e-9, atol=1e-12)
    assert blk.region.n_cols == 20
    x = rng.uniform(-1, 1, (50, 20))
    al.calibrate(x)
    assert _rel_err(al.forward(x), x @ w) < 0.02  # DAC 8 bit, ADC 9 bit


def test_tiling_splits_rows_and_columns() -> None:
    be = FakeBackend(n_tiles=8, n_rows=16, n_cols=16)
    rng = np.random.default_rng(1)
    w = rng.normal(size=(40, 20))
    b = rng.normal(size=20)
    al = AnalogLinear(w, b, be, TileAllocator(be.chip), ideal_program,
                      DifferentialMapping(percentile=100.0))
    assert len(al.blocks) == 3 * 3  # rows 16+16+8, logical cols 8+8+4
    x = rng.uniform(-1, 1, (30, 40))
    al.calibrate(x)
    assert _rel_err(al.forward(x) - b, x @ w) < 0.03
    with pytest.raises(AddressError):
        AnalogLinear(rng.normal(size=(40, 60)), None, be, TileAllocator(be.chip, tiles=[0]),
                     ideal_program)


def test_residual_mapping_reduces_programming_error() -> None:
    rng = np.random.default_rng(2)
    w = rng.normal(size=(32, 12))
    errs = []
    for mapping in (DifferentialMapping(percentile=100.0),
                    ResidualMapping(n_pairs=2, percentile=100.0)):
        be = FakeBackend(prog_sigma_S=1.5e-6, read_noise_rel=0.0, seed=5)
        al = AnalogLinear(w, None, be, TileAllocator(be.chip), ideal_program, mapping)
        x = rng.uniform(-1, 1, (200, 32))
        al.calibrate(x)
        errs.append(_rel_err(al.forward(x), x @ w))
    assert errs[1] < 0.5 * errs[0]


def test_affine_correction_compensates_a_column_gain_drift(fake_backend: FakeBackend) -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=(16, 8))
    al = AnalogLinear(w, None, fake_backend, TileAllocator(fake_backend.chip), ideal_program,
                      DifferentialMapping(percentile=100.0), replicas=1)
    x = rng.uniform(-1, 1, (100, 16))
    al.calibrate(x)
    fake_backend.g[0, :16, :16] = (fake_backend.g[0, :16, :16] - 1e-6) * 0.8 + 1e-6  # drift
    before = _rel_err(al.forward(x), x @ w)
    al.fit_affine(x)
    after = _rel_err(al.forward(x), x @ w)
    assert before > 0.15
    assert after < 0.03


def test_to_analog_network_matches_float(noisy_backend: FakeBackend) -> None:
    rng = np.random.default_rng(4)
    model = MLP.build([6, 24, 24, 3], SiLU, rng)
    x = rng.normal(size=(128, 6))
    net = to_analog(model, noisy_backend, ideal_program, x, mapping=ResidualMapping())
    assert len(net.analog_layers()) == 3
    # three layers of 8-bit DAC and 9-bit ADC quantization plus 1 µS programming error
    assert _rel_err(net.forward(x), model.forward(x)) < 0.1
    assert noisy_backend.ledger.mvm_calls > 0


def test_row_replication_averages_cell_errors() -> None:
    rng = np.random.default_rng(6)
    w = rng.normal(size=(8, 6))
    x = rng.uniform(-1, 1, (200, 8))
    errs = []
    for replicas in (1, 8):
        be = FakeBackend(prog_sigma_S=2e-6, seed=7)
        al = AnalogLinear(w, None, be, TileAllocator(be.chip), ideal_program,
                          DifferentialMapping(percentile=100.0), replicas=replicas,
                          fault_threshold=None)
        assert al.blocks[0].pairs[0].region.n_rows == 8 * replicas
        al.calibrate(x)
        errs.append(_rel_err(al.forward(x), x @ w))
    assert errs[1] < 0.6 * errs[0]


def test_interleaved_copies_hold_every_input_on_alternate_rows(fake_backend: FakeBackend) -> None:
    rng = np.random.default_rng(8)
    w = rng.normal(size=(3, 4))
    al = AnalogLinear(w, None, fake_backend, TileAllocator(fake_backend.chip), ideal_program,
                      DifferentialMapping(percentile=100.0), replicas=4, interleave=True)
    g = fake_backend.g[0, :12, :8]
    diff = g[:, 0::2] - g[:, 1::2]
    # copy k of input i on row k·n_in + i: rows 0, 3, 6, 9 hold input 0
    np.testing.assert_allclose(diff[0::3], np.repeat(diff[:1], 4, axis=0))
    assert not np.allclose(diff[0], diff[1])
    np.testing.assert_allclose(al.weight_estimate(), w, rtol=1e-9, atol=1e-12)
    x = rng.uniform(-1, 1, (40, 3))
    al.calibrate(x, input_margin=1.5)
    assert al.x_scale == pytest.approx(1.5 * np.abs(x).max())
    assert _rel_err(al.forward(x), x @ w) < 0.03


def test_tied_residual_compensates_a_stuck_copy() -> None:
    rng = np.random.default_rng(9)
    w = rng.uniform(0.2, 0.9, size=(4, 3))
    w[0, 0] = -1.0  # its W- cell high, its W+ cell low — but that one is stuck high

    def stuck_program(backend: Any, cells: Cells, targets_S: FloatArray) -> None:
        backend.program(cells, targets_S)
        backend.g[0, 0, 0] = 44e-6  # one cell of the first pair stuck high

    errs = []
    for tie in (False, True):
        be = FakeBackend(seed=10)
        al = AnalogLinear(w, None, be, TileAllocator(be.chip), stuck_program,
                          ResidualMapping(n_pairs=2, percentile=100.0), replicas=8,
                          interleave=True, tie_copies=tie, fault_threshold=None)
        errs.append(float(np.abs(al.weight_estimate() - w).max()))
    assert errs[0] > 0.005  # the stuck copy's own residual pair clips
    assert errs[1] < 0.2 * errs[0]


def test_column_copies_average_the_periphery_noise() -> None:
    rng = np.random.default_rng(11)
    w = rng.normal(size=(8, 2))
    x = rng.uniform(-1, 1, (400, 8))
    errs = []
    for copies in (1, 8):
        be = FakeBackend(read_noise_rel=0.05, seed=12)
        al = AnalogLinear(w, None, be, TileAllocator(be.chip), ideal_program,
                          DifferentialMapping(percentile=100.0), replicas=1,
                          col_copies=copies)
        assert al.n_out == 2 * copies and al.blocks[0].pairs[0].region.n_cols == 4 * copies
        al.calibrate(x)
        al.fit_affine(x)
        y = al.forward(x)
        assert y.shape == (400, 2)
        errs.append(_rel_err(y, x @ w))
    assert errs[1] < 0.6 * errs[0]


def test_refresh_retargets_the_last_pair_from_what_the_array_gives() -> None:
    rng = np.random.default_rng(13)
    w = rng.normal(size=(6, 5))
    x = rng.uniform(-1, 1, (300, 6))
    be = FakeBackend(seed=14)
    al = AnalogLinear(w, None, be, TileAllocator(be.chip), ideal_program,
                      ResidualMapping(n_pairs=2, percentile=100.0), replicas=4,
                      interleave=True, tie_copies=True)
    al.calibrate(x)
    first = al.blocks[0].pairs[0].region
    # the first pair drifts after it was read back: its read-back no longer says so
    be.g[0, first.rows, first.cols] = (be.g[0, first.rows, first.cols] - 1e-6) * 0.9 + 1.5e-6
    before = _rel_err(al.forward(x), x @ w)
    writes = be.writes.sum()
    al.refresh(ideal_program, n_probe=64)
    after = _rel_err(al.forward(x), x @ w)
    assert be.writes.sum() > writes  # the last pair was written again
    assert before > 0.05
    assert after < 0.3 * before
    with pytest.raises(ValueError, match="residual mapping"):
        AnalogLinear(w, None, be, TileAllocator(be.chip, tiles=[1]), ideal_program,
                     DifferentialMapping()).refresh(ideal_program)
