"""Small versions of the three workloads and their pieces (the ideal programmer of the
in-test backend; the calibration programmer is tested in tests/calibration/test_weights.py)."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.inference.diffusion import (
    VPSDE,
    EpsModel,
    classify_rings,
    rings_data,
    sample_ode,
    sliced_wasserstein,
    train_eps_model,
)
from labctl.inference.diffusion_run import run_diffusion
from labctl.inference.fast_weights import newton_schulz, run_fast_weights
from labctl.inference.neural_field import run_neural_field
from labctl.inference.tomography import ParallelProjector, fbp, psnr, shepp_logan
from tests.inference.helpers import FakeBackend, ideal_program


def test_projector_adjoint_is_exact_and_fbp_reconstructs() -> None:
    n = 32
    proj = ParallelProjector(n, np.linspace(0, np.pi, 90, endpoint=False))
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(n, n)), rng.normal(size=(90, n))
    assert np.isclose(np.sum(proj.project(u) * v), np.sum(u * proj.adjoint(v)))
    img = shepp_logan(n)
    assert img.min() >= 0.0
    assert img.max() <= 1.0
    rec = np.clip(fbp(proj.project(img), proj), 0, 1)
    assert psnr(rec, img) > 17.0
    assert psnr(rec, img) > psnr(np.zeros_like(img), img) + 5.0


def test_neural_field_small_float_and_chip_agree() -> None:
    params = {"n": 24, "n_angles": 12, "width": 32, "depth": 2, "prior_steps": 120,
              "finetune_steps": 40, "settle_first_s": 0.0, "settle_s": 0.0}
    out = run_neural_field(FakeBackend(n_tiles=8, n_rows=64, n_cols=128, prog_sigma_S=0.3e-6),
                           params, program_fn=ideal_program)
    assert out["images"]["chip"].shape == (24, 24)
    assert np.isfinite(out["psnr_float_db"])
    assert out["psnr_float_db"] > out["psnr_fbp_db"] - 3.0
    assert out["chip_vs_float_psnr_db"] > 25.0
    assert out["ledger_inference"]["mvm_calls"] > 0


def test_sde_and_swd_basics() -> None:
    sde = VPSDE()
    t = np.linspace(0.01, 1, 5)
    np.testing.assert_allclose(sde.alpha(t) ** 2 + sde.sigma(t) ** 2, 1.0)
    assert sde.alpha(1.0) < 0.01
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 2))
    assert sliced_wasserstein(a, a) == 0.0
    assert sliced_wasserstein(a, a + 1.0) > 0.5


def test_conditional_diffusion_learns_the_classes() -> None:
    rng = np.random.default_rng(1)
    sde = VPSDE()
    x, y = rings_data(4096, rng)
    model = EpsModel.build(2, 48, 2, rng)
    train_eps_model(model, x, y, sde, 700, rng, batch=256, lr=3e-3)
    c = np.arange(400) % 2
    xs = sample_ode(model, model.net.forward, sde, rng.normal(size=(400, 2)), n_steps=15, c=c,
                    guidance=2.0)
    assert np.mean(classify_rings(xs) == c) > 0.9


def test_diffusion_run_on_a_chip_reports_costs() -> None:
    params = {"width": 32, "depth": 2, "train_steps": 300, "n_samples": 200, "n_steps": 8,
              "continuous_steps": 16, "settle_first_s": 0.0, "settle_s": 0.0,
              "n_train": 2048}
    out = run_diffusion(FakeBackend(n_tiles=8, n_rows=64, n_cols=128), params,
                        program_fn=ideal_program)
    for key in ("swd_float", "swd_chip", "swd_floor", "swd_chip_continuous"):
        assert np.isfinite(out[key])
    assert out["energy_J_per_sample_chip"] > 0
    assert out["device_time_s_per_sample_chip"] > 0
    assert out["energy_J_per_sample_continuous"] > 0
    assert 0.0 <= out["cfg_accuracy_chip"] <= 1.0


def test_newton_schulz_orthogonalizes() -> None:
    g = np.random.default_rng(2).normal(size=(16, 40))
    o = newton_schulz(g)
    s = np.linalg.svd(o, compute_uv=False)
    assert np.all((s > 0.5) & (s < 1.3))  # Muon's quintic lands near 1, not exactly on it


def test_fast_weights_small_float_and_chip() -> None:
    params = {"vocab": 128, "n_pairs": 48, "d_model": 64, "d_key": 48, "hidden": 64,
              "chunk": 16}
    be = FakeBackend(n_tiles=8, n_rows=64, n_cols=128, prog_sigma_S=0.2e-6)
    out = run_fast_weights(be, params, program_fn=ideal_program)
    assert out["recall_float"] >= 0.9
    assert out["recall_chip"] >= 0.85
    assert out["recall_chance"] == pytest.approx(1 / 128)
    assert out["n_updates"] == 3
    assert out["writes_per_cell_max"] <= 1 + out["n_updates"]
    assert out["write_pulses_per_token"] > 0


def test_a_chip_run_needs_a_programmer() -> None:
    with pytest.raises(ValueError, match="program_fn"):
        run_fast_weights(FakeBackend(), {"vocab": 16, "n_pairs": 4, "d_model": 8, "d_key": 8,
                                         "hidden": 8, "chunk": 4})


def test_bench_section_quick_reports_every_figure() -> None:
    pytest.importorskip("sim_backend")
    from labctl.app.bench import SECTIONS
    from labctl.app.bench.inference import run

    assert SECTIONS["inference"] == "labctl.app.bench.inference"
    figures = run(quick=True)
    for key in ("nf_psnr_float_db", "nf_psnr_chip_db", "nf_psnr_fbp_db", "diff_swd_float",
                "diff_swd_chip", "diff_swd_floor", "diff_cfg_class_accuracy_chip",
                "fw_recall_float", "fw_recall_chip", "fw_write_pulses_per_token",
                "diff_energy_J_per_sample_chip", "diff_device_time_s_per_sample_chip"):
        assert np.isfinite(figures[key]), key
