"""FORM through an SMU: every point is on the cell for exactly the requested width (source
delay + integration + stated overhead), never the ~21 ms that a 1 PLC integration with
autozero adds; a width the SMU cannot make, or an on-time beyond ``max_width_s``, is
refused before anything is sent; the 2600B returns to 0 V between cells."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from drivers._link import form_delay_s
from labctl.core.cells import Cells
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import EnvelopeViolation, RequestRejected
from sim_backend.virtual import VirtualLab
from sim_backend.virtual.hub import smu_on_time_s
from tests.drivers.helpers import open_wire, small_lab

CELLS = Cells.block(0, range(3), range(4))


@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with small_lab(7) as lab:
        yield lab


@pytest.mark.parametrize("smu", ["2450", "2600B"])
@pytest.mark.parametrize("width_s", [5e-4, 1e-3, 3.3e-4])
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
        shortest = (wire.smu.form_integration_s()  # type: ignore[union-attr]
                    + wire.smu.form_overhead_s)  # type: ignore[union-attr]
        n0 = wire.transactions()
        with pytest.raises(RequestRejected, match="cannot be shorter"):
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
    assert smu_on_time_s(1e-3, 1.0, True) > 0.06  # 1 ms + 3 × 20 ms + overhead
    with open_wire(lab, "board+smu+pulsegen", smu="2450") as wire:
        wire.board.route("FORM", CELLS.tile, CELLS.row, CELLS.col, np.full(len(CELLS), 1.5))
        wire.smu.sweep(np.full(len(CELLS), 3.0), delay_s=1e-3,  # type: ignore[union-attr]
                       compliance_A=1e-4)
        wire.board.route_clear()
        assert min(lab.hub.source_on_times_s) > 20 * SafetyEnvelope().max_width_s


def test_on_time_plan_is_exact_and_bounded() -> None:
    rng = np.random.default_rng(0)
    ti, o = 0.01 / 50.0, 50e-6
    for w in rng.uniform(ti + o, 1e-2, 2000):
        d = form_delay_s("smu", float(w), ti, o, 1e-2)
        assert d >= 0.0
        assert (d + ti) + o == w
    with pytest.raises(EnvelopeViolation, match="FORM on-time"):
        form_delay_s("smu", 1e-3, ti, o, 9e-4)
    with pytest.raises(RequestRejected, match="cannot be shorter"):
        form_delay_s("smu", 1e-4, ti, o, 1e-3)


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
