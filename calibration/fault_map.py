"""Routine ``fault_map``: complete the chip's fault map from reads, and remap faulty columns.

The calibration record already holds what forming (unformed) and verify-write (stuck at
LRS / HRS) found. This step reads the region once (averaged) and adds what a read alone
shows — cells reading above ``lrs_above_S`` (default 1.5 × the window top, where no
programmed cell of the window can be) are stuck at LRS, and cells forming marked unformed
that conduct above the pristine level (``pristine_below_S``, default 0.1 µS: a pristine
cell conducts ~0.01 µS, a reset filament ~0.5 µS — docs/simulator.md) are stuck at HRS
(formed but immovable) rather than unformed — then builds a
:class:`~calibration.faults.ColumnRemap` moving every logical column of the region that has
a faulty cell to a fault-free spare column from ``spare_cols`` (pairs when ``pair``), and
stores it in the record under ``remap_name`` for the inference layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from calibration import region as reg
from calibration.faults import ColumnRemap, is_bad
from labctl.core.backend import ChipInfo
from labctl.core.calibration_record import FAULT_CODES
from labctl.core.cells import Cells
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine import Checkpoint, RoutineSpec, StepContext
from labctl.core.routine_params import Bool, Float, Int, IntPair, Param, ParamError

PARAMS: dict[str, Param] = {
    **reg.PARAMS,
    "spare_cols": IntPair("spare physical columns [start, stop) on the same tile and rows",
                          min=0, default=[496, 512]),
    "pair": Bool("move columns two at a time (differential pairs)", default=True),
    "lrs_above_S": Float("a cell reading above this is stuck at LRS (0: 1.5 × window top)",
                         unit="S", min=0.0, max=1e-3, default=0.0),
    "pristine_below_S": Float("an 'unformed' cell reading above this is stuck at HRS",
                              unit="S", min=0.0, max=1e-4, default=0.1e-6),
    "n_average": Int("reads averaged", min=1, max=64, default=4),
    "remap_name": Param("str", "key of the map in the calibration record", default="default"),
}


def check(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    reg.check_region(params["region"], chip)
    s0, s1 = params["spare_cols"]
    c0, c1 = params["region"]["cols"]
    if s1 > chip.n_cols:
        raise ParamError("spare_cols", f"must lie within [0, {chip.n_cols}]")
    if s0 < c1 and c0 < s1:
        raise ParamError("spare_cols", "must not overlap the region's columns")
    if params["pair"] and ((c1 - c0) % 2 or (s1 - s0) % 2):
        raise ParamError("pair", "region and spare column counts must be even for pairs")


def run(ctx: StepContext) -> Iterator[Checkpoint]:
    p = ctx.params
    r = p["region"]
    (r0, r1), (c0, c1), (s0, s1) = r["rows"], r["cols"], p["spare_cols"]
    t = r["tile"]
    all_cols = np.r_[c0:c1, s0:s1]
    cells = Cells.block(t, range(r0, r1), all_cols)
    g = ctx.backend.read(cells, n_average=p["n_average"])
    lrs = p["lrs_above_S"] or 1.5 * ctx.chip.g_max_S
    hi = cells.subset(g > lrs)
    ctx.calibration.mark_faults(hi.tile, hi.row, hi.col, "stuck_lrs")
    was = ctx.calibration.fault_map[cells.tile, cells.row, cells.col]
    lo = cells.subset((was == FAULT_CODES["unformed"]) & (g > p["pristine_below_S"]))
    ctx.calibration.mark_faults(lo.tile, lo.row, lo.col, "stuck_hrs")
    block = ctx.calibration.fault_map[t, r0:r1][:, all_cols]
    n_log = c1 - c0
    width = 2 if p["pair"] else 1
    spares = np.arange(n_log, n_log + (s1 - s0), width)
    remap = ColumnRemap.build(block, n_log, spares, pair=p["pair"])
    physical = all_cols[remap.physical]
    ctx.calibration.remap[p["remap_name"]] = {
        "tile": t, "rows": [r0, r1], "logical_cols": [c0, c1], "physical": physical.tolist(),
        "unrepaired": [int(c0 + k) for k in remap.unrepaired]}
    bad = is_bad(block)
    codes = {k: int((block == v).sum()) for k, v in FAULT_CODES.items()}
    ctx.save_arrays(fault_map=block, remap_physical=physical)
    ctx.result(**codes, faulty_logical_columns=int(bad[:, :n_log].any(axis=0).sum()),
               remapped=int((remap.physical != np.arange(n_log)).sum()),
               unrepaired=len(remap.unrepaired), remap_name=p["remap_name"])
    ctx.touch_calibration()
    yield from ()


ROUTINE = RoutineSpec("fault_map", __doc__ or "", PARAMS, run, check)
