"""``labctl run``: run a protocol file, or resume an interrupted run.

Exit codes: 0 completed (or nothing left to resume); 2 a labctl error — invalid input
(raised before anything was applied to the chip) or an instrument fault during the run;
130 aborted by Ctrl+C or SIGTERM before the next cell batch (the file can be resumed). Every
failure still ends in the safe state and a RUN_END record.

With ``--dies N`` or ``--stations FILE...`` it runs a campaign over many dies on Dask
(:mod:`labctl.runs.campaign`); ``--resume DIR`` finishes one. A campaign exits 0 when every
die completed and 1 when some failed (the summary is written either way).
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
    c = p.add_argument_group("campaigns over many dies (Dask; see docs/campaigns.md)")
    c.add_argument("--dies", type=int, metavar="N",
                   help="run over N simulated dies of a wafer (around --station's chip); "
                   "--out names the campaign directory")
    c.add_argument("--stations", nargs="+", metavar="FILE",
                   help="run over one real (or virtual) chip per station file, one worker each")
    c.add_argument("--workers", type=int, metavar="W",
                   help="local Dask workers (default: CPU count, at most 4)")
    c.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from labctl.runs.runner import RunOptions, run

    if args.dies is not None or args.stations or (args.resume and Path(args.resume).is_dir()):
        return _campaign(args)
    if args.workers is not None or args.scheduler is not None:
        from labctl.core.errors import ConfigError

        raise ConfigError("labctl run", "--workers/--scheduler", "go with a campaign: give "
                          "--dies N or --stations FILE... (or --resume DIR)")

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


def _campaign(args: argparse.Namespace) -> int:
    import signal

    from labctl.core.errors import ConfigError
    from labctl.runs.campaign import resume_campaign, start_campaign

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM, SIGHUP: stop the campaign as Ctrl+C does

    signal.signal(signal.SIGTERM, stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, stop)

    progress = "off" if args.no_progress else args.progress
    if args.resume:
        for flag in ("protocol", "dies", "stations", "station", "seed", "out"):
            if getattr(args, flag):
                raise ConfigError("labctl run", f"--{flag}", "a campaign resumes with what its "
                                  "manifest recorded; give only --resume DIR (and --workers or "
                                  "--scheduler)")
        result = resume_campaign(args.resume, workers=args.workers, scheduler=args.scheduler,
                                 progress=progress)
    else:
        if not args.protocol:
            raise ConfigError("labctl run", "PROTOCOL", "give a protocol file")
        if not args.out:
            raise ConfigError("labctl run", "--out", "a campaign needs --out DIR (a new "
                              "directory)")
        result = start_campaign(args.protocol, args.out, n_dies=args.dies,
                                stations=args.stations, workers=args.workers,
                                scheduler=args.scheduler, seed=args.seed or 0,
                                progress=progress, base_station=args.station)
    n = result.summary.sizes["die"]
    print(f"{n - result.n_failed} of {n} dies completed: {result.root}")
    print(f"see: labctl show {result.root}; labctl plot {result.root}", file=sys.stderr)
    if result.n_failed:
        print(f"labctl run: {result.n_failed} dies did not complete; retry them with: "
              f"labctl run --resume {result.root}", file=sys.stderr)
        return 1
    return 0
