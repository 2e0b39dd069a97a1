"""Message-level driver tests: every command a driver sends, and the reply it expects, as
exact bytes. The scripted instrument fails on the first unexpected message."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from drivers.keithley2450 import Keithley2450
from drivers.keithley2600b import COUNT_AND_MEAN, Keithley2600B
from drivers.keysight33500b import Keysight33500B
from labctl.core.errors import (
    CommunicationError,
    EnvelopeViolation,
    InstrumentError,
    SafetyInterlock,
)
from tests.drivers.scripted import ScriptedInstrument

OK = b'0,"No error"\n'
IDN_2450 = (b"*IDN?\n", b"KEITHLEY INSTRUMENTS,MODEL 2450,04400001,1.7.12b\n")
IDN_2600 = (b"*IDN?\n", b"Keithley Instruments Inc., Model 2602B, 4000001, 3.3.5\n")
IDN_335 = (b"*IDN?\n", b"Agilent Technologies,33522B,MY00000001,4.00\n")
TSP_OK = b"0.00000e+00\tQueue Is Empty\t0.00000e+00\t0.00000e+00\n"


def scpi(cmd: str, value: bytes | None = None) -> tuple[bytes, bytes]:
    """A command sent compound with its error check, and the instrument's reply."""
    reply = OK if value is None else value + b";" + OK
    return (cmd.encode() + b";:SYST:ERR?\n", reply)


def tsp(stmt: str) -> tuple[bytes, bytes]:
    """A chunk, then the error check as a second chunk (line) in the same write."""
    return (stmt.encode() + b"\nprint(errorqueue.next())\n", TSP_OK)


def tsp_query(expr: str, value: bytes) -> tuple[bytes, bytes]:
    return (f"print({expr})\nprint(errorqueue.next())\n".encode(), value + b"\n" + TSP_OK)


CONFIGURE_2450 = scpi("*CLS;:OUTP OFF;:SOUR:FUNC VOLT;:SENS:FUNC \"CURR\";"
                      ":SOUR:VOLT:DEL:AUTO OFF;:SENS:CURR:AVER:TCON REP;:FORM:ASC:PREC 16;"
                      ":FORM:DATA REAL;:FORM:BORD SWAP;:SENS:CURR:AZER ON;:SENS:CURR:NPLC 1.0")


def sweep_2450(currents: np.ndarray, *, n_average: int = 1, mean: float | None = None,
               block: bytes | None = None) -> list[tuple[bytes, bytes]]:
    """The exchange of a 3-point constant read sweep at 0.2 V, 200 µA."""
    n = currents.size
    m = float(np.mean(currents)) if mean is None else mean
    return [scpi(f":SENS:CURR:AVER:COUN {n_average};:SENS:CURR:AVER "
                 f"{'ON' if n_average > 1 else 'OFF'}"),
            scpi(":SOUR:VOLT 0.0"),
            scpi(":SOUR:VOLT:ILIM 0.0002"), scpi(":SOUR:VOLT:ILIM?", b"2.000000000000000E-04"),
            scpi(f':TRAC:CLE "defbuffer1";:SOUR:VOLT:RANG 0.2;'
                 f':SOUR:SWE:VOLT:LIN 0.2,0.2,{n},0.0,1,FIXED,OFF,OFF,"defbuffer1"'),
            scpi(":OUTP ON"),
            scpi(':INIT;*OPC?;:TRAC:ACT? "defbuffer1";:TRAC:STAT:AVER? "defbuffer1"',
                 f"1;{n};{m!r}".encode()),
            (f':TRAC:DATA? 1,{n},"defbuffer1",READ\n'.encode(),
             block if block is not None else b"#0" + currents.astype("<f8").tobytes() + b"\n")]


_names = iter(range(10_000))


def _name(prefix: str) -> str:
    return f"{prefix}_msg_{next(_names)}"


def test_2450_configure_and_confirmed_compliance() -> None:
    script = [IDN_2450, CONFIGURE_2450, scpi(":SOUR:VOLT:ILIM 0.0001"),
              scpi(":SOUR:VOLT:ILIM?", b"1.000000000000000E-04")]
    inst = ScriptedInstrument(script)
    smu = Keithley2450(_name("k2450"), inst.visa_address, visalib="@py")
    try:
        smu.configure()
        smu.arm(1e-4)
    finally:
        smu.close()
    inst.finish()


