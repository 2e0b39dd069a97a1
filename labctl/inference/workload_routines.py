"""The three workloads as protocol routines: ``neural_field``, ``diffusion``,
``fast_weights``.

Each routine validates its parameters declaratively (``labctl.core.routine_params``;
defaults are the
workload dataclasses' defaults, so ``labctl run protocols/<workload>.yaml`` reproduces the
bench figures), checks the chip-dependent limits before any operation (the weight
programmer's voltages against the safety envelope, the layers against the chip's size),
runs the workload on ``ctx.backend`` and stores figures (``ctx.result``) and arrays
(``ctx.save_arrays``) in the run file. Workloads of docs/references.md, "The seed papers'
workloads" (Yu et al. 2026, Yang et al. 2026, the fast-weight line).

Programming and resume: the workloads program weights through ``program_fn`` with direct
``backend.pulse`` calls (not checkpoint batches), so the runner records every pulse
write-ahead as a PULSE record but cannot resume a step after its first pulse; ``labctl run
--resume`` refuses that and says to re-run the step. Each routine yields one checkpoint
before it touches the chip (a Ctrl+C during float training pauses or aborts there); a run
killed before that checkpoint's successor pulses restarts the step from scratch.

Weights reach the chip through the calibration verify-write: each routine programs with
:func:`calibration.weights.make_program_fn` built from the chip's calibration record
(``ctx.calibration``: cells it marks faulty are skipped, cells it marks ``ok`` are not
re-formed). The workloads take that programmer through their ``program_fn`` seam; the
inference layer sits above calibration, and ``labctl.runs.registry`` lists these routines
beside calibration's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from calibration.weights import make_program_fn
from labctl.core.backend import ChipInfo
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine import Checkpoint, RoutineSpec, StepContext
from labctl.core.routine_params import Bool, Choice, Float, Int, Param, ParamError
from labctl.inference import diffusion_run as _df_mod
from labctl.inference import fast_weights as _fw_mod
from labctl.inference import neural_field as _nf_mod
from labctl.inference.diffusion_run import DiffParams, run_diffusion
from labctl.inference.fast_weights import FWParams, run_fast_weights
from labctl.inference.neural_field import NFParams, run_neural_field

__all__ = ["DIFFUSION", "FAST_WEIGHTS", "NEURAL_FIELD", "ROUTINES"]

_NF, _DF, _FW = NFParams(), DiffParams(), FWParams()
_DAY_S = 86400.0

_SEED = Int("workload seed (training data, initial weights, sample noise); −1: the run's "
            "seed (labctl run --seed)", min=-1, max=2**31 - 1, default=-1)
_MAPPING = {
    "mapping": Choice("weight → conductance mapping: one differential pair per weight, or "
                      "residual pairs holding the measured error of the pairs before",
                      ("differential", "residual"), default="residual"),
    "n_pairs": Int("cell pairs per weight (residual mapping)", min=1, max=4, default=2),
    "percentile": Float("percentile of |W| per column mapped to the full window", min=50.0,
                        max=100.0, default=99.5),
    "settle_first_s": Float("wait before reading back the first pair (relaxation)", unit="s",
                            min=0.0, max=30 * _DAY_S, default=3600.0),
    "settle_s": Float("wait before reading back each later pair", unit="s", min=0.0,
                      max=30 * _DAY_S, default=60.0),
    "repeats": Int("MVMs averaged per layer call", min=1, max=64, default=1),
    "fault_threshold": Float("weights read back further than this × column scale get a "
                             "digital correction", min=0.0, max=10.0, default=0.25),
}


def _check_programmer(chip: ChipInfo, env: SafetyEnvelope) -> None:
    """The weight programmer's pulses must lie inside the envelope (checked before any
    operation, so a too-tight station fails at validation, not mid-programming)."""
    make_program_fn().check(chip, env)


def _columns_needed(layers: list[tuple[int, int]], n_pairs: int, replicas: int | None,
                    chip: ChipInfo) -> int:
    """Columns the shelf allocator will use for ``(n_in, n_out)`` layers."""
    cols = 0
    for n_in, n_out in layers:
        rep = max(1, chip.n_rows // n_in) if replicas is None else replicas
        row_blocks = -(-(n_in * rep) // chip.n_rows)
        cols += row_blocks * n_pairs * 2 * n_out
    return cols


def _check_fits(key: str, cols: int, chip: ChipInfo) -> None:
    have = chip.n_tiles * chip.n_cols
    if cols > have:
        raise ParamError(key, f"the layers need ~{cols} columns; the chip has {have} "
                         f"({chip.n_tiles} tiles × {chip.n_cols}); use smaller layers")


def _seed(ctx: StepContext) -> int:
    s = int(ctx.params["seed"])
    return ctx.seed if s < 0 else s


def _scalars(out: Mapping[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON-able scalar figures of a workload's output dict."""
    res: dict[str, Any] = {}
    for k, v in out.items():
        if k in skip:
            continue
        if isinstance(v, bool | int | float | np.integer | np.floating):
            res[k] = v.item() if isinstance(v, np.generic) else v
    return res


