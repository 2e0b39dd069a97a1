"""What the three workload routines (``neural_field``, ``diffusion``, ``fast_weights``) share.

Each routine validates its parameters declaratively (``labctl.core.routine_params``;
defaults are the workload dataclasses' defaults, so ``labctl run
protocols/<workload>.yaml`` reproduces the bench figures), checks the chip-dependent limits
before any operation (the weight programmer's voltages against the safety envelope, the
layers against the chip's size), runs the workload on ``ctx.backend`` and stores figures
(``ctx.result``) and arrays (``ctx.save_arrays``) in the run file.

Programming and resume: the workloads program weights through ``program_fn`` with direct
``backend.pulse`` calls (not checkpoint batches), so the runner records every pulse
write-ahead as a PULSE record but cannot resume a step after its first pulse; ``labctl run
--resume`` refuses that and says to re-run the step. Each routine yields one checkpoint
before it touches the chip (a Ctrl+C during float training pauses or aborts there).

Weights reach the chip through the calibration verify-write: each routine programs with
:func:`calibration.weights.make_program_fn` built from the chip's calibration record
(``ctx.calibration``: cells it marks faulty are skipped, cells it marks ``ok`` are not
re-formed). The inference package sits above ``calibration`` and may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from calibration.weights import make_program_fn
from labctl.core.backend import ChipInfo
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine import StepContext
from labctl.core.routine_params import Float, Int, Param, ParamError

__all__ = [
    "AGE_AT_USE", "MAPPING_PARAMS", "SEED", "check_fits", "check_programmer",
    "columns_needed", "ledger_figures", "scalars", "workload_seed",
]

DAY_S = 86400.0

SEED = Int("workload seed (training data, initial weights, sample noise); −1: the run's "
           "seed (labctl run --seed)", min=-1, max=2**31 - 1, default=-1)

AGE_AT_USE = Float("wait between the end of programming (and calibration) and use: the chip "
                   "is evaluated at this age (relaxation keeps moving the cells for hours)",
                   unit="s", min=0.0, max=365 * DAY_S, default=3600.0)

MAPPING_PARAMS: dict[str, Param] = {
    "n_pairs": Int("cell pairs per weight (residual mapping)", min=1, max=4, default=2),
    "percentile": Float("percentile of |W| per column mapped to the full window", min=50.0,
                        max=100.0, default=99.5),
    "settle_first_s": Float("wait before reading back the first pair (relaxation)", unit="s",
                            min=0.0, max=30 * DAY_S, default=3600.0),
    "settle_s": Float("wait before reading back each later pair", unit="s", min=0.0,
                      max=30 * DAY_S, default=60.0),
    "repeats": Int("MVMs averaged per layer call", min=1, max=64, default=1),
    "fault_threshold": Float("weights read back further than this × column scale get a "
                             "digital correction", min=0.0, max=10.0, default=0.25),
}


def check_programmer(chip: ChipInfo, env: SafetyEnvelope) -> None:
    """The weight programmer's pulses must lie inside the envelope (checked before any
    operation, so a too-tight station fails at validation, not mid-programming)."""
    make_program_fn().check(chip, env)


def columns_needed(layers: list[tuple[int, int]], n_pairs: int, replicas: int | None,
                   chip: ChipInfo) -> int:
    """Columns the shelf allocator will use for ``(n_in, n_out)`` layers."""
    cols = 0
    for n_in, n_out in layers:
        rep = max(1, chip.n_rows // n_in) if replicas is None else replicas
        row_blocks = -(-(n_in * rep) // chip.n_rows)
        cols += row_blocks * n_pairs * 2 * n_out
    return cols


def check_fits(key: str, cols: int, chip: ChipInfo) -> None:
    have = chip.n_tiles * chip.n_cols
    if cols > have:
        raise ParamError(key, f"the layers need ~{cols} columns; the chip has {have} "
                         f"({chip.n_tiles} tiles × {chip.n_cols}); use smaller layers")


def workload_seed(ctx: StepContext) -> int:
    s = int(ctx.params["seed"])
    return ctx.seed if s < 0 else s


def scalars(out: Mapping[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON-able scalar figures of a workload's output dict."""
    res: dict[str, Any] = {}
    for k, v in out.items():
        if k in skip:
            continue
        if isinstance(v, bool | int | float | np.integer | np.floating):
            res[k] = v.item() if isinstance(v, np.generic) else v
    return res


def ledger_figures(prefix: str, led: Mapping[str, float], keys: tuple[str, ...] = (
        "pulses", "reads", "mvm_vectors", "energy_J", "device_time_s")) -> dict[str, float]:
    return {f"{prefix}_{k}": float(led[k]) for k in keys if k in led}
