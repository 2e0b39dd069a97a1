"""Keithley 2600B System SourceMeter driver (TSP command set, channel A), for reads and
forming.

The same job as :mod:`drivers.keithley2450` in the 2600B's Lua-based TSP language.

Instrument behaviour relied on (Keithley Series 2600B Reference Manual, 2600BS-901-01,
TSP command reference): ``smua.source.limiti`` is the DC current limit and
``smua.trigger.source.limiti`` the limit used while the trigger model sweeps, both readable
with ``print()``; ``smua.trigger.source.listv({...})`` / ``linearv(start, stop, points)``
load a sweep; ``smua.trigger.measure.i(buffer)`` with ``smua.trigger.measure.action`` and
``smua.trigger.source.action`` enabled and ``smua.trigger.count`` points runs it on
``smua.trigger.initiate()``; ``waitcomplete()`` blocks until done; with
``format.data = format.REAL64`` and ``format.byteorder = format.LITTLEENDIAN``,
``printbuffer()`` answers ``#0`` followed by the raw float64 readings and a newline
(also relied on by QCoDeS' own 2600 driver); ``print(errorqueue.next())`` prints the
oldest error as tab-separated code, message, severity and node (code 0 when empty);
``smua.trigger.endsweep.action = smua.SOURCE_IDLE`` returns the source to its idle level
(0 V here) when the sweep ends, so the last point's voltage does not stay on the cell
until the output goes off (the trigger-model set-up follows Tektronix's
KE26XXB_DC_Sweeps.tsp example, github.com/tektronix/keithley).
Statements are joined with ``;`` (a Lua statement separator) so a command and its error
check travel as one message.
"""

from __future__ import annotations

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
)
from labctl.core.errors import CommunicationError, InstrumentError, SafetyInterlock

ERRCHECK = "print(errorqueue.next())"


def parse_tsp_error(line: str) -> tuple[int, str]:
    parts = line.rstrip("\r\n").split("\t")
    try:
        code = int(float(parts[0]))
    except ValueError:
        raise CommunicationError(f"unparseable TSP error-queue reply {line!r}") from None
    return code, parts[1] if len(parts) > 1 else ""


