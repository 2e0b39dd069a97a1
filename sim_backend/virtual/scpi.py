"""Virtual SCPI instruments: a Keithley 2450 SMU and a Keysight 33500B pulse generator.

They implement the subset of each instrument's SCPI command set that ``drivers`` uses (see
the driver modules for the manual sections), with the parts of real behaviour that a driver
must cope with: compound messages (``;``-separated, replies joined by ``;``), long and short
mnemonic forms, an error queue (``-113 Undefined header``, ``-222 Data out of range``,
``-224 Illegal parameter value``), definite-length binary blocks, and sources that only
act on the chip while their output is on.
"""

from __future__ import annotations

import re
import socket
import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from sim_backend.virtual.hub import LINE_FREQUENCY_HZ, ClampTrip, Hub, smu_on_time_s
from sim_backend.virtual.transport import FaultInjector, serve_lines

_LONG = {
    "SOURCE": "SOUR", "VOLTAGE": "VOLT", "SENSE": "SENS", "CURRENT": "CURR", "OUTPUT": "OUTP",
    "FORMAT": "FORM", "TRACE": "TRAC", "SYSTEM": "SYST", "ERROR": "ERR", "SWEEP": "SWE",
    "LINEAR": "LIN", "AVERAGE": "AVER", "COUNT": "COUN", "FUNCTION": "FUNC",
    "INITIATE": "INIT", "APPEND": "APP", "BORDER": "BORD", "ILIMIT": "ILIM", "DELAY": "DEL",
    "AZERO": "AZER", "LFREQUENCY": "LFR",
    "TCONTROL": "TCON", "PULSE": "PULS", "WIDTH": "WIDT", "PERIOD": "PER",
    "TRANSITION": "TRAN", "LEADING": "LEAD", "TRAILING": "TRA", "BURST": "BURS",
    "NCYCLES": "NCYC", "STATE": "STAT", "TRIGGER": "TRIG", "LEVEL": "LEV",
}


class ScpiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def split_units(message: str) -> list[str]:
    """Split a program message at ``;`` outside quotes."""
    out, cur, quote = [], [], ""
    for ch in message:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch == ";":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [u.strip() for u in out if u.strip()]


def normalize(header: str) -> str:
    """``:SOURce1:VOLTage:ILIMit?`` → ``SOUR:VOLT:ILIM?`` (short forms, no suffixes)."""
    query = header.endswith("?")
    h = header.rstrip("?").lstrip(":").upper()
    if h.startswith("*"):
        return h + ("?" if query else "")
    parts = []
    for m in h.split(":"):
        m = re.sub(r"\d+$", "", m)
        parts.append(_LONG.get(m, m))
    return ":".join(parts) + ("?" if query else "")


def num(arg: str) -> float:
    try:
        return float(arg)
    except ValueError:
        raise ScpiError(-104, f"Data type error; {arg!r}") from None


def onoff(arg: str) -> bool:
    a = arg.strip().upper()
    if a in ("ON", "1"):
        return True
    if a in ("OFF", "0"):
        return False
    raise ScpiError(-224, f"Illegal parameter value; {arg!r}")


class ScpiInstrument:
    """Shared SCPI machinery: dispatch table, error queue, compound replies."""

    idn = "labctl,virtual,0,1.0"

    def __init__(self, hub: Hub, faults: FaultInjector, name: str) -> None:
        self.hub = hub
        self.faults = faults
        self.name = name
        self.errors: deque[tuple[int, str]] = deque(maxlen=32)
        self.handlers: dict[str, Callable[[str], str | bytes | None]] = {
            "*IDN?": lambda a: self.idn, "*CLS": lambda a: self.errors.clear(),
            "*OPC?": lambda a: "1", "*WAI": lambda a: None, "*RST": lambda a: self.reset(),
            "SYST:ERR?": self._err, "SYST:ERR:NEXT?": self._err,
            "SYST:ERR:COUN?": lambda a: str(len(self.errors)),
        }
        self.reset()

    def reset(self) -> None:
        """Power-on state; subclasses extend."""

    def _err(self, _: str) -> str:
        code, msg = self.errors.popleft() if self.errors else (0, "No error")
        return f'{code:+d},"{msg}"'

    def serve(self, conn: socket.socket, stop: threading.Event) -> None:
        serve_lines(conn, stop, self.execute, lambda b: self.faults.send(self.name, conn, b))

    def execute(self, message: str) -> bytes | None:
        replies: list[bytes] = []
        for unit in split_units(message):
            header, _, arg = unit.partition(" ")
            key = normalize(header)
            handler = self.handlers.get(key)
            try:
                if handler is None:
                    raise ScpiError(-113, f"Undefined header; {header}")
                with self.hub.lock:
                    r = handler(arg.strip())
            except ScpiError as e:
                self.errors.append((e.code, str(e)))
                r = None
            except ClampTrip:
                self.errors.append((-200, "Execution error; board clamp opened the route"))
                r = None
            if key.endswith("?") and r is None:
                continue
            if r is not None:
                replies.append(r if isinstance(r, bytes) else r.encode("ascii"))
        if not replies:
            return None
        return b";".join(replies) + b"\n"


