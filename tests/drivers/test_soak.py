"""Transport fault soak: seeded garbled, truncated, dropped and delayed replies on every
instrument of a board+smu+pulsegen station, over many operations. Operations may fail —
always with an InstrumentFault and outputs off — but none may return a value other than the
one the virtual instrument measured (a *silent wrong value*), and no pulse may reach the chip
with a cell, amplitude or width other than requested, or twice (a *wrong pulse*).

Figure (docs/instruments.md): run
``LABCTL_SOAK_FAULTED_OPS=500 .venv/bin/python -m pytest tests/drivers/test_soak.py -q -s``;
it prints the counts."""

from __future__ import annotations

import os

import numpy as np
import pytest

from labctl.core.cells import Cells
from labctl.core.errors import InstrumentFault
from sim_backend.virtual import FaultInjector
from tests.drivers.helpers import open_wire, small_lab

FAULTED_OPS = int(os.environ.get("LABCTL_SOAK_FAULTED_OPS", "100"))
"""Faulted operations per SMU model in CI; the figure in docs/instruments.md runs 500 per
model (1,000 in all) with LABCTL_SOAK_FAULTED_OPS=500."""
RATES = {"garble": 0.05, "truncate": 0.02, "drop": 0.01, "delay": 0.01}
"""Probability per reply of each fault."""
TIMEOUT_S = 0.1
CELLS = Cells.block(0, range(2), range(4))
READ_V = 0.2


class SmuOutput:
    """The virtual SMU's output state, whichever model."""

    def __init__(self, lab: object, smu: str) -> None:
        self._inst = lab.instruments["smu2450" if smu == "2450" else "smu2600b"]  # type: ignore[attr-defined]
        self._tsp = smu != "2450"

    @property
    def output(self) -> float:
        return float(self._inst.output_state() if self._tsp else self._inst.output)


def wrong(got: np.ndarray, truth: np.ndarray) -> int:
    """Values differing from the truth beyond float noise: 1e-9 relative, 1e-12 S."""
    if got.shape != truth.shape:
        return int(max(got.size, truth.size))
    return int(np.count_nonzero(np.abs(got - truth) > 1e-9 * np.abs(truth) + 1e-12))


def wrong_pulses(log: list, asked: dict[tuple[int, int, int], tuple[float, float]]) -> int:
    seen: set[tuple[int, int, int]] = set()
    bad = 0
    for _kind, cells, amp, width in log:
        for k in range(len(cells)):
            key = (int(cells.tile[k]), int(cells.row[k]), int(cells.col[k]))
            if key not in asked or key in seen or asked[key] != (float(amp[k]), float(width[k])):
                bad += 1
            seen.add(key)
    return bad


@pytest.mark.slow
@pytest.mark.parametrize("smu", ["2450", "2600B"])
def test_fault_soak_has_no_silent_wrong_value_and_no_wrong_pulse(smu: str) -> None:
    rng = np.random.default_rng(2026)
    with small_lab(5, FaultInjector(seed=9, delay_s=1.5 * TIMEOUT_S)) as lab:
        wire = open_wire(lab, "board+smu+pulsegen", smu=smu, timeout_s=5.0)
        with wire:
            wire.pulse(CELLS, "FORM", 3.3, 1.5, 5e-4, 1e-4)
            wire.board.timeout_s = TIMEOUT_S
            for inst in (wire.smu, wire.pulsegen):
                inst.timeout(TIMEOUT_S)  # type: ignore[union-attr]
            lab.faults.rates = dict(RATES)
            hub = lab.hub
            ops = faulted = failed = silent_wrong = bad_pulses = unsafe = outputs_left_on = 0
            virtual_smu = SmuOutput(lab, smu)
            pulses: dict[str, int] = {}
            while faulted < FAULTED_OPS and ops < 20 * FAULTED_OPS:
                ops += 1
                n_faults, n_reads, n_pulses = (len(lab.faults.injected), len(hub.read_log),
                                               len(hub.pulse_log))
                is_read = bool(ops % 2)
                is_form = ops % 10 == 4  # the SMU pulses too: FORM in pulse mode
                amp = float(rng.choice([3.0, 3.2] if is_form else [1.8, 2.0, 2.2]))
                width = float(rng.choice([5e-4, 1e-3] if is_form else [1e-6, 2e-6]))
                try:
                    if is_read:
                        g = wire.read(CELLS, read_V=READ_V)
                    else:
                        wire.pulse(CELLS, "FORM" if is_form else "SET", amp, 1.8, width,
                                   1e-4 if is_form else None)
                except InstrumentFault as e:
                    failed += 1
                    if e.safe_state_reached is not True:
                        unsafe += 1
                        why = [x for i in (wire.smu, wire.pulsegen)
                               for x in i.safe_off_errors[-5:]]  # type: ignore[union-attr]
                        print(f"  unconfirmed safe state after {e!s:.100}: {why}")
                    else:  # what the instruments really hold, not what the drivers believe
                        outputs_left_on += (virtual_smu.output not in (False, 0.0)) + bool(
                            lab.instruments["pulsegen"].channels[0].output)
                else:
                    if is_read:
                        silent_wrong += wrong(g, hub.read_log[-1][: len(CELLS)] / READ_V) if (
                            len(hub.read_log) > n_reads) else len(CELLS)
                if not is_read:
                    asked = {(int(t), int(r), int(c)): (amp, width)
                             for t, r, c in zip(CELLS.tile, CELLS.row, CELLS.col)}
                    bad_pulses += wrong_pulses(hub.pulse_log[n_pulses:], asked)
                    for kind, cells, _, _ in hub.pulse_log[n_pulses:]:
                        pulses[kind] = pulses.get(kind, 0) + len(cells)
                faulted += len(lab.faults.injected) > n_faults
            lab.faults.rates = {}
            print(f"\nsoak {smu}: {ops} operations, {faulted} faulted, {failed} failed "
                  f"(InstrumentFault), {unsafe} without a confirmed safe state, "
                  f"{outputs_left_on} outputs left on after a confirmed one, "
                  f"{silent_wrong} silent wrong values, {bad_pulses} wrong pulses "
                  f"(of {pulses} checked); "
                  f"{len(lab.faults.injected)} faults injected")
            assert faulted >= FAULTED_OPS
            assert silent_wrong == 0
            assert bad_pulses == 0
            assert outputs_left_on == 0
            assert failed > 0
            assert pulses.get("FORM", 0) > 0 and pulses.get("SET", 0) > 0
            assert wire.read(CELLS).shape == (len(CELLS),)  # usable once the link is clean
