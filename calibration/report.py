"""Routine ``report``: print a summary of the run's key figures (the quickstart's last step).

Prints, for every earlier step of this run that saved figures in this process, the figures
that say whether the chip and the routines did their job: forming yield, verify-write
convergence / RMS error / pulses, spread and distinguishable levels over time, drift
compensation and refresh errors. The same figures are in the run file (``labctl show``);
``labctl plot`` draws the maps, convergence, spread and drift figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from labctl.core.quantity_text import display
from labctl.core.routine import Checkpoint, RoutineSpec, StepContext
from labctl.core.routine_params import Param

PARAMS: dict[str, Param] = {}
SHOWN = {
    "forming": ("formed", "unformable", "yield_fraction"),
    "verify_write": ("policy", "converged", "gave_up", "stuck", "skipped", "success_rate",
                     "rms_error_usable_S", "mean_pulses", "iterations"),
    "characterize": ("levels_uS", "criterion", "distinguishable_t0", "distinguishable_1s",
                     "distinguishable_3600s", "distinguishable_86400s", "sigma_1s_uS",
                     "sigma_86400s_uS"),
    "compensate": ("mvm_error_baseline", "baseline_age_s", "mvm_error_raw", "mvm_error_global",
                   "mvm_error_compensated", "measurement_age_s", "systematic_fraction",
                   "global_scale"),
    "refresh": ("fraction_refreshed", "rms_before_uS", "rms_after_uS", "mvm_error_after"),
    "drift_monitor": ("mean_shift_at_end_S", "shift_spread_at_end_S"),
}


def lines(results: dict[int, dict[str, Any]]) -> list[str]:
    """Report lines: for each step, the figures listed in :data:`SHOWN` for the routine
    whose first key it saved (all its figures when none matches), each in its display unit
    (conductance always in µS; :func:`labctl.core.quantity_text.display`)."""
    out = []
    for step, figs in sorted(results.items()):
        keys = next((ks for ks in SHOWN.values() if ks[0] in figs), tuple(figs))
        out.append(f"step {step + 1}:")
        out += [f"    {name:<24} {text}" for name, text in
                (display(k, figs[k]) for k in keys if k in figs)]
    return out


def run(ctx: StepContext) -> Iterator[Checkpoint]:
    run_file = getattr(getattr(ctx.sink, "writer", None), "path", "RUN.h5")
    text = [f"=== labctl report: chip {ctx.chip.chip_id} ===", *lines(ctx.earlier_results()),
            f"figures: labctl plot {run_file} (maps, forming, convergence, accuracy, "
            "compensation, refresh, levels by age of the read)"]
    print("\n".join(text), flush=True)
    ctx.result(lines=len(text))
    yield from ()


ROUTINE = RoutineSpec("report", __doc__ or "", PARAMS, run)
