"""FORM through an SMU: every point is on the cell for exactly the requested width (the
on-time model of labctl.wire.smu_timing: delay + integration + overhead + end latency),
never the ~21 ms that a 1 PLC integration with autozero adds nor the 2450's source
auto-delay; a width the SMU cannot make (too short, or in the 2450's 0–50 µs delay gap) or
an on-time beyond ``max_width_s`` is refused before anything is sent; the source is back
at 0 V between cells."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from labctl.core.cells import Cells
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import EnvelopeViolation, RequestRejected
from labctl.wire.smu_timing import (
    KEITHLEY_2450,
    KEITHLEY_2600B,
    SmuTiming,
    auto_delay_2450_s,
    form_delay_s,
    on_time_s,
    shortest_on_time_s,
)
from sim_backend.virtual import VirtualLab
from tests.drivers.helpers import open_wire, small_lab

CELLS = Cells.block(0, range(3), range(4))


@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with small_lab(7) as lab:
        yield lab


@pytest.mark.parametrize(("smu", "width_s"), [("2450", 5e-4), ("2450", 1e-3), ("2450", 3.5e-4),
                                              ("2600B", 5e-4), ("2600B", 1e-3),
                                              ("2600B", 8e-5)])
def test_form_on_time_is_the_requested_width(lab: VirtualLab, smu: str, width_s: float) -> None:
    env = SafetyEnvelope()
    with open_wire(lab, "board+smu+pulsegen", smu=smu, envelope=env) as wire:
        wire.pulse(CELLS, "FORM", np.linspace(3.0, 3.3, len(CELLS)), 1.5, width_s, 1e-4)
        on = np.asarray(lab.hub.source_on_times_s)
        assert on.size == len(CELLS)
        assert np.all(on == width_s)  # bit-exact: the simulated pulse has the asked width
        assert np.all(on <= env.max_width_s)
        # A read afterwards integrates at the instrument's normal NPLC again.
        wire.read(CELLS)


@pytest.mark.parametrize("smu", ["2450", "2600B"])
def test_form_shorter_than_the_smu_can_make_is_refused_before_sending(
        lab: VirtualLab, smu: str) -> None:
    with open_wire(lab, "board+smu+pulsegen", smu=smu) as wire:
        shortest = shortest_on_time_s(wire.smu.timing, 50.0)  # type: ignore[union-attr]
        n0 = wire.transactions()
        with pytest.raises(RequestRejected, match="lasts at least"):
            wire.pulse(CELLS, "FORM", 3.3, 1.5, shortest * 0.9, 1e-4)
        assert wire.transactions() == n0
        assert lab.hub.source_on_times_s == []
        # Exactly the shortest on-time is possible.
        wire.pulse(CELLS, "FORM", 3.3, 1.5, shortest, 1e-4)
        assert np.all(np.asarray(lab.hub.source_on_times_s) == shortest)


def test_mixed_widths_refused_as_a_whole_before_any_group_runs(lab: VirtualLab) -> None:
    with open_wire(lab, "board+smu+pulsegen", smu="2450") as wire:
        widths = np.where(np.arange(len(CELLS)) % 2 == 0, 5e-4, 1e-4)
        n0 = wire.transactions()
        with pytest.raises(RequestRejected):
            wire.pulse(CELLS, "FORM", 3.3, 1.5, widths, 1e-4)
        assert wire.transactions() == n0
        assert lab.hub.source_on_times_s == []


def test_the_old_form_sweep_would_have_been_caught(lab: VirtualLab) -> None:
    """The defect: width sent as the source delay at the default 1 PLC with autozero. The
    virtual SMUs model integration, so the on-time they report shows it."""
    assert on_time_s(KEITHLEY_2450, 1e-3, 1.0, 50.0, autozero=True) > 0.06  # 1 ms + 3 × 20 ms
    with open_wire(lab, "board+smu+pulsegen", smu="2450") as wire:
        wire.board.route("FORM", CELLS.tile, CELLS.row, CELLS.col, np.full(len(CELLS), 1.5))
        wire.smu.sweep(np.full(len(CELLS), 3.0), delay_s=1e-3,  # type: ignore[union-attr]
                       compliance_A=1e-4)
        wire.board.route_clear()
        assert min(lab.hub.source_on_times_s) > 20 * SafetyEnvelope().max_width_s


@pytest.mark.parametrize("timing", [KEITHLEY_2450, KEITHLEY_2600B])
def test_on_time_plan_is_exact_and_bounded(timing: SmuTiming) -> None:
    rng = np.random.default_rng(0)
    shortest = shortest_on_time_s(timing, 50.0)
    gap = (shortest, shortest + timing.min_nonzero_delay_s)
    for w in rng.uniform(shortest, 1e-2, 2000):
        try:
            d = form_delay_s(timing, float(w), 50.0, 1e-2)
        except RequestRejected:
            assert gap[0] < w < gap[1]  # only the delays the instrument cannot program
            continue
        assert d == 0.0 or d >= timing.min_nonzero_delay_s
        on = on_time_s(timing, d, timing.min_nplc, 50.0, autozero=False)
        assert 0.0 <= w - on <= 4 * np.spacing(w)  # exact, or a few ulp short, never longer
    with pytest.raises(EnvelopeViolation, match="FORM on-time"):
        form_delay_s(timing, 1e-3, 50.0, 9e-4)
    with pytest.raises(RequestRejected, match="lasts at least"):
        form_delay_s(timing, shortest * 0.99, 50.0, 1e-3)


def test_2450_delay_gap_is_refused_before_sending(lab: VirtualLab) -> None:
    """A 2450 sweep delay is 0 or 50 µs–10 ks: widths needing 0 < delay < 50 µs are not
    made (the virtual 2450 would answer -222 as the real one does)."""
    with open_wire(lab, "board+smu+pulsegen", smu="2450") as wire:
        n0 = wire.transactions()
        w = shortest_on_time_s(KEITHLEY_2450, 50.0) + 20e-6
        with pytest.raises(RequestRejected, match="cannot program"):
            wire.pulse(CELLS, "FORM", 3.3, 1.5, w, 1e-4)
        assert wire.transactions() == n0


def test_auto_delay_is_what_the_2450_adds_unless_switched_off() -> None:
    """The manual's voltage-source auto-delay table (2450-901-01 p. 2-111)."""
    assert auto_delay_2450_s(10e-9) == 50e-3
    assert auto_delay_2450_s(1e-6) == 3e-3
    assert auto_delay_2450_s(100e-6) == 1e-3
    with_auto = on_time_s(KEITHLEY_2450, 1e-4, 0.01, 50.0, autozero=False,
                          auto_delay_s=auto_delay_2450_s(1e-4))
    assert with_auto > SafetyEnvelope().max_width_s  # over-forming: why it is switched off


