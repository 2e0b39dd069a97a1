"""Small versions of the three workloads and their pieces (the ideal programmer of the
in-test backend; the calibration programmer is tested in tests/calibration/test_weights.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.inference.cone_beam import (
    SHEPP_LOGAN_3D,
    ConeBeamProjector,
    analytic_cone_sinogram,
    volume_phantom,
)
from labctl.inference.diffusion_run import run_diffusion
from labctl.inference.fast_weight_memory import FWParams, _Stream, newton_schulz, run_fast_weights
from labctl.inference.field_recon import NFParams, build_field, run_neural_field
from labctl.inference.layers import WeightNoise
from labctl.inference.mapping import (
    BinaryMultiCellMapping,
    DifferentialMapping,
    TileAllocator,
)
from labctl.inference.score_sde import (
    VPSDE,
    ScoreModel,
    blobs_data,
    classify_blobs,
    outlier_fraction,
    ring_data,
    sample_ode,
    sliced_wasserstein,
    train_score_model,
)
from labctl.inference.tomography import (
    SHEPP_LOGAN,
    ParallelProjector,
    analytic_sinogram,
    area_phantom,
    breathing_phantom,
    fbp,
    noisy_sinogram,
    psnr,
    shepp_logan,
)
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


def test_measurements_are_exact_line_integrals_with_poisson_noise() -> None:
    """The analytic sinogram agrees with the projector applied to the area-sampled phantom
    (to the grid's discretization), and dose sets the noise: 100× the photons, ~10× less."""
    n = 48
    proj = ParallelProjector(n, np.linspace(0, np.pi, 12, endpoint=False))
    exact = analytic_sinogram(SHEPP_LOGAN, n, proj.angles)
    truth = area_phantom(SHEPP_LOGAN, n)
    assert np.linalg.norm(exact - proj.project(truth)) < 0.05 * np.linalg.norm(exact)
    err = [np.std(noisy_sinogram(exact, np.random.default_rng(1), ph, 0.05) - exact)
           for ph in (1e3, 1e5)]
    assert 5.0 < err[0] / err[1] < 20.0
    prior = breathing_phantom(n, np.random.default_rng(0))
    assert 15.0 < psnr(prior, truth) < 40.0  # another phase: close, not the same


def test_cone_beam_adjoint_and_exact_projections() -> None:
    n = 12
    proj = ConeBeamProjector(n, n_views=6)
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(n, n, n)), rng.normal(size=(6, n, n))
    assert np.isclose(np.sum(proj.project(u) * v), np.sum(u * proj.adjoint(v)))
    vol = volume_phantom(SHEPP_LOGAN_3D, n)
    exact = analytic_cone_sinogram(SHEPP_LOGAN_3D, proj)
    assert np.linalg.norm(exact - proj.project(vol)) < 0.15 * np.linalg.norm(exact)


def test_neural_field_2d_maps_on_the_same_chip_every_way() -> None:
    params = {"n": 24, "n_angles": 12, "width": 16, "depth": 2, "prior_steps": 120,
              "finetune_steps": 30, "settle_first_s": 0.0, "settle_s": 0.0,
              "n_cells": 6, "compare_mappings": True, "n_pairs": 2}
    be = FakeBackend(n_tiles=8, n_rows=64, n_cols=128, prog_sigma_S=0.3e-6)
    out = run_neural_field(be, params, program_fn=ideal_program)
    assert out["images"]["chip"].shape == (24, 24)
    for kind in ("residual", "haq", "differential"):
        assert np.isfinite(out[f"psnr_chip_db_{kind}"])
    assert out["psnr_chip_db"] == out[f"psnr_chip_db_{NFParams().mapping}"]
    assert out["chip_vs_float_psnr_db"] > 25.0
    assert be.clock.now() >= out["age_at_use_s"]  # rendered after the chip aged
    assert out["ledger_inference"]["mvm_calls"] > 0


def test_neural_field_3d_cone_beam_runs_on_the_chip() -> None:
    params = {"geometry": "cone3d", "n": 8, "n_angles": 6, "width": 8, "depth": 2,
              "prior_steps": 30, "finetune_steps": 5, "compare_mappings": False,
              "settle_first_s": 0.0, "settle_s": 0.0}
    out = run_neural_field(FakeBackend(n_tiles=4, n_rows=64, n_cols=128), params,
                           program_fn=ideal_program)
    assert out["images"]["chip"].shape == (8, 8, 8)
    assert "psnr_fbp_db" not in out
    assert np.isfinite(out["psnr_chip_db"])


