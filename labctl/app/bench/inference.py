"""Bench section ``inference``: the seed papers' three workloads at their set-ups, float
beside chip, over ``N_CHIPS`` simulated dies of a wafer, spread by the many-dies engine
(:func:`labctl.runs.campaign_map.map_dies`: the campaign's wafer model and Dask cluster):
each workload runs on its own wafer (seed ``WAFER_SEEDS``), ``N_CHIPS`` dies drawn around
``default_180nm`` with the wafer model's die-to-die spread (oxide thickness, threshold
voltage, transistor β, fault rates), each die a fresh chip, the workload seed the die's own
chip seed, every chip used ``age_at_use_s`` (1 h) after its programming ends. Every chip
figure is reported as the mean over dies and the worst die. The dies write no run files:
``labctl run PROTOCOL --dies N`` does the same with one crash-safe run file per die.

- Neural field (2-D, 128 × 128 area-sampled phantom, 20 noisy views, breathing prior):
  ``nf_psnr_float_db`` (mean), ``nf_psnr_gap_db_mean`` / ``_worst`` (float − chip, the
  workload's default mapping alone on the chip, as a user runs it), ``nf_psnr_prior_db``,
  ``nf_psnr_fbp_db``; and, on fresh copies of the same dies, every mapping programmed side
  by side (``nf_psnr_gap_db_mean_<mapping>`` / ``_worst_<mapping>``: the comparison on the
  same chips; mappings that share a tile's rows share its IR drop).
- The 3-D cone-beam case (24³ volume, 20 views): ``nf3d_psnr_float_db``,
  ``nf3d_psnr_gap_db_mean`` / ``_worst``, ``nf3d_psnr_prior_db``.
- Diffusion (14-wide score MLP, every layer analog, 10,000 samples):
  ``diff_swd_ratio_mean`` / ``_worst`` (chip / float SWD), ``diff_outlier_fraction_chip`` /
  ``_float`` (means), ``diff_n_samples``, ``diff_analog_layers_fraction``, guided class
  accuracy, continuous-loop and digital-baseline costs.
- Fast weights (1,024 pairs, chunks of 256): ``fw_recall_float_n1024`` /
  ``fw_recall_chip_n1024`` (means), worst chip / float ratio, the recall-vs-N curve at 512
  and 1,024 pairs (``fw_recall_{float,chip}_n<N>``), one-time programming cost apart from
  per-token writes.

Targets (worst die): NF gap ≤ 0.5 dB, SWD ratio ≤ 1.25, FW recall ≥ 0.9 × float.
``quick`` runs 2 dies with shortened training (a smoke run; its figures are not the
targets').
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from labctl.core.backend import BackendBase

N_CHIPS = 5
WORKERS = 2
AGE_AT_USE_S = 3600.0
CONE_N = 24
"""Side of the 3-D cone-beam volume (24³ voxels, 20 views of 24 × 24 detector pixels)."""

WAFER_SEEDS = {"nf": 0, "nf_map": 0, "nf3d": 1, "diff": 2, "fw": 3}
"""Each workload's own wafer; the mapping comparison runs on fresh copies of the neural
field's dies (the same wafer seed draws the same dies and chip seeds)."""


class ChipFn(Protocol):
    def __call__(self, chip: BackendBase, seed: int, quick: bool) -> dict[str, float]: ...


def over_dies(fn: ChipFn, wafer_seed: int, n_dies: int, quick: bool,
              progress: Callable[[int, int, str], None] | None = None
              ) -> list[dict[str, float]]:
    """``fn(chip, die_seed, quick)`` on each die of wafer ``wafer_seed`` (Dask, ``WORKERS``
    single-threaded workers), in die order."""
    from labctl.runs.campaign_map import map_dies

    rows = map_dies(functools.partial(fn, quick=quick), n_dies, seed=wafer_seed,
                    workers=WORKERS, progress=progress)
    return [{k: float(v) for k, v in r.items() if k != "die_id"} for r in rows]


def _scalars(out: dict[str, Any]) -> dict[str, float]:
    from labctl.inference.routine_support import scalars

    return {k: float(v) for k, v in scalars(out).items()}


def _neural_field(chip: BackendBase, seed: int, quick: bool, **params: Any) -> dict[str, float]:
    from calibration.weights import make_program_fn
    from labctl.inference.field_recon import run_neural_field

    p: dict[str, Any] = {"seed": seed, "age_at_use_s": AGE_AT_USE_S, **params}
    if quick:
        p.update(prior_steps=60, finetune_steps=20, n=128)
    return _scalars(run_neural_field(chip, p, program_fn=make_program_fn()))


