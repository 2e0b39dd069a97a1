"""Keithley 2600B System SourceMeter driver (TSP command set, channel A), for reads and
forming.

Instrument behaviour relied on (Keithley Series 2600B Reference Manual, 2600BS-901-01,
TSP command reference; each fact is checked at bring-up, docs/bringup.md):

* Every line the instrument receives is one Lua chunk. A runtime error aborts the rest of
  that chunk and puts an entry in the error queue ("Introduction to TSP operation"), so
  the error check ``print(errorqueue.next())`` travels as a *second chunk* (line) in the
  same write: it runs even when the first chunk failed, and prints tab-separated code,
  message, severity, node (code 0 when empty). :meth:`write_raw` / :meth:`ask_raw` are
  qcodes' hooks, so parameters are plain TSP strings.
* ``print()`` formats numbers with ``format.asciiprecision`` (default 6 digits); set to 16
  here so a current limit reads back as the number sent.
* ``smua.source.limiti`` is the DC limit and ``smua.trigger.source.limiti`` the one used
  while the trigger model sweeps; ``smua.source.rangev`` fixes the source range;
  ``smua.trigger.source.listv({...})`` / ``linearv(start, stop, points)`` load a sweep,
  ``smua.trigger.measure.i(buffer)`` with the measure and source actions enabled and
  ``smua.trigger.count`` points runs it on ``smua.trigger.initiate()``;
  ``waitcomplete()`` blocks until done; ``smua.trigger.endpulse.action =
  smua.SOURCE_IDLE`` returns the source to its idle level (0 V) after each point, and
  ``endsweep.action`` after the sweep (Tektronix KE26XXB_DC_Sweeps.tsp example,
  github.com/tektronix/keithley).
* With ``format.data = format.REAL64`` and ``format.byteorder = format.LITTLEENDIAN``,
  ``printbuffer()`` answers ``#0`` + float64 readings + newline (also relied on by QCoDeS'
  2600 driver); ``smua.nvbuffer1.n`` is the count, and the mean is computed on the
  instrument in Lua to verify the block.
"""

from __future__ import annotations

from typing import Any, ClassVar

from qcodes.validators import Ints

from drivers._link import Limit, fmt, parse_float, parse_idn
from drivers.smu import F64, SmuBase
from labctl.core.errors import CommunicationError, InstrumentError
from labctl.wire.smu_timing import KEITHLEY_2600B, SmuTiming

ERRCHECK = "print(errorqueue.next())"
BUF = "smua.nvbuffer1"
COUNT_AND_MEAN = (f"local n = {BUF}.n local s = 0 for i = 1, n do s = s + {BUF}.readings[i] "
                  "end if n > 0 then s = s / n end print(n, s)")
"""One chunk printing the buffer's count and the mean of its readings."""


def parse_tsp_error(line: str) -> tuple[int, str]:
    parts = line.rstrip("\r\n").split("\t")
    try:
        code = int(float(parts[0]))
    except ValueError:
        raise CommunicationError(f"unparseable TSP error-queue reply {line!r}") from None
    return code, parts[1] if len(parts) > 1 else ""


def is_error_line(line: str) -> bool:
    """An ``errorqueue.next()`` line has four tab-separated fields; a value has none."""
    return line.count("\t") == 3


