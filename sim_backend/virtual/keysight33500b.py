"""A virtual Keysight 33522B waveform generator in pulse mode with bus-triggered bursts;
channel 1 drives the board's pulse input, channel 2 is not wired.

Behaviour and the guide section it follows (Keysight 33500B Series Operating and Service
Guide, SCPI reference):

* Channel prefixes ``SOURce1:`` / ``SOURce2:`` and ``OUTPut1`` / ``OUTPut2``; the
  prefix is optional and means channel 1 ("SOURce subsystem").
* ``OUTPut[1|2]:LOAD {<ohms>|INFinity|MINimum|MAXimum}`` (1 Ω–10 kΩ or INF; \\*RST 50 Ω):
  the levels you program are those across the stated load, so the open-circuit level a
  cell sees is ``V·(R + 50)/R`` (twice the setting at 50 Ω). Changing the load setting
  rescales the displayed levels so that the physical output stays the same, without an
  error ("OUTPut:LOAD"). The amplifier delivers at most ±10 V open-circuit, hence ±5 V
  programmed into 50 Ω: anything beyond is -222.
* ``VOLTage:HIGH`` must stay above ``VOLTage:LOW`` (-221 "Settings conflict").
* Pulse timing ("FUNCtion:PULSe:WIDTh", ":TRANsition"): width ≥ 16 ns and ≤ period − 16 ns,
  each edge 8.4 ns–1 µs and ≤ 0.625 × width; a setting that would break a constraint is
  refused with -221, the others left unchanged.
* ``FUNCtion`` takes the guide's shapes only (-224 otherwise); ``*TRG`` fires a burst
  only with the output on, burst enabled, trigger source BUS and the pulse function
  (-211 "Trigger ignored" otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sim_backend.virtual.hub import ClampTrip, Hub
from sim_backend.virtual.scpi_parser import (
    ScpiCore,
    ScpiError,
    as_choice,
    as_number,
    boolean,
    choice,
    number,
)
from sim_backend.virtual.transport import FaultInjector

SOURCE_OHM = 50.0
MAX_OPEN_CIRCUIT_V = 10.0
MIN_WIDTH_S = 16e-9
EDGE_S = (8.4e-9, 1e-6)
FUNCS = {k: k[:4] if k[:4] != "SINU" else "SIN" for k in (
    "SIN", "SINUSOID", "SQU", "SQUARE", "RAMP", "PULS", "PULSE", "NOIS", "NOISE", "DC",
    "ARB", "TRI", "TRIANGLE", "PRBS")}
FUNCS.update({"SIN": "SIN", "SINUSOID": "SIN", "TRI": "TRI", "TRIANGLE": "TRI"})


@dataclass
class Channel:
    output: bool = False
    load_ohm: float = 50.0  # inf for high-Z
    high_oc_V: float = 0.2  # open-circuit levels (what a cell sees)
    low_oc_V: float = 0.0
    func: str = "SIN"
    width_s: float = 100e-6
    period_s: float = 1e-3
    lead_s: float = 10e-9
    trail_s: float = 10e-9
    ncycles: int = 1
    burst: bool = False
    burst_mode: str = "TRIG"
    trigger: str = "IMM"

    def gain(self) -> float:
        """Open-circuit volts per programmed volt under the load setting."""
        return 1.0 if self.load_ohm == float("inf") else (self.load_ohm + SOURCE_OHM) / (
            self.load_ohm)


class Virtual33500B(ScpiCore):
    idn = "Agilent Technologies,33522B,MY00000001,4.00-1.19-2.00-58-00 (labctl virtual)"
    max_suffix = 2

    def __init__(self, hub: Hub, faults: FaultInjector, name: str = "pulsegen") -> None:
        self.hub = hub
        super().__init__(faults, name, hub.lock)
        c = self.command
        src = "[:SOURce[1]]"
        c(":OUTPut[1][:STATe]", lambda a, s: setattr(self._ch(s), "output",
                                                       boolean(self._one(a))))
        c(":OUTPut[1][:STATe]?", lambda a, s: "1" if self._ch(s).output else "0")
        c(":OUTPut[1]:LOAD", self._set_load)
        c(":OUTPut[1]:LOAD?", lambda a, s: "9.9E+37" if self._ch(s).load_ohm == float(
            "inf") else repr(self._ch(s).load_ohm))
        c(":OUTPut:SYNC[:STATe]", lambda a, s: setattr(self, "sync", boolean(self._one(a))))
        c(":OUTPut:SYNC[:STATe]?", lambda a, s: "1" if self.sync else "0")
        c(f"{src}:FUNCtion[:SHAPe]", lambda a, s: setattr(self._ch(s), "func",
                                                          choice(self._one(a), FUNCS)))
        c(f"{src}:FUNCtion[:SHAPe]?", lambda a, s: self._ch(s).func)
        c(f"{src}:VOLTage:HIGH", lambda a, s: self._levels(s, high=self._volts(a, s)))
        c(f"{src}:VOLTage:HIGH?", lambda a, s: repr(self._ch(s).high_oc_V / self._ch(s).gain()))
        c(f"{src}:VOLTage:LOW", lambda a, s: self._levels(s, low=self._volts(a, s)))
        c(f"{src}:VOLTage:LOW?", lambda a, s: repr(self._ch(s).low_oc_V / self._ch(s).gain()))
        c(f"{src}:VOLTage[:LEVel][:IMMediate][:AMPLitude]", self._set_amplitude)
        c(f"{src}:VOLTage[:LEVel][:IMMediate][:AMPLitude]?", lambda a, s: repr(
            (self._ch(s).high_oc_V - self._ch(s).low_oc_V) / self._ch(s).gain()))
        c(f"{src}:VOLTage[:LEVel][:IMMediate]:OFFSet", self._set_offset)
        c(f"{src}:VOLTage[:LEVel][:IMMediate]:OFFSet?", lambda a, s: repr(
            (self._ch(s).high_oc_V + self._ch(s).low_oc_V) / 2 / self._ch(s).gain()))
        c(f"{src}:FUNCtion:PULSe:WIDTh", lambda a, s: self._timing(s, width_s=number(
            self._one(a), lo=MIN_WIDTH_S, hi=1e6, default=100e-6, unit="S")))
        c(f"{src}:FUNCtion:PULSe:WIDTh?", lambda a, s: repr(self._ch(s).width_s))
        c(f"{src}:FUNCtion:PULSe:PERiod", lambda a, s: self._timing(s, period_s=number(
            self._one(a), lo=33e-9, hi=1e6, default=1e-3, unit="S")))
        c(f"{src}:FUNCtion:PULSe:PERiod?", lambda a, s: repr(self._ch(s).period_s))
        c(f"{src}:FREQuency[:CW]", lambda a, s: self._timing(s, period_s=1.0 / number(
            self._one(a), lo=1e-6, hi=30e6, default=1e3, unit="HZ")))
        c(f"{src}:FREQuency?", lambda a, s: repr(1.0 / self._ch(s).period_s))
        for edge, attrs in ((":TRANsition[:BOTH]", ("lead_s", "trail_s")),
                            (":TRANsition:LEADing", ("lead_s",)),
                            (":TRANsition:TRAiling", ("trail_s",))):
            c(f"{src}:FUNCtion:PULSe{edge}", self._edge_setter(attrs))
        c(f"{src}:FUNCtion:PULSe:TRANsition:LEADing?", lambda a, s: repr(self._ch(s).lead_s))
        c(f"{src}:FUNCtion:PULSe:TRANsition:TRAiling?", lambda a, s: repr(self._ch(s).trail_s))
        c(f"{src}:BURSt:MODE", lambda a, s: setattr(self._ch(s), "burst_mode", choice(
            self._one(a), {"TRIG": "TRIG", "TRIGGERED": "TRIG", "GAT": "GAT",
                           "GATED": "GAT"})))
        c(f"{src}:BURSt:NCYCles", lambda a, s: setattr(self._ch(s), "ncycles", int(number(
            self._one(a), lo=1, hi=1e8, default=1, integer=True))))
        c(f"{src}:BURSt:NCYCles?", lambda a, s: str(self._ch(s).ncycles))
        c(f"{src}:BURSt:STATe", lambda a, s: setattr(self._ch(s), "burst",
                                                     boolean(self._one(a))))
        c(f"{src}:BURSt:STATe?", lambda a, s: "1" if self._ch(s).burst else "0")
        c(":TRIGger[1]:SOURce", lambda a, s: setattr(self._ch(s), "trigger", choice(
            self._one(a), {"BUS": "BUS", "IMM": "IMM", "IMMEDIATE": "IMM", "EXT": "EXT",
                           "EXTERNAL": "EXT", "TIM": "TIM", "TIMER": "TIM"})))
        c(":TRIGger[1]:SOURce?", lambda a, s: self._ch(s).trigger)
        c("*TRG", lambda a, s: self._fire())
        c(f"{src}:BURSt:MODE?", lambda a, s: self._ch(s).burst_mode)
        st = self.stored
        st(":OUTPut:SYNC:SOURce", "CH1", as_choice({"CH1": "CH1", "CH2": "CH2"}))
        st(":OUTPut[1]:POLarity", "NORM", as_choice({"NORM": "NORM", "NORMAL": "NORM",
                                                      "INV": "INV", "INVERTED": "INV"}))
        st(f"{src}:FREQuency:MODE", "CW", as_choice({"CW": "CW", "FIX": "CW", "FIXED": "CW",
                                                     "LIST": "LIST", "SWE": "SWE",
                                                     "SWEEP": "SWE"}))
        st(f"{src}:PHASe[:ADJust]", "0.0", as_number(-360.0, 360.0, 0.0, "DEG"))
        st(f"{src}:VOLTage:UNIT", "VPP", as_choice({"VPP": "VPP", "VRMS": "VRMS", "DBM": "DBM"}))
        st(f"{src}:FUNCtion:RAMP:SYMMetry", "100.0", as_number(0.0, 100.0, 100.0, "PCT"))
        st(f"{src}:BURSt:PHASe", "0.0", as_number(-360.0, 360.0, 0.0, "DEG"))
        st(f"{src}:BURSt:GATE:POLarity", "NORM", as_choice({"NORM": "NORM", "NORMAL": "NORM",
                                                            "INV": "INV",
                                                            "INVERTED": "INV"}))
        st(f"{src}:BURSt:INTernal:PERiod", "0.01", as_number(1e-6, 8e3, 0.01, "S"))
        st(":TRIGger[1]:SLOPe", "POS", as_choice({"POS": "POS", "POSITIVE": "POS",
                                                  "NEG": "NEG", "NEGATIVE": "NEG"}))
        st(":TRIGger[1]:COUNt", "1", as_number(1, 1e6, 1, integer=True))
        st(":TRIGger[1]:DELay", "0.0", as_number(0.0, 1e3, 0.0, "S"))
        st(":TRIGger[1]:TIMer", "0.001", as_number(1e-6, 8e3, 1e-3, "S"))
        self.reset()

    def reset(self) -> None:
        """\\*RST: 1 kHz sine, 100 mVpp into 50 Ω, output off (guide, "Factory reset state")."""
        self.channels = [Channel(), Channel()]
        self.sync = True

    def _ch(self, s: list[int]) -> Channel:
        k = s[0] if s else 1
        if k not in (1, 2):
            raise ScpiError(-114, "Header suffix out of range")
        return self.channels[k - 1]

    def _volts(self, a: list[str], s: list[int]) -> float:
        """A programmed level → open-circuit volts, -222 beyond the amplifier's range."""
        g = self._ch(s).gain()
        lim = MAX_OPEN_CIRCUIT_V / g
        return number(self._one(a), lo=-lim, hi=lim, default=0.0, unit="V") * g

    def _levels(self, s: list[int], high: float | None = None, low: float | None = None) -> None:
        ch = self._ch(s)
        hi = ch.high_oc_V if high is None else high
        lo = ch.low_oc_V if low is None else low
        if not hi > lo:
            raise ScpiError(-221, "Settings conflict; high level must exceed low level")
        ch.high_oc_V, ch.low_oc_V = hi, lo

    def _set_amplitude(self, a: list[str], s: list[int]) -> None:
        ch = self._ch(s)
        amp = self._volts(a, s)
        mid = (ch.high_oc_V + ch.low_oc_V) / 2
        if amp <= 0 or abs(mid) + amp / 2 > MAX_OPEN_CIRCUIT_V:
            raise ScpiError(-222, "Data out of range")
        self._levels(s, high=mid + amp / 2, low=mid - amp / 2)

    def _set_offset(self, a: list[str], s: list[int]) -> None:
        ch = self._ch(s)
        off = self._volts(a, s)
        half = (ch.high_oc_V - ch.low_oc_V) / 2
        if abs(off) + half > MAX_OPEN_CIRCUIT_V:
            raise ScpiError(-222, "Data out of range")
        self._levels(s, high=off + half, low=off - half)

    def _set_load(self, a: list[str], s: list[int]) -> None:
        x = self._one(a)
        if x is not None and x.strip().upper() in ("INF", "INFINITY", "MAX", "MAXIMUM"):
            r = float("inf")
        else:
            r = number(x, lo=1.0, hi=10e3, default=50.0, unit="OHM")
        self._ch(s).load_ohm = r  # physical levels unchanged: the displayed ones rescale

    def _edge_setter(self, attrs: tuple[str, ...]) -> Callable[[list[str], list[int]], None]:
        def set_edges(a: list[str], s: list[int]) -> None:
            t = number(self._one(a), lo=EDGE_S[0], hi=EDGE_S[1], default=10e-9, unit="S")
            self._timing(s, **dict.fromkeys(attrs, t))

        return set_edges

    def _timing(self, s: list[int], **new: float) -> None:
        ch = self._ch(s)
        w = new.get("width_s", ch.width_s)
        p = new.get("period_s", ch.period_s)
        lead = new.get("lead_s", ch.lead_s)
        trail = new.get("trail_s", ch.trail_s)
        if w > p - MIN_WIDTH_S:
            raise ScpiError(-221, "Settings conflict; pulse width must be <= period - 16 ns")
        if max(lead, trail) > 0.625 * w:
            raise ScpiError(-221, "Settings conflict; edge time must be <= 0.625 x width")
        ch.width_s, ch.period_s, ch.lead_s, ch.trail_s = w, p, lead, trail

    def _fire(self) -> None:
        ch = self.channels[0]
        if not (ch.output and ch.burst and ch.trigger == "BUS" and ch.func == "PULS"):
            raise ScpiError(-211, "Trigger ignored")
        try:
            self.hub.apply_pulses(float(ch.high_oc_V - ch.low_oc_V), ch.width_s, ch.ncycles)
        except ClampTrip:
            raise ScpiError(-200, "Execution error; board clamp opened the route") from None
