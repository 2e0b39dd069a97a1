"""``labctl run``: run a protocol file, or resume an interrupted run.

Exit codes: 0 completed (or nothing left to resume); 2 a labctl error — invalid input
(raised before anything was applied to the chip) or an instrument fault during the run;
130 aborted by Ctrl+C or SIGTERM before the next cell batch (the file can be resumed). Every
failure still ends in the safe state and a RUN_END record.
"""

from __future__ import annotations

import argparse
import sys

NAME = "run"
HELP = "run a protocol (default: on the simulated chip) and record it in an HDF5 run file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("protocol", nargs="?", metavar="PROTOCOL", help="protocol YAML file")
    p.add_argument("--station", help="station file (default: simulated 180 nm macro)")
    p.add_argument("--out", metavar="RUN.h5", help="run file (default: runs/<protocol>-<UTC>.h5)")
    p.add_argument("--resume", metavar="RUN.h5", help="continue an interrupted run file")
    p.add_argument("--seed", type=int, help="seed for the simulated chip and generated patterns")
    p.add_argument("--calibration-dir", metavar="DIR",
                   help="per-chip calibration records (default: $LABCTL_CALIBRATION_DIR or "
                   "./calibration-records)")
    p.add_argument("--progress", choices=("auto", "bar", "log", "off"), default=None,
                   help="progress on stderr: a bar with time left (terminal), periodic log "
                   "lines (pipes, CI) or nothing (default: auto, or $LABCTL_PROGRESS)")
    p.add_argument("--no-progress", action="store_true", help="same as --progress off")


def main(args: argparse.Namespace) -> int:
    from labctl.runs.runner import RunOptions, run

    opts = RunOptions(protocol=args.protocol, station=args.station, out=args.out,
                      resume=args.resume, seed=args.seed, calibration_dir=args.calibration_dir,
                      progress="off" if args.no_progress else args.progress)
    outcome = run(opts)
    if outcome.status in ("aborted", "paused"):
        print(f"labctl run: {outcome.message}; hardware left in its safe state. Continue "
              f"with: labctl run --resume {outcome.path}", file=sys.stderr)
        return 130
    if outcome.status == "nothing-to-do":
        print(f"{outcome.path}: {outcome.message}; nothing to resume", file=sys.stderr)
        return 0
    print(f"{outcome.status}: {outcome.path}")
    print(f"see: labctl show {outcome.path}", file=sys.stderr)
    return 0