class Virtual2450(ScpiInstrument):
    """Keithley 2450: voltage source, current measure, list/linear sweeps, binary trace."""

    idn = "KEITHLEY INSTRUMENTS,MODEL 2450,04400001,1.7.12b (labctl virtual)"

    def __init__(self, hub: Hub, faults: FaultInjector, name: str = "smu2450") -> None:
        super().__init__(hub, faults, name)
        h = self.handlers
        h.update({
            "OUTP": self._output, "OUTP?": lambda a: "1" if self.output else "0",
            "SOUR:FUNC": self._func, "SENS:FUNC": lambda a: None,
            "SOUR:VOLT": self._level, "SOUR:VOLT?": lambda a: f"{self.level:.17g}",
            "SOUR:VOLT:ILIM": self._ilim, "SOUR:VOLT:ILIM?": lambda a: f"{self.ilim:.17g}",
            "SOUR:VOLT:DEL": lambda a: setattr(self, "delay", num(a)),
            "SENS:CURR:NPLC": self._nplc, "SENS:CURR:NPLC?": lambda a: f"{self.nplc:g}",
            "SENS:CURR:AZER": lambda a: setattr(self, "azero", onoff(a)),
            "SENS:CURR:AZER?": lambda a: "1" if self.azero else "0",
            "SYST:LFR?": lambda a: f"{LINE_FREQUENCY_HZ:g}",
            "SENS:CURR:AVER": lambda a: setattr(self, "aver_on", onoff(a)),
            "SENS:CURR:AVER:COUN": self._count,
            "SENS:CURR:AVER:COUN?": lambda a: str(self.aver_count),
            "SENS:CURR:AVER:TCON": lambda a: None,
            "FORM:DATA": self._form, "FORM:BORD": self._bord,
            "SOUR:LIST:VOLT": lambda a: self._list(a, append=False),
            "SOUR:LIST:VOLT:APP": lambda a: self._list(a, append=True),
            "SOUR:SWE:VOLT:LIST": self._sweep_list, "SOUR:SWE:VOLT:LIN": self._sweep_lin,
            "INIT": self._init, "TRAC:DATA?": self._trace, "TRAC:CLE": self._clear,
            "TRAC:ACT?": lambda a: str(len(self.buffer)),
        })

    def reset(self) -> None:
        self.output = False
        self.level = 0.0
        self.ilim = 1.05e-4
        self.delay = 0.0
        self.nplc = 1.0
        self.azero = True
        self.aver_on = False
        self.aver_count = 10
        self.real = False
        self.swap = False
        self.list: list[float] = []
        self.sweep: tuple[np.ndarray, float] | None = None
        self.buffer = np.zeros(0)

    def _output(self, a: str) -> None:
        self.output = onoff(a)

    def _func(self, a: str) -> None:
        if a.strip().upper() not in ("VOLT", "VOLTAGE"):
            raise ScpiError(-224, "Illegal parameter value; this virtual 2450 sources volts")

    def _level(self, a: str) -> None:
        v = num(a)
        if abs(v) > 210.0:
            raise ScpiError(-222, "Data out of range")
        self.level = v

    def _ilim(self, a: str) -> None:
        v = num(a)
        if not 1e-9 <= v <= 1.05:
            raise ScpiError(-222, "Data out of range")
        self.ilim = v

    def _nplc(self, a: str) -> None:
        v = num(a)
        if not 0.01 <= v <= 10:
            raise ScpiError(-222, "Data out of range")
        self.nplc = v

    def _count(self, a: str) -> None:
        n = int(num(a))
        if not 1 <= n <= 100:
            raise ScpiError(-222, "Data out of range")
        self.aver_count = n

    def _form(self, a: str) -> None:
        x = a.strip().upper()
        if x not in ("REAL", "ASC", "ASCII"):
            raise ScpiError(-224, "Illegal parameter value")
        self.real = x == "REAL"

    def _bord(self, a: str) -> None:
        x = a.strip().upper()
        if x not in ("SWAP", "SWAPPED", "NORM", "NORMAL"):
            raise ScpiError(-224, "Illegal parameter value")
        self.swap = x.startswith("SWAP")

    def _list(self, a: str, *, append: bool) -> None:
        vals = [num(x) for x in a.split(",")]
        if any(abs(v) > 210.0 for v in vals):
            raise ScpiError(-222, "Data out of range")
        self.list = (self.list if append else []) + vals

    def _sweep_list(self, a: str) -> None:
        args = [x.strip() for x in a.split(",")]
        start = int(num(args[0])) if args and args[0] else 1
        delay = num(args[1]) if len(args) > 1 else 0.0
        if not self.list or not 1 <= start <= len(self.list):
            raise ScpiError(-221, "Settings conflict; configuration list is empty")
        self.sweep = (np.array(self.list[start - 1:]), delay)

    def _sweep_lin(self, a: str) -> None:
        args = [x.strip() for x in a.split(",")]
        if len(args) < 3:
            raise ScpiError(-109, "Missing parameter")
        start, stop, n = num(args[0]), num(args[1]), int(num(args[2]))
        delay = num(args[3]) if len(args) > 3 else 0.0
        if n < 2 or n > 1_000_000 or max(abs(start), abs(stop)) > 210.0:
            raise ScpiError(-222, "Data out of range")
        self.sweep = (np.linspace(start, stop, n), delay)

    def _init(self, _: str) -> None:
        if self.sweep is None:
            raise ScpiError(-221, "Settings conflict; no sweep configured")
        volts, delay = self.sweep
        # Readings append to the buffer, as on the instrument: a client must clear it.
        if not self.output:
            got = np.zeros(volts.size)  # output off: nothing reaches the chip
        else:
            n_avg = self.aver_count if self.aver_on else 1
            on = smu_on_time_s(delay, self.nplc * n_avg, self.azero)
            got = self.hub.apply_source(volts, on, self.ilim, n_avg)
        self.buffer = np.concatenate([self.buffer, got])

    def _clear(self, _: str) -> None:
        self.buffer = np.zeros(0)

    def _trace(self, a: str) -> bytes | str:
        args = [x.strip() for x in a.split(",")]
        i0, i1 = int(num(args[0])), int(num(args[1]))
        if not 1 <= i0 <= i1 <= self.buffer.size:
            raise ScpiError(-222, "Data out of range; buffer index")
        data = self.buffer[i0 - 1:i1]
        if not self.real:
            return ",".join(f"{x:.17g}" for x in data)
        raw = data.astype("<f8" if self.swap else ">f8").tobytes()
        return f"#{len(str(len(raw)))}{len(raw)}".encode() + raw


