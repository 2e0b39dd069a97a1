"""Keithley 2450 SourceMeter driver (SCPI command set), for reads and forming.

Instrument behaviour relied on (Keithley 2450 Reference Manual, 2450-901-01 Rev. D,
SCPI command reference; each fact is checked at bring-up, docs/bringup.md):

* ``:SOURce:VOLTage:ILIMit`` sets the source's current limit, ``?`` reads it back;
  ``:FORMat:ASCii:PRECision 16`` makes that readback carry 16 digits.
* ``:SOURce:VOLTage:RANGe <v>`` selects the smallest source range containing ``v`` and
  switches source autorange off. A sweep with range mode ``FIXED`` keeps the range in
  effect at sweep start and cannot source above it ("Sweep operation", range options
  AUTO/BEST/FIXED): so every sweep sets the range explicitly first.
* ``:SOURce:VOLTage:DELay:AUTO OFF``: the source auto-delay (1–50 ms by measure range,
  p. 2-111) is otherwise added to every point; off, the sweep's delay argument is the
  whole source delay, 0 or 50 µs–10 ks.
* ``:SOURce:LIST:VOLTage[:APPend]`` + ``:SOURce:SWEep:VOLTage:LIST <start>,<delay>`` and
  ``:SOURce:SWEep:VOLTage:LINear <start>,<stop>,<points>,<delay>,<count>,<range>,
  <failAbort>,<dual>,"<buffer>"`` build the trigger model; ``:INITiate`` runs it and
  ``*OPC?`` answers when it is done.
* ``:FORMat:DATA REAL`` + ``:FORMat:BORDer SWAPped``: ``:TRACe:DATA?`` answers an IEEE
  488.2 *indefinite-length* block, ``#0`` + little-endian float64 + newline
  (``:FORMat[:DATA]``), read here by its length 2 + 8n + 1 — never by a terminator, since
  a reading can contain the byte 0x0A. ``:TRACe:ACTual?`` and ``:TRACe:STATistics:
  AVERage?`` give the buffer's count and mean in text, which verify the block.
* ``:SENSe:CURRent:AVERage:TCONtrol REPeat`` + ``:COUNt`` return one averaged reading.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from qcodes.validators import Ints

from drivers._link import Limit, fmt, parse_float
from drivers.scpi_errors import ScpiErrorCheck
from drivers.smu import F64, SmuBase
from labctl.wire.smu_timing import KEITHLEY_2450, SmuTiming

LIST_CHUNK = 100
"""Points per ``:SOUR:LIST:VOLT[:APP]`` message (keeps each message short)."""
BUFFER = '"defbuffer1"'


class Keithley2450(ScpiErrorCheck, SmuBase):
    """Keithley 2450 over SCPI. Limits are the instrument's (±210 V, 1.05 A) intersected
    with the chip envelope passed in (the default envelope when none is)."""

    timing: ClassVar[SmuTiming] = KEITHLEY_2450
    max_voltage_V = 210.0
    max_current_A = 1.05
    min_current_A = 1e-9

    def __init__(self, name: str, address: str, **kwargs: Any) -> None:
        self._read_nplc = 1.0
        super().__init__(name, address, **kwargs)

    def _declare_parameters(self) -> None:
        self.source_voltage_V = self.add_parameter(
            "source_voltage_V", unit="V", set_cmd=":SOUR:VOLT {}", get_cmd=":SOUR:VOLT?",
            get_parser=float, vals=self._v_limit)
        self.compliance_A = self.add_parameter(
            "compliance_A", unit="A", set_cmd=":SOUR:VOLT:ILIM {}", get_cmd=":SOUR:VOLT:ILIM?",
            get_parser=float, vals=self._i_limit)
        self.nplc = self.add_parameter(
            "nplc", set_cmd=self._set_nplc, get_cmd=":SENS:CURR:NPLC?", get_parser=float,
            vals=Limit("NPLC", self.timing.min_nplc, self.timing.max_nplc, "PLC"))
        self.filter_count = self.add_parameter(
            "filter_count", set_cmd=self._set_filter,
            get_cmd=":SENS:CURR:AVER:COUN?", get_parser=lambda s: int(float(s)),
            vals=Ints(1, 100))
        self.current_A = self.add_parameter(
            "current_A", unit="A", get_cmd=":FORM:DATA ASC;:MEAS:CURR?;:FORM:DATA REAL",
            get_parser=float, set_cmd=False,
            docstring="One measurement at the present source level (the output must be on "
                      "for it to mean anything; qcodes' gettable current).")

    def _set_nplc(self, nplc: float) -> None:
        self.write(f":SENS:CURR:NPLC {fmt(nplc)}")
        self._read_nplc = float(nplc)

    def _set_filter(self, n: int) -> None:
        self.write(f":SENS:CURR:AVER:COUN {int(n)};:SENS:CURR:AVER {'ON' if n > 1 else 'OFF'}")

    # ---- setup ----
    def configure(self) -> None:
        """Voltage source, current measure, no auto-delay, 16-digit ASCII, binary
        little-endian buffers, output off."""
        self.write("*CLS;:OUTP OFF;:SOUR:FUNC VOLT;:SENS:FUNC \"CURR\";"
                   ":SOUR:VOLT:DEL:AUTO OFF;:SENS:CURR:AVER:TCON REP;:FORM:ASC:PREC 16;"
                   f":FORM:DATA REAL;:FORM:BORD SWAP;:SENS:CURR:AZER ON;"
                   f":SENS:CURR:NPLC {fmt(self._read_nplc)}")

    def _limit_readbacks(self) -> list[float]:
        return [float(self.compliance_A())]

    def output_on(self) -> None:
        self.write(":OUTP ON")

    def output_off(self) -> None:
        self.write(":OUTP OFF")

    def _safe_off_once(self) -> None:
        self.write(":OUTP OFF;:SOUR:VOLT 0")

    # ---- sweeps ----
    def _load_sweep(self, v: F64, delay_s: float, range_V: float) -> None:
        n = v.size
        head = f":TRAC:CLE {BUFFER};:SOUR:VOLT:RANG {fmt(range_V)}"
        if n > 1 and np.all(v == v[0]):
            self.write(f"{head};:SOUR:SWE:VOLT:LIN {fmt(v[0])},{fmt(v[0])},{n},"
                       f"{fmt(delay_s)},1,FIXED,OFF,OFF,{BUFFER}")
            return
        for k in range(0, n, LIST_CHUNK):
            chunk = ",".join(fmt(x) for x in v[k:k + LIST_CHUNK])
            self.write(f":SOUR:LIST:VOLT{'' if k == 0 else ':APP'} {chunk}")
        self.write(f"{head};:SOUR:SWE:VOLT:LIST 1,{fmt(delay_s)}")

    def _count_and_mean(self, reply: str) -> tuple[int, float]:
        parts = reply.split(";")
        return (int(parse_float(parts[-2], "buffer count")),
                parse_float(parts[-1], "buffer mean"))

    def _run_sweep(self, n: int) -> tuple[int, float]:
        return self._count_and_mean(self.ask(
            f":INIT;*OPC?;:TRAC:ACT? {BUFFER};:TRAC:STAT:AVER? {BUFFER}"))

    def _fetch_block(self, n: int) -> bytes:
        h = self.visa_handle
        h.write(f":TRAC:DATA? 1,{n},{BUFFER},READ")
        return bytes(h.read_bytes(2 + 8 * n + 1))

    def _form_points(self, v: F64, delay_s: float, range_V: float) -> tuple[int, float]:
        """The 2450's sweep has no return-to-idle between points, so each cell is its own
        one-point sweep switched off by the instrument in the same message
        (``…;:OUTP ON;:INIT;*WAI;:OUTP OFF;:SOUR:VOLT 0;*OPC?``): the board steps to the
        next cell only while the output is off at 0 V. Readings accumulate in the buffer;
        NPLC and autozero are restored afterwards."""
        self.write(f":SENS:CURR:NPLC {fmt(self.timing.min_nplc)};:SENS:CURR:AZER OFF;"
                   f":TRAC:CLE {BUFFER};:SOUR:VOLT:RANG {fmt(range_V)}")
        self.nplc.cache.invalidate()
        for x in v:
            self.ask(f":SOUR:LIST:VOLT {fmt(x)};:SOUR:SWE:VOLT:LIST 1,{fmt(delay_s)};"
                     ":OUTP ON;:INIT;*WAI;:OUTP OFF;:SOUR:VOLT 0;*OPC?")
        reply = self.ask(f":SENS:CURR:NPLC {fmt(self._read_nplc)};:SENS:CURR:AZER ON;"
                         f":TRAC:ACT? {BUFFER};:TRAC:STAT:AVER? {BUFFER}")
        return self._count_and_mean(reply)