def test_2450_compliance_mismatch_is_an_interlock_and_output_stays_off() -> None:
    script = [IDN_2450, scpi(":SOUR:VOLT:ILIM 0.0001"), scpi(":SOUR:VOLT:ILIM?", b"1.0E-03"),
              scpi(":OUTP OFF")]
    inst = ScriptedInstrument(script)
    smu = Keithley2450(_name("k2450"), inst.visa_address, visalib="@py")
    try:
        with pytest.raises(SafetyInterlock, match="read back"):
            smu.arm(1e-4)
    finally:
        smu.close()
    inst.finish()


def test_2450_error_queue_surfaces_code_and_message() -> None:
    script = [IDN_2450, (b":SOUR:VOLT 1.5;:SYST:ERR?\n", b'-222,"Data out of range"\n')]
    inst = ScriptedInstrument(script)
    smu = Keithley2450(_name("k2450"), inst.visa_address, visalib="@py")
    try:
        with pytest.raises(InstrumentError, match=r'error -222 .{0,2}"Data out of range'):
            smu.source_voltage_V(1.5)
    finally:
        smu.close()
    inst.finish()


def test_2450_validator_stacks_envelope_and_rejects_before_sending() -> None:
    inst = ScriptedInstrument([IDN_2450])
    smu = Keithley2450(_name("k2450"), inst.visa_address, visalib="@py",
                       envelope_voltage_V=4.0, envelope_compliance_A=2e-4)
    try:
        with pytest.raises(EnvelopeViolation):
            smu.source_voltage_V(5.0)  # inside the 2450's ±210 V, outside the envelope
        with pytest.raises(EnvelopeViolation):
            smu.compliance_A(1e-3)
    finally:
        smu.close()
    inst.finish()


def test_without_an_envelope_the_default_envelope_limits_not_the_instrument() -> None:
    inst = ScriptedInstrument([IDN_2450])
    smu = Keithley2450(_name("k2450"), inst.visa_address, visalib="@py")
    try:
        with pytest.raises(EnvelopeViolation):
            smu.source_voltage_V(20.0)  # the 2450 could, the default envelope (4 V) not
    finally:
        smu.close()
    inst.finish()


def test_2450_indefinite_block_is_read_by_length_even_with_a_newline_inside() -> None:
    """The defect: ``#0`` blocks parsed as definite-length (or up to a newline). A reading
    whose float64 bytes contain 0x0A must come back whole."""
    x = np.frombuffer(b"\x0a" * 8, dtype="<f8")[0]  # a plausible ~1e-258 A reading
    currents = np.array([1e-6, x, 3e-6])
    assert b"\n" in currents.astype("<f8").tobytes()
    script = [IDN_2450, *sweep_2450(currents, n_average=4), scpi(":OUTP OFF")]
    inst = ScriptedInstrument(script)
    smu = Keithley2450(_name("k2450"), inst.visa_address, visalib="@py")
    try:
        got = smu.sweep([0.2, 0.2, 0.2], delay_s=0.0, compliance_A=2e-4, n_average=4)
    finally:
        smu.close()
    inst.finish()
    assert np.array_equal(got, currents)


@pytest.mark.parametrize(("what", "kwargs", "match"), [
    ("nan", {"currents": np.array([1e-6, np.nan, 3e-6]), "mean": 2e-6}, "implausible"),
    ("overrange", {"currents": np.array([1e-6, 3e3, 3e-6]), "mean": 1e3}, "implausible"),
    ("mean", {"currents": np.array([1e-6, 2e-6, 3e-6]), "mean": 2.5e-6}, "mean"),
    ("header", {"currents": np.zeros(3),
                "block": b"#224" + np.zeros(3).tobytes()[:-2] + b"\n"}, "malformed"),
])
def test_2450_unverifiable_block_is_an_error_and_the_output_goes_off(
        what: str, kwargs: dict[str, Any], match: str) -> None:
    """Corruption a block cannot hide: wrong framing, non-finite or out-of-range values, and
    a mean that differs from the one the instrument computed."""
    currents = kwargs.pop("currents")
    script = [IDN_2450, *sweep_2450(currents, **kwargs)]
    inst = ScriptedInstrument(script)
    smu = Keithley2450(_name("k2450"), inst.visa_address, visalib="@py", timeout=0.3)
    smu.safe_attempts = 1  # the safe-off goes over a fresh connection (tests/drivers/test_faults)
    try:
        with pytest.raises(CommunicationError, match=match):
            smu.sweep([0.2, 0.2, 0.2], delay_s=0.0, compliance_A=2e-4)
        assert smu.restore_needed or smu._dirty  # nothing cached is trusted any more
    finally:
        smu.close()
    inst.finish()


