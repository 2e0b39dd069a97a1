"""``labctl docs``: rewrite the generated blocks of the docs from a bench JSON
(:mod:`labctl.app.docs_gen`)."""

from __future__ import annotations

import argparse

NAME = "docs"
HELP = "rewrite the docs' generated figures and timings from a labctl bench --json file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from labctl.app.docs_gen import add_arguments as add

    add(p)


def main(args: argparse.Namespace) -> int:
    from labctl.app.docs_gen import run

    return run(args)