class Virtual33500B(ScpiInstrument):
    """Keysight 33500B in pulse mode with bus-triggered bursts."""

    idn = "Agilent Technologies,33522B,MY00000001,4.00-1.19-2.00-58-00 (labctl virtual)"

    def __init__(self, hub: Hub, faults: FaultInjector, name: str = "pulsegen") -> None:
        super().__init__(hub, faults, name)
        for prefix in ("FUNC:PULS", "PULS"):  # 33500B and 81150A spellings
            self.handlers.update({
                f"{prefix}:WIDT": lambda a: self._set("width", a, 16e-9, 1e3),
                f"{prefix}:WIDT?": lambda a: f"{self.width:.17g}",
                f"{prefix}:PER": lambda a: self._set("period", a, 50e-9, 1e3),
                f"{prefix}:TRAN:LEAD": lambda a: self._set("lead", a, 2.5e-9, 1e-3),
                f"{prefix}:TRAN": lambda a: self._set("lead", a, 2.5e-9, 1e-3),
                f"{prefix}:TRAN:TRA": lambda a: self._set("trail", a, 2.5e-9, 1e-3),
            })
        self.handlers.update({
            "OUTP": lambda a: setattr(self, "output", onoff(a)),
            "OUTP?": lambda a: "1" if self.output else "0",
            "OUTP:LOAD": self._load, "FUNC": self._func,
            "VOLT:HIGH": lambda a: self._set("high", a, -10.0, 10.0),
            "VOLT:HIGH?": lambda a: f"{self.high:.17g}",
            "VOLT:LOW": lambda a: self._set("low", a, -10.0, 10.0),
            "BURS:MODE": lambda a: None, "BURS:STAT": lambda a: setattr(self, "burst", onoff(a)),
            "BURS:NCYC": lambda a: self._set("ncyc", a, 1, 1e8),
            "TRIG:SOUR": self._trig_source, "*TRG": self._trigger,
        })

    def reset(self) -> None:
        self.output = False
        self.high, self.low = 0.1, 0.0
        self.width, self.period, self.lead, self.trail = 1e-6, 1e-3, 10e-9, 10e-9
        self.ncyc = 1.0
        self.burst = False
        self.bus = False
        self.high_z = False
        self.func = "SIN"

    def _set(self, attr: str, a: str, lo: float, hi: float) -> None:
        v = num(a)
        if not lo <= v <= hi:
            raise ScpiError(-222, "Data out of range")
        if attr == "width" and v >= self.period:
            raise ScpiError(-221, "Settings conflict; pulse width longer than period")
        setattr(self, attr, v)

    def _load(self, a: str) -> None:
        x = a.strip().upper()
        self.high_z = x in ("INF", "INFINITY", "MAX")
        if not self.high_z:
            num(x)

    def _func(self, a: str) -> None:
        self.func = a.strip().upper()[:4]

    def _trig_source(self, a: str) -> None:
        self.bus = a.strip().upper() == "BUS"

    def _trigger(self, _: str) -> None:
        if not (self.output and self.burst and self.bus and self.func == "PULS"):
            raise ScpiError(-211, "Trigger ignored")
        # Levels are programmed for a 50 Ω load unless OUTP:LOAD INF: into the open-circuit
        # cell the voltage is then doubled (33500B guide, "Output termination").
        amp = (self.high - self.low) * (1.0 if self.high_z else 2.0)
        self.hub.apply_pulses(float(amp), self.width, int(self.ncyc))