def test_2450_list_sweep_sets_the_source_range_first() -> None:
    """The defect: a FIXED-range sweep after ``:SOUR:VOLT 0`` runs on the 20 mV range."""
    data = np.zeros(2)
    script = [IDN_2450, scpi(":SENS:CURR:AVER:COUN 1;:SENS:CURR:AVER OFF"),
              scpi(":SOUR:VOLT 0.0"), scpi(":SOUR:VOLT:ILIM 0.0001"),
              scpi(":SOUR:VOLT:ILIM?", b"1E-4"), scpi(":SOUR:LIST:VOLT 3.0,3.3"),
              scpi(':TRAC:CLE "defbuffer1";:SOUR:VOLT:RANG 3.3;:SOUR:SWE:VOLT:LIST 1,0.0001'),
              scpi(":OUTP ON"),
              scpi(':INIT;*OPC?;:TRAC:ACT? "defbuffer1";:TRAC:STAT:AVER? "defbuffer1"',
                   b"1;2;0.0"),
              (b':TRAC:DATA? 1,2,"defbuffer1",READ\n', b"#0" + data.tobytes() + b"\n"),
              scpi(":OUTP OFF")]
    inst = ScriptedInstrument(script)
    smu = Keithley2450(_name("k2450"), inst.visa_address, visalib="@py")
    try:
        smu.sweep([3.0, 3.3], delay_s=1e-4, compliance_A=1e-4)
    finally:
        smu.close()
    inst.finish()


def test_2600b_sweep_exact_exchange() -> None:
    currents = np.array([4e-6, 5e-6])
    script = [IDN_2600,
              tsp("smua.measure.filter.count = 1 smua.measure.filter.enable = smua.FILTER_OFF"),
              tsp("smua.source.levelv = 0.0"),
              tsp("smua.source.limiti = 0.0001 smua.trigger.source.limiti = 0.0001"),
              tsp_query("smua.source.limiti", b"1.000000000000000e-04"),
              tsp_query("smua.trigger.source.limiti", b"1.000000000000000e-04"),
              tsp("smua.source.rangev = 0.2 smua.trigger.source.linearv(0.2, 0.2, 2) "
                  "smua.source.delay = 0.0 smua.nvbuffer1.clear() "
                  "smua.trigger.measure.i(smua.nvbuffer1) "
                  "smua.trigger.measure.action = smua.ENABLE "
                  "smua.trigger.endpulse.action = smua.SOURCE_HOLD "
                  "smua.trigger.endsweep.action = smua.SOURCE_IDLE "
                  "smua.trigger.source.action = smua.ENABLE smua.trigger.count = 2"),
              tsp("smua.source.output = smua.OUTPUT_ON"),
              (b"smua.trigger.initiate() waitcomplete()\n" + COUNT_AND_MEAN.encode()
               + b"\nprint(errorqueue.next())\n",
               f"2\t{float(np.mean(currents))!r}\n".encode() + TSP_OK),
              (b"printbuffer(1, 2, smua.nvbuffer1.readings)\n",
               b"#0" + currents.astype("<f8").tobytes() + b"\n"),
              tsp("smua.source.output = smua.OUTPUT_OFF")]
    inst = ScriptedInstrument(script)
    smu = Keithley2600B(_name("k2600"), inst.visa_address, visalib="@py")
    try:
        got = smu.sweep([0.2, 0.2], delay_s=0.0, compliance_A=1e-4)
    finally:
        smu.close()
    inst.finish()
    assert np.array_equal(got, currents)


