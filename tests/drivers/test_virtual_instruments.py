"""The virtual instruments behave as their manuals say where a driver's mistake would show:
the 2450's FIXED sweep range and auto-delay, the 33500B's output-load rule and pulse
constraints, the 2600B's Lua error semantics and number formatting; and the drivers'
recovery after a lost reply re-sends what the instrument may hold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import pyvisa

from labctl.core.cells import Cells
from labctl.core.errors import InstrumentFault
from sim_backend.virtual import VirtualLab
from tests.drivers.helpers import open_wire, small_lab


@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with small_lab(13) as lab:
        yield lab


def visa(lab: VirtualLab, name: str) -> Any:
    return pyvisa.ResourceManager("@py").open_resource(
        lab.addresses[name], read_termination="\n", write_termination="\n", timeout=3000)


def test_2450_fixed_range_sweep_after_zero_volts_clips_at_21_mV(lab: VirtualLab) -> None:
    """The old read defect, reproduced on the virtual 2450: at 0 V autorange picks 20 mV;
    a FIXED sweep then sources at most 21 mV. BEST (or an explicit range) does not."""
    h = visa(lab, "smu2450")
    try:
        h.write("*RST;:SOUR:VOLT 0;:OUTP ON")
        h.write(':SOUR:SWE:VOLT:LIN 0.1,0.3,3,0,1,FIXED;:INIT')
        fixed = [float(x) for x in h.query(':TRAC:DATA? 1,3,"defbuffer1",SOUR').split(",")]
        h.write(':TRAC:CLE;:SOUR:SWE:VOLT:LIN 0.1,0.3,3,0,1,BEST;:INIT')
        best = [float(x) for x in h.query(':TRAC:DATA? 1,3,"defbuffer1",SOUR').split(",")]
        h.write(":OUTP OFF")
    finally:
        h.close()
    assert max(fixed) == pytest.approx(0.021)
    assert best == pytest.approx([0.1, 0.2, 0.3])


def test_2450_sweep_delay_gap_and_binary_block(lab: VirtualLab) -> None:
    h = visa(lab, "smu2450")
    try:
        h.write(":SOUR:SWE:VOLT:LIN 0,1,2,20e-6")
        assert h.query(":SYST:ERR?").startswith("-222")
        h.write(":SOUR:SWE:VOLT:LIN 0,1,2,0;:INIT;:FORM:DATA REAL;:FORM:BORD SWAP")
        h.write(':TRAC:DATA? 1,2,"defbuffer1",READ')
        raw = h.read_bytes(2 + 16 + 1)
        assert raw[:2] == b"#0"
        assert raw[-1:] == b"\n"
    finally:
        h.close()


@pytest.mark.parametrize(("cmds", "err"), [
    ("OUTP:LOAD 50;:VOLT:HIGH 8", "-222"),  # ±5 V into 50 Ω
    ("OUTP:LOAD INF;:VOLT:LOW 2;:VOLT:HIGH 1", "-221"),  # low above high
    ("FUNC PULS;:FUNC:PULS:WIDT 1e-6;:FUNC:PULS:TRAN 1e-6", "-221"),  # edge > 0.625 width
    ("FUNC FOO", "-224"),
    ("SOUR3:VOLT:HIGH 1", "-114"),
])
def test_33500b_refuses_what_the_guide_refuses(lab: VirtualLab, cmds: str, err: str) -> None:
    h = visa(lab, "pulsegen")
    try:
        h.write("*RST;*CLS;" + cmds)
        assert h.query("SYST:ERR?").startswith(err)
    finally:
        h.close()


def test_33500b_load_setting_keeps_the_physical_level(lab: VirtualLab) -> None:
    """Changing OUTP:LOAD rescales the displayed level, not the output (guide,
    OUTPut:LOAD): 1 V into 50 Ω is 2 V open-circuit, shown as 2 V at INF."""
    h = visa(lab, "pulsegen")
    try:
        h.write("*RST;:OUTP:LOAD 50;:VOLT:LOW 0;:VOLT:HIGH 1;:OUTP:LOAD INF")
        assert float(h.query("VOLT:HIGH?")) == pytest.approx(2.0)
        assert float(h.query("SOURce1:VOLTage:HIGH?")) == pytest.approx(2.0)
    finally:
        h.close()


def test_2600b_error_aborts_only_its_chunk(lab: VirtualLab) -> None:
    h = visa(lab, "smu2600b")
    try:
        h.write("smua.source.levelv = 1000 print('not reached')\nprint('next chunk')")
        assert h.read() == "next chunk"
        code, msg, *_ = h.query("print(errorqueue.next())").split("\t")
        assert float(code) == -286
        assert "out of range" in msg
    finally:
        h.close()


def test_2600b_compliance_reads_back_exactly_with_16_digits(lab: VirtualLab) -> None:
    """The defect: 6 printed digits trip the interlock on a limit like 1.2345678e-4."""
    with open_wire(lab, "board+smu+pulsegen", smu="2600B") as wire:
        wire.smu.arm(1.2345678e-4)  # type: ignore[union-attr]


def test_lost_reply_leaves_no_trusted_cache_and_the_next_burst_resends(lab: VirtualLab) -> None:
    """The defect: a VOLT:HIGH whose reply was lost left qcodes' cache at the old value;
    a later burst at that value skipped the set and fired at the new one. After any fault
    the driver re-configures, re-sends and reads the level back before output-on."""
    cells = Cells.block(0, range(2), range(2))
    with open_wire(lab, "board+smu+pulsegen", timeout_s=0.3) as wire:
        wire.pulse(cells, "FORM", 3.3, 1.5, 5e-4, 1e-4)
        wire.pulse(cells, "SET", 2.0, 1.8, 1e-6)
        lab.faults.schedule("pulsegen", "drop")
        with pytest.raises(InstrumentFault):
            wire.pulse(cells, "SET", 3.0, 1.8, 1e-6)  # VOLT:HIGH 3.0 reaches it, reply lost
        n = len(lab.hub.pulse_log)
        wire.pulse(cells, "SET", 2.0, 1.8, 1e-6)
        fired = lab.hub.pulse_log[n:]
    assert fired
    assert all(np.all(amp == 2.0) for _, _, amp, _ in fired)


def test_an_oversized_message_is_discarded_with_223_and_the_server_stays_up(
        lab: VirtualLab) -> None:
    from sim_backend.virtual.scpi_parser import MAX_MESSAGE_BYTES

    h = visa(lab, "smu2450")
    try:
        h.write(":SOUR:LIST:VOLT " + "0," * (MAX_MESSAGE_BYTES // 2) + "0")
        assert h.query(":SYST:ERR?").startswith("-223")
        assert h.query("*IDN?").startswith("KEITHLEY")
    finally:
        h.close()


def test_lua_sandbox_bounds_memory_and_time(lab: VirtualLab) -> None:
    """A chunk that allocates past the state's cap or never ends is a runtime error; the
    instrument keeps answering."""
    h = visa(lab, "smu2600b")
    try:
        h.write("local s = string.rep('x', 2^25)\nprint(errorqueue.next())")  # 32 MiB > 16
        assert "memory" in h.read()
        h.write("t1 = string.rep('a', 2^22)\nt2 = string.rep('b', 2^22)\nprint(#t1 + #t2)")
        assert h.read() == "8.38861e+06"  # 4 MiB per chunk is fine, and it stays
        h.write("local t = {} for i = 1, 1e9 do t[i] = i end\nprint(errorqueue.next())")
        assert "memory" in (r := h.read()) or "budget" in r
        h.write("print(io, os, require, load, debug, dofile)")
        assert h.read() == "nil\tnil\tnil\tnil\tnil\tnil"
        assert h.query("*IDN?").startswith("Keithley")
    finally:
        h.close()


def test_board_driver_takes_address_like_every_qcodes_instrument(lab: VirtualLab) -> None:
    from drivers.fpga_board import FpgaTestBoard

    board = FpgaTestBoard("addr_board", address=lab.addresses["board"])
    try:
        assert board.url == lab.addresses["board"]
        assert board.ident
    finally:
        board.close()


def test_a_fault_withdraws_trust_from_the_cache_at_once(lab: VirtualLab) -> None:
    """Even before the link is reopened, a fault leaves no cached setting valid."""
    with open_wire(lab, "board+smu+pulsegen", timeout_s=0.3) as wire:
        gen = wire.pulsegen
        gen.high_V(2.0)  # type: ignore[union-attr]
        assert gen.high_V.cache.valid  # type: ignore[union-attr]
        lab.faults.schedule("pulsegen", "drop")
        with pytest.raises(InstrumentFault):
            gen.high_V(3.0)  # type: ignore[union-attr]
        assert not gen.high_V.cache.valid  # type: ignore[union-attr]
        assert gen.restore_needed  # type: ignore[union-attr]
