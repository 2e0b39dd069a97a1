"""Tests on real instruments. They run only when addresses are given:

    pytest tests/drivers/test_hardware.py --board-url /dev/ttyUSB0 \\
        --smu-address TCPIP0::192.168.1.50::5025::SOCKET --smu-type Keithley2450 \\
        --pulsegen-address TCPIP0::192.168.1.51::5025::SOCKET

They never drive a cell: they identify the instruments, check the error queues, set and
read back the compliance with the output off, program the board clamp low and abort. With
``--resistor-ohm R`` and that resistor across the SMU's HI and LO (no chip, no board) they
also check what the virtual lab cannot (docs/bringup.md): the read conductance is 1/R
within 1 %, and the point period the SMU's own timestamps show is no longer than the
on-time model plans (so a FORM point never lasts longer than the envelope allowed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from labctl.wire.smu_timing import on_time_s

pytestmark = pytest.mark.hardware


def _opt(config: Any, name: str) -> str:
    value = config.getoption(name)
    if not value:
        pytest.skip(f"no {name} given on the command line")
    return str(value)


@pytest.fixture
def smu(pytestconfig: pytest.Config) -> Iterator[Any]:
    address = _opt(pytestconfig, "--smu-address")
    if pytestconfig.getoption("--smu-type") == "Keithley2600B":
        from drivers.keithley2600b import Keithley2600B as Smu
    else:
        from drivers.keithley2450 import Keithley2450 as Smu  # type: ignore[assignment]
    inst = Smu("hw_smu", address, envelope_voltage_V=0.5, envelope_compliance_A=1e-4)
    try:
        yield inst
    finally:
        inst.safe_off()
        inst.close()


def test_smu_identifies_configures_and_confirms_compliance(smu: Any) -> None:
    assert smu.idn_info["model"]
    smu.configure()
    smu.arm(1e-5)  # output stays off; raises SafetyInterlock on a readback mismatch
    smu.check_errors()


def test_smu_reads_a_known_resistor(smu: Any, pytestconfig: pytest.Config) -> None:
    r_ohm = float(_opt(pytestconfig, "--resistor-ohm"))
    smu.configure()
    v = np.full(8, 0.1)
    i = smu.sweep(v, delay_s=1e-3, compliance_A=1e-4, n_average=4)
    g = i / v
    assert np.all(np.abs(g * r_ohm - 1.0) < 0.01), f"read {g} S for 1/R = {1 / r_ohm} S"


def test_form_on_time_readback(smu: Any, pytestconfig: pytest.Config) -> None:
    """Scope-free: the instrument timestamps each point of a sweep run at the FORM settings
    (minimal NPLC, autozero and auto-delay off, the planned source delay); the spacing of
    the timestamps is what one point really takes, which bounds its on-time."""
    _opt(pytestconfig, "--resistor-ohm")
    smu.configure()
    t = smu.timing
    width = 1e-3
    delay = smu.form_delay_s(width, 1e-3)
    n = 50
    if t.model == "2450":
        smu.write(f":SENS:CURR:NPLC {t.min_nplc};:SENS:CURR:AZER OFF")
        smu.sweep(np.full(n, 0.1), delay_s=delay, compliance_A=1e-4)
        rel = np.array([float(x) for x in smu.ask(
            ':FORM:DATA ASC;:TRAC:DATA? 1,50,"defbuffer1",REL;:FORM:DATA REAL').split(",")])
    else:
        smu.write(f"smua.measure.nplc = {t.min_nplc} smua.measure.autozero = 0 "
                  "smua.nvbuffer1.collecttimestamps = 1")
        smu.sweep(np.full(n, 0.1), delay_s=delay, compliance_A=1e-4)
        rel = np.array([float(smu.ask(f"smua.nvbuffer1.timestamps[{k}]"))
                        for k in range(1, n + 1)])
    period = float(np.median(np.diff(rel)))
    planned = on_time_s(t, delay, t.min_nplc, smu.line_frequency_Hz, autozero=False)
    assert period <= planned - t.end_latency_s + 1e-6, (
        f"a point takes {period:g} s, the model plans {planned:g} s: raise overhead_s")


def test_pulsegen_identifies_and_configures(pytestconfig: pytest.Config) -> None:
    from drivers.keysight33500b import Keysight33500B

    gen = Keysight33500B("hw_gen", _opt(pytestconfig, "--pulsegen-address"),
                         envelope_voltage_V=0.5)
    try:
        gen.configure()
        gen.width_s(1e-6)
        gen.check_errors()
    finally:
        gen.safe_off()
        gen.close()


def test_board_identifies_clamps_and_aborts(pytestconfig: pytest.Config) -> None:
    from drivers.fpga_board import FpgaTestBoard

    board = FpgaTestBoard("hw_board", _opt(pytestconfig, "--board-url"))
    try:
        assert board.ident.get("firmware")
        board.set_clamp(0.5, 0.5, 0.5, 0.1)
        assert board.status()["clamp_bitline_V"] == 0.5
        board.abort()
    finally:
        board.safe_off()
        board.close()
