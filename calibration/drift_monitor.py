"""Watch a programmed region relax: read it at log-spaced times after programming.

Waits with ``backend.clock`` (virtual on the simulator, so a day takes no wall time). The
per-cell reads at each time are stored, and, against the first read (the drift baseline,
kept in the chip's calibration record), the mean and the spread (σ over cells) of each cell's
shift — what the relaxation fits in docs/references.md describe (mean shift ∝ ln t, spread growing
with ln t).
Checkpoints after each time point, so a resumed run continues with the next one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from calibration import region as reg
from labctl.core.backend import ChipInfo
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine import Checkpoint, RoutineSpec, StepContext
from labctl.core.routine_params import Float, Int, Param, ParamError

PARAMS: dict[str, Param] = {
    **reg.PARAMS,
    "t_first_s": Float("first read after the step starts", unit="s", min=0.0, max=1e7,
                       default=1.0),
    "t_last_s": Float("last read", unit="s", min=1e-3, max=1e8, default=86400.0),
    "n_points": Int("read times, log-spaced", min=2, max=200, default=12),
    "read_V": Float("read voltage", unit="V", min=0.05, max=0.3, default=0.2),
    "n_average": Int("reads averaged", min=1, max=64, default=3),
}


def check(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    reg.check_region(params["region"], chip)
    if params["t_last_s"] <= params["t_first_s"]:
        raise ParamError("t_last_s", "must exceed t_first_s")
    if params["read_V"] > env.max_read_V:
        raise ParamError("read_V", f"must be ≤ {env.max_read_V:g} V (the safety envelope)")


def times_s(p: Mapping[str, Any]) -> np.ndarray:
    return np.geomspace(max(p["t_first_s"], 1e-3), p["t_last_s"], p["n_points"])


def run(ctx: StepContext) -> Iterator[Checkpoint]:
    p = ctx.params
    be = ctx.backend
    cells = reg.region_cells(p["region"])
    t = times_s(p)
    if ctx.resume is None:
        st = {"t0_s": np.array(be.clock.now()), "k": np.array(0),
              "g_S": np.full((t.size, len(cells)), np.nan)}
    else:
        st = {k: np.array(v) for k, v in ctx.resume.state.items()}
    t0 = float(st["t0_s"])
    while int(st["k"]) < t.size:
        k = int(st["k"])
        wait = t0 + t[k] - be.clock.now()
        if wait > 0:
            be.clock.wait(wait)
        st["g_S"][k] = be.read(cells, p["read_V"], n_average=p["n_average"])
        st["k"] = np.array(k + 1)
        yield Checkpoint(state=st, done=k + 1, total=int(t.size))
    g = st["g_S"]
    shift = g - g[0]
    ctx.save_arrays(drift_t_s=t, drift_g_S=g, drift_mean_shift_S=shift.mean(axis=1),
                    drift_std_S=shift.std(axis=1))
    ctx.result(mean_shift_at_end_S=float(shift[-1].mean()),
               shift_spread_at_end_S=float(shift[-1].std()), t_end_s=float(t[-1]))
    shape = reg.region_shape(p["region"])
    ctx.calibration.drift["baseline_g_S"] = g[0].reshape(shape)
    ctx.calibration.drift["baseline_t_s"] = np.array([t0 + t[0]])
    ctx.touch_calibration()


ROUTINE = RoutineSpec("drift_monitor", __doc__ or "", PARAMS, run, check)
