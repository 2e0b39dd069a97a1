"""Bench section ``inference``: the seed papers' three workloads at their set-ups, float
beside chip, over ``N_CHIPS`` simulated dies of a wafer, run through the many-dies engine
(:func:`labctl.runs.campaign.start_campaign`, Dask): each workload is one campaign of its
protocol over ``N_CHIPS`` dies drawn by the wafer model around ``default_180nm`` (die-to-die
spread of thickness, threshold voltage, β and fault rate), each die a fresh chip with its
own run file and its own workload seed (the run's seed, which the campaign draws per die),
every chip used ``age_at_use_s`` (1 h) after its programming ends. The workloads' wafers
are independent (wafer seeds ``WAFER_SEEDS``). Every chip figure is reported as the mean
over dies and the worst die.

- Neural field (2-D, 128 × 128 area-sampled phantom, 20 noisy views, breathing prior):
  ``nf_psnr_float_db`` (mean), ``nf_psnr_gap_db_mean`` / ``_worst`` (float − chip, the
  ``mapping`` of the workload), the same gap for every mapping programmed on the same chip
  (``nf_psnr_gap_db_mean_<mapping>``), ``nf_psnr_prior_db``, ``nf_psnr_fbp_db``.
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
targets'). The campaigns' directories (run files, ``summary.nc``) go to a temporary
directory, or are kept under ``$LABCTL_BENCH_KEEP`` when that is set.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

N_CHIPS = 5
WORKERS = 2
AGE_AT_USE_S = 3600.0
CONE_N = 24
"""Side of the 3-D cone-beam volume (24³ voxels, 20 views of 24 × 24 detector pixels)."""

Rows = list[dict[str, float]]
ProgressFn = Callable[[float, float, str], None]


@dataclass(frozen=True)
class Workload:
    """One workload's campaign: its routine, the parameters the bench sets (the routine's
    defaults otherwise) and those ``quick`` shortens."""

    key: str
    routine: str
    wafer_seed: int
    params: Mapping[str, Any] = field(default_factory=dict)
    quick: Mapping[str, Any] = field(default_factory=dict)

    def protocol(self, quick: bool) -> dict[str, Any]:
        params = {**self.params, **(self.quick if quick else {}),
                  "age_at_use_s": AGE_AT_USE_S, "seed": -1}
        return {"name": self.key, "routine": self.routine, "params": params}


WORKLOADS = (
    Workload("nf", "neural_field", 0, {"compare_mappings": True},
             {"prior_steps": 60, "finetune_steps": 20}),
    Workload("nf3d", "neural_field", 1,
             {"geometry": "cone3d", "n": CONE_N, "compare_mappings": False,
              "prior_steps": 200, "finetune_steps": 60},
             {"prior_steps": 40, "finetune_steps": 10}),
    Workload("diff", "diffusion", 2, {}, {"train_steps": 1500, "reference_steps": 200}),
    Workload("fw", "fast_weights", 3, {"curve_points": 1}),
)
WAFER_SEEDS = {w.key: w.wafer_seed for w in WORKLOADS}


def run(quick: bool = False, progress: ProgressFn | None = None) -> dict[str, float]:
    n_dies = 2 if quick else N_CHIPS
    rows = campaign_rows(WORKLOADS, n_dies, quick, progress)
    return collect(rows)


def campaign_rows(workloads: tuple[Workload, ...], n_dies: int, quick: bool,
                  progress: ProgressFn | None = None) -> dict[str, Rows]:
    """Each workload as a campaign over ``n_dies`` dies on one local Dask cluster of
    ``WORKERS`` workers; the per-die scalar results of each (``{key: [row per die]}``)."""
    from labctl.runs.campaign import dask_client, start_campaign

    total = len(workloads) * n_dies
    out: dict[str, Rows] = {}
    with _campaign_root() as root, dask_client(WORKERS, None) as client:
        for k, w in enumerate(workloads):
            proto = root / f"{w.key}.yaml"
            proto.write_text(yaml.safe_dump(w.protocol(quick), sort_keys=False),
                             encoding="utf-8")

            def tick(done: float, _total: float, what: str, base: int = k * n_dies,
                     name: str = w.routine) -> None:
                if progress is not None:
                    progress(base + done, total, f"inference: {name} dies, {what}")

            r = start_campaign(proto, root / w.key, n_dies=n_dies, seed=w.wafer_seed,
                               progress=tick, client=client)
            if r.n_failed:
                bad = {str(d): str(m) for d, m, s in zip(r.summary["die_id"].values,
                       r.summary["message"].values, r.summary["status"].values)
                       if s != "completed"}
                raise RuntimeError(f"bench inference: {w.routine} failed on dies {bad} "
                                   f"(run files under {root / w.key})")
            out[w.key] = die_rows(r.summary, w.key)
    return out


@contextlib.contextmanager
def _campaign_root() -> Iterator[Path]:
    keep = os.environ.get("LABCTL_BENCH_KEEP")
    if keep:
        root = Path(keep) / "inference"
        root.mkdir(parents=True, exist_ok=False)
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="labctl-bench-inference-") as tmp:
        yield Path(tmp)


def die_rows(summary: Any, step: str) -> Rows:
    """One dict per die of the campaign summary's ``STEP.KEY`` figures (``KEY`` → value)."""
    prefix = f"{step}."
    names = [n for n in summary.data_vars if str(n).startswith(prefix)]
    return [{str(n)[len(prefix):]: float(summary[n].values[i]) for n in names}
            for i in range(summary.sizes["die"])]


def _mean(rows: Rows, key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def _extreme(rows: Rows, key: str, worst: str) -> float:
    vals = [r[key] for r in rows]
    return float(max(vals) if worst == "max" else min(vals))


def collect(rows: Mapping[str, Rows]) -> dict[str, float]:
    """The section's figures from the per-die rows of each workload."""
    nf, cb, df, fw = rows["nf"], rows["nf3d"], rows["diff"], rows["fw"]
    for r in nf:
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
