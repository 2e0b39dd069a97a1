"""A virtual Keithley 2450 SourceMeter (SCPI command set), sourcing volts and measuring
amps on whatever cell the board routes.

Behaviour and the manual section it follows (Keithley 2450 Reference Manual 2450-901-01):

* Source ranges 20 mV, 200 mV, 2 V, 20 V, 200 V, each sourcing up to 105 % of full scale
  ("Source range"); ``:SOURce:VOLTage:RANGe <v>`` selects the smallest range containing
  ``v`` and turns source autorange off; with autorange on, a level selects its range.
* Sweep range modes (``:SOURce:SWEep:VOLTage:LINear`` 6th argument, "Sweep operation"):
  ``AUTO`` ranges per point, ``BEST`` one fixed range for the largest point, ``FIXED`` the
  range in effect at sweep start — points above it are clipped to its 105 % limit. A list
  sweep uses autorange when it is on, else the fixed range (clipped the same way).
* Source delay: the sweep's delay argument is 0 or 50 µs–10 ks (-222 otherwise); with
  ``:SOURce:VOLTage:DELay:AUTO ON`` (the \\*RST state) the range's auto-delay (p. 2-111
  table) is added to every point. A point's on-time is
  :func:`labctl.wire.smu_timing.on_time_s` of the 2450's timing — the same model the
  driver plans with.
* Readings accumulate in ``defbuffer1`` until ``:TRACe:CLEar``; ``:TRACe:DATA? <start>,
  <end>[,"<buffer>"[,<elements>…]]`` returns the listed elements per point, interleaved
  (READing, SOURce, RELative, SEConds, FRACtional), as text or, with ``:FORMat:DATA REAL``,
  as an indefinite-length ``#0`` block of float64 in the ``:FORMat:BORDer`` byte order;
  ``:TRACe:ACTual?`` and ``:TRACe:STATistics:AVERage?`` give count and mean.
* ``:READ?`` / ``:MEASure[:CURRent]?`` make one measurement at the present level and
  store it; with the output off the terminals are open (0 A).
* ``*LANG?`` answers ``SCPI`` (the command set this instrument speaks).
"""

from __future__ import annotations

import numpy as np

from labctl.wire.smu_timing import KEITHLEY_2450, auto_delay_2450_s, on_time_s
from sim_backend.virtual.hub import LINE_FREQUENCY_HZ, ClampTrip, Hub
from sim_backend.virtual.scpi_parser import (
    ScpiCore,
    ScpiError,
    as_bool,
    as_choice,
    as_number,
    boolean,
    choice,
    number,
)
from sim_backend.virtual.transport import FaultInjector

SOURCE_RANGES_V = (0.02, 0.2, 2.0, 20.0, 200.0)
CURRENT_RANGES_A = (10e-9, 100e-9, 1e-6, 10e-6, 100e-6, 1e-3, 10e-3, 100e-3, 1.0)
OVERRANGE = 1.05
ELEMENTS = {"READ": "READ", "READING": "READ", "SOUR": "SOUR", "SOURCE": "SOUR",
            "REL": "REL", "RELATIVE": "REL", "SEC": "SEC", "SECONDS": "SEC",
            "FRAC": "FRAC", "FRACTIONAL": "FRAC"}
FUNCS = {"VOLT": "VOLT", "VOLTAGE": "VOLT", "VOLT:DC": "VOLT", "VOLTAGE:DC": "VOLT",
         "CURR": "CURR", "CURRENT": "CURR", "CURR:DC": "CURR", "CURRENT:DC": "CURR"}
SENSE_FUNCS = {**FUNCS, "RES": "RES", "RESISTANCE": "RES"}


def range_for(value: float, ranges: tuple[float, ...]) -> float:
    """The smallest range that holds ``|value|`` (with the 105 % over-range)."""
    for r in ranges:
        if abs(value) <= r * OVERRANGE:
            return r
    raise ScpiError(-222, "Data out of range")