@pytest.mark.parametrize("smu", ["2450", "2600B"])
def test_form_returns_to_zero_between_cells(lab: VirtualLab, smu: str) -> None:
    """2600B: pulse mode (``endpulse.action = SOURCE_IDLE`` right after each measurement);
    2450: one instrument-run sweep per cell, output off at 0 V in the same message. Either
    way the board never steps to the next cell while the SMU holds a FORM level."""
    with open_wire(lab, "board+smu+pulsegen", smu=smu) as wire:
        wire.pulse(CELLS, "FORM", np.linspace(3.0, 3.3, len(CELLS)), 1.5, 5e-4, 1e-4)
    assert len(lab.hub.source_on_times_s) == len(CELLS)
    assert lab.hub.hot_switches == 0


def test_a_plain_list_sweep_would_switch_cells_under_voltage(lab: VirtualLab) -> None:
    """What the check above guards against: the 2450's multi-point list sweep steps from one
    cell's level straight to the next (the virtual hub counts those steps)."""
    with open_wire(lab, "board+smu+pulsegen", smu="2450") as wire:
        wire.board.route("FORM", CELLS.tile, CELLS.row, CELLS.col, np.full(len(CELLS), 1.5))
        wire.smu.sweep(np.linspace(3.0, 3.3, len(CELLS)),  # type: ignore[union-attr]
                       delay_s=1e-4, compliance_A=1e-4)
        wire.board.route_clear()
    assert lab.hub.hot_switches == len(CELLS) - 1
