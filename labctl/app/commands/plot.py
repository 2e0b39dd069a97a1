"""``labctl plot``: PNG figures of run files, and wafer maps of campaign directories."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "plot"
HELP = "draw PNG figures of run files (maps, convergence, accuracy, drift, levels, faults)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_files", metavar="RUN.h5", nargs="+",
                   help="run files, or folders of them, or campaign directories (labctl run "
                   "--dies/--stations: wafer maps of their results)")
    p.add_argument("--outdir", metavar="DIR",
                   help="where to write (default: RUN_plots/ beside each run file, DIR/plots/ "
                   "for a campaign; with several files, one folder per run inside DIR)")
    p.add_argument("--result", action="append", metavar="STEP.KEY",
                   help="campaign: only these results (default: every result)")


def main(args: argparse.Namespace) -> int:
    from labctl.app.plots import plot_paths, run_files
    from labctl.core.errors import RequestRejected
    from labctl.core.output_paths import check_writable_dir
    from labctl.runs.campaign_summary import is_campaign

    paths = [Path(p) for p in args.run_files]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise RequestRejected(f"no such file or folder: {', '.join(missing)}")
    campaigns = [p for p in paths if is_campaign(p)]
    if campaigns:
        from labctl.app.campaign_plots import plot_campaign

        outs = {}
        for root in campaigns:  # every output folder checked before the first figure
            out = Path(args.outdir) if args.outdir else root / "plots"
            if args.outdir and len(campaigns) > 1:
                out = out / root.name
            outs[root] = check_writable_dir(out, "--outdir")
        for root, out in outs.items():
            for p in plot_campaign(root, out, only=args.result):
                print(p)
        paths = [p for p in paths if p not in campaigns]
        if not paths:
            return 0
    files = run_files(paths)
    if not files:
        raise RequestRejected(f"no run files (*.h5) in {', '.join(map(str, paths))}")
    # Every output folder is checked before the first figure is drawn.
    for where in ([Path(args.outdir)] if args.outdir
                  else [f.with_name(f.stem + "_plots") for f in files]):
        check_writable_dir(where, "--outdir")
    done = plot_paths(paths, Path(args.outdir) if args.outdir else None)
    for run, written in done.items():
        for p in written:
            print(p)
        if not written:
            print(f"{run}: no plottable arrays (none recorded yet, or none readable: "
                  f"labctl show {run} says which)")
    return 0
