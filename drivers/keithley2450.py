"""Keithley 2450 SourceMeter driver (SCPI command set), for reads and forming.

Only what a 1T1R test needs: source voltage, measure current, a current limit that is set
*and read back* before the output goes on, NPLC, repeat-average filtering, and list /
linear sweeps run by the instrument's trigger model with the readings fetched in one
binary block.

Instrument behaviour relied on (Keithley 2450 Reference Manual, 2450-901-01 Rev. D, SCPI
command reference): ``:SOUR:VOLT:ILIM`` sets the source's current limit and
``:SOUR:VOLT:ILIM?`` returns it; ``:SOUR:LIST:VOLT`` / ``:SOUR:LIST:VOLT:APP`` hold a
source configuration list and ``:SOUR:SWE:VOLT:LIST <start>,<delay>`` builds a trigger model
that steps through it; ``:SOUR:SWE:VOLT:LIN <start>,<stop>,<points>,<delay>,<count>,<range>,
<failAbort>,<dual>,"<buffer>"`` a linear sweep; ``:INIT`` runs it and ``*OPC?`` answers when
it is done; ``:FORM:DATA REAL`` with ``:FORM:BORD SWAP`` makes ``:TRAC:DATA?`` return an
IEEE 488.2 definite-length block of little-endian float64 (readings accumulate in
``defbuffer1`` across runs, so it is cleared with ``:TRAC:CLE`` before each sweep);
``:SENS:CURR:AVER:TCON REP`` and ``:SENS:CURR:AVER:COUN`` give a repeating average
returned as one reading; ``:SYST:ERR?`` pops the error queue as ``<code>,"<message>"``.
Every command is sent as a compound message ``<command>;:SYST:ERR?`` (IEEE 488.2 §7.4:
response units are separated by ``;``) so the error check costs no extra round trip.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt
from qcodes.validators import Ints

from drivers._link import (
    FormTiming,
    Limit,
    LinkedVisaInstrument,
    check_readings,
    fmt,
    parse_float,
    parse_scpi_error,
)
from labctl.core.errors import CommunicationError, InstrumentError, SafetyInterlock

_COMPOUND = re.compile(r'^(?:(.*);)?([+-]?\d+,".*")\s*$', re.DOTALL)
LIST_CHUNK = 100
"""Points per ``:SOUR:LIST:VOLT[:APP]`` message (keeps each message short)."""


class Keithley2450(FormTiming, LinkedVisaInstrument):
    """Keithley 2450 over SCPI. Voltage and current limits are the instrument's own range
    (±210 V, 1.05 A) intersected with the chip envelope passed in."""

    max_voltage_V = 210.0
    max_current_A = 1.05
    min_current_A = 1e-9
    form_nplc = 0.01
    """The 2450's shortest integration (``:SENS:CURR:NPLC`` 0.01–10), used for FORM."""
    form_overhead_s = 50e-6
    """Stated per-point overhead of a FORM sweep point beyond source delay and integration,
    with autozero off (A/D conversion and trigger-model step). An estimate, not a
    measurement (not verified on an instrument): check it with a scope on the cell and
    change this class attribute if the instrument is slower."""

    def __init__(self, name: str, address: str, *, envelope_voltage_V: float | None = None,
                 envelope_compliance_A: float | None = None, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        self._v_limit = Limit("SMU voltage", -self.max_voltage_V, self.max_voltage_V, "V",
                              envelope_voltage_V)
        self._i_limit = Limit("SMU compliance", self.min_current_A, self.max_current_A, "A",
                              envelope_compliance_A)
        self.source_voltage_V = self.add_parameter(
            "source_voltage_V", unit="V", set_cmd=self._set_voltage,
            get_cmd=lambda: parse_float(self.query(":SOUR:VOLT?"), "source level"),
            vals=self._v_limit)
        self.compliance_A = self.add_parameter(
            "compliance_A", unit="A", set_cmd=lambda v: self.command(f":SOUR:VOLT:ILIM {fmt(v)}"),
            get_cmd=lambda: parse_float(self.query(":SOUR:VOLT:ILIM?"), "current limit"),
            vals=self._i_limit)
        self.nplc = self.add_parameter(
            "nplc", set_cmd=lambda v: self.command(f":SENS:CURR:NPLC {v:.6g}"),
            get_cmd=lambda: parse_float(self.query(":SENS:CURR:NPLC?"), "NPLC"),
            vals=Limit("NPLC", 0.01, 10.0, "PLC"))
        self.filter_count = self.add_parameter(
            "filter_count", set_cmd=self._set_filter,
            get_cmd=lambda: int(parse_float(self.query(":SENS:CURR:AVER:COUN?"), "count")),
            vals=Ints(1, 100))
        self.idn_info = self.get_idn()

    # ---- transactions ----
    def command(self, cmd: str) -> None:
        """Send a command and check the error queue in the same round trip."""
        self._exchange(cmd, expect_value=False)

    def query(self, cmd: str) -> str:
        value = self._exchange(cmd, expect_value=True)
        assert value is not None
        return value

    def _exchange(self, cmd: str, *, expect_value: bool) -> str | None:
        reply = self.transact(lambda h: str(h.query(f"{cmd};:SYST:ERR?")), cmd)
        m = _COMPOUND.match(reply)
        if m is None or (expect_value and m.group(1) is None):
            self._dirty = True
            raise CommunicationError(f"{self.name}: garbled reply to {cmd!r}: {reply!r}")
        code, message = parse_scpi_error(m.group(2))
        if code != 0:
            raise InstrumentError(f"{self.name}: error {code} \"{message}\" after {cmd!r}")
        return m.group(1)

    def check_errors(self) -> None:
        reply = self.transact(lambda h: str(h.query(":SYST:ERR?")), ":SYST:ERR?")
        code, message = parse_scpi_error(reply)
        if code != 0:
            raise InstrumentError(f"{self.name}: error {code} \"{message}\"")

    def get_idn(self) -> dict[str, str | None]:
        reply = self.transact(lambda h: str(h.query("*IDN?")), "*IDN?")
        parts = [p.strip() for p in reply.split(",")] + [None] * 4
        return dict(zip(("vendor", "model", "serial", "firmware"), parts[:4]))

    # ---- setup ----
    def configure(self) -> None:
        """Voltage source, current measure, binary little-endian data, output off."""
        for cmd in ("*CLS", ":OUTP OFF", ":SOUR:FUNC VOLT", ':SENS:FUNC "CURR"',
                    ":SENS:CURR:AVER:TCON REP", ":FORM:DATA REAL", ":FORM:BORD SWAP"):
            self.command(cmd)

    def _set_voltage(self, v: float) -> None:
        self.command(f":SOUR:VOLT {fmt(v)}")

    def _set_filter(self, n: int) -> None:
        self.command(f":SENS:CURR:AVER:COUN {int(n)}")
        self.command(f":SENS:CURR:AVER {'ON' if n > 1 else 'OFF'}")

    # ---- safety ----
    def arm(self, compliance_A: float) -> None:
        """Set the current limit, read it back, and refuse (output off) on a mismatch."""
        self.compliance_A(compliance_A)
        got = self.compliance_A()
        if not np.isclose(got, compliance_A, rtol=1e-6, atol=0.0):
            self.output_off()
            raise SafetyInterlock(
                f"{self.name}: current limit read back as {got:g} A after setting "
                f"{compliance_A:g} A; output left off")

    def output_on(self) -> None:
        self.command(":OUTP ON")

    def output_off(self) -> None:
        self.command(":OUTP OFF")

    def _safe_off_once(self) -> None:
        self.command(":OUTP OFF;:SOUR:VOLT 0")

    # ---- forming ----
    def form_sweep(self, voltages_V: npt.ArrayLike, *, width_s: float, compliance_A: float,
                   max_on_s: float) -> npt.NDArray[np.float64]:
        """FORM: every point on the cell for ``width_s`` in total (minimal NPLC, autozero
        off, source delay = width − integration − overhead), and the source back at 0 V
        with the output off between cells.

        The 2450's list sweep has no return-to-idle between points, so each cell is its own
        one-point sweep, run and switched off by the instrument in one message
        (``:SOUR:LIST:VOLT v;:SOUR:SWE:VOLT:LIST 1,d;:OUTP ON;:INIT;*WAI;:OUTP OFF;
        :SOUR:VOLT 0;*OPC?``): the board steps to the next cell only while the output is off
        at 0 V, and the output never comes on at the previous cell's level. One exchange per
        cell (FORM runs once per chip), then one binary fetch of all readings (they
        accumulate in ``defbuffer1``). NPLC and autozero are restored afterwards.
        """
        delay = self.form_delay_s(width_s, max_on_s)
        v = np.asarray(voltages_V, dtype=np.float64).reshape(-1)
        n = v.size
        if n == 0:
            return np.zeros(0)
        for x in (v.min(), v.max()):
            self._v_limit.validate(float(x))
        if self.filter_count.cache.get(get_if_invalid=False) != 1:
            self.filter_count(1)
        prev_nplc = float(self.nplc.cache.get(get_if_invalid=False) or 1.0)
        self.source_voltage_V(0.0)
        self.arm(compliance_A)
        try:
            self.command(f':SENS:CURR:NPLC {self.form_nplc:.6g};:SENS:CURR:AZER OFF;'
                         ':TRAC:CLE "defbuffer1"')
            with self.timeout.set_to(self.sweep_timeout_s(1, width_s, 1)):
                for x in v:
                    self.query(f":SOUR:LIST:VOLT {fmt(x)};:SOUR:SWE:VOLT:LIST 1,{fmt(delay)};"
                               ":OUTP ON;:INIT;*WAI;:OUTP OFF;:SOUR:VOLT 0;*OPC?")
            data = self.transact(
                lambda h: np.asarray(h.query_binary_values(
                    f':TRAC:DATA? 1,{n},"defbuffer1",READ', datatype="d",
                    is_big_endian=False, container=np.ndarray), dtype=np.float64),
                ":TRAC:DATA?")
            self.check_errors()
            self.command(f":SENS:CURR:NPLC {prev_nplc:.6g};:SENS:CURR:AZER ON")
        except BaseException:
            self.safe_off()
            raise
        try:
            check_readings(self.name, data, n, compliance_A)
        except CommunicationError:
            self._dirty = True
            raise
        return data

    # ---- sweeps ----
    def sweep(self, voltages_V: npt.ArrayLike, *, delay_s: float, compliance_A: float,
              n_average: int = 1) -> npt.NDArray[np.float64]:
        """Run a source sweep on the instrument and return one current per point.

        Constant sweeps of two or more points use ``:SOUR:SWE:VOLT:LIN`` (one short
        message); varying or single-point ones the configuration list. The output goes
        on only after the compliance is confirmed and always goes off again before
        returning.
        """
        v = np.asarray(voltages_V, dtype=np.float64).reshape(-1)
        n = v.size
        if n == 0:
            return np.zeros(0)
        for x in (v.min(), v.max()):
            self._v_limit.validate(float(x))
        if self.filter_count.cache.get(get_if_invalid=False) != int(n_average):
            self.filter_count(int(n_average))  # sent only when it changes
        self.source_voltage_V(0.0)
        self.arm(compliance_A)
        if n > 1 and np.all(v == v[0]):
            self.command(f':TRAC:CLE "defbuffer1";:SOUR:SWE:VOLT:LIN {fmt(v[0])},{fmt(v[0])},'
                         f'{n},{fmt(delay_s)},1,FIXED,OFF,OFF,"defbuffer1"')
        else:
            for k in range(0, n, LIST_CHUNK):
                chunk = ",".join(f"{fmt(x)}" for x in v[k:k + LIST_CHUNK])
                self.command(f":SOUR:LIST:VOLT{'' if k == 0 else ':APP'} {chunk}")
            self.command(f':TRAC:CLE "defbuffer1";:SOUR:SWE:VOLT:LIST 1,{fmt(delay_s)}')
        self.output_on()
        try:
            with self.timeout.set_to(self.sweep_timeout_s(n, delay_s, n_average)):
                self.query(":INIT;*OPC?")  # *OPC? answers once the sweep has finished
            data = self.transact(
                lambda h: np.asarray(h.query_binary_values(
                    f':TRAC:DATA? 1,{n},"defbuffer1",READ', datatype="d",
                    is_big_endian=False, container=np.ndarray), dtype=np.float64),
                ":TRAC:DATA?")
            self.check_errors()
        except BaseException:
            self.safe_off()
            raise
        self.output_off()
        try:
            check_readings(self.name, data, n, compliance_A)
        except CommunicationError:
            self._dirty = True
            raise
        return data