class Keithley2600B(FormTiming, LinkedVisaInstrument):
    """Keithley 2601B/2602B/2604B channel A over TSP. ``max_voltage_V`` is the model's
    source range (40 V for 2601B/2602B/2604B; pass 200 for the 2634B–2636B)."""

    max_current_A = 1.5
    min_current_A = 1e-9
    form_nplc = 0.001
    """The 2600B's shortest integration (``smua.measure.nplc`` 0.001–25), used for FORM."""
    form_overhead_s = 50e-6
    """Stated per-point overhead of a FORM point beyond source delay and integration, with
    autozero off and measure delay 0 (A/D conversion, trigger-model step, end-pulse
    transition). An estimate, not verified on an instrument: check it with a scope."""

    def __init__(self, name: str, address: str, *, max_voltage_V: float = 40.0,
                 envelope_voltage_V: float | None = None,
                 envelope_compliance_A: float | None = None, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        self._v_limit = Limit("SMU voltage", -max_voltage_V, max_voltage_V, "V",
                              envelope_voltage_V)
        self._i_limit = Limit("SMU compliance", self.min_current_A, self.max_current_A, "A",
                              envelope_compliance_A)
        self.source_voltage_V = self.add_parameter(
            "source_voltage_V", unit="V",
            set_cmd=lambda v: self.command(f"smua.source.levelv = {fmt(v)}"),
            get_cmd=lambda: parse_float(self.query("smua.source.levelv"), "source level"),
            vals=self._v_limit)
        self.compliance_A = self.add_parameter(
            "compliance_A", unit="A", set_cmd=self._set_limit,
            get_cmd=self._get_limit, vals=self._i_limit)
        self.nplc = self.add_parameter(
            "nplc", set_cmd=lambda v: self.command(f"smua.measure.nplc = {v:.6g}"),
            get_cmd=lambda: parse_float(self.query("smua.measure.nplc"), "NPLC"),
            vals=Limit("NPLC", 0.001, 25.0, "PLC"))
        self.filter_count = self.add_parameter(
            "filter_count", set_cmd=self._set_filter,
            get_cmd=lambda: int(parse_float(self.query("smua.measure.filter.count"), "count")),
            vals=Ints(1, 100))
        self.idn_info = self.get_idn()

    # ---- transactions ----
    def command(self, stmt: str) -> None:
        line = self.transact(lambda h: str(h.query(f"{stmt}; {ERRCHECK}")), stmt)
        self._raise_if_error(line, stmt)

    def query(self, expr: str) -> str:
        def ex(h: Any) -> tuple[str, str]:
            h.write(f"print({expr}); {ERRCHECK}")
            return str(h.read()), str(h.read())

        value, err = self.transact(ex, expr)
        self._raise_if_error(err, expr)
        return value

    def _raise_if_error(self, line: str, what: str) -> None:
        code, message = parse_tsp_error(line)
        if code != 0:
            raise InstrumentError(f"{self.name}: error {code} \"{message}\" after {what!r}")

    def check_errors(self) -> None:
        line = self.transact(lambda h: str(h.query(ERRCHECK)), ERRCHECK)
        self._raise_if_error(line, "error-queue check")

    def get_idn(self) -> dict[str, str | None]:
        reply = self.transact(lambda h: str(h.query("*IDN?")), "*IDN?")
        parts = [p.strip() for p in reply.split(",")] + [None] * 4
        return dict(zip(("vendor", "model", "serial", "firmware"), parts[:4]))

    # ---- setup ----
    def configure(self) -> None:
        self.command("errorqueue.clear(); smua.source.output = smua.OUTPUT_OFF; "
                     "smua.source.func = smua.OUTPUT_DCVOLTS; "
                     "smua.measure.filter.type = smua.FILTER_REPEAT_AVG; "
                     "format.data = format.REAL64; format.byteorder = format.LITTLEENDIAN")

    def _set_limit(self, i: float) -> None:
        self.command(f"smua.source.limiti = {fmt(i)}; smua.trigger.source.limiti = {fmt(i)}")

    def _get_limit(self) -> float:
        """The DC limit; :meth:`arm` also confirms the sweep limit."""
        return parse_float(self.query("smua.source.limiti"), "current limit")

    def _set_filter(self, n: int) -> None:
        state = "smua.FILTER_ON" if n > 1 else "smua.FILTER_OFF"
        self.command(f"smua.measure.filter.count = {int(n)}; smua.measure.filter.enable = {state}")

    # ---- safety ----
    def arm(self, compliance_A: float) -> None:
        self.compliance_A(compliance_A)
        a = parse_float(self.query("smua.source.limiti"), "current limit")
        b = parse_float(self.query("smua.trigger.source.limiti"), "sweep current limit")
        for got in (a, b):
            if not np.isclose(got, compliance_A, rtol=1e-6, atol=0.0):
                self.output_off()
                raise SafetyInterlock(
                    f"{self.name}: current limit read back as {got:g} A after setting "
                    f"{compliance_A:g} A; output left off")

    def output_on(self) -> None:
        self.command("smua.source.output = smua.OUTPUT_ON")

    def output_off(self) -> None:
        self.command("smua.source.output = smua.OUTPUT_OFF")

    def _safe_off_once(self) -> None:
        self.command("smua.source.output = smua.OUTPUT_OFF; smua.source.levelv = 0")

    # ---- forming ----
    def _read_buffer(self, n: int, compliance_A: float) -> npt.NDArray[np.float64]:
        """The sweep's ``n`` readings as binary float64 (``format.data = REAL64``), framed
        ``#0`` … newline; a malformed frame marks the link for a resync."""

        def fetch(h: Any) -> bytes:
            h.write(f"printbuffer(1, {n}, smua.nvbuffer1.readings)")
            return bytes(h.read_bytes(2 + 8 * n + 1))

        raw = self.transact(fetch, "printbuffer")
        if raw[:2] != b"#0" or raw[-1:] != b"\n":
            self._dirty = True
            raise CommunicationError(f"{self.name}: malformed binary buffer "
                                     f"(starts {raw[:4]!r}, ends {raw[-2:]!r})")
        data = np.frombuffer(raw[2:-1], dtype="<f8").astype(np.float64)
        self.check_errors()
        check_readings(self.name, data, n, compliance_A)
        return data

    def form_sweep(self, voltages_V: npt.ArrayLike, *, width_s: float, compliance_A: float,
                   max_on_s: float) -> npt.NDArray[np.float64]:
        """A pulse-mode FORM sweep: each point is on for ``width_s`` in total (source delay
        + NPLC 0.001 integration with autozero off and measure delay 0 + overhead), then
        ``smua.trigger.endpulse.action = smua.SOURCE_IDLE`` (with
        ``smua.trigger.endpulse.stimulus = 0``: right after the measurement) returns the
        source to its idle level, 0 V, before the next point — so the source is at 0 V
        whenever the board steps to the next cell. NPLC, autozero and the end-pulse action
        are restored afterwards."""
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
        load = "smua.trigger.source.listv({" + ", ".join(f"{fmt(x)}" for x in v) + "})"
        try:
            self.command(f"{load}; smua.source.delay = {fmt(delay)}; "
                         f"smua.measure.nplc = {self.form_nplc:.6g}; "
                         "smua.measure.autozero = smua.AUTOZERO_OFF; smua.measure.delay = 0; "
                         "smua.nvbuffer1.clear(); smua.trigger.measure.i(smua.nvbuffer1); "
                         "smua.trigger.measure.action = smua.ENABLE; "
                         "smua.trigger.endpulse.stimulus = 0; "
                         "smua.trigger.endpulse.action = smua.SOURCE_IDLE; "
                         "smua.trigger.endsweep.action = smua.SOURCE_IDLE; "
                         f"smua.trigger.source.action = smua.ENABLE; smua.trigger.count = {n}")
            self.output_on()
            with self.timeout.set_to(self.sweep_timeout_s(n, width_s, 1)):
                self.command("smua.trigger.initiate(); waitcomplete(); "
                             "smua.source.output = smua.OUTPUT_OFF")

            data = self._read_buffer(n, compliance_A)
            self.command(f"smua.measure.nplc = {prev_nplc:.6g}; "
                         "smua.measure.autozero = smua.AUTOZERO_AUTO; "
                         "smua.trigger.endpulse.action = smua.SOURCE_HOLD")
        except BaseException:
            self.safe_off()
            raise
        return data

    # ---- sweeps ----
    def sweep(self, voltages_V: npt.ArrayLike, *, delay_s: float, compliance_A: float,
              n_average: int = 1) -> npt.NDArray[np.float64]:
        """Run a sweep in the trigger model and read the buffer back as binary float64."""
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
            load = f"smua.trigger.source.linearv({fmt(v[0])}, {fmt(v[0])}, {n})"
        else:
            load = "smua.trigger.source.listv({" + ", ".join(f"{fmt(x)}" for x in v) + "})"
        self.command(f"{load}; smua.source.delay = {fmt(delay_s)}; smua.nvbuffer1.clear(); "
                     "smua.trigger.measure.i(smua.nvbuffer1); "
                     "smua.trigger.measure.action = smua.ENABLE; "
                     "smua.trigger.endsweep.action = smua.SOURCE_IDLE; "
                     f"smua.trigger.source.action = smua.ENABLE; smua.trigger.count = {n}")
        self.output_on()
        try:
            with self.timeout.set_to(self.sweep_timeout_s(n, delay_s, n_average)):
                self.command("smua.trigger.initiate(); waitcomplete()")

            data = self._read_buffer(n, compliance_A)
        except BaseException:
            self.safe_off()
            raise
        self.output_off()
        return data
