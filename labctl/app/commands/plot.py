"""``labctl plot``: PNG figures of a run file."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "plot"
HELP = "draw PNG figures of a run file (maps, convergence, spread, drift)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_file", metavar="RUN.h5")
    p.add_argument("--outdir", metavar="DIR", help="where to write (default: RUN_plots/)")


def main(args: argparse.Namespace) -> int:
    from labctl.app.plots import plot_run
    from labctl.core.output_paths import check_writable_dir
    from labctl.runs.store.reader import RunReader

    run = Path(args.run_file)
    outdir = Path(args.outdir) if args.outdir else run.with_name(run.stem + "_plots")
    check_writable_dir(outdir, "--outdir")
    with RunReader(run) as rd:
        written = plot_run(rd, outdir)
    for p in written:
        print(p)
    if not written:
        print(f"{run}: no plottable arrays yet")
    return 0
