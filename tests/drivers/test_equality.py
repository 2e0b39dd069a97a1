"""The central end-to-end test: the same forming, pulses, waits and reads on SimBackend and
on InstrumentBackend → real drivers → sockets → virtual instruments, from the same seed,
end in bit-identical conductances (and MVM outputs) through the board.

The simulated clock runs (docs/simulator.md, "Determinism"): each operation advances it by
its device time as the hardware executes the batch. The board executes a batch as the
direct path does, so the two agree bit for bit, clock included. Discrete instruments
(board+smu+pulsegen) split a batch into per-amplitude bursts and per-cell SMU points, so
cells are touched at other instants and relax for other times: every cell draws the same
random numbers (same event counts, same cells formed), and the results agree statistically
rather than bit for bit."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from labctl.core.backend import BackendBase
from labctl.core.cells import Cells
from sim_backend import SimBackend
from sim_backend.virtual import VirtualLab
from tests.drivers.helpers import open_wire

SEED = 11


def sequence(be: BackendBase) -> list[np.ndarray]:
    """Forming, SET/RESET with per-cell parameters, relaxation time, averaged reads."""
    rng = np.random.default_rng(5)
    a = Cells.block(0, range(6), range(8))
    b = Cells.block(1, range(2, 5), range(10, 14))
    both = Cells.concat([a, b])
    out = []
    # 500 µs: the SMU forms with a real on-time of at least its shortest integration
    # (2450: NPLC 0.01 = 200 µs at 50 Hz) + overhead; see drivers._link.form_delay_s.
    be.pulse(both, "FORM", np.linspace(3.0, 3.3, len(both)), 1.5, 5e-4, 1.5e-4)
    out.append(be.read(both))
    be.pulse(a, "SET", rng.choice([1.8, 2.0, 2.2], len(a)), rng.choice([1.6, 1.8], len(a)), 1e-6)
    be.clock.wait(30.0)
    out.append(be.read(a, n_average=4))
    be.pulse(b, "RESET", 1.5, 5.0, rng.choice([1e-6, 2e-6], len(b)))
    be.clock.wait(3600.0)
    out.append(be.read(both, read_V=0.15, gate_V=2.5, n_average=2))
    one = Cells.block(1, [3], [11])
    be.pulse(one, "SET", 2.0, 1.7, 1e-6)
    out.append(be.read(one, n_average=3))  # single-cell batches take the list path
    return out


@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with VirtualLab.start("default_180nm", SEED) as lab:
        yield lab


@pytest.mark.parametrize(("topology", "smu"), [("board", "2450"),
                                               ("board+smu+pulsegen", "2450"),
                                               ("board+smu+pulsegen", "2600B")])
def test_wire_path_equals_direct_path(lab: VirtualLab, topology: str, smu: str) -> None:
    direct = SimBackend("default_180nm", SEED)
    expected = sequence(direct)
    with open_wire(lab, topology, smu=smu) as wire:
        got = sequence(wire)
        if topology == "board":
            assert wire.clock.now() == direct.clock.now()
        else:
            assert wire.clock.now() >= direct.clock.now() - 1e-3
    assert np.array_equal(direct.macro.events, lab.macro.events)
    assert np.array_equal(direct.macro.formed, lab.macro.formed)
    if topology == "board":
        for e, g in zip(expected, got, strict=True):
            assert np.array_equal(e, g)
        assert np.array_equal(direct.macro.g_prog_S, lab.macro.g_prog_S)
    else:
        for e, g in zip(expected, got, strict=True):
            rel = np.abs(e - g) / np.maximum(np.abs(e), 1e-6)
            assert np.median(rel) < 0.05


def test_mvm_over_the_wire_equals_direct(lab: VirtualLab) -> None:
    direct = SimBackend("default_180nm", SEED)
    x = np.random.default_rng(2).uniform(-0.2, 0.2, (5, 16)).astype(np.float32)
    cells = Cells.block(0, range(16), range(8))
    with open_wire(lab) as wire:
        for be in (direct, wire):
            be.pulse(cells, "FORM", 3.3, 1.5, 1e-4, 1e-4)
        y_direct = direct.mvm(0, x, rows=slice(0, 16), cols=slice(0, 8), differential=True)
        y_wire = wire.mvm(0, x, rows=slice(0, 16), cols=slice(0, 8), differential=True)
    assert y_wire.dtype == y_direct.dtype
    assert np.array_equal(y_direct, y_wire)


def test_station_files_open_and_agree(lab: VirtualLab) -> None:
    from labctl.runs.backends import open_backend

    cells = Cells.block(0, range(4), range(4))
    results = []
    for f in ("virtual-lab.yaml", "virtual-lab-discrete.yaml"):
        with open_backend(f"protocols/stations/{f}") as be:
            be.pulse(cells, "FORM", 3.3, 1.5, 5e-4, 1e-4)  # ≥ the 2450's shortest FORM
            results.append(be.read(cells))
    direct = SimBackend("default_180nm", 0)
    direct.pulse(cells, "FORM", 3.3, 1.5, 5e-4, 1e-4)
    ref = direct.read(cells)
    assert np.array_equal(ref, results[0])  # the board executes the batch as direct does
    assert np.median(np.abs(results[1] - ref) / np.maximum(ref, 1e-6)) < 0.05


def test_device_side_verify_write_is_one_round_trip(lab: VirtualLab) -> None:
    cells = Cells.block(0, range(4), range(8))
    with open_wire(lab) as wire:
        assert wire.capabilities.device_side_verify
        wire.pulse(cells, "FORM", 3.3, 1.5, 1e-4, 1e-4)
        target = np.linspace(8e-6, 30e-6, len(cells))
        n0 = wire.transactions()
        g, used, ok = wire.verify_write(
            cells, target, 1.5e-6,
            {"read_V": 0.2, "read_gate_V": 2.5, "set_start_V": 1.2, "set_step_V": 0.1,
             "set_max_V": 3.3, "set_gate_V": 2.0, "reset_start_V": 1.2, "reset_step_V": 0.1,
             "reset_max_V": 2.5, "reset_gate_V": 5.0, "width_s": 1e-6}, max_iterations=60)
        assert wire.transactions() - n0 == 1
        assert np.all(np.abs(g[ok] - target[ok]) <= 1.5e-6)
        assert ok.mean() > 0.5
        assert used.max() <= 60