class Keithley2600B(SmuBase):
    """Keithley 2601B/2602B/2604B channel A over TSP. ``max_voltage_V`` is the model's
    source range (40 V for 2601B/2602B/2604B; pass 200 for the 2634B–2636B)."""

    timing: ClassVar[SmuTiming] = KEITHLEY_2600B
    max_current_A = 1.5
    min_current_A = 1e-9

    def __init__(self, name: str, address: str, *, max_voltage_V: float = 40.0,
                 **kwargs: Any) -> None:
        self.max_voltage_V = max_voltage_V
        self._read_nplc = 1.0
        super().__init__(name, address, **kwargs)

    def _declare_parameters(self) -> None:
        self.source_voltage_V = self.add_parameter(
            "source_voltage_V", unit="V", set_cmd="smua.source.levelv = {}",
            get_cmd="smua.source.levelv", get_parser=float, vals=self._v_limit)
        self.compliance_A = self.add_parameter(
            "compliance_A", unit="A",
            set_cmd="smua.source.limiti = {0} smua.trigger.source.limiti = {0}",
            get_cmd="smua.source.limiti", get_parser=float, vals=self._i_limit)
        self.nplc = self.add_parameter(
            "nplc", set_cmd=self._set_nplc, get_cmd="smua.measure.nplc", get_parser=float,
            vals=Limit("NPLC", self.timing.min_nplc, self.timing.max_nplc, "PLC"))
        self.filter_count = self.add_parameter(
            "filter_count", set_cmd=self._set_filter, get_cmd="smua.measure.filter.count",
            get_parser=lambda s: int(float(s)), vals=Ints(1, 100))
        self.current_A = self.add_parameter(
            "current_A", unit="A", get_cmd="smua.measure.i()", get_parser=float,
            set_cmd=False, docstring="One measurement at the present source level "
                                     "(qcodes' gettable current).")

    # ---- qcodes' hooks ----
    def write_raw(self, cmd: str) -> None:
        line = self.transact(lambda h: str(h.query(f"{cmd}\n{ERRCHECK}")), cmd)
        self._raise_if_error(line, cmd)

    def ask_raw(self, cmd: str) -> str:
        """``print(<cmd>)`` then the error check; a failed first chunk prints nothing, so
        the first line is then the error itself."""

        def ex(h: Any) -> tuple[str, str]:
            h.write(f"print({cmd})\n{ERRCHECK}")
            first = str(h.read())
            return (first, first) if is_error_line(first) else (first, str(h.read()))

        value, err = self.transact(ex, cmd)
        self._raise_if_error(err, cmd)
        if value is err:
            self._dirty = True
            raise CommunicationError(f"{self.name}: no value in reply to {cmd!r}")
        return value

    def _raise_if_error(self, line: str, what: str) -> None:
        code, message = parse_tsp_error(line)
        if code != 0:
            raise InstrumentError(f"{self.name}: error {code} \"{message}\" after {what!r}")

    def check_errors(self) -> None:
        line = self.transact(lambda h: str(h.query(ERRCHECK)), ERRCHECK)
        self._raise_if_error(line, "error-queue check")

    def get_idn(self) -> dict[str, str | None]:
        return parse_idn(self.transact(lambda h: str(h.query("*IDN?")), "*IDN?"))

    # ---- setup ----
    def _set_nplc(self, nplc: float) -> None:
        self.write(f"smua.measure.nplc = {fmt(nplc)}")
        self._read_nplc = float(nplc)

    def _set_filter(self, n: int) -> None:
        state = "smua.FILTER_ON" if n > 1 else "smua.FILTER_OFF"
        self.write(f"smua.measure.filter.count = {int(n)} smua.measure.filter.enable = {state}")

    def configure(self) -> None:
        self.write("errorqueue.clear() smua.source.output = smua.OUTPUT_OFF "
                   "smua.source.func = smua.OUTPUT_DCVOLTS smua.source.levelv = 0 "
                   "smua.measure.filter.type = smua.FILTER_REPEAT_AVG "
                   "smua.measure.delay = 0 smua.measure.autozero = smua.AUTOZERO_AUTO "
                   f"smua.measure.nplc = {fmt(self._read_nplc)} "
                   "format.asciiprecision = 16 format.data = format.REAL64 "
                   "format.byteorder = format.LITTLEENDIAN")

    def _limit_readbacks(self) -> list[float]:
        return [parse_float(self.ask("smua.source.limiti"), "current limit"),
                parse_float(self.ask("smua.trigger.source.limiti"), "sweep current limit")]

    def output_on(self) -> None:
        self.write("smua.source.output = smua.OUTPUT_ON")

    def output_off(self) -> None:
        self.write("smua.source.output = smua.OUTPUT_OFF")

    def _safe_off_once(self) -> None:
        self.write("smua.source.output = smua.OUTPUT_OFF smua.source.levelv = 0")

    # ---- sweeps ----
    @staticmethod
    def _list(v: F64) -> str:
        return "{" + ", ".join(fmt(x) for x in v) + "}"

    def _load_sweep(self, v: F64, delay_s: float, range_V: float) -> None:
        n = v.size
        load = (f"smua.trigger.source.linearv({fmt(v[0])}, {fmt(v[0])}, {n})"
                if n > 1 and (v == v[0]).all() else f"smua.trigger.source.listv({self._list(v)})")
        self.write(f"smua.source.rangev = {fmt(range_V)} {load} "
                   f"smua.source.delay = {fmt(delay_s)} {BUF}.clear() "
                   f"smua.trigger.measure.i({BUF}) smua.trigger.measure.action = smua.ENABLE "
                   "smua.trigger.endpulse.action = smua.SOURCE_HOLD "
                   "smua.trigger.endsweep.action = smua.SOURCE_IDLE "
                   f"smua.trigger.source.action = smua.ENABLE smua.trigger.count = {n}")

    def _counted(self, chunk: str, what: str) -> tuple[int, float]:
        def ex(h: Any) -> tuple[str, str]:
            h.write(f"{chunk}\n{COUNT_AND_MEAN}\n{ERRCHECK}")
            first = str(h.read())
            return (first, first) if is_error_line(first) else (first, str(h.read()))

        value, err = self.transact(ex, what)
        self._raise_if_error(err, what)
        if value is err:
            self._dirty = True
            raise CommunicationError(f"{self.name}: no buffer count in reply to {what!r}")
        parts = value.split("\t")
        if len(parts) != 2:
            self._dirty = True
            raise CommunicationError(f"{self.name}: garbled buffer count {value!r}")
        return int(parse_float(parts[0], "buffer count")), parse_float(parts[1], "buffer mean")

    def _run_sweep(self, n: int) -> tuple[int, float]:
        return self._counted("smua.trigger.initiate() waitcomplete()", "sweep")

    def _fetch_block(self, n: int) -> bytes:
        h = self.visa_handle
        h.write(f"printbuffer(1, {n}, {BUF}.readings)")
        return bytes(h.read_bytes(2 + 8 * n + 1))

    def _form_points(self, v: F64, delay_s: float, range_V: float) -> tuple[int, float]:
        """Pulse mode: each point source delay + NPLC 0.001 (autozero off, measure delay 0)
        + overhead, then ``endpulse.action = SOURCE_IDLE`` (stimulus 0: right after the
        measurement) returns the source to 0 V before the next point — so the source is at
        0 V whenever the board steps. NPLC, autozero and end-pulse action are restored."""
        n = v.size
        self.write(f"smua.source.rangev = {fmt(range_V)} "
                   f"smua.trigger.source.listv({self._list(v)}) "
                   f"smua.source.delay = {fmt(delay_s)} "
                   f"smua.measure.nplc = {fmt(self.timing.min_nplc)} "
                   "smua.measure.autozero = smua.AUTOZERO_OFF smua.measure.delay = 0 "
                   f"{BUF}.clear() smua.trigger.measure.i({BUF}) "
                   "smua.trigger.measure.action = smua.ENABLE "
                   "smua.trigger.endpulse.stimulus = 0 "
                   "smua.trigger.endpulse.action = smua.SOURCE_IDLE "
                   "smua.trigger.endsweep.action = smua.SOURCE_IDLE "
                   f"smua.trigger.source.action = smua.ENABLE smua.trigger.count = {n}")
        self.nplc.cache.invalidate()
        self.output_on()
        counted = self._counted("smua.trigger.initiate() waitcomplete() "
                                "smua.source.output = smua.OUTPUT_OFF", "FORM sweep")
        self.write(f"smua.measure.nplc = {fmt(self._read_nplc)} "
                   "smua.measure.autozero = smua.AUTOZERO_AUTO "
                   "smua.trigger.endpulse.action = smua.SOURCE_HOLD")
        return counted
