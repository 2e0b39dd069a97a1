"""Bench section ``inference``: the seed papers' three workloads at their set-ups, float
beside chip, over ``N_CHIPS`` simulated chip instances (``default_180nm``, chip seeds
0 … N−1, each workload on its own fresh chip with the workload seed equal to the chip
seed), each chip used ``age_at_use_s`` (1 h) after its programming ends. Every chip figure is
reported as the mean over chips and the worst chip.

- Neural field (2-D, 128 × 128 area-sampled phantom, 20 noisy views, breathing prior):
  ``nf_psnr_float_db`` (mean), ``nf_psnr_gap_db_mean`` / ``_worst`` (float − chip, the
  ``mapping`` of the workload), the same gap for every mapping programmed on the same chip
  (``nf_psnr_gap_db_mean_<mapping>``), ``nf_psnr_prior_db``, ``nf_psnr_fbp_db``.
- The 3-D cone-beam case (24³ volume, 20 views, residual pairs): ``nf3d_psnr_float_db``,
  ``nf3d_psnr_gap_db_mean`` / ``_worst``, ``nf3d_psnr_prior_db``.
- Diffusion (14-wide score MLP, every layer analog, 10,000 samples):
  ``diff_swd_ratio_mean`` / ``_worst`` (chip / float SWD), ``diff_outlier_fraction_chip`` /
  ``_float`` (means), ``diff_n_samples``, ``diff_analog_layers_fraction``, guided class
  accuracy, continuous-loop and digital-baseline costs.
- Fast weights (1,024 pairs, chunks of 256): ``fw_recall_float_n1024`` /
  ``fw_recall_chip_n1024`` (means), worst chip / float ratio, the recall-vs-N curve at 512
  and 1,024 pairs (``fw_recall_{float,chip}_n<N>``), one-time programming cost apart from
  per-token writes.

Targets (worst chip): NF gap ≤ 0.5 dB, SWD ratio ≤ 1.25, FW recall ≥ 0.9 × float.

Chips run in worker processes (``WORKERS``), one chip per task: :func:`over_chips` is the
one place that knows how chips are spread, so a campaign engine can replace it. ``quick``
runs 2 chips with shortened training (a smoke run; its figures are not the targets').
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np

from labctl.core.backend import BackendBase
from labctl.core.station_spec import parse_station
from labctl.runs.backends import open_backend

N_CHIPS = 5
WORKERS = 2
AGE_AT_USE_S = 3600.0
CONE_N = 24
"""Side of the 3-D cone-beam volume (24³ voxels, 20 views of 24 × 24 detector pixels)."""

ChipFn = Callable[[int, bool], dict[str, float]]


def _chip(seed: int) -> BackendBase:
    """A fresh simulated chip, through the station factory (no direct simulator import)."""
    spec = parse_station({"station": {"backend": "sim", "preset": "default_180nm",
                                      "seed": seed}}, "bench inference")
    return open_backend(spec)


def _single_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def over_chips(fn: ChipFn, seeds: Sequence[int], quick: bool, workers: int = WORKERS,
               done: Callable[[], None] | None = None) -> list[dict[str, float]]:
    """``fn(seed, quick)`` for every chip seed, in worker processes (one BLAS thread each),
    in seed order; ``done()`` after each chip."""
    if workers <= 1 or len(seeds) <= 1:
        rows = []
        for s in seeds:
            rows.append(fn(s, quick))
            if done is not None:
                done()
        return rows
    with ProcessPoolExecutor(max_workers=min(workers, len(seeds), os.cpu_count() or 1),
                             initializer=_single_thread) as ex:
        futures = [ex.submit(fn, s, quick) for s in seeds]
        for f in as_completed(futures):
            f.result()
            if done is not None:
                done()
        return [f.result() for f in futures]


def neural_field_chip(seed: int, quick: bool) -> dict[str, float]:
    from calibration.weights import make_program_fn
    from labctl.inference.field_recon import run_neural_field

    p: dict[str, Any] = {"seed": seed, "age_at_use_s": AGE_AT_USE_S}
    if quick:
        p.update(prior_steps=60, finetune_steps=20, n=128)
    out = run_neural_field(_chip(seed), p, program_fn=make_program_fn())
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float)}


def cone_beam_chip(seed: int, quick: bool) -> dict[str, float]:
    """The 3-D cone-beam case at a size this machine runs in about a minute per chip."""
    from calibration.weights import make_program_fn
    from labctl.inference.field_recon import run_neural_field

    p: dict[str, Any] = {"seed": seed, "age_at_use_s": AGE_AT_USE_S, "geometry": "cone3d",
                         "n": CONE_N, "compare_mappings": False, "prior_steps": 200,
                         "finetune_steps": 60}
    if quick:
        p.update(prior_steps=40, finetune_steps=10)
    out = run_neural_field(_chip(3000 + seed), p, program_fn=make_program_fn())
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float)}


def diffusion_chip(seed: int, quick: bool) -> dict[str, float]:
    from calibration.weights import make_program_fn
    from labctl.inference.diffusion_run import run_diffusion

    p: dict[str, Any] = {"seed": seed, "age_at_use_s": AGE_AT_USE_S}
    if quick:
        p.update(train_steps=1500, reference_steps=200)
    out = run_diffusion(_chip(1000 + seed), p, program_fn=make_program_fn())
    return {k: float(v) for k, v in out.items() if isinstance(v, int | float)}


def fast_weights_chip(seed: int, quick: bool) -> dict[str, float]:
    from calibration.weights import make_program_fn
    from labctl.inference.fast_weight_memory import run_fast_weights

    p: dict[str, Any] = {"seed": seed, "age_at_use_s": AGE_AT_USE_S, "curve": (512,)}
    out = run_fast_weights(_chip(2000 + seed), p, program_fn=make_program_fn())
    res = {k: float(v) for k, v in out.items() if isinstance(v, int | float)}
    for n, f, c in zip(out["curve_n"], out["curve_recall_float"], out["curve_recall_chip"]):
        res[f"recall_float_n{n}"] = float(f)
        res[f"recall_chip_n{n}"] = float(c)
    return res


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def _extreme(rows: list[dict[str, float]], key: str, worst: str) -> float:
    vals = [r[key] for r in rows]
    return float(max(vals) if worst == "max" else min(vals))


def run(quick: bool = False,
        progress: Callable[[float, float, str], None] | None = None) -> dict[str, float]:
    seeds = list(range(2 if quick else N_CHIPS))
    total = 4 * len(seeds)
    count = [0]

    def done_with(what: str) -> Callable[[], None]:
        def tick() -> None:
            count[0] += 1
            if progress is not None:
                progress(count[0], total, f"inference: {what} chips")
        return tick

    nf = over_chips(neural_field_chip, seeds, quick, WORKERS, done_with("neural-field"))
    cb = over_chips(cone_beam_chip, seeds, quick, WORKERS, done_with("cone-beam"))
    df = over_chips(diffusion_chip, seeds, quick, WORKERS, done_with("diffusion"))
    fw = over_chips(fast_weights_chip, seeds, quick, WORKERS, done_with("fast-weight"))
    for r in nf:
        for k in [k for k in r if k.startswith("psnr_chip_db_")]:
            r["gap_" + k[len("psnr_chip_db_"):]] = r["psnr_float_db"] - r[k]
    for r in fw:
        r["ratio"] = r["recall_chip"] / r["recall_float"]
    out: dict[str, float] = {
        "inference_n_chips": float(len(seeds)),
        "inference_age_at_use_s": AGE_AT_USE_S,
        "nf_psnr_float_db": _mean(nf, "psnr_float_db"),
        "nf_psnr_chip_db": _mean(nf, "psnr_chip_db"),
        "nf_psnr_gap_db_mean": _mean(nf, "psnr_gap_db"),
        "nf_psnr_gap_db_worst": _extreme(nf, "psnr_gap_db", "max"),
        "nf_psnr_prior_db": _mean(nf, "psnr_prior_db"),
        "nf_psnr_fbp_db": _mean(nf, "psnr_fbp_db"),
        "nf_energy_J_per_pixel_chip": _mean(nf, "energy_J_per_pixel_chip"),
        "nf_digital_energy_J_per_pixel_model": _mean(nf, "digital_energy_J_per_pixel_model"),
        "nf_digital_host_time_s_per_pixel": _mean(nf, "digital_host_time_s_per_pixel"),
    }
    out.update({
        "nf3d_n": float(CONE_N),
        "nf3d_psnr_prior_db": _mean(cb, "psnr_prior_db"),
        "nf3d_psnr_float_db": _mean(cb, "psnr_float_db"),
        "nf3d_psnr_gap_db_mean": _mean(cb, "psnr_gap_db"),
        "nf3d_psnr_gap_db_worst": _extreme(cb, "psnr_gap_db", "max"),
    })
    for k in sorted(k for k in nf[0] if k.startswith("gap_")):
        kind = k[len("gap_"):]
        out[f"nf_psnr_gap_db_mean_{kind}"] = _mean(nf, k)
        out[f"nf_psnr_gap_db_worst_{kind}"] = _extreme(nf, k, "max")
        out[f"nf_cells_used_{kind}"] = _mean(nf, f"cells_used_{kind}")
    out.update({
        "diff_swd_float": _mean(df, "swd_float"),
        "diff_swd_chip": _mean(df, "swd_chip"),
        "diff_swd_floor": _mean(df, "swd_floor"),
        "diff_swd_ratio_mean": _mean(df, "swd_ratio"),
        "diff_swd_ratio_worst": _extreme(df, "swd_ratio", "max"),
        "diff_outlier_fraction_chip": _mean(df, "outlier_fraction_chip"),
        "diff_outlier_fraction_chip_worst": _extreme(df, "outlier_fraction_chip", "max"),
        "diff_outlier_fraction_float": _mean(df, "outlier_fraction_float"),
        "diff_n_samples": _mean(df, "n_samples"),
        "diff_analog_layers_fraction": _mean(df, "analog_layers_fraction"),
        "diff_cfg_accuracy_float": _mean(df, "cfg_accuracy_float"),
        "diff_unguided_accuracy_float": _mean(df, "unguided_accuracy_float"),
        "diff_cfg_accuracy_chip": _mean(df, "cfg_accuracy_chip"),
        "diff_swd_ratio_continuous_mean": float(np.mean(
            [r["swd_chip_continuous"] / r["swd_float_at_continuous_n"] for r in df])),
        "diff_loop_latency_s": _mean(df, "loop_latency_s"),
        "diff_device_time_s_per_sample_continuous":
            _mean(df, "device_time_s_per_sample_continuous"),
        "diff_energy_J_per_sample_continuous": _mean(df, "energy_J_per_sample_continuous"),
        "diff_energy_J_per_sample_chip": _mean(df, "energy_J_per_sample_chip"),
        "diff_device_time_s_per_sample_chip": _mean(df, "device_time_s_per_sample_chip"),
        "diff_digital_host_time_s_per_sample": _mean(df, "digital_host_time_s_per_sample"),
        "diff_digital_energy_J_per_sample_model":
            _mean(df, "digital_energy_J_per_sample_model"),
        "fw_recall_float_n1024": _mean(fw, "recall_float"),
        "fw_recall_chip_n1024": _mean(fw, "recall_chip"),
        "fw_recall_ratio_worst": _extreme(fw, "ratio", "min"),
        "fw_state_over_kv_cache": _mean(fw, "state_over_kv_cache"),
        "fw_onetime_pulses": _mean(fw, "onetime_pulses"),
        "fw_onetime_energy_J": _mean(fw, "onetime_energy_J"),
        "fw_write_pulses_per_token": _mean(fw, "write_pulses_per_token"),
        "fw_write_energy_J_per_token": _mean(fw, "write_energy_J_per_token"),
        "fw_write_device_time_s_per_token": _mean(fw, "write_device_time_s_per_token"),
        "fw_writes_per_cell_max": _extreme(fw, "writes_per_cell_max", "max"),
    })
    for k in sorted(k for k in fw[0] if k.startswith(("recall_float_n", "recall_chip_n"))):
        out[f"fw_{k}"] = _mean(fw, k)
    return out
