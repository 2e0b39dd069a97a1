"""The labelled view of a run: per step, every result array with units, dimensions and its
region as coordinates — what ``/data`` in a finished run file and ``labctl export`` hold.

Routines save plain arrays (``ctx.save_arrays(g_final_S=...)``); this module names their
dimensions. An array shaped like the step's region gets ``(row, col)`` with the chip's row
and column indices as coordinates; one value per region cell (row-major, as
``calibration.region.region_cells`` orders them) gets ``(cell,)`` with ``cell_row`` and
``cell_col``; a few arrays whose other axes have a meaning are listed in :data:`KNOWN_DIMS`;
anything else gets dimensions named after the array (``<name>_dim0``). Units come from the
name's suffix (the project's naming rule: ``g_S``, ``width_s``), else ``"1"`` (dimensionless,
as in the CF conventions, https://cfconventions.org/).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from labctl.core.errors import ConfigError
from labctl.runs.store.reader import RunReader
from labctl.runs.store.schema import PULSE_KIND_CODES, Kind

UNIT_SUFFIXES = (("_uS", "uS"), ("_S", "S"), ("_V", "V"), ("_A", "A"), ("_s", "s"),
                 ("_J", "J"), ("_Hz", "Hz"), ("_W", "W"))

KNOWN_DIMS: dict[str, tuple[str, ...]] = {
    "char_g_S": ("age", "cell"),
    "char_pair_S": ("repeat", "cell"),
    "char_level": ("cell",),
    "char_ok": ("cell",),
    "level_mean_S": ("age", "level"),
    "level_std_S": ("age", "level"),
    "level_t_s": ("age",),
    "levels_S": ("level",),
    "column_gain": ("column",),
    "column_offset_A": ("column",),
    "drift_t_s": ("time",),
    "drift_mean_shift_S": ("time",),
}
"""Dimensions of arrays whose axes are not the region's (characterize, compensate,
drift_monitor)."""

DESCRIPTIONS = {
    "row": "chip row index", "col": "chip column index",
    "cell_row": "chip row index of the cell", "cell_col": "chip column index of the cell",
}


def units_of(name: str) -> str:
    for suffix, unit in UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return "1"


@dataclass
class Variable:
    dims: tuple[str, ...]
    values: np.ndarray
    units: str
    description: str = ""


@dataclass
class StepView:
    index: int
    name: str
    routine: str
    status: str
    coords: dict[str, Variable] = field(default_factory=dict)
    data: dict[str, Variable] = field(default_factory=dict)
    attrs: dict[str, str | int | float] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return f"step{self.index + 1}_{re.sub(r'[^A-Za-z0-9_-]+', '_', self.name)}"

    def dims(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in [*self.coords.values(), *self.data.values()]:
            for d, n in zip(v.dims, v.values.shape, strict=True):
                out[d] = n
        return out


def step_views(rd: RunReader, *, operations: bool = False) -> list[StepView]:
    """One view per step that began, in order. ``operations``: also each step's pulses and
    reads as tables (dimensions ``pulse`` and ``read``; large)."""
    begins = {r.step: r for r in rd.of_kind(Kind.STEP_BEGIN)}
    ended = {r.step for r in rd.of_kind(Kind.STEP_END)}
    views = []
    for step, begin in sorted(begins.items()):
        p = begin.payload
        v = StepView(step, str(p.get("name", p.get("routine", "?"))), str(p.get("routine", "?")),
                     "completed" if step in ended else "not completed")
        v.attrs = {"routine": v.routine, "status": v.status,
                   "params": json.dumps(p.get("params", {}))}
        region = (p.get("params") or {}).get("region")
        arrays: dict[str, np.ndarray] = {}
        unreadable = []
        for r in rd.of_kind(Kind.ARRAY, step=step):
            for n in r.array_names():
                try:
                    arrays[n] = r.array(n)
                except ConfigError:  # damaged bytes: stated in rd.damage, left out here
                    unreadable.append(n)
        if unreadable:
            v.attrs["unreadable_arrays"] = ", ".join(unreadable)
        _label(v, arrays, region)
        for r in rd.of_kind(Kind.RESULT, step=step):
            _scalars(v, r.payload)
        if operations:
            _operations(rd, v)
        views.append(v)
    return views


def _label(v: StepView, arrays: dict[str, np.ndarray], region: Any) -> None:
    shape = None
    if isinstance(region, dict) and "rows" in region and "cols" in region:
        (r0, r1), (c0, c1) = region["rows"], region["cols"]
        shape = (r1 - r0, c1 - c0)
        v.attrs["tile"] = int(region.get("tile", 0))
        rows = np.arange(r0, r1, dtype=np.int32)
        cols = np.arange(c0, c1, dtype=np.int32)
    sizes: dict[str, int] = {}
    for name, a in arrays.items():
        dims = _dims(name, a, shape)
        if any(sizes.get(d, n) != n for d, n in zip(dims, a.shape, strict=True)):
            dims = tuple(f"{name}_{d}" for d in dims)  # same name, other length: keep apart
        sizes.update(zip(dims, a.shape, strict=True))
        v.data[name] = Variable(dims, a, units_of(name))
    if shape is not None:
        if "row" in sizes:
            v.coords["row"] = Variable(("row",), rows, "1", DESCRIPTIONS["row"])
            v.coords["col"] = Variable(("col",), cols, "1", DESCRIPTIONS["col"])
        if "cell" in sizes:
            v.coords["cell_row"] = Variable(("cell",), np.repeat(rows, shape[1]), "1",
                                            DESCRIPTIONS["cell_row"])
            v.coords["cell_col"] = Variable(("cell",), np.tile(cols, shape[0]), "1",
                                            DESCRIPTIONS["cell_col"])
    if "level_t_s" in v.data and v.data["level_t_s"].dims == ("age",):
        v.coords["age"] = Variable(("age",), v.data.pop("level_t_s").values, "s",
                                   "time since programming at which the levels were read")


def _dims(name: str, a: np.ndarray, region: tuple[int, int] | None) -> tuple[str, ...]:
    known = KNOWN_DIMS.get(name)
    if known is not None and len(known) == a.ndim:
        return known
    if region is not None:
        n_cells = region[0] * region[1]
        if a.shape == region:
            return ("row", "col")
        if a.ndim == 1 and a.size == n_cells:
            return ("cell",)
        if a.ndim == 2 and a.shape[1] == n_cells:
            return (f"{name}_index", "cell")
    return tuple(f"{name}_dim{i}" for i in range(a.ndim))


def _scalars(v: StepView, payload: dict[str, Any]) -> None:
    for key, val in payload.items():
        if key.startswith("_"):
            continue
        if isinstance(val, bool | int | float) and not isinstance(val, bool):
            v.data.setdefault(key, Variable((), np.asarray(val), units_of(key)))
        elif isinstance(val, bool):
            v.data.setdefault(key, Variable((), np.asarray(val), "1"))
        elif (isinstance(val, list) and val
              and all(isinstance(x, int | float) and not isinstance(x, bool) for x in val)):
            a = np.asarray(val, dtype=np.float64)
            dim = "level" if v.dims().get("level") == a.size else f"{key}_index"
            v.data.setdefault(key, Variable((dim,), a, units_of(key)))
        elif isinstance(val, str):
            v.attrs[key] = val
        else:
            v.attrs[key] = json.dumps(val, default=str)


def _operations(rd: RunReader, v: StepView) -> None:
    """The step's pulses and reads, one row each, with the record they belong to."""
    for kind, count, table in (("pulse", "pulse_count", "pulses"),
                               ("read", "read_count", "reads")):
        recs = [r for r in rd.all() if r.step == v.index and int(r.row[count])]
        if not recs:
            continue
        rows = np.concatenate([getattr(r, table)() for r in recs])
        seq = np.concatenate([np.full(int(r.row[count]), r.seq, np.int64) for r in recs])
        t = np.concatenate([np.full(int(r.row[count]), r.t_chip_s) for r in recs])
        v.data[f"{kind}_record"] = Variable((kind,), seq, "1", "sequence number of the record")
        v.data[f"{kind}_t_chip_s"] = Variable((kind,), t, "s", "chip clock when recorded")
        for field_name in rows.dtype.names or ():
            col = rows[field_name]
            desc = ""
            if field_name == "kind":
                desc = "; ".join(f"{c} {n}" for n, c in PULSE_KIND_CODES.items())
            v.data[f"{kind}_{field_name}"] = Variable((kind,), col, units_of(field_name), desc)


