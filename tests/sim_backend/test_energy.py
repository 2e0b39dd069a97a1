"""The energy and latency ledger books what its stated model says."""

from __future__ import annotations

import numpy as np
import pytest

from labctl.core.cells import Cells
from labctl.core.errors import RequestRejected
from sim_backend import SimBackend
from tests.sim_backend.helpers import place


def test_pulse_energy_and_device_time() -> None:
    be = SimBackend("ideal", seed=0)
    c = Cells.block(0, slice(0, 2), slice(0, 4))  # 2 rows × 4 columns
    place(be.macro, c, np.full(8, 10e-6))
    e = be.preset.energy
    be.pulse(c, "RESET", 1.0, 5.0, 1e-6)
    led = be.ledger
    # RESET current is limited by the pre-pulse conductance: I = V·G = 10 µA
    joule = 8 * 1.0 * 10e-6 * 1e-6
    # 8 source lines charged to 1 V; 2 word lines (one per row) to 5 V
    lines = e.line_cap_F_per_cell * (8 * 256 * 1.0**2 + 2 * 512 * 5.0**2)
    assert led.pulse_energy_J == pytest.approx(joule + lines, rel=1e-9)
    assert led.device_time_s == pytest.approx(2 * (1e-6 + e.pulse_overhead_s))  # 2 rows
    assert (led.pulses, led.pulse_calls, led.by_kind) == (8, 1, {"RESET": 8})


def test_read_and_mvm_are_booked() -> None:
    be = SimBackend("default_180nm", seed=0)
    c = Cells.block(0, slice(0, 4), slice(0, 4))
    place(be.macro, c, np.full(16, 20e-6))
    be.read(c, n_average=3)
    assert be.ledger.reads == 48 and be.ledger.read_energy_J > 0
    before = be.ledger.snapshot()
    be.mvm(0, np.full((10, 4), 0.1), rows=slice(0, 4), cols=slice(0, 4))
    d = be.ledger.since(before)
    e = be.preset.energy
    assert d["mvm_vectors"] == 10 and d["mvm_calls"] == 1
    array = 10 * 4 * (0.1**2) * (4 * 20e-6) * e.mvm_integration_s
    conv = 10 * (4 * e.dac_energy_J + 4 * e.adc_fom_J_per_step * 2**9)
    assert d["mvm_energy_J"] == pytest.approx(array + conv, rel=0.02)
    assert d["device_time_s"] == pytest.approx(10 * (e.mvm_integration_s + e.adc_conversion_s))


def test_clock_is_virtual_and_runs_by_device_time() -> None:
    """The clock advances by exactly the device time the ledger books, and by waits."""
    be = SimBackend("ideal", seed=0)
    c = Cells.block(0, slice(0, 64), slice(0, 64))
    be.pulse(c, "FORM", 3.3, 2.0, 1e-3)
    e = be.preset.energy
    assert be.clock.now() == pytest.approx(64 * (1e-3 + e.pulse_overhead_s))
    be.read(c, n_average=4)
    be.mvm(0, np.zeros((3, 64)), rows=slice(0, 64), cols=slice(0, 64))
    assert be.clock.now() == pytest.approx(be.ledger.device_time_s)
    t = be.clock.now()
    be.clock.wait(86400.0)
    assert be.clock.now() == pytest.approx(t + 86400.0)
    with pytest.raises(RequestRejected, match="non-negative"):
        be.clock.wait(-1.0)
