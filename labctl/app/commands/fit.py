"""``labctl fit``: fit a simulator preset (a digital twin) to a chip's own measurements.

Input: the run file of ``protocols/twin.yaml``, or a CSV of measurements taken elsewhere in
the format of :mod:`calibration.twin_data` (docs/simulator.md). Output: a preset YAML with
the preset's own section and field names, loadable as a station's ``preset:``; standard
errors, sources and the parameters the data cannot identify are listed under its ``fit:``
key (and printed).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calibration import twin_data as td

NAME = "fit"
HELP = "fit a simulator preset to a twin run file (or a CSV of measurements)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="RUN.h5|DATA.csv",
                   help="run file of protocols/twin.yaml, or a CSV in the documented format")
    p.add_argument("--out", required=True, metavar="PRESET.yaml", help="preset file to write")
    p.add_argument("--name", default="fitted", help="preset name (default: fitted)")
    p.add_argument("--export-csv", metavar="DATA.csv",
                   help="also write the measurements as CSV (the import format)")


def load_table(path: str) -> td.Table:
    """The twin measurement table of a run file or a CSV. A missing path or a directory is
    refused here, before the suffix picks the reader, so both formats say it the same way."""
    from calibration import twin_data as td
    from labctl.core.errors import ConfigError

    if Path(path).is_dir():
        raise ConfigError(path, "(file)", "is a directory; give a CSV or a run file")
    if not Path(path).exists():
        raise ConfigError(path, "(file)", "measurement file not found; check the path")
    if path.lower().endswith(".csv"):
        return td.load_csv(path)
    from labctl.runs.store.reader import RunReader

    with RunReader(path) as rd:
        named = [(n, rec.array(n)) for rec in rd.all() for n in rec.array_names()]
    return td.from_named_arrays(named, path)


def main(args: argparse.Namespace) -> int:
    from calibration import fitting
    from calibration import twin_data as td
    from labctl.core.errors import ConfigError
    from labctl.core.output_paths import output_file
    from labctl.core.validation import control_characters
    from labctl.runs.store.reader import refuse_run_file

    if (problem := control_characters(args.name)) is not None:  # it becomes chip ids
        raise ConfigError("command line", "--name", problem)
    out = output_file(args.out, "fitted.yaml", "--out")
    csv_out = output_file(args.export_csv, "measurements.csv", "--export-csv") \
        if args.export_csv else None
    for path, option in ((out, "--out"), (csv_out, "--export-csv")):
        if path is not None:
            refuse_run_file(path, option)
    table = load_table(args.data)
    fit = fitting.fit_twin(table)
    src = Path(args.data).name
    path = _write_loadable(fit, out, name=args.name,
                           description=f"fitted by labctl fit to {src}")
    if csv_out is not None:  # after the preset: a refused fit writes nothing
        td.write_csv(table, csv_out)
    print(f"fitted {len(fit.estimates)} parameters from {len(table)} measurement rows:")
    for key, e in fit.estimates.items():
        if isinstance(e.value, list):
            vals = ", ".join(f"{v:.4g}" for v in e.value)
            print(f"  {key:40s} [{vals}]")
        else:
            print(f"  {key:40s} {e.value:.4g} ± {e.stderr:.2g}")
    print(f"not identified by these data ({len(fit.unidentified)}; simulator defaults kept):")
    for key, why in fit.unidentified.items():
        print(f"  {key}: {why}")
    print(f"preset written to {path}")
    return 0


def _write_loadable(fit: Any, out: Path, *, name: str, description: str) -> Path:
    """Write the preset only if the simulator loads it: data that pass every row check can
    still fit a value no chip has (a pristine conductance averaged below 0 from noisy reads).
    Such a fit is refused naming the field, and no file is left."""
    from calibration import fitting
    from labctl.core.errors import ConfigError, ConfigErrors
    from sim_backend.presets import load_preset

    tmp = out.with_name(f".{out.name}.partial")
    try:
        fitting.write_twin_preset(fit, tmp, name=name, description=description)
        load_preset(tmp)
        tmp.replace(out)
    except ConfigError as e:
        hint = ("the measurements fit a value the simulator cannot take; check the rows that "
                "identify it (docs/simulator.md, the twin's measurements); nothing was written")
        raise ConfigErrors("labctl fit", [(k, f"{p} — {hint}") for k, p in e.problems]) from None
    finally:
        tmp.unlink(missing_ok=True)  # gone once renamed; removed after any failure
    return out