def write_data_group(rd: RunReader, f: h5py.File) -> None:
    """``/data/<step group>/<array>`` with ``units`` and HDF5 dimension scales (readable by
    h5netcdf / xarray: ``xr.open_dataset(run, group="data/step2_...", engine="h5netcdf")``)."""
    top = f.create_group("data")
    top.attrs["description"] = ("labelled result arrays of each step; the record log under "
                                "/log is the complete record")
    for v in step_views(rd):
        g = top.create_group(v.group)
        for k, val in v.attrs.items():
            g.attrs[k] = val
        scales: dict[str, h5py.Dataset] = {}
        for dim, n in v.dims().items():
            coord = v.coords.get(dim)
            values = coord.values if coord is not None else np.arange(n, dtype=np.int32)
            ds = g.create_dataset(dim, data=values)
            if coord is not None:
                ds.attrs["units"] = coord.units
                ds.attrs["description"] = coord.description
            ds.make_scale(dim)
            scales[dim] = ds
        for name, var in [*[(n, c) for n, c in v.coords.items() if n not in scales],
                          *v.data.items()]:
            opts: dict[str, Any] = ({"compression": "gzip", "compression_opts": 4,
                                     "shuffle": var.values.dtype.itemsize > 1}
                                    if var.values.size > 64 else {})
            ds = g.create_dataset(name, data=var.values, **opts)
            ds.attrs["units"] = var.units
            if var.description:
                ds.attrs["description"] = var.description
            if "cell" in var.dims and name not in v.coords:
                ds.attrs["coordinates"] = "cell_row cell_col"
            for i, dim in enumerate(var.dims):
                ds.dims[i].attach_scale(scales[dim])
                ds.dims[i].label = dim
