"""``labctl show``: summarize a run file (also the truncated file of a killed run)."""

from __future__ import annotations

import argparse

NAME = "show"
HELP = "summarize a run file: provenance, steps, outcomes, key figures"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_file", metavar="RUN.h5")


def main(args: argparse.Namespace) -> int:
    from labctl.runs.store.reader import RunReader
    from labctl.runs.store.summary import summarize

    with RunReader(args.run_file) as rd:
        print("\n".join(summarize(rd)))
    return 0
