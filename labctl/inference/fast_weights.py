"""The ``fast_weights`` routine: fast weights written and queried on the chip
(:mod:`labctl.inference.fast_weight_memory`).

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
from labctl.core.routine_params import Float, Int, Param, ParamError
from labctl.inference import fast_weight_memory as _workload
from labctl.inference.fast_weight_memory import FWParams, run_fast_weights
from labctl.inference.routine_support import (
    AGE_AT_USE,
    SEED,
    check_fits,
    check_programmer,
    columns_needed,
    ledger_figures,
    scalars,
    workload_seed,
)

__all__ = ["FAST_WEIGHTS"]

_FW = FWParams()

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
    "query_repeats": Int("MVMs averaged per query (read averaging)", min=1, max=64,
                         default=_FW.query_repeats),
    "curve_points": Int("further episodes for the recall-vs-N curve, at n_pairs/2, /4, …",
                        min=0, max=8, default=len(_FW.curve)),
    "age_at_use_s": AGE_AT_USE,
    "seed": SEED,
}


def _check_fw(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    check_programmer(chip, env)
    k, h, r = params["d_key"], params["hidden"], params["replicas"]
    if params["n_pairs"] > params["vocab"]:
        raise ParamError("n_pairs", f"must not exceed vocab ({params['vocab']}): keys are "
                         "distinct tokens")
    if params["d_key"] > params["d_model"]:
        raise ParamError("d_key", f"must not exceed d_model ({params['d_model']})")
    check_fits("hidden", columns_needed([(k, h), (k, h), (h, k)], 1, r, chip), chip)


def _run_fw(ctx: StepContext) -> Iterator[Checkpoint]:
    p = dict(ctx.params, seed=workload_seed(ctx))
    yield Checkpoint(state={}, meta={"phase": "start"})
    k = p.pop("curve_points")
    p["curve"] = tuple(p["n_pairs"] >> j for j in range(k, 0, -1) if p["n_pairs"] >> j > 0)
    out = run_fast_weights(ctx.backend, FWParams(**p),
                           program_fn=make_program_fn(ctx.calibration), progress=ctx.progress)
    ctx.save_arrays(curve_n=out["curve_n"], curve_recall_float=out["curve_recall_float"],
                    curve_recall_chip=out["curve_recall_chip"],
                    recall_by_chunk_float=out["recall_by_chunk_float"],
                    recall_by_chunk_chip=out["recall_by_chunk_chip"],
                    writes_per_cell=out["writes_per_cell"])
    ctx.result(**scalars(out), seed=p["seed"],
               **ledger_figures("query", out["ledger_query"]))


FAST_WEIGHTS = RoutineSpec("fast_weights", _workload.__doc__ or "", FW_PARAMS, _run_fw, _check_fw)