def test_training_noise_only_on_the_layers_the_chip_runs() -> None:
    lin = build_field(NFParams(depth=2, width=8), np.random.default_rng(0)).linears()
    assert lin[0].noise is None and all(la.noise is not None for la in lin[1:])
    lin = build_field(NFParams(depth=2, width=8, digital_first=False),
                      np.random.default_rng(0)).linears()
    assert all(la.noise is not None for la in lin)


def test_fast_weight_calibration_keys_are_not_queried() -> None:
    s = _Stream(FWParams(vocab=64, n_pairs=32, d_model=16, d_key=8, hidden=8, n_cal=16))
    assert s.cal_keys.shape == (16, 8)
    # no calibration key equals a query key (distinct tokens, generic projection)
    d = np.abs(s.cal_keys[:, None, :] - s.keys[None, :, :]).sum(axis=2)
    assert d.min() > 1e-6


@settings(max_examples=25, deadline=None)
@given(sigma=st.floats(0.01, 0.5), seed=st.integers(0, 2**16))
def test_training_noise_stays_within_its_limit(sigma: float, seed: int) -> None:
    w = np.linspace(-1.0, 1.0, 401).reshape(-1, 1) + 1e-3
    noisy = WeightNoise(sigma, 2 * sigma).sample(w, np.random.default_rng(seed))
    assert np.all(np.abs(noisy / w - 1.0) <= 2 * sigma + 1e-12)


