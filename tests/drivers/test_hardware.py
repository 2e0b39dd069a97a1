"""Tests on real instruments. They run only when addresses are given:

    pytest tests/wire/test_hardware.py --board-url /dev/ttyUSB0 \\
        --smu-address TCPIP0::192.168.1.50::5025::SOCKET --smu-type Keithley2450 \\
        --pulsegen-address TCPIP0::192.168.1.51::5025::SOCKET

They never drive a cell: they identify the instruments, check the error queues, set and
read back the compliance with the output off, program the board clamp low and abort.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

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
