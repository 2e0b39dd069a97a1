"""The ``diffusion`` routine: score-based diffusion sampled through the chip
(:mod:`labctl.inference.diffusion_run`).

Shared parts (programmer check, fit check, seed, figures)
in :mod:`labctl.inference.routine_support`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from calibration.weights import make_program_fn
from labctl.core.backend import ChipInfo
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine import Checkpoint, RoutineSpec, StepContext
from labctl.core.routine_params import Bool, Choice, Float, Int, Param
from labctl.inference import diffusion_run as _workload
from labctl.inference.diffusion_run import DiffParams, run_diffusion
from labctl.inference.routine_support import (
    AGE_AT_USE,
    MAPPING_PARAMS,
    SEED,
    check_fits,
    check_programmer,
    columns_needed,
    ledger_figures,
    scalars,
    workload_seed,
)

__all__ = ["DIFFUSION"]

_DF = DiffParams()

MAPPING: dict[str, Param] = {
    "mapping": Choice("weight → conductance mapping: one differential pair per weight, or "
                      "residual pairs holding the measured error of the pairs before",
                      ("differential", "residual"), default="residual"),
    **MAPPING_PARAMS,
}

DF_PARAMS: dict[str, Param] = {
    "width": Int("hidden units per layer (the paper's 14)", min=4, max=256, default=_DF.width),
    "train_steps": Int("training steps per model", min=1, max=100000,
                       default=_DF.train_steps),
    "batch": Int("training batch", min=8, max=8192, default=_DF.batch),
    "n_train": Int("training points", min=64, max=10**6, default=_DF.n_train),
    "n_samples": Int("samples drawn (float and chip, same start noise)", min=16, max=100000,
                     default=_DF.n_samples),
    "n_samples_cond": Int("guided conditional samples (class accuracy)", min=3, max=100000,
                          default=_DF.n_samples_cond),
    "n_samples_continuous": Int("samples of the simulated continuous-time loop", min=2,
                                max=100000, default=_DF.n_samples_continuous),
    "n_cal": Int("calibration trajectories (independent noise draw)", min=8, max=100000,
                 default=_DF.n_cal),
    "n_steps": Int("Euler steps of the stepped samplers", min=2, max=10000,
                   default=_DF.n_steps),
    "reference_steps": Int("Euler steps of the float reference", min=2, max=100000,
                           default=_DF.reference_steps),
    "guidance": Float("classifier-free guidance weight", min=0.0, max=20.0,
                      default=_DF.guidance),
    "noise_sigma": Float("hardware-aware training noise W·(1+n), n ~ N(0, σ) within ±2σ",
                         min=0.0, max=0.5, default=_DF.noise_sigma),
    "continuous": Bool("also simulate the continuous-time analog loop",
                       default=_DF.continuous),
    "continuous_steps": Int("Euler points (loop latencies) of the continuous-time loop",
                            min=2, max=100000, default=_DF.continuous_steps),
    "replicas": Int("row copies per input (0: fill a tile's rows)", min=0, max=64,
                    default=_DF.replicas or 0),
    "recalibrate": Choice("refit the per-column trims right before use from the calibration "
                          "inputs through the chip: none, affine, or reread (re-read the "
                          "cells and ADC ranges first)", ("none", "affine", "reread"),
                          default=_DF.recalibrate),
    **MAPPING, "age_at_use_s": AGE_AT_USE,
    "seed": SEED,
}


def _check_df(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    check_programmer(chip, env)
    w = params["width"]
    copies = list(_DF.col_copies) + [1] * 3  # column copies multiply a layer's outputs
    shapes = [(2 + 4, w * copies[0]), (w, w * copies[1]), (w, 2 * copies[2])]
    pairs = params["n_pairs"] if params["mapping"] == "residual" else 1
    rep = params["replicas"] or None
    check_fits("width", 2 * columns_needed(shapes, pairs, rep, chip), chip)  # two models


def _run_df(ctx: StepContext) -> Iterator[Checkpoint]:
    p = dict(ctx.params, seed=workload_seed(ctx))
    p["replicas"] = p["replicas"] or None
    yield Checkpoint(state={}, meta={"phase": "start"})
    out = run_diffusion(ctx.backend, DiffParams(**p),
                        program_fn=make_program_fn(ctx.calibration), progress=ctx.progress)
    s = out["samples"]
    ctx.save_arrays(**{f"samples_{k}": v for k, v in s.items()},
                    loss_uncond=out["loss_uncond"], loss_cond=out["loss_cond"])
    ctx.result(**scalars(out), seed=p["seed"],
               **ledger_figures("sampling", out["ledger_sampling_uncond"]))


DIFFUSION = RoutineSpec("diffusion", _workload.__doc__ or "", DF_PARAMS, _run_df, _check_df)
