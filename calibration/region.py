"""The region parameter shared by routines: a rectangular block of one tile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labctl.core.backend import ChipInfo
from labctl.core.cells import Cells
from labctl.core.routine_params import Int, IntPair, Param, ParamError, Section

REGION = Section("the block of cells to work on", {
    "tile": Int("tile index", min=0, default=0),
    "rows": IntPair("row range [start, stop) (stop exclusive)", min=0, default=[0, 16]),
    "cols": IntPair("column range [start, stop) (stop exclusive)", min=0, default=[0, 16]),
}, default={})
PARAMS: dict[str, Param] = {"region": REGION}
"""For routines that only read: a read disturbs nothing, so a default block is harmless."""

PULSE_REGION = Section(
    "the block of cells to pulse — always given explicitly: forming and programming are "
    "irreversible, so a routine that pulses never picks its cells by default", {
        "tile": Int("tile index", min=0),
        "rows": IntPair("row range [start, stop) (stop exclusive)", min=0),
        "cols": IntPair("column range [start, stop) (stop exclusive)", min=0),
    })
PULSE_PARAMS: dict[str, Param] = {"region": PULSE_REGION}
"""For routines that pulse cells (forming, verify_write, characterize, refresh)."""


def check_region(region: Mapping[str, Any], chip: ChipInfo) -> None:
    if region["tile"] >= chip.n_tiles:
        raise ParamError("region.tile", f"must be an integer with 0 ≤ value ≤ {chip.n_tiles - 1} "
                         f"(this chip has {chip.n_tiles} tiles); got {region['tile']}")
    for key, n in (("rows", chip.n_rows), ("cols", chip.n_cols)):
        if region[key][1] > n:
            raise ParamError(f"region.{key}", f"must lie within [0, {n}] on this chip; "
                             f"got {region[key]}")


def region_shape(region: Mapping[str, Any]) -> tuple[int, int]:
    (r0, r1), (c0, c1) = region["rows"], region["cols"]
    return r1 - r0, c1 - c0


def region_cells(region: Mapping[str, Any]) -> Cells:
    """Row-major cells of the region; per-cell arrays reshape to :func:`region_shape`."""
    return Cells.block(region["tile"], range(*region["rows"]), range(*region["cols"]))
