"""``labctl show``: summarize run files (also the truncated file of a killed run, and what
can be read of a damaged one).

One file: its provenance, steps, key figures and events. Several files or a directory: one
table row per run (``--full`` adds each run's summary). A campaign directory (one holding
``summary.nc``) is described by ``labctl.runs.campaign`` when that module is installed.
Tables are drawn with rich (https://rich.readthedocs.io/).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from labctl.runs.store.summary import RunSummary

NAME = "show"
HELP = "summarize run files (or a directory of them): provenance, steps, outcomes, key figures"
CAMPAIGN_MODULE = "labctl.runs.campaign"
"""Describes a campaign directory (``summary.nc`` inside) via ``show_campaign(dir, console)``."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="RUN.h5|DIR",
                   help="run files, or directories holding them")
    p.add_argument("--full", action="store_true",
                   help="with several runs: also each run's full summary")


def main(args: argparse.Namespace) -> int:
    from labctl.core.errors import ConfigError

    console = _console()
    files: list[Path] = []
    for raw in args.paths:
        p = Path(raw)
        if p.is_dir():
            if (p / "summary.nc").is_file() and importlib.util.find_spec(CAMPAIGN_MODULE):
                importlib.import_module(CAMPAIGN_MODULE).show_campaign(p, console)
                continue
            found = sorted(p.glob("*.h5"))
            if not found:
                raise ConfigError(str(p), "(directory)", "holds no run files (*.h5)")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise ConfigError(str(p), "(file)", "run file not found")
    if len(files) == 1 and len(args.paths) == 1:
        _show_one(files[0], console)
        return 0
    if files:
        _show_many(files, console, full=args.full)
    return 0


def _console() -> Console:
    from rich.console import Console

    tty = sys.stdout.isatty()
    return Console(width=None if tty else 160, highlight=False, soft_wrap=not tty)


def _show_one(path: Path, console: Console) -> None:
    from labctl.runs.store.reader import RunReader
    from labctl.runs.store.summary import describe

    with RunReader(path) as rd:
        _render(describe(rd), console)


def _render(s: RunSummary, console: Console) -> None:
    from rich.table import Table

    head = Table.grid(padding=(0, 1))
    head.add_column(min_width=10, style="bold")
    head.add_column()
    for k, v in s.header:
        head.add_row(k, v)
    for d in s.damage:
        head.add_row("unreadable", f"[red]{_esc(d)}[/red]")
    console.print(head)
    steps = Table(title="steps", title_justify="left", show_lines=False)
    for col in ("#", "step", "routine", "state", "key figures"):
        steps.add_column(col, overflow="fold")
    for st in s.steps:
        figures = "\n".join(f"{k} = {v}" for k, v in st.results)
        steps.add_row(str(st.index + 1), st.name, st.routine, st.state, _esc(figures))
    console.print(steps)
    tail = Table.grid(padding=(0, 1))
    tail.add_column(min_width=10, style="bold")
    tail.add_column()
    for e in s.events:
        tail.add_row("event", _esc(e))
    for k, v in s.ending:
        tail.add_row(k, _esc(v))
    console.print(tail)


def _show_many(files: list[Path], console: Console, *, full: bool) -> None:
    from rich.table import Table

    from labctl.core.errors import LabctlError
    from labctl.runs.store.reader import RunReader
    from labctl.runs.store.summary import describe, run_status

    table = Table(title=f"{len(files)} run files", title_justify="left")
    for col in ("run file", "status", "protocol", "created", "steps done", "cell-pulses",
                "records", "readable"):
        table.add_column(col, overflow="fold")
    details = []
    for path in files:
        try:
            with RunReader(path) as rd:
                s = describe(rd)
                a = rd.attrs
                done = sum(st.state == "completed" for st in s.steps)
                pulses = next((v.split()[0] for k, v in s.header if k == "operations"), "?")
                table.add_row(str(path), run_status(rd).split(":")[0].split(" (")[0],
                              str(a.get("protocol_name", "?")), str(a.get("created_utc", "?")),
                              f"{done}/{len(s.steps)}", pulses, str(len(rd.records)),
                              "yes" if not rd.damage else f"[red]{_esc(rd.damage[0])}[/red]")
                details.append(s)
        except LabctlError as e:
            table.add_row(str(path), "[red]unreadable[/red]", "", "", "", "", "", _esc(str(e)))
    console.print(table)
    if full:
        for s in details:
            console.rule()
            _render(s, console)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