def _ledger(prefix: str, led: Mapping[str, float], keys: tuple[str, ...] = (
        "pulses", "reads", "mvm_vectors", "energy_J", "device_time_s")) -> dict[str, float]:
    return {f"{prefix}_{k}": float(led[k]) for k in keys if k in led}


# ---------------------------------------------------------------- neural field
NF_PARAMS: dict[str, Param] = {
    "n": Int("image side", min=8, max=256, default=_NF.n),
    "n_angles": Int("projection angles (views)", min=2, max=720, default=_NF.n_angles),
    "width": Int("hidden units per layer", min=4, max=256, default=_NF.width),
    "depth": Int("hidden layers", min=1, max=8, default=_NF.depth),
    "prior_steps": Int("Adam steps fitting the prior image", min=0, max=100000,
                       default=_NF.prior_steps),
    "finetune_steps": Int("Adam steps fine-tuning on the projections", min=0, max=100000,
                          default=_NF.finetune_steps),
    "noise_sigma": Float("hardware-aware training noise W·(1+n), n ~ N(0, σ)", min=0.0,
                         max=0.5, default=_NF.noise_sigma),
    "activation": Choice("sine layers (SIREN) or Fourier features + ReLU",
                         ("siren", "relu"), default=_NF.activation),
    "digital_first": Bool("keep the 2-input first layer digital", default=_NF.digital_first),
    **_MAPPING,
    "seed": _SEED,
}


