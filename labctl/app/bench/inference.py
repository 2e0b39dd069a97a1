"""Bench section ``inference``: the seed papers' three workloads, float beside chip, on the
simulated macro (``default_180nm``, seed 0), each workload on its own fresh chip.

- ``nf_psnr_float_db`` / ``nf_psnr_chip_db`` / ``nf_psnr_fbp_db`` (+ ``nf_psnr_prior_db``):
  neural-field sparse-view CT, 64 × 64 phantom, 20 views (target: chip ≥ float − 1 dB).
- ``diff_swd_float`` / ``diff_swd_chip`` / ``diff_swd_floor``: unconditional ring, sliced
  Wasserstein distance (target: chip ≤ 1.25 × float); ``diff_cfg_class_accuracy_chip``
  (target ≥ 0.98); ``diff_energy_J_per_sample_chip`` and ``diff_device_time_s_per_sample_chip``
  from the ledger over the stepped chip sampler.
- ``fw_recall_float`` / ``fw_recall_chip`` (target ≥ 0.95) and
  ``fw_write_pulses_per_token``: fast-weight associative recall of 256 pairs.

``quick`` shrinks training and sample counts (a smoke run; figures are then not the
targets' figures).
"""

from __future__ import annotations

from typing import Any

from labctl.core.backend import BackendBase
from labctl.core.station_spec import parse_station
from labctl.inference.diffusion_run import run_diffusion
from labctl.inference.fast_weights import run_fast_weights
from labctl.inference.neural_field import run_neural_field
from labctl.runs.backends import open_backend


def _chip(seed: int = 0) -> BackendBase:
    """A fresh simulated chip, through the station factory (no direct simulator import)."""
    spec = parse_station({"station": {"backend": "sim", "preset": "default_180nm",
                                      "seed": seed}}, "bench inference")
    return open_backend(spec)


def run(quick: bool = False) -> dict[str, float]:
    from calibration.weights import make_program_fn

    nf_p: dict[str, Any] = {"prior_steps": 100, "finetune_steps": 40, "n": 32} if quick else {}
    df_p: dict[str, Any] = ({"train_steps": 400, "n_samples": 400, "n_steps": 10,
                             "continuous_steps": 40} if quick else {})
    fw_p: dict[str, Any] = {}
    nf = run_neural_field(_chip(), nf_p, program_fn=make_program_fn())
    df = run_diffusion(_chip(), df_p, program_fn=make_program_fn())
    fw = run_fast_weights(_chip(), fw_p, program_fn=make_program_fn())
    return {
        "nf_psnr_float_db": nf["psnr_float_db"],
        "nf_psnr_chip_db": nf["psnr_chip_db"],
        "nf_psnr_fbp_db": nf["psnr_fbp_db"],
        "nf_psnr_prior_db": nf["psnr_prior_db"],
        "diff_swd_float": df["swd_float"],
        "diff_swd_chip": df["swd_chip"],
        "diff_swd_floor": df["swd_floor"],
        "diff_swd_chip_continuous": df["swd_chip_continuous"],
        "diff_cfg_class_accuracy_float": df["cfg_accuracy_float"],
        "diff_cfg_class_accuracy_chip": df["cfg_accuracy_chip"],
        "diff_energy_J_per_sample_chip": df["energy_J_per_sample_chip"],
        "diff_device_time_s_per_sample_chip": df["device_time_s_per_sample_chip"],
        "diff_energy_J_per_sample_continuous": df["energy_J_per_sample_continuous"],
        "diff_device_time_s_per_sample_continuous": df["device_time_s_per_sample_continuous"],
        "fw_recall_float": fw["recall_float"],
        "fw_recall_chip": fw["recall_chip"],
        "fw_recall_chance": fw["recall_chance"],
        "fw_write_pulses_per_token": fw["write_pulses_per_token"],
        "fw_write_energy_J_per_token": fw["write_energy_J_per_token"],
        "fw_write_device_time_s_per_token": fw["write_device_time_s_per_token"],
        "fw_writes_per_cell_max": fw["writes_per_cell_max"],
    }