def neural_field_chip(chip: BackendBase, seed: int, quick: bool) -> dict[str, float]:
    """The workload as a user runs it: its defaults, the default mapping alone on the chip."""
    return _neural_field(chip, seed, quick)


def mappings_chip(chip: BackendBase, seed: int, quick: bool) -> dict[str, float]:
    """Every mapping programmed side by side on a fresh copy of the same die (residual with
    two pairs: with three the three mappings need more columns than the chip has)."""
    return _neural_field(chip, seed, quick, compare_mappings=True, n_pairs=2)


def cone_beam_chip(chip: BackendBase, seed: int, quick: bool) -> dict[str, float]:
    """The 3-D cone-beam case at a size this machine runs in about a minute per chip."""
    from calibration.weights import make_program_fn
    from labctl.inference.field_recon import run_neural_field

    p: dict[str, Any] = {"seed": seed, "age_at_use_s": AGE_AT_USE_S, "geometry": "cone3d",
                         "n": CONE_N, "compare_mappings": False, "prior_steps": 200,
                         "finetune_steps": 60}
    if quick:
        p.update(prior_steps=40, finetune_steps=10)
    return _scalars(run_neural_field(chip, p, program_fn=make_program_fn()))


def diffusion_chip(chip: BackendBase, seed: int, quick: bool) -> dict[str, float]:
    from calibration.weights import make_program_fn
    from labctl.inference.diffusion_run import run_diffusion

    p: dict[str, Any] = {"seed": seed, "age_at_use_s": AGE_AT_USE_S}
    if quick:
        p.update(train_steps=1500, reference_steps=200)
    return _scalars(run_diffusion(chip, p, program_fn=make_program_fn()))


def fast_weights_chip(chip: BackendBase, seed: int, quick: bool) -> dict[str, float]:
    from calibration.weights import make_program_fn
    from labctl.inference.fast_weight_memory import run_fast_weights

    p: dict[str, Any] = {"seed": seed, "age_at_use_s": AGE_AT_USE_S, "curve": (512,)}
    return _scalars(run_fast_weights(chip, p, program_fn=make_program_fn()))


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def _extreme(rows: list[dict[str, float]], key: str, worst: str) -> float:
    vals = [r[key] for r in rows]
    return float(max(vals) if worst == "max" else min(vals))


def run(quick: bool = False,
        progress: Callable[[float, float, str], None] | None = None) -> dict[str, float]:
    n_dies = 2 if quick else N_CHIPS
    workloads: tuple[tuple[str, ChipFn, str], ...] = (
        ("nf", neural_field_chip, "neural-field"), ("nf_map", mappings_chip, "mapping"),
        ("nf3d", cone_beam_chip, "cone-beam"), ("diff", diffusion_chip, "diffusion"),
        ("fw", fast_weights_chip, "fast-weight"))
    total = len(workloads) * n_dies
    rows: dict[str, list[dict[str, float]]] = {}
    for k, (key, fn, what) in enumerate(workloads):
        def tick(done: int, _n: int, _text: str, base: int = k * n_dies,
                 what: str = what) -> None:
            if progress is not None:
                progress(base + done, total, f"inference: {what} dies")

        rows[key] = over_dies(fn, WAFER_SEEDS[key], n_dies, quick, tick)
    return collect(rows)


def collect(rows: dict[str, list[dict[str, float]]]) -> dict[str, float]:
    """The section's figures from each workload's per-die figures."""
    nf, nm, cb, df, fw = rows["nf"], rows["nf_map"], rows["nf3d"], rows["diff"], rows["fw"]
    for r in nm:
        for k in [k for k in r if k.startswith("psnr_chip_db_")]:
            r["gap_" + k[len("psnr_chip_db_"):]] = r["psnr_float_db"] - r[k]
    for r in fw:
        r["ratio"] = r["recall_chip"] / r["recall_float"]
    out: dict[str, float] = {
        "inference_n_chips": float(len(nf)),
        "inference_age_at_use_s": min(r["age_at_use_s"] for rs in rows.values() for r in rs
                                      if "age_at_use_s" in r),
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
    for k in sorted(k for k in nm[0] if k.startswith("gap_")):
        kind = k[len("gap_"):]
        out[f"nf_psnr_gap_db_mean_{kind}"] = _mean(nm, k)
        out[f"nf_psnr_gap_db_worst_{kind}"] = _extreme(nm, k, "max")
        out[f"nf_cells_used_{kind}"] = _mean(nm, f"cells_used_{kind}")
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
