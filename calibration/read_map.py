"""Read a region's conductance map (characterization / report step); never pulses."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from calibration import region as reg
from labctl.core.backend import ChipInfo
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine import Checkpoint, RoutineSpec, StepContext
from labctl.core.routine_params import Float, Int, Param, ParamError

PARAMS: dict[str, Param] = {
    **reg.PARAMS,
    "read_V": Float("read voltage", unit="V", min=0.05, max=0.3, default=0.2),
    "n_average": Int("reads averaged", min=1, max=64, default=8),
}


def check(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    reg.check_region(params["region"], chip)
    if params["read_V"] > env.max_read_V:
        raise ParamError("read_V", f"must be ≤ {env.max_read_V:g} V (the safety envelope)")


def run(ctx: StepContext) -> Iterator[Checkpoint]:
    p = ctx.params
    shape = reg.region_shape(p["region"])
    g = ctx.backend.read(reg.region_cells(p["region"]), p["read_V"], n_average=p["n_average"])
    ctx.save_arrays(g_map_S=g.reshape(shape))
    ctx.result(mean_S=float(g.mean()), std_S=float(g.std()), min_S=float(g.min()),
               max_S=float(g.max()), n_cells=int(g.size))
    yield from ()


ROUTINE = RoutineSpec("read_map", __doc__ or "", PARAMS, run, check)