def test_2600b_error_queue_surfaces_code_and_message() -> None:
    script = [IDN_2600, (b"smua.source.levelv = 1.0\nprint(errorqueue.next())\n",
                         b"-2.86000e+02\tTSP Runtime error: parameter out of range\t"
                         b"2.00000e+00\t1.00000e+00\n")]
    inst = ScriptedInstrument(script)
    smu = Keithley2600B(_name("k2600"), inst.visa_address, visalib="@py")
    try:
        with pytest.raises(InstrumentError, match=r"error -286"):
            smu.source_voltage_V(1.0)
    finally:
        smu.close()
    inst.finish()


def test_2600b_failed_query_chunk_is_an_instrument_error_not_a_timeout() -> None:
    """Lua semantics: the failing ``print(...)`` chunk prints nothing; the error check, a
    separate chunk, still answers — the driver reads it as the error it is."""
    script = [IDN_2600, (b"print(smua.bogus)\nprint(errorqueue.next())\n",
                         b"-2.86000e+02\tTSP Runtime error: smua.bogus does not exist\t"
                         b"2.00000e+00\t1.00000e+00\n")]
    inst = ScriptedInstrument(script)
    smu = Keithley2600B(_name("k2600"), inst.visa_address, visalib="@py", timeout=1.0)
    try:
        with pytest.raises(InstrumentError, match="does not exist"):
            smu.ask("smua.bogus")
    finally:
        smu.close()
    inst.finish()


CONFIGURE_335 = [
    scpi("*CLS;:OUTP OFF;:OUTP:LOAD INF;:FUNC PULS;:VOLT:LOW 0;:BURS:MODE TRIG;"
         ":TRIG:SOUR BUS;:BURS:STAT ON"),
    scpi(":FUNC:PULS:TRAN:LEAD 8.4e-09;TRA 8.4e-09;:FUNC:PULS:WIDT 1e-07;"
         ":FUNC:PULS:PER 0.001")]


def test_33500b_configure_and_burst_exact_exchange() -> None:
    script = [IDN_335, *CONFIGURE_335] + [scpi(c) for c in (
        "FUNC:PULS:WIDT 1e-06", "FUNC:PULS:PER 2e-06", "VOLT:HIGH 2.0", "BURS:NCYC 16",
        "OUTP ON", "*TRG")] + [scpi("*OPC?", b"1"), scpi("OUTP OFF")]
    inst = ScriptedInstrument(script)
    gen = Keysight33500B(_name("g335"), inst.visa_address, visalib="@py")
    try:
        gen.configure()
        gen.fire_burst(2.0, 1e-6, 16)
    finally:
        gen.close()
    inst.finish()


def test_33500b_second_identical_burst_sends_only_output_and_trigger() -> None:
    script = [IDN_335, *CONFIGURE_335] + [scpi(c) for c in (
        "FUNC:PULS:WIDT 1e-06", "FUNC:PULS:PER 2e-06", "VOLT:HIGH 2.0", "BURS:NCYC 4",
        "OUTP ON", "*TRG")] + [
        scpi("*OPC?", b"1"), scpi("OUTP OFF"),
        scpi("VOLT:HIGH 2.2"), scpi("OUTP ON"), scpi("*TRG"), scpi("*OPC?", b"1"),
        scpi("OUTP OFF")]
    inst = ScriptedInstrument(script)
    gen = Keysight33500B(_name("g335"), inst.visa_address, visalib="@py")
    try:
        gen.configure()
        gen.fire_burst(2.0, 1e-6, 4)
        gen.fire_burst(2.2, 1e-6, 4)
    finally:
        gen.close()
    inst.finish()


def test_33500b_rejects_amplitude_outside_envelope_without_sending() -> None:
    inst = ScriptedInstrument([IDN_335])
    gen = Keysight33500B(_name("g335"), inst.visa_address, visalib="@py", envelope_voltage_V=4.0)
    try:
        with pytest.raises(EnvelopeViolation):
            gen.high_V(4.5)
    finally:
        gen.close()
    inst.finish()
