"""``labctl export``: a run file as netCDF4 (one group per step) plus a CSV of its scalars.

The netCDF file is written with h5netcdf (https://h5netcdf.org/), so that
``xarray.open_datatree("RUN.nc")`` gives one node per step whose variables carry ``units`` and
named dimensions (``row``, ``col``, ``cell``, ``age``, ``pulse``, ``read`` …) with the chip's
row and column indices as coordinates. Works on any readable prefix: the file of a killed run
exports what it committed; a damaged file exports what can be read and says what cannot.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

import numpy as np

NAME = "export"
HELP = "write a run file as netCDF4 (one group per step, units and dims) and its scalars as CSV"

PROVENANCE_KEYS = ("run_id", "created_utc", "labctl_version", "host", "protocol_name",
                   "protocol_source", "protocol_text", "station_source", "seed", "backend",
                   "chip_id", "schema_version")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_file", metavar="RUN.h5")
    p.add_argument("--out", metavar="RUN.nc", help="netCDF file, or a directory to write "
                   "RUN.nc in (default: RUN.nc beside RUN.h5); the scalars go to the same "
                   "name with _scalars.csv")
    p.add_argument("--no-operations", action="store_true",
                   help="leave out the per-step pulse and read tables")


def main(args: argparse.Namespace) -> int:
    from labctl.core.errors import ConfigError
    from labctl.core.output_paths import output_file
    from labctl.runs.store.reader import RunReader, refuse_run_file

    run = Path(args.run_file)
    given = args.out if args.out else run.with_suffix(".nc")
    out = output_file(given, run.with_suffix(".nc").name, "--out")
    if out.resolve() == run.resolve():
        raise ConfigError("labctl export", "--out", "must differ from the run file")
    refuse_run_file(out, "--out")
    with RunReader(run) as rd:
        nc, csv_path = export(rd, out, operations=not args.no_operations)
        for d in rd.damage:
            print(f"labctl export: {run}: {d}", file=sys.stderr)
    print(nc)
    print(csv_path)
    return 0


def export(rd: Any, out: Path, *, operations: bool = True) -> tuple[Path, Path]:
    """Write ``out`` (netCDF4) and ``<out stem>_scalars.csv``; return both paths."""
    import h5netcdf

    from labctl.runs.store.labels import step_views
    from labctl.runs.store.summary import run_status

    views = step_views(rd, operations=operations)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    attrs = rd.attrs
    with h5netcdf.File(tmp, "w") as nc:
        for k in PROVENANCE_KEYS:
            if k in attrs:
                nc.attrs[k] = attrs[k]
        nc.attrs["source_run_file"] = str(rd.path)
        nc.attrs["run_status"] = run_status(rd)
        nc.attrs["damage"] = "; ".join(rd.damage) or "none"
        for v in views:
            g = nc.create_group(v.group)
            for k, val in v.attrs.items():
                g.attrs[k] = val
            for dim, n in v.dims().items():
                g.dimensions[dim] = n
            for name, var in [*v.coords.items(), *v.data.items()]:
                values = var.values
                extra: dict[str, Any] = {}
                if values.dtype == np.bool_:  # netCDF has no boolean: xarray's own encoding
                    values = values.astype(np.int8)
                    extra["dtype"] = "bool"
                opts: dict[str, Any] = ({"compression": "gzip", "compression_opts": 4,
                                         "shuffle": values.dtype.itemsize > 1}
                                        if values.size > 64 else {})
                ncv = g.create_variable(name, var.dims, data=values, **opts)
                ncv.attrs["units"] = var.units
                if var.description:
                    ncv.attrs["description"] = var.description
                for k, val in extra.items():
                    ncv.attrs[k] = val
    tmp.replace(out)
    csv_path = out.with_name(out.stem + "_scalars.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "step_name", "routine", "name", "value", "units"])
        for v in views:
            for name, var in v.data.items():
                if var.values.ndim == 0:
                    w.writerow([v.index + 1, v.name, v.routine, name, var.values.item(),
                                var.units])
    return out, csv_path
