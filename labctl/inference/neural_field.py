"""The ``neural_field`` routine: neural-field sparse-view CT on the chip
(:mod:`labctl.inference.field_recon`).

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
from labctl.core.routine_params import Bool, Choice, Float, Int, Param, ParamError
from labctl.inference import field_recon as _workload
from labctl.inference.field_recon import MAPPINGS, NFParams, run_neural_field
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

__all__ = ["NEURAL_FIELD"]

_NF = NFParams()

MAPPING: dict[str, Param] = {
    "mapping": Choice("weight → conductance mapping: one differential pair per weight, or "
                      "residual pairs holding the measured error of the pairs before, or "
                      "HAQ binary multi-cell (n_cells binary pairs of ratio haq_ratio)",
                      MAPPINGS, default=_NF.mapping),
    "compare_mappings": Bool("also program the other mappings on the same chip and report "
                             "each", default=_NF.compare_mappings),
    "n_cells": Int("binary cells per weight (HAQ mapping)", min=1, max=16,
                   default=_NF.n_cells),
    "haq_ratio": Float("significance ratio between consecutive HAQ cells", min=1.05,
                       max=4.0, default=_NF.haq_ratio),
    "recalibrate": Bool("refit the per-column trims right before use",
                        default=_NF.recalibrate),
    **MAPPING_PARAMS,
    "n_pairs": Int("cell pairs per weight (residual mapping)", min=1, max=4,
                   default=_NF.n_pairs),
    "refresh": Bool("after programming, measure the pairs through the array and re-program "
                    "the later residual pairs in turn", default=_NF.refresh),
}

NF_PARAMS: dict[str, Param] = {
    "geometry": Choice("parallel2d: an n × n slice, parallel beam; cone3d: an n³ volume, "
                       "circular cone-beam orbit", ("parallel2d", "cone3d"),
                       default=_NF.geometry),
    "n": Int("image side (pixels; voxels for cone3d)", min=8, max=256, default=_NF.n),
    "n_angles": Int("projection angles (views)", min=2, max=720, default=_NF.n_angles),
    "photons": Float("dose: incident quanta per detector bin and view (Poisson noise)",
                     min=10.0, max=1e9, default=_NF.photons),
    "width": Int("hidden units per layer", min=4, max=256, default=_NF.width),
    "depth": Int("hidden layers", min=1, max=8, default=_NF.depth),
    "prior_steps": Int("Adam steps fitting the prior image", min=0, max=100000,
                       default=_NF.prior_steps),
    "prior_batch": Int("random pixels per step of the prior fit", min=16, max=10**7,
                       default=_NF.prior_batch),
    "finetune_steps": Int("Adam steps fine-tuning on the projections", min=0, max=100000,
                          default=_NF.finetune_steps),
    "noise_sigma": Float("hardware-aware training noise W·(1+n), n ~ N(0, σ)", min=0.0,
                         max=0.5, default=_NF.noise_sigma),
    "activation": Choice("sine layers (SIREN) or Fourier features + ReLU",
                         ("siren", "relu"), default=_NF.activation),
    "digital_first": Bool("keep the 2-input first layer digital", default=_NF.digital_first),
    **MAPPING, "age_at_use_s": AGE_AT_USE,
    "seed": SEED,
}


def _check_nf(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    check_programmer(chip, env)
    if params["geometry"] == "cone3d" and params["n"] > 64:
        raise ParamError("n", "a cone-beam volume above 64³ takes hours and gigabytes "
                         "here; use n ≤ 64 with geometry: cone3d")
    w, d = params["width"], params["depth"]
    shapes = [(w, w)] * (d - 1) + [(w, 1)] + ([] if params["digital_first"] else [(2, w)])
    per_kind = {"residual": params["n_pairs"], "haq": params["n_cells"], "differential": 1}
    kinds = MAPPINGS if params["compare_mappings"] else (params["mapping"],)
    pairs = sum(per_kind[k] for k in kinds)
    check_fits("width", columns_needed(shapes, pairs, None, chip), chip)


def _run_nf(ctx: StepContext) -> Iterator[Checkpoint]:
    p = dict(ctx.params, seed=workload_seed(ctx))
    yield Checkpoint(state={}, meta={"phase": "start"})
    out = run_neural_field(ctx.backend, NFParams(**p),
                           program_fn=make_program_fn(ctx.calibration), progress=ctx.progress)
    img = out["images"]
    ctx.save_arrays(**{f"recon_{k}": v for k, v in img.items()},
                    loss_prior=out["loss_prior"], loss_finetune=out["loss_finetune"])
    ctx.result(**scalars(out), seed=p["seed"],
               **ledger_figures("programming", out["ledger_programming"]))


NEURAL_FIELD = RoutineSpec("neural_field", _workload.__doc__ or "", NF_PARAMS, _run_nf, _check_nf)