def test_binary_multicell_mapping_compensates_its_own_errors() -> None:
    """HAQ: later binary cells absorb the measured error of earlier ones, so 8 noisy binary
    pairs land closer to the weights than one noisy analog pair."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(32, 8))
    errs = {}
    for name, m in (("haq", BinaryMultiCellMapping(n_cells=8)),
                    ("pair", DifferentialMapping(percentile=100.0))):
        be = FakeBackend(n_tiles=4, n_rows=64, n_cols=128, prog_sigma_S=1.5e-6, seed=3)
        alloc = TileAllocator(be.chip)
        regions = [alloc.allocate(32, 16) for _ in range(m.n_pairs)]
        pairs = m.program(be, ideal_program, w, regions)
        est = sum(p.weight_estimate(be.chip.g_max_S - be.chip.g_min_S) for p in pairs)
        errs[name] = float(np.sqrt(np.mean((est - w) ** 2)))
    assert errs["haq"] < 0.5 * errs["pair"]


def test_sde_metrics_basics() -> None:
    sde = VPSDE()
    t = np.linspace(0.01, 1, 5)
    np.testing.assert_allclose(sde.alpha(t) ** 2 + sde.sigma(t) ** 2, 1.0)
    assert sde.alpha(1.0) < 0.01
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 2))
    assert sliced_wasserstein(a, a) == 0.0
    assert sliced_wasserstein(a, a + 1.0) > 0.5
    ring = ring_data(2000, rng)
    assert outlier_fraction(ring, 0.2) == 0.0
    assert outlier_fraction(np.zeros((10, 2)), 0.2) == 1.0
    x, y = blobs_data(4000, rng)
    bayes = np.mean(classify_blobs(x) == y)
    assert 0.7 < bayes < 0.95  # the classes overlap: guidance has work to do


def test_guidance_moves_samples_into_their_class() -> None:
    rng = np.random.default_rng(1)
    sde = VPSDE()
    x, y = blobs_data(4096, rng)
    model = ScoreModel.build(3, 14, rng)
    train_score_model(model, x, y, sde, 1500, rng, batch=256, lr=1e-2)
    c = np.arange(600) % 3
    x1 = rng.normal(size=(600, 2))
    acc = [np.mean(classify_blobs(sample_ode(model, model.net.forward, sde, x1, n_steps=30,
                                             c=c, guidance=g)) == c) for g in (0.0, 3.0)]
    assert acc[1] > acc[0] + 0.05


def test_diffusion_run_on_a_chip_reports_costs() -> None:
    params = {"width": 8, "train_steps": 200, "n_samples": 200, "n_cal": 32, "n_steps": 8,
              "reference_steps": 16, "continuous_steps": 16, "settle_first_s": 0.0,
              "settle_s": 0.0, "n_train": 2048, "replicas": 2}
    be = FakeBackend(n_tiles=8, n_rows=64, n_cols=128)
    out = run_diffusion(be, params, program_fn=ideal_program)
    for key in ("swd_float", "swd_chip", "swd_floor", "swd_chip_continuous", "swd_ratio",
                "outlier_fraction_chip", "outlier_fraction_float"):
        assert np.isfinite(out[key]), key
    assert out["analog_layers_fraction"] == 1.0
    assert out["energy_J_per_sample_chip"] > 0
    assert out["loop_latency_s"] > 0
    assert out["device_time_s_per_sample_continuous"] == pytest.approx(
        16 * out["loop_latency_s"])
    assert out["digital_energy_J_per_sample_model"] > 0
    assert be.clock.now() >= out["age_at_use_s"]
    assert 0.0 <= out["cfg_accuracy_chip"] <= 1.0


def test_newton_schulz_orthogonalizes() -> None:
    g = np.random.default_rng(2).normal(size=(16, 40))
    o = newton_schulz(g)
    s = np.linalg.svd(o, compute_uv=False)
    assert np.all((s > 0.5) & (s < 1.3))  # Muon's quintic lands near 1, not exactly on it


def test_fast_weights_small_float_and_chip() -> None:
    params = {"vocab": 128, "n_pairs": 48, "d_model": 64, "d_key": 48, "hidden": 64,
              "chunk": 16, "curve": (24,), "replicas": 1}
    be = FakeBackend(n_tiles=8, n_rows=64, n_cols=128, prog_sigma_S=0.2e-6)
    out = run_fast_weights(be, params, program_fn=ideal_program)
    assert out["recall_float"] >= 0.9
    assert out["recall_chip"] >= 0.85
    assert out["recall_chance"] == pytest.approx(1 / 128)
    assert list(out["curve_n"]) == [24, 48]
    assert out["curve_recall_chip"][-1] == out["recall_chip"]
    assert out["n_updates"] == 3
    assert out["writes_per_cell_max"] <= out["n_updates"]
    assert out["onetime_pulses"] > 0  # the initial programming, apart from the updates
    assert out["write_pulses_per_token"] > 0
    assert be.clock.now() > 2 * out["age_at_use_s"]  # two episodes, each queried 1 h later


def test_a_chip_run_needs_a_programmer() -> None:
    with pytest.raises(ValueError, match="program_fn"):
        run_fast_weights(FakeBackend(), {"vocab": 16, "n_pairs": 4, "d_model": 8, "d_key": 8,
                                         "hidden": 8, "chunk": 4})


def test_bench_section_reports_the_issue_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """The aggregation over dies (mean, worst), on stand-in per-die results."""
    from labctl.app.bench import SECTIONS
    from labctl.app.bench import inference as bi

    assert SECTIONS["inference"] == "labctl.app.bench.inference"

    def nf(seed: int) -> dict[str, float]:
        return {"psnr_float_db": 26.0, "psnr_chip_db": 25.9 - 0.1 * seed,
                "psnr_gap_db": 0.1 + 0.1 * seed, "psnr_prior_db": 24.0, "psnr_fbp_db": 18.0,
                "energy_J_per_pixel_chip": 1e-9, "digital_energy_J_per_pixel_model": 1e-8,
                "digital_host_time_s_per_pixel": 1e-6, "psnr_chip_db_haq": 25.8,
                "cells_used_haq": 10.0, "age_at_use_s": 3600.0}

    def df(seed: int) -> dict[str, float]:
        keys = ("swd_float", "swd_chip", "swd_floor", "outlier_fraction_chip",
                "outlier_fraction_float", "analog_layers_fraction", "cfg_accuracy_float",
                "unguided_accuracy_float", "cfg_accuracy_chip", "swd_chip_continuous",
                "swd_float_at_continuous_n",
                "loop_latency_s", "device_time_s_per_sample_continuous",
                "energy_J_per_sample_continuous", "energy_J_per_sample_chip",
                "device_time_s_per_sample_chip", "digital_host_time_s_per_sample",
                "digital_energy_J_per_sample_model")
        return {**dict.fromkeys(keys, 1.0), "swd_ratio": 1.0 + 0.1 * seed,
                "n_samples": 10000.0, "age_at_use_s": 7200.0}

    def fw(seed: int) -> dict[str, float]:
        keys = ("state_over_kv_cache", "onetime_pulses", "onetime_energy_J",
                "write_pulses_per_token", "write_energy_J_per_token",
                "write_device_time_s_per_token", "writes_per_cell_max")
        return {**dict.fromkeys(keys, 1.0), "recall_float": 0.8,
                "recall_chip": 0.7 + 0.01 * seed,
                "recall_float_n512": 1.0, "recall_chip_n512": 0.99}

    makers = {bi.neural_field_chip: nf, bi.mappings_chip: nf, bi.cone_beam_chip: nf,
              bi.diffusion_chip: df, bi.fast_weights_chip: fw}
    seen: list[tuple[float, float, str]] = []
    wafers: list[int] = []

    def over_dies(fn: bi.ChipFn, wafer_seed: int, n_dies: int, quick: bool,
                  progress: Callable[[int, int, str], None] | None = None
                  ) -> list[dict[str, float]]:
        assert n_dies == 5 and not quick and progress is not None
        wafers.append(wafer_seed)
        for i in range(n_dies):
            progress(i + 1, n_dies, "die done")
        return [makers[fn](s) for s in range(n_dies)]

    monkeypatch.setattr(bi, "over_dies", over_dies)
    out = bi.run(progress=lambda d, t, w: seen.append((d, t, w)))
    assert [d for d, _, _ in seen] == list(range(1, 26))
    assert out["inference_n_chips"] == 5
    assert wafers == [0, 0, 1, 2, 3]  # the mapping comparison on copies of the NF dies
    assert out["inference_age_at_use_s"] == 3600  # the youngest of the workloads' ages
    assert out["nf_psnr_gap_db_worst"] == pytest.approx(0.5)
    assert out["nf_psnr_gap_db_mean"] == pytest.approx(0.3)
    assert out["nf_psnr_gap_db_worst_haq"] == pytest.approx(0.2)
    assert out["diff_swd_ratio_worst"] == pytest.approx(1.4)
    assert out["fw_recall_ratio_worst"] == pytest.approx(0.7 / 0.8)
    from labctl.app.bench.inference_doc import render, render_block

    with pytest.raises(KeyError, match="no inference figures"):
        render_block({})
    page = render(out)
    assert "Target (worst chip gap ≤ 0.5 dB): met (0.5 ≤ 0.5)" in page
    assert "Target (worst chip SWD ratio ≤ 1.25): NOT met (1.4 ≤ 1.25)" in page
    assert "| 512 | 1 | 0.99 |" in page  # the recall-vs-N curve
    for key in ("nf_psnr_float_db", "diff_swd_ratio_mean", "diff_outlier_fraction_chip",
                "diff_outlier_fraction_float", "diff_n_samples", "diff_analog_layers_fraction",
                "fw_recall_float_n1024", "fw_recall_chip_n1024", "fw_recall_chip_n512"):
        assert np.isfinite(out[key]), key


def _die_figures(chip: object, seed: int, scale: float) -> dict[str, float]:
    from labctl.core.backend import BackendBase
    from labctl.core.cells import Cells

    assert isinstance(chip, BackendBase)
    cells = Cells.block(0, slice(0, 4), slice(0, 4))
    chip.pulse(cells, "FORM", 3.3, 2.5, 1e-3)
    return {"g_mean_uS": scale * float(np.mean(chip.read(cells))) * 1e6, "seed_seen": seed}


def _die_fails(chip: object, seed: int) -> dict[str, float]:
    raise ValueError("this die's workload failed")


def test_map_dies_runs_a_function_on_each_wafer_die_on_dask() -> None:
    """The bench's spreader: each die its own chip (wafer spread, own seed) in a Dask worker,
    results in die order, and a die that raises is named."""
    import functools

    from labctl.runs.campaign_map import DieFailed, map_dies
    from labctl.runs.campaign_plan import wafer_stations

    seen: list[int] = []
    rows = map_dies(functools.partial(_die_figures, scale=1.0), 3, seed=11, workers=1,
                    progress=lambda d, t, w: seen.append(d))
    assert seen == [1, 2, 3]
    _, dies = wafer_stations(3, 11)
    assert [r["die_id"] for r in rows] == [d[1] for d in dies]
    assert [r["seed_seen"] for r in rows] == [d[0].seed for d in dies]
    assert len({r["seed"] for r in rows}) == 3
    assert all(r["g_mean_uS"] > 1.0 for r in rows)  # formed cells, read through each chip
    with pytest.raises(DieFailed, match="die d000"):
        map_dies(_die_fails, 1, seed=11, workers=1)
