"""The ``labctl`` command line. Each subcommand is a module in ``labctl.app.commands`` with
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``main(args) -> int``; imported only when
needed, so ``labctl --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from labctl.core.errors import (
    InstrumentFault,
    LabctlError,
    RequestRejected,
    RunInterrupted,
    StorageFault,
)

COMMANDS: dict[str, str] = {
    "info": "labctl.app.commands.info",
    "bench": "labctl.app.commands.bench",
    "demo": "labctl.app.commands.demo",
    "run": "labctl.app.commands.run",
    "show": "labctl.app.commands.show",
    "fit": "labctl.app.commands.fit",
    "plot": "labctl.app.commands.plot",
    "export": "labctl.app.commands.export",
    "docs": "labctl.app.commands.docs",
    "serve-sim": "labctl.app.commands.serve_sim",
    "schema": "labctl.app.commands.schema",
}


def build_parser() -> argparse.ArgumentParser:
    from labctl import __version__

    parser = argparse.ArgumentParser(
        prog="labctl",
        description="Form, program, read and calibrate memristor crossbar chips — on real "
        "instruments or on the simulated 180 nm 1T1R macro (the default).",
    )
    parser.add_argument("--version", action="version", version=f"labctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_handler=mod.main)
    return parser


def exit_code(e: LabctlError) -> int:
    """2: the request was refused before anything reached the hardware; 3: an instrument
    fault after operations began (the hardware was put in its safe state); 130: stopped at a
    checkpoint on request; 4: the run file could not be written (disk full, quota, I/O
    error: the run stopped at once in the safe state); 1: any other labctl error."""
    if isinstance(e, RequestRejected):
        return 2
    if isinstance(e, InstrumentFault):
        return 3
    if isinstance(e, RunInterrupted):
        return 130
    if isinstance(e, StorageFault):
        return 4
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = args._handler(args)
        return code
    except LabctlError as e:
        print(f"labctl {args.command}: error: {e}", file=sys.stderr)
        return exit_code(e)
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a file the command reads or writes: say which, no traceback
        where = f" ({e.filename})" if e.filename else ""
        print(f"labctl {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"labctl {args.command}: interrupted; hardware left in its safe state", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
