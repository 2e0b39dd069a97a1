"""``labctl demo``: a short tour of the simulated chip — form, program four levels with
gate-limited SET pulses, read back, and print a conductance summary and the ledger."""

from __future__ import annotations

import argparse

import numpy as np

from labctl.core.cells import Cells
from labctl.core.errors import RequestRejected

NAME = "demo"
HELP = "form, pulse and read a block of the simulated chip and print a conductance summary"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--station", help="station file (default: simulated 180 nm macro)")
    p.add_argument(
        "--size", type=_size, default=128, help="block is SIZE × SIZE cells, 2–256 (default 128)"
    )


def _size(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 2 <= n <= 256:
        raise argparse.ArgumentTypeError(f"{n} is outside 2–256")
    return n


def main(args: argparse.Namespace) -> int:
    from labctl.core.quantity_text import quantity
    from labctl.runs.backends import open_backend

    with open_backend(args.station) as be:
        n = args.size
        if n > min(be.chip.n_rows, be.chip.n_cols):
            raise RequestRejected(
                f"--size {n} does not fit this chip's {be.chip.n_rows} × {be.chip.n_cols} tiles"
            )
        cells = Cells.block(0, slice(0, n), slice(0, n))
        print(
            f"chip {be.chip.chip_id}: {be.chip.n_tiles} tiles of {be.chip.n_rows}×"
            f"{be.chip.n_cols}; using a {n}×{n} block of tile 0"
        )

        # FORM: bit line 3.3 V, 1 ms, gate ramped 1.3 → 4.0 V in 0.05 V steps; each cell
        # stops as soon as it reads formed (Stanford NI-RRAM-Python settings).
        todo = np.ones(len(cells), dtype=bool)
        for gate in np.arange(1.3, 4.0001, 0.05):
            sub = cells.subset(todo)
            be.pulse(sub, "FORM", 3.3, gate, 1e-3)
            formed = be.read(sub) > 2e-6
            todo[np.flatnonzero(todo)[formed]] = False
            if not todo.any():
                break
        print(
            f"formed   {len(cells) - todo.sum()} of {len(cells)} cells; "
            f"{todo.sum()} did not form (unformable or stuck at HRS)"
        )

        # Program four levels: full RESET, then one SET whose gate voltage sets the level.
        levels_gate_V = np.array([1.2, 1.6, 2.0, 2.5])
        pattern = (np.add.outer(np.arange(n), np.arange(n)) // max(n // 8, 1)) % 4
        be.pulse(cells, "RESET", 2.5, 5.0, 1e-6)
        be.pulse(cells, "SET", 2.0, levels_gate_V[pattern.ravel()], 1e-6)
        g = be.read(cells, n_average=4)
        print("level  gate(V)  median G (µS)  IQR (µS)")
        for k, gate in enumerate(levels_gate_V):
            gk = g[(pattern.ravel() == k) & ~todo] * 1e6
            q1, med, q3 = np.percentile(gk, [25, 50, 75])
            print(f"{k:>5}  {gate:>7.2f}  {med:>13.2f}  {q3 - q1:>8.2f}")
        be.clock.wait(3600.0)
        g1h = be.read(cells, n_average=4)
        drift = (g1h - g)[~todo] * 1e6
        print(
            f"after 1 h (virtual): mean drift {drift.mean():+.2f} µS, spread {drift.std():.2f} µS"
        )
        led = be.ledger
        print(
            f"ledger   {led.pulses} cell-pulses, {led.reads} cell-reads, "
            f"energy {quantity(led.energy_J, 'J', 3)}, device busy time "
            f"{quantity(led.device_time_s, 's', 3)}"
        )
    return 0