class Virtual2450(ScpiCore):
    readings: np.ndarray
    sources: np.ndarray
    rel: np.ndarray
    idn = "KEITHLEY INSTRUMENTS,MODEL 2450,04400001,1.7.12b (labctl virtual)"

    def __init__(self, hub: Hub, faults: FaultInjector, name: str = "smu2450") -> None:
        self.hub = hub
        super().__init__(faults, name, hub.lock)
        c = self.command
        c("*LANG?", lambda a, s: "SCPI")
        c("*LANG", lambda a, s: choice(self._one(a), {"SCPI": "SCPI"}) and None)
        c(":OUTPut[1][:STATe]", lambda a, s: self._set_output(boolean(self._one(a))))
        c(":OUTPut[1][:STATe]?", lambda a, s: "1" if self.output else "0")
        c(":ROUTe:TERMinals", lambda a, s: setattr(
            self, "terminals", choice(self._one(a), {"FRON": "FRON", "FRONT": "FRON",
                                                     "REAR": "REAR"})))
        c(":ROUTe:TERMinals?", lambda a, s: self.terminals)
        c("[:SOURce[1]]:FUNCtion[:MODE]", lambda a, s: setattr(
            self, "source_func", choice(self._one(a), FUNCS)))
        c("[:SOURce[1]]:FUNCtion[:MODE]?", lambda a, s: self.source_func)
        c("[:SENSe[1]]:FUNCtion[:ON]", lambda a, s: setattr(
            self, "sense_func", choice(self._one(a), SENSE_FUNCS)))
        c("[:SENSe[1]]:FUNCtion[:ON]?", lambda a, s: f'"{self.sense_func}:DC"')
        c("[:SOURce[1]]:VOLTage[:LEVel][:IMMediate][:AMPLitude]", self._set_level)
        c("[:SOURce[1]]:VOLTage[:LEVel][:IMMediate][:AMPLitude]?", lambda a, s: self._g(
            self.level))
        c("[:SOURce[1]]:VOLTage:RANGe", self._set_range)
        c("[:SOURce[1]]:VOLTage:RANGe?", lambda a, s: self._g(self.source_range))
        c("[:SOURce[1]]:VOLTage:RANGe:AUTO", lambda a, s: setattr(
            self, "source_auto", boolean(self._one(a))))
        c("[:SOURce[1]]:VOLTage:RANGe:AUTO?", lambda a, s: "1" if self.source_auto else "0")
        c("[:SOURce[1]]:VOLTage:ILIMit[:LEVel]", lambda a, s: setattr(
            self, "ilim", number(self._one(a), lo=1e-9, hi=1.05, default=1.05e-4, unit="A")))
        c("[:SOURce[1]]:VOLTage:ILIMit[:LEVel]?", lambda a, s: self._g(self.ilim))
        c("[:SOURce[1]]:VOLTage:ILIMit[:LEVel]:TRIPped?", lambda a, s: "0")
        c("[:SOURce[1]]:VOLTage:DELay", lambda a, s: setattr(
            self, "source_delay", number(self._one(a), lo=0.0, hi=1e4, default=0.0, unit="S")))
        c("[:SOURce[1]]:VOLTage:DELay?", lambda a, s: self._g(self.source_delay))
        c("[:SOURce[1]]:VOLTage:DELay:AUTO", lambda a, s: setattr(
            self, "auto_delay", boolean(self._one(a))))
        c("[:SOURce[1]]:VOLTage:DELay:AUTO?", lambda a, s: "1" if self.auto_delay else "0")
        c("[:SOURce[1]]:VOLTage:READ:BACK", lambda a, s: setattr(
            self, "readback", boolean(self._one(a))))
        c("[:SOURce[1]]:VOLTage:READ:BACK?", lambda a, s: "1" if self.readback else "0")
        c("[:SOURce[1]]:LIST:VOLTage", lambda a, s: self._list(a, append=False))
        c("[:SOURce[1]]:LIST:VOLTage:APPend", lambda a, s: self._list(a, append=True))
        c("[:SOURce[1]]:LIST:VOLTage?", lambda a, s: ",".join(self._g(x) for x in self.list))
        c("[:SOURce[1]]:SWEep:VOLTage:LIST", self._sweep_list)
        c("[:SOURce[1]]:SWEep:VOLTage:LINear", self._sweep_lin)
        c("[:SENSe[1]]:CURRent[:DC]:NPLCycles", lambda a, s: setattr(
            self, "nplc", number(self._one(a), lo=0.01, hi=10.0, default=1.0)))
        c("[:SENSe[1]]:CURRent[:DC]:NPLCycles?", lambda a, s: self._g(self.nplc))
        c("[:SENSe[1]]:CURRent[:DC]:AZERo[:STATe]", lambda a, s: setattr(
            self, "azero", boolean(self._one(a))))
        c("[:SENSe[1]]:CURRent[:DC]:AZERo[:STATe]?", lambda a, s: "1" if self.azero else "0")
        c("[:SENSe[1]]:CURRent[:DC]:RANGe[:UPPer]", lambda a, s: setattr(
            self, "meas_range", range_for(number(self._one(a), lo=0.0, hi=1.05, default=1e-4,
                                                 unit="A"), CURRENT_RANGES_A)))
        c("[:SENSe[1]]:CURRent[:DC]:RANGe[:UPPer]?", lambda a, s: self._g(self.meas_range))
        c("[:SENSe[1]]:CURRent[:DC]:RANGe:AUTO", lambda a, s: setattr(
            self, "meas_auto", boolean(self._one(a))))
        c("[:SENSe[1]]:CURRent[:DC]:RANGe:AUTO?", lambda a, s: "1" if self.meas_auto else "0")
        c("[:SENSe[1]]:CURRent[:DC]:RSENse", lambda a, s: setattr(
            self, "rsense", boolean(self._one(a))))
        c("[:SENSe[1]]:CURRent[:DC]:RSENse?", lambda a, s: "1" if self.rsense else "0")
        c("[:SENSe[1]]:CURRent[:DC]:AVERage[:STATe]", lambda a, s: setattr(
            self, "aver_on", boolean(self._one(a))))
        c("[:SENSe[1]]:CURRent[:DC]:AVERage[:STATe]?", lambda a, s: "1" if self.aver_on else "0")
        c("[:SENSe[1]]:CURRent[:DC]:AVERage:COUNt", lambda a, s: setattr(
            self, "aver_count", int(number(self._one(a), lo=1, hi=100, default=10,
                                           integer=True))))
        c("[:SENSe[1]]:CURRent[:DC]:AVERage:COUNt?", lambda a, s: str(self.aver_count))
        c("[:SENSe[1]]:CURRent[:DC]:AVERage:TCONtrol", lambda a, s: choice(
            self._one(a), {"REP": "REP", "REPEAT": "REP", "MOV": "MOV", "MOVING": "MOV"})
          and None)
        c(":FORMat[:DATA]", self._set_format)
        c(":FORMat[:DATA]?", lambda a, s: "REAL" if self.real else "ASC")
        c(":FORMat:BORDer", lambda a, s: setattr(self, "swap", choice(
            self._one(a), {"SWAP": "1", "SWAPPED": "1", "NORM": "", "NORMAL": ""}) == "1"))
        c(":FORMat:BORDer?", lambda a, s: "SWAP" if self.swap else "NORM")
        c(":FORMat:ASCii:PRECision", lambda a, s: setattr(
            self, "precision", int(number(self._one(a), lo=0, hi=16, default=0,
                                          integer=True))))
        c(":FORMat:ASCii:PRECision?", lambda a, s: str(self.precision))
        c(":INITiate[:IMMediate]", lambda a, s: self._init())
        c(":ABORt", lambda a, s: None)
        c(":TRACe:CLEar", lambda a, s: self._clear(a))
        c(":TRACe:ACTual?", self._actual)
        c(":TRACe:STATistics:AVERage?", self._average)
        c(":TRACe:DATA?", self._trace)
        c(":READ?", lambda a, s: self._read(a))
        c(":MEASure[:CURRent][:DC]?", lambda a, s: self._read(a))
        c(":FETCh?", lambda a, s: self._points(self.readings.size, self.readings.size,
                                               ["READ"]))
        c(":SYSTem:LFRequency?", lambda a, s: self._g(LINE_FREQUENCY_HZ))
        c(":TRACe:POINts?", self._points_capacity)
        self._stored_settings()
        self.reset()

    def _stored_settings(self) -> None:
        """Settings of the functions this instrument is not simulated in (current source,
        voltage and resistance measure) and counts it does not act on: kept and read back,
        range-checked as the manual's command reference gives them."""
        st = self.stored
        st("[:SOURce[1]]:CURRent:RANGe", "1e-06", as_number(-1.05, 1.05, 1e-6, "A"))
        st("[:SOURce[1]]:CURRent:RANGe:AUTO", "1", as_bool)
        st("[:SOURce[1]]:CURRent:VLIMit[:LEVel]", "2.1", as_number(0.02, 210.0, 2.1, "V"))
        st("[:SOURce[1]]:CURRent:DELay", "0.0", as_number(0.0, 1e4, 0.0, "S"))
        st("[:SOURce[1]]:CURRent:DELay:AUTO", "1", as_bool)
        st("[:SOURce[1]]:CURRent:READ:BACK", "1", as_bool)
        self.command("[:SOURce[1]]:CURRent:VLIMit[:LEVel]:TRIPped?", lambda a, s: "0")
        st("[:SENSe[1]]:COUNt", "1", as_number(1, 300000, 1, integer=True))
        for f in ("VOLTage[:DC]", "RESistance"):
            st(f"[:SENSe[1]]:{f}:RSENse", "0", as_bool)
            st(f"[:SENSe[1]]:{f}:RANGe[:UPPer]", "0.02" if f[0] == "V" else "2e2",
               as_number(0.0, 2e8, 0.02))
            st(f"[:SENSe[1]]:{f}:RANGe:AUTO", "1", as_bool)
            st(f"[:SENSe[1]]:{f}:NPLCycles", "1.0", as_number(0.01, 10.0, 1.0))
            st(f"[:SENSe[1]]:{f}:AZERo[:STATe]", "1", as_bool)
            st(f"[:SENSe[1]]:{f}:UNIT", "VOLT" if f[0] == "V" else "OHM",
               as_choice({"VOLT": "VOLT", "OHM": "OHM", "WATT": "WATT"}))

    def reset(self) -> None:
        """\\*RST: output off, 0 V with autorange, 105 µA limit, auto-delay on, NPLC 1,
        autozero on, ASCII data (2450 manual, "Instrument reset default values")."""
        self.output = False
        self.source_func = "VOLT"
        self.sense_func = "CURR"
        self.terminals = "FRON"
        self.level = 0.0
        self.source_range = 0.02
        self.source_auto = True
        self.ilim = 1.05e-4
        self.source_delay = 0.0
        self.auto_delay = True
        self.readback = True
        self.nplc = 1.0
        self.azero = True
        self.meas_range = 1e-4
        self.meas_auto = True
        self.rsense = False
        self.aver_on = False
        self.aver_count = 10
        self.real = False
        self.swap = False
        self.precision = 0
        self.list: list[float] = []
        self.sweep: tuple[np.ndarray, float] | None = None
        self._clear_buffer()

    # ---- formatting ----
    def _g(self, x: float) -> str:
        if self.precision == 0:
            return repr(float(x))
        return f"{float(x):.{self.precision - 1}E}"

    # ---- settings ----
    def _set_output(self, on: bool) -> None:
        if on and self.source_func != "VOLT":
            raise ScpiError(-221, "Settings conflict; this virtual 2450 sources volts only")
        self.output = on

    def _set_level(self, a: list[str], s: list[int]) -> None:
        v = number(self._one(a), lo=-210.0, hi=210.0, default=0.0, unit="V")
        if self.source_auto:
            self.source_range = range_for(v, SOURCE_RANGES_V)
        elif abs(v) > self.source_range * OVERRANGE:
            raise ScpiError(-222, "Data out of range; level above the fixed source range")
        self.level = v

    def _set_range(self, a: list[str], s: list[int]) -> None:
        v = number(self._one(a), lo=-210.0, hi=210.0, default=0.02, unit="V")
        r = range_for(v, SOURCE_RANGES_V)
        if abs(self.level) > r * OVERRANGE:
            raise ScpiError(-221, "Settings conflict; source level above that range")
        self.source_range = r
        self.source_auto = False

    def _set_format(self, a: list[str], s: list[int]) -> None:
        if len(a) > 2:
            raise ScpiError(-108, "Parameter not allowed")
        self.real = choice(a[0] if a else None, {"REAL": "R", "ASC": "A", "ASCII": "A"}) == "R"

    def _list(self, a: list[str], *, append: bool) -> None:
        if not a:
            raise ScpiError(-109, "Missing parameter")
        vals = [number(x, lo=-210.0, hi=210.0, unit="V") for x in a]
        if len(self.list if append else []) + len(vals) > 2500:
            raise ScpiError(-223, "Too much data; a configuration list holds 2500 points")
        self.list = (self.list if append else []) + vals

    @staticmethod
    def _sweep_delay(arg: str | None) -> float:
        d = number(arg, lo=0.0, hi=1e4, default=0.0, unit="S") if arg is not None else 0.0
        if 0.0 < d < 50e-6:
            raise ScpiError(-222, "Data out of range; sweep delay is 0 or 50 us to 10 ks")
        return d

    def _buffer_arg(self, a: list[str], i: int) -> None:
        if len(a) > i and a[i].strip("\"'").lower() != "defbuffer1":
            raise ScpiError(-224, f"Illegal parameter value; no buffer {a[i]}")

    def _sweep_list(self, a: list[str], s: list[int]) -> None:
        if len(a) > 5:
            raise ScpiError(-108, "Parameter not allowed")
        start = int(number(a[0], lo=1, hi=2500, integer=True)) if a else 1
        delay = self._sweep_delay(a[1] if len(a) > 1 else None)
        count = int(number(a[2], lo=1, hi=1e6, integer=True)) if len(a) > 2 else 1
        self._buffer_arg(a, 4)
        if not self.list or start > len(self.list):
            raise ScpiError(-221, "Settings conflict; configuration list is empty")
        volts = np.array(self.list[start - 1:] * count)
        mode = "AUTO" if self.source_auto else "FIXED"
        self.sweep = (self._ranged(volts, mode), delay)

    def _sweep_lin(self, a: list[str], s: list[int]) -> None:
        if len(a) < 3:
            raise ScpiError(-109, "Missing parameter")
        if len(a) > 9:
            raise ScpiError(-108, "Parameter not allowed")
        start = number(a[0], lo=-210.0, hi=210.0, unit="V")
        stop = number(a[1], lo=-210.0, hi=210.0, unit="V")
        n = int(number(a[2], lo=2, hi=1e6, integer=True))
        delay = self._sweep_delay(a[3] if len(a) > 3 else None)
        count = int(number(a[4], lo=1, hi=1e6, integer=True)) if len(a) > 4 else 1
        mode = choice(a[5], {"AUTO": "AUTO", "BEST": "BEST", "FIX": "FIXED",
                             "FIXED": "FIXED"}) if len(a) > 5 else "BEST"
        if len(a) > 6:
            boolean(a[6])
        if len(a) > 7:
            boolean(a[7])
        self._buffer_arg(a, 8)
        self.sweep = (self._ranged(np.tile(np.linspace(start, stop, n), count), mode), delay)

    def _ranged(self, volts: np.ndarray, mode: str) -> np.ndarray:
        """What the source really puts out for each point under the sweep's range mode."""
        if mode == "AUTO":
            return volts
        r = (range_for(float(np.max(np.abs(volts))), SOURCE_RANGES_V) if mode == "BEST"
             else self.source_range)
        lim = r * OVERRANGE
        return np.clip(volts, -lim, lim)

    # ---- running ----
    def _on_time_s(self, n_avg: int, delay_s: float) -> float:
        auto = auto_delay_2450_s(self.ilim if self.meas_auto else self.meas_range)
        return on_time_s(KEITHLEY_2450, delay_s, self.nplc * n_avg, LINE_FREQUENCY_HZ,
                         autozero=self.azero, auto_delay_s=auto if self.auto_delay else 0.0)

    def _source(self, volts: np.ndarray, delay_s: float) -> None:
        n_avg = self.aver_count if self.aver_on else 1
        on = self._on_time_s(n_avg, delay_s)
        if not self.output:
            got = np.zeros(volts.size)  # output off: the terminals are open
        else:
            try:
                got = self.hub.apply_source(volts.astype(np.float64), on, self.ilim, n_avg)
            except ClampTrip:
                raise ScpiError(-200, "Execution error; board clamp opened the route") from None
        t0 = float(self.rel[-1]) if self.rel.size else 0.0
        self.readings = np.concatenate([self.readings, got])
        self.sources = np.concatenate([self.sources, volts])
        self.rel = np.concatenate([self.rel, t0 + on * np.arange(1, volts.size + 1)])

    def _init(self) -> None:
        if self.sweep is None:
            raise ScpiError(-221, "Settings conflict; no sweep configured")
        volts, delay = self.sweep
        self._source(volts, delay)

    def _read(self, a: list[str]) -> str | bytes:
        self._buffer_arg(a, 0)
        elements = [choice(x, ELEMENTS) for x in a[1:]] or ["READ"]
        self._source(np.array([self.level]), self.source_delay)
        k = self.readings.size
        return self._points(k, k, elements)

    def _points_capacity(self, a: list[str], s: list[int]) -> str:
        self._buffer_arg(a, 0)
        return "100000"

    def _actual(self, a: list[str], s: list[int]) -> str:
        self._buffer_arg(a, 0)
        return str(self.readings.size)

    def _average(self, a: list[str], s: list[int]) -> str:
        self._buffer_arg(a, 0)
        return self._g(float(np.mean(self.readings)) if self.readings.size else 0.0)

    def _clear(self, a: list[str]) -> None:
        self._buffer_arg(a, 0)
        self._clear_buffer()

    def _clear_buffer(self) -> None:
        self.readings = np.zeros(0)
        self.sources = np.zeros(0)
        self.rel = np.zeros(0)

    def _trace(self, a: list[str], s: list[int]) -> str | bytes:
        if len(a) < 2:
            raise ScpiError(-109, "Missing parameter")
        i0 = int(number(a[0], lo=1, hi=1e7, integer=True))
        i1 = int(number(a[1], lo=1, hi=1e7, integer=True))
        self._buffer_arg(a, 2)
        if not i0 <= i1 <= self.readings.size:
            raise ScpiError(-222, "Data out of range; buffer index")
        return self._points(i0, i1, [choice(x, ELEMENTS) for x in a[3:]] or ["READ"])

    def _points(self, i0: int, i1: int, elements: list[str]) -> str | bytes:
        sl = slice(i0 - 1, i1)
        cols = {"READ": self.readings[sl], "SOUR": self.sources[sl], "REL": self.rel[sl],
                "SEC": np.floor(self.rel[sl]), "FRAC": self.rel[sl] - np.floor(self.rel[sl])}
        table = np.stack([cols[e] for e in elements], axis=1).reshape(-1)
        if self.real:
            return b"#0" + table.astype("<f8" if self.swap else ">f8").tobytes()
        return ",".join(self._g(x) for x in table)