def _check_nf(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    _check_programmer(chip, env)
    w, d = params["width"], params["depth"]
    shapes = [(w, w)] * (d - 1) + [(w, 1)] + ([] if params["digital_first"] else [(2, w)])
    pairs = params["n_pairs"] if params["mapping"] == "residual" else 1
    _check_fits("width", _columns_needed(shapes, pairs, None, chip), chip)


def _run_nf(ctx: StepContext) -> Iterator[Checkpoint]:
    p = dict(ctx.params, seed=_seed(ctx))
    yield Checkpoint(state={}, meta={"phase": "start"})
    out = run_neural_field(ctx.backend, NFParams(**p),
                              program_fn=make_program_fn(ctx.calibration))
    img = out["images"]
    ctx.save_arrays(**{f"recon_{k}": v for k, v in img.items()},
                    loss_prior=out["loss_prior"], loss_finetune=out["loss_finetune"])
    n_pix = img["truth"].size
    inf = out["ledger_inference"]
    ctx.result(**_scalars(out), seed=p["seed"],
               energy_J_per_pixel_chip=inf.get("energy_J", 0.0) / n_pix,
               device_time_s_per_pixel_chip=inf.get("device_time_s", 0.0) / n_pix,
               **_ledger("programming", out["ledger_programming"]))


NEURAL_FIELD = RoutineSpec("neural_field", _nf_mod.__doc__ or "", NF_PARAMS, _run_nf, _check_nf)

# ---------------------------------------------------------------- diffusion
DF_PARAMS: dict[str, Param] = {
    "width": Int("hidden units per layer", min=4, max=256, default=_DF.width),
    "depth": Int("hidden layers", min=1, max=8, default=_DF.depth),
    "train_steps": Int("training steps per model", min=1, max=100000,
                       default=_DF.train_steps),
    "batch": Int("training batch", min=8, max=8192, default=_DF.batch),
    "n_train": Int("training points", min=64, max=10**6, default=_DF.n_train),
    "n_samples": Int("samples drawn (float and chip, same start noise)", min=16, max=100000,
                     default=_DF.n_samples),
    "n_steps": Int("Heun steps of the stepped sampler", min=2, max=1000,
                   default=_DF.n_steps),
    "guidance": Float("classifier-free guidance weight", min=0.0, max=20.0,
                      default=_DF.guidance),
    "noise_sigma": Float("hardware-aware training noise W·(1+n), n ~ N(0, σ)", min=0.0,
                         max=0.5, default=_DF.noise_sigma),
    "noise_additive": Float("additive training noise × the layer's max |W|", min=0.0,
                            max=0.5, default=_DF.noise_additive),
    "continuous": Bool("also simulate the continuous-time analog loop",
                       default=_DF.continuous),
    "continuous_steps": Int("Euler points of the continuous-time loop", min=2, max=10000,
                            default=_DF.continuous_steps),
    "digital_first": Bool("keep the input layer digital", default=_DF.digital_first),
    "digital_last": Bool("keep the output layer digital", default=_DF.digital_last),
    "replicas": Int("row copies per input (0: fill a tile's rows)", min=0, max=64, default=0),
    "recalibrate": Choice("chip-in-the-loop recalibration right before each network samples: "
                          "none, affine (refit per-column gain/offset from calibration "
                          "inputs) or reread (re-read cells and ADC ranges, then refit)",
                          ("none", "affine", "reread"), default=_DF.recalibrate),
    "program_order": Choice("both_first: program both networks, then sample; just_in_time: "
                            "program each network right before it samples",
                            ("both_first", "just_in_time"), default=_DF.program_order),
    **_MAPPING,
    "seed": _SEED,
}


def _check_df(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    _check_programmer(chip, env)
    w, d = params["width"], params["depth"]
    shapes = [(w, w)] * (d - 1)
    if not params["digital_first"]:
        shapes.append((2 + 16 + 3, w))
    if not params["digital_last"]:
        shapes.append((w, 2))
    pairs = params["n_pairs"] if params["mapping"] == "residual" else 1
    rep = params["replicas"] or None
    _check_fits("width", 2 * _columns_needed(shapes, pairs, rep, chip), chip)  # two models


def _run_df(ctx: StepContext) -> Iterator[Checkpoint]:
    p = dict(ctx.params, seed=_seed(ctx))
    p["replicas"] = p["replicas"] or None
    yield Checkpoint(state={}, meta={"phase": "start"})
    out = run_diffusion(ctx.backend, DiffParams(**p),
                        program_fn=make_program_fn(ctx.calibration))
    s = out["samples"]
    ctx.save_arrays(**{f"samples_{k}": v for k, v in s.items()},
                    loss_uncond=out["loss_uncond"], loss_cond=out["loss_cond"])
    ctx.result(**_scalars(out), seed=p["seed"],
               swd_chip_over_float=out["swd_chip"] / out["swd_float"],
               **_ledger("sampling", out["ledger_sampling_uncond"]))


DIFFUSION = RoutineSpec("diffusion", _df_mod.__doc__ or "", DF_PARAMS, _run_df, _check_df)

# ---------------------------------------------------------------- fast weights
FW_PARAMS: dict[str, Param] = {
    "vocab": Int("token vocabulary (chance recall = 1/vocab)", min=2, max=65536,
                 default=_FW.vocab),
    "n_pairs": Int("key/value pairs written, then queried", min=1, max=8192,
                   default=_FW.n_pairs),
    "d_model": Int("token embedding width", min=4, max=4096, default=_FW.d_model),
    "d_key": Int("key / value width (inner MLP in and out)", min=4, max=1024,
                 default=_FW.d_key),
    "hidden": Int("inner MLP hidden width", min=4, max=2048, default=_FW.hidden),
    "chunk": Int("pairs per update (one programming round each)", min=1, max=8192,
                 default=_FW.chunk),
    "lr": Float("inner learning rate", min=0.0, max=10.0, default=_FW.lr),
    "write_threshold_S": Float("cells whose target moved less than this are not rewritten",
                               unit="S", min=0.0, max=1e-4, default=_FW.write_threshold_S),
    "headroom": Float("column scale growth factor when a weight outgrows it", min=1.0,
                      max=10.0, default=_FW.headroom),
    "replicas": Int("row copies per input", min=1, max=64, default=_FW.replicas),
    "seed": _SEED,
}


def _check_fw(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    _check_programmer(chip, env)
    k, h, r = params["d_key"], params["hidden"], params["replicas"]
    if params["n_pairs"] > params["vocab"]:
        raise ParamError("n_pairs", f"must not exceed vocab ({params['vocab']}): keys are "
                         "distinct tokens")
    if params["d_key"] > params["d_model"]:
        raise ParamError("d_key", f"must not exceed d_model ({params['d_model']})")
    _check_fits("hidden", _columns_needed([(k, h), (k, h), (h, k)], 1, r, chip), chip)


def _run_fw(ctx: StepContext) -> Iterator[Checkpoint]:
    p = dict(ctx.params, seed=_seed(ctx))
    yield Checkpoint(state={}, meta={"phase": "start"})
    out = run_fast_weights(ctx.backend, FWParams(**p),
                              program_fn=make_program_fn(ctx.calibration))
    ctx.save_arrays(recall_by_chunk_float=out["recall_by_chunk_float"],
                    recall_by_chunk_chip=out["recall_by_chunk_chip"],
                    writes_per_cell=out["writes_per_cell"])
    ctx.result(**_scalars(out), seed=p["seed"], **_ledger("query", out["ledger_query"]))


FAST_WEIGHTS = RoutineSpec("fast_weights", _fw_mod.__doc__ or "", FW_PARAMS, _run_fw, _check_fw)

ROUTINES: tuple[RoutineSpec, ...] = (NEURAL_FIELD, DIFFUSION, FAST_WEIGHTS)
