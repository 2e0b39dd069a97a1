"""Bench section ``wire``: what the real wire path costs against the in-process simulator.

- ``wire_vs_direct_ratio``: wall time of 20 iterations of one batched SET pulse and one
  batched read over a 64×64 block, through ``InstrumentBackend`` → pyserial ``socket://`` →
  virtual test board (topology ``board``), divided by the same 20 iterations on
  ``SimBackend`` (target ≤ 3). Both run from the same seed in the same process, timed
  alternately iteration by iteration. The wire side includes the virtual board's own work
  (a thread of this process), i.e. the simulator once more behind the wire.
- ``wire_round_trips_per_batch``: host round trips per batched pulse or read (target ≤ 2).
- ``discrete_ops_per_cell``: instrument transactions (board + SMU + pulse generator) per
  cell for one pulse and one read of an 8×8 block in topology ``board+smu+pulsegen``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from drivers.instrument_backend import InstrumentBackend
from labctl.core.cells import Cells
from labctl.core.station_spec import StationSpec, parse_station
from labctl.runs.backends import open_backend

ENVELOPE = {"max_bitline_V": 4.0, "max_sourceline_V": 3.3, "max_gate_V": 5.0,
            "max_read_V": 0.3, "max_width_s": 1e-3, "max_compliance_A": 2e-4}


def _station(topology: str, seed: int) -> StationSpec:
    instruments: dict[str, Any] = {"board": {"type": "FpgaTestBoard"}}
    if topology != "board":
        instruments["smu"] = {"type": "Keithley2450"}
        instruments["pulsegen"] = {"type": "Keysight33500B"}
    return parse_station({"station": {"backend": "instruments", "topology": topology,
                                      "virtual": True, "seed": seed, "envelope": ENVELOPE},
                          "instruments": instruments}, "(bench wire station)")


def _interleaved(direct: Any, wire: Any, cells: Cells, iterations: int) -> tuple[float, float]:
    """Time the two paths iteration by iteration, alternately, so a change in machine load
    (other processes on a shared CI box) falls on both rather than on one."""
    amp = np.linspace(1.8, 2.2, len(cells))
    t = [0.0, 0.0]
    for _ in range(iterations):
        for k, be in enumerate((direct, wire)):
            t0 = time.perf_counter()
            be.pulse(cells, "SET", amp, 1.8, 1e-6)
            be.read(cells)
            t[k] += time.perf_counter() - t0
    return t[0], t[1]


def _open_instruments(spec: StationSpec) -> InstrumentBackend:
    be = open_backend(spec)
    assert isinstance(be, InstrumentBackend)
    return be


def run(quick: bool = False) -> dict[str, float]:
    from sim_backend import SimBackend

    seed = 7
    iterations = 20
    out: dict[str, float] = {}
    block = Cells.block(0, range(64), range(64))
    wire = _open_instruments(_station("board", seed))
    with wire:
        sim = SimBackend("default_180nm", seed)
        for be in (sim, wire):  # warm-up: form the block, fill caches
            be.pulse(block, "FORM", 3.3, 2.5, 5e-4, 1e-4)
            be.read(block)
        n0 = wire.transactions()
        t_direct, t_wire = _interleaved(sim, wire, block, iterations)
        out["wire_vs_direct_ratio"] = t_wire / t_direct
        out["wire_round_trips_per_batch"] = (wire.transactions() - n0) / (2 * iterations)
        out["wire_direct_seconds"] = t_direct
        out["wire_wire_seconds"] = t_wire
        sim.close()
    small = Cells.block(0, range(8), range(8))
    disc = _open_instruments(_station("board+smu+pulsegen", seed))
    with disc:
        disc.pulse(small, "FORM", 3.3, 2.5, 5e-4, 1e-4)
        n0 = disc.transactions()
        disc.pulse(small, "SET", 2.0, 1.8, 1e-6)
        disc.read(small)
        out["discrete_ops_per_cell"] = (disc.transactions() - n0) / len(small)
    return out
