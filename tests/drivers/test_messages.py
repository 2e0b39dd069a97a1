"""Message-level driver tests: every command a driver sends, and the reply it expects, as
exact bytes. The scripted instrument fails on the first unexpected message."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.keithley2450 import Keithley2450
from drivers.keithley2600b import Keithley2600B
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
    return (stmt.encode() + b"; print(errorqueue.next())\n", TSP_OK)


def tsp_query(expr: str, value: bytes) -> tuple[bytes, bytes]:
    return (f"print({expr}); print(errorqueue.next())\n".encode(), value + b"\n" + TSP_OK)


_names = iter(range(10_000))


def _name(prefix: str) -> str:
    return f"{prefix}_msg_{next(_names)}"


def test_2450_configure_and_confirmed_compliance() -> None:
    script = [IDN_2450] + [scpi(c) for c in (
        "*CLS", ":OUTP OFF", ":SOUR:FUNC VOLT", ':SENS:FUNC "CURR"',
        ":SENS:CURR:AVER:TCON REP", ":FORM:DATA REAL", ":FORM:BORD SWAP")] + [
        scpi(":SOUR:VOLT:ILIM 0.0001"), scpi(":SOUR:VOLT:ILIM?", b"1.000000E-04")]
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
        with pytest.raises(InstrumentError, match=r'-222 "Data out of range"'):
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


def test_2450_constant_sweep_exact_exchange_and_binary_readback() -> None:
    currents = np.array([1e-6, 2e-6, 3e-6])
    raw = currents.astype("<f8").tobytes()
    script = [IDN_2450,
              scpi(":SENS:CURR:AVER:COUN 4"), scpi(":SENS:CURR:AVER ON"),
              scpi(":SOUR:VOLT 0.0"),
              scpi(":SOUR:VOLT:ILIM 0.0002"), scpi(":SOUR:VOLT:ILIM?", b"2.0E-04"),
              scpi(':TRAC:CLE "defbuffer1";'
                   ':SOUR:SWE:VOLT:LIN 0.2,0.2,3,0.0,1,FIXED,OFF,OFF,"defbuffer1"'),
              scpi(":OUTP ON"), scpi(":INIT;*OPC?", b"1"),
              (b':TRAC:DATA? 1,3,"defbuffer1",READ\n', b"#224" + raw + b"\n"),
              (b":SYST:ERR?\n", OK), scpi(":OUTP OFF")]
    inst = ScriptedInstrument(script)
    smu = Keithley2450(_name("k2450"), inst.visa_address, visalib="@py")
    try:
        got = smu.sweep([0.2, 0.2, 0.2], delay_s=0.0, compliance_A=2e-4, n_average=4)
    finally:
        smu.close()
    inst.finish()
    assert np.array_equal(got, currents)


def test_2450_list_sweep_sends_the_configuration_list() -> None:
    raw = np.zeros(2).astype("<f8").tobytes()
    script = [IDN_2450, scpi(":SENS:CURR:AVER:COUN 1"), scpi(":SENS:CURR:AVER OFF"),
              scpi(":SOUR:VOLT 0.0"), scpi(":SOUR:VOLT:ILIM 0.0001"),
              scpi(":SOUR:VOLT:ILIM?", b"1E-4"), scpi(":SOUR:LIST:VOLT 3.0,3.3"),
              scpi(':TRAC:CLE "defbuffer1";:SOUR:SWE:VOLT:LIST 1,0.0001'), scpi(":OUTP ON"),
              scpi(":INIT;*OPC?", b"1"),
              (b':TRAC:DATA? 1,2,"defbuffer1",READ\n', b"#216" + raw + b"\n"),
              (b":SYST:ERR?\n", OK), scpi(":OUTP OFF")]
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
              tsp("smua.measure.filter.count = 1; smua.measure.filter.enable = smua.FILTER_OFF"),
              tsp("smua.source.levelv = 0.0"),
              tsp("smua.source.limiti = 0.0001; smua.trigger.source.limiti = 0.0001"),
              tsp_query("smua.source.limiti", b"1.00000e-04"),
              tsp_query("smua.trigger.source.limiti", b"1.00000e-04"),
              tsp("smua.trigger.source.linearv(0.2, 0.2, 2); smua.source.delay = 0.0; "
                  "smua.nvbuffer1.clear(); smua.trigger.measure.i(smua.nvbuffer1); "
                  "smua.trigger.measure.action = smua.ENABLE; "
                  "smua.trigger.endsweep.action = smua.SOURCE_IDLE; "
                  "smua.trigger.source.action = smua.ENABLE; smua.trigger.count = 2"),
              tsp("smua.source.output = smua.OUTPUT_ON"),
              tsp("smua.trigger.initiate(); waitcomplete()"),
              (b"printbuffer(1, 2, smua.nvbuffer1.readings)\n",
               b"#0" + currents.astype("<f8").tobytes() + b"\n"),
              (b"print(errorqueue.next())\n", TSP_OK),
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
    script = [IDN_2600, (b"smua.source.levelv = 1.0; print(errorqueue.next())\n",
                         b"1.10000e+03\tParameter too big or too small\t2.00000e+00\t"
                         b"0.00000e+00\n")]
    inst = ScriptedInstrument(script)
    smu = Keithley2600B(_name("k2600"), inst.visa_address, visalib="@py")
    try:
        with pytest.raises(InstrumentError, match=r"1100 \"Parameter too big"):
            smu.source_voltage_V(1.0)
    finally:
        smu.close()
    inst.finish()


def test_33500b_configure_and_burst_exact_exchange() -> None:
    script = [IDN_335] + [scpi(c) for c in (
        "*CLS", "OUTP OFF", "OUTP:LOAD INF", "FUNC PULS", "VOLT:LOW 0", "BURS:MODE TRIG",
        "TRIG:SOUR BUS", "BURS:STAT ON",
        "FUNC:PULS:PER 2e-06", "FUNC:PULS:WIDT 1e-06", "FUNC:PULS:TRAN:LEAD 8.4e-09",
        "FUNC:PULS:TRAN:TRA 8.4e-09", "VOLT:HIGH 2.0", "BURS:NCYC 16", "OUTP ON", "*TRG")] + [
        scpi("*OPC?", b"1"), scpi("OUTP OFF")]
    inst = ScriptedInstrument(script)
    gen = Keysight33500B(_name("g335"), inst.visa_address, visalib="@py")
    try:
        gen.configure()
        gen.fire_burst(2.0, 1e-6, 16)
    finally:
        gen.close()
    inst.finish()


def test_33500b_second_identical_burst_sends_only_output_and_trigger() -> None:
    script = [IDN_335] + [scpi(c) for c in (
        "FUNC:PULS:PER 2e-06", "FUNC:PULS:WIDT 1e-06", "FUNC:PULS:TRAN:LEAD 8.4e-09",
        "FUNC:PULS:TRAN:TRA 8.4e-09", "VOLT:HIGH 2.0", "BURS:NCYC 4", "OUTP ON", "*TRG")] + [
        scpi("*OPC?", b"1"), scpi("OUTP OFF"),
        scpi("VOLT:HIGH 2.2"), scpi("OUTP ON"), scpi("*TRG"), scpi("*OPC?", b"1"),
        scpi("OUTP OFF")]
    inst = ScriptedInstrument(script)
    gen = Keysight33500B(_name("g335"), inst.visa_address, visalib="@py")
    try:
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


def test_2450_implausible_binary_block_is_a_communication_error() -> None:
    """A corrupted float64 block (here a NaN and a current far above the limit) is caught by
    the plausibility check; the output still goes off."""
    raw = np.array([1e-6, np.nan, 3e3]).astype("<f8").tobytes()
    script = [IDN_2450,
              scpi(":SENS:CURR:AVER:COUN 1"), scpi(":SENS:CURR:AVER OFF"),
              scpi(":SOUR:VOLT 0.0"),
              scpi(":SOUR:VOLT:ILIM 0.0002"), scpi(":SOUR:VOLT:ILIM?", b"2.0E-04"),
              scpi(':TRAC:CLE "defbuffer1";'
                   ':SOUR:SWE:VOLT:LIN 0.2,0.2,3,0.0,1,FIXED,OFF,OFF,"defbuffer1"'),
              scpi(":OUTP ON"), scpi(":INIT;*OPC?", b"1"),
              (b':TRAC:DATA? 1,3,"defbuffer1",READ\n', b"#224" + raw + b"\n"),
              (b":SYST:ERR?\n", OK), scpi(":OUTP OFF")]
    inst = ScriptedInstrument(script)
    smu = Keithley2450(_name("k2450"), inst.visa_address, visalib="@py")
    try:
        with pytest.raises(CommunicationError, match="implausible reading nan at point 2"):
            smu.sweep([0.2, 0.2, 0.2], delay_s=0.0, compliance_A=2e-4)
    finally:
        smu.close()
    inst.finish()
