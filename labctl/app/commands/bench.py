"""``labctl bench``: measure the hot paths as ratios against a floor in the same run."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

NAME = "bench"
HELP = "run the benchmarks and write a flat JSON of metric → number"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from labctl.app.bench import SECTIONS

    p.add_argument("--json", dest="json_path", metavar="PATH", help="write results here")
    p.add_argument(
        "--only",
        action="append",
        choices=sorted(SECTIONS),
        metavar="SECTION",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    p.add_argument("--quick", action="store_true", help="fewer repeats (smoke test)")
    p.add_argument("--progress", choices=("auto", "bar", "log", "off"), default=None,
                   help="progress on stderr: a bar with time left (terminal), periodic log "
                   "lines (pipes, CI) or nothing (default: auto, or $LABCTL_PROGRESS)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="BLAS threads for every measurement, floor included (default 1; "
                        "0: the library default)")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from labctl.app.bench import run_bench, write_json
    from labctl.core.errors import ConfigError, RequestRejected
    from labctl.runs.progress import open_progress

    if args.json_path and not Path(args.json_path).resolve().parent.is_dir():
        raise RequestRejected(f"--json {args.json_path}: its folder does not exist")
    if args.json_path:  # checked before minutes of benchmarks, not after
        from labctl.core.output_paths import check_writable_dir

        check_writable_dir(Path(args.json_path).resolve().parent, "--json")
    only = list(dict.fromkeys(args.only)) if args.only else None
    try:
        display = open_progress(args.progress)
    except ValueError as e:
        raise ConfigError("labctl bench", "--progress", str(e)) from None
    try:
        result = run_bench(only, quick=args.quick, blas_threads=args.threads or None,
                           progress=display, command=_command(args))
    finally:
        display.close()
    for k, v in result.items():
        if k != "meta":
            print(f"{k:<40} {v:.6g}" if isinstance(v, float) else f"{k:<40} {v}")
    if args.json_path:
        write_json(result, args.json_path)
        print(f"wrote {args.json_path}", file=sys.stderr)
    else:
        print(json.dumps(result["meta"]), file=sys.stderr)
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (the docs quote it beside the figures)."""
    words = ["labctl", "bench"]
    for section in dict.fromkeys(args.only or []):
        words += ["--only", section]
    if args.quick:
        words.append("--quick")
    if args.threads != 1:
        words += ["--threads", str(args.threads)]
    if args.json_path:
        words += ["--json", args.json_path]
    return shlex.join(words)
