"""``labctl show``: summarize a run file (also the truncated file of a killed run)."""

from __future__ import annotations

import argparse

NAME = "show"
HELP = "summarize a run file: provenance, steps, outcomes, key figures"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_file", metavar="RUN.h5",
                   help="a run file, or a campaign directory (labctl run --dies/--stations)")


def main(args: argparse.Namespace) -> int:
    from labctl.runs.campaign_summary import is_campaign, show_lines

    if is_campaign(args.run_file):
        from pathlib import Path

        print("\n".join(show_lines(Path(args.run_file))))
        return 0
    from labctl.runs.store.reader import RunReader
    from labctl.runs.store.summary import summarize

    with RunReader(args.run_file) as rd:
        print("\n".join(summarize(rd)))
    return 0
