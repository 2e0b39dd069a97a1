"""Virtual Keithley 2600B: the subset of TSP (Lua) that ``drivers.keithley2600b`` sends.

Not a Lua interpreter: statements (separated by ``;``) are matched against the forms the
driver uses — attribute assignments, ``print(attr)``, ``print(errorqueue.next())``, the
sweep-loading calls, ``smua.trigger.initiate()``, ``waitcomplete()`` and ``printbuffer`` —
and anything else is a TSP syntax error in the error queue, as on the instrument.
"""

from __future__ import annotations

import re
import socket
import threading
from collections import deque

import numpy as np

from sim_backend.virtual.hub import LINE_FREQUENCY_HZ, ClampTrip, Hub, smu_on_time_s
from sim_backend.virtual.transport import FaultInjector, serve_lines

CONSTANTS = {
    "smua.OUTPUT_ON": 1.0, "smua.OUTPUT_OFF": 0.0, "smua.OUTPUT_DCVOLTS": 1.0,
    "smua.OUTPUT_DCAMPS": 0.0, "smua.FILTER_ON": 1.0, "smua.FILTER_OFF": 0.0,
    "smua.FILTER_REPEAT_AVG": 1.0, "smua.FILTER_MOVING_AVG": 0.0, "smua.ENABLE": 1.0,
    "smua.DISABLE": 0.0, "smua.SOURCE_IDLE": 0.0, "smua.SOURCE_HOLD": 1.0,
    "smua.AUTOZERO_OFF": 0.0, "smua.AUTOZERO_ONCE": 1.0, "smua.AUTOZERO_AUTO": 2.0,
    "format.REAL64": 64.0, "format.ASCII": 1.0,
    "format.LITTLEENDIAN": 0.0, "format.BIGENDIAN": 1.0, "format.NORMAL": 1.0,
}
SETTABLE = {
    "smua.source.levelv": (-40.0, 40.0), "smua.source.limiti": (1e-9, 1.5),
    "smua.trigger.source.limiti": (1e-9, 1.5), "smua.source.output": (0, 1),
    "smua.source.func": (0, 1), "smua.measure.nplc": (0.001, 25), "smua.source.delay": (0, 1e3),
    "smua.measure.filter.count": (1, 100), "smua.measure.filter.enable": (0, 1),
    "smua.measure.filter.type": (0, 2), "format.data": (1, 64), "format.byteorder": (0, 1),
    "smua.trigger.measure.action": (0, 1), "smua.trigger.source.action": (0, 1),
    "smua.trigger.count": (1, 1e6), "smua.nvbuffer1.appendmode": (0, 1),
    "smua.trigger.endsweep.action": (0, 1), "smua.trigger.endpulse.action": (0, 1),
    "smua.trigger.endpulse.stimulus": (0, 1e3), "smua.measure.autozero": (0, 2),
    "smua.measure.delay": (0, 1e3),
}
_ASSIGN = re.compile(r"^([\w.]+)\s*=\s*(.+)$")
_CALL = re.compile(r"^([\w.]+)\((.*)\)$", re.DOTALL)


class TspError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Virtual2600B:
    idn = "Keithley Instruments Inc., Model 2602B, 4000001, 3.3.5 (labctl virtual)"

    def __init__(self, hub: Hub, faults: FaultInjector, name: str = "smu2600b") -> None:
        self.hub = hub
        self.faults = faults
        self.name = name
        self.errors: deque[tuple[int, str]] = deque(maxlen=32)
        self.attrs: dict[str, float] = {
            "smua.source.levelv": 0.0, "smua.source.limiti": 1e-4,
            "smua.trigger.source.limiti": 1e-4, "smua.source.output": 0.0,
            "smua.source.func": 1.0, "smua.measure.nplc": 1.0, "smua.source.delay": 0.0,
            "smua.measure.filter.count": 1.0, "smua.measure.filter.enable": 0.0,
            "smua.measure.filter.type": 1.0, "format.data": 1.0, "format.byteorder": 1.0,
            "smua.trigger.measure.action": 0.0, "smua.trigger.source.action": 0.0,
            "smua.trigger.count": 1.0, "smua.nvbuffer1.appendmode": 0.0,
            "smua.trigger.endsweep.action": 1.0, "smua.trigger.endpulse.action": 1.0,
            "smua.trigger.endpulse.stimulus": 0.0, "smua.measure.autozero": 2.0,
            "smua.measure.delay": 0.0, "localnode.linefreq": LINE_FREQUENCY_HZ,
        }
        self.sweep = np.zeros(0)
        self.buffer = np.zeros(0)

    def serve(self, conn: socket.socket, stop: threading.Event) -> None:
        serve_lines(conn, stop, self.execute, lambda b: self.faults.send(self.name, conn, b))

    def execute(self, message: str) -> bytes | None:
        if message.strip().upper() == "*IDN?":
            return (self.idn + "\n").encode()
        out: list[bytes] = []
        for stmt in (s.strip() for s in message.split(";")):
            if not stmt:
                continue
            try:
                with self.hub.lock:
                    r = self._statement(stmt)
            except TspError as e:
                self.errors.append((e.code, str(e)))
                r = None
            except ClampTrip:
                self.errors.append((-5001, "board clamp opened the route"))
                r = None
            if r is not None:
                out.append(r)
        return b"".join(out) or None

    # ---- statements ----
    def _value(self, expr: str) -> float:
        expr = expr.strip()
        if expr in CONSTANTS:
            return CONSTANTS[expr]
        try:
            return float(expr)
        except ValueError:
            raise TspError(-285, f"TSP Syntax error: unexpected symbol near '{expr}'") from None

    def _statement(self, stmt: str) -> bytes | None:
        m = _ASSIGN.match(stmt)
        if m and "(" not in m.group(1):
            attr, val = m.group(1), self._value(m.group(2))
            if attr not in SETTABLE:
                raise TspError(-286, f"TSP Runtime error: cannot set {attr}")
            lo, hi = SETTABLE[attr]
            if not lo <= val <= hi:
                raise TspError(1100, f"Parameter too big or too small for {attr}")
            self.attrs[attr] = val
            return None
        m = _CALL.match(stmt)
        if not m:
            raise TspError(-285, f"TSP Syntax error at line 1: unexpected symbol near '{stmt}'")
        fn, args = m.group(1), m.group(2).strip()
        if fn == "print":
            if args == "errorqueue.next()":
                code, msg = self.errors.popleft() if self.errors else (0, "Queue Is Empty")
                return f"{code:.5e}\t{msg}\t0.00000e+00\t0.00000e+00\n".encode()
            if args in self.attrs:
                return f"{self.attrs[args]:.17g}\n".encode()
            raise TspError(-285, f"TSP Syntax error: cannot print {args}")
        if fn == "errorqueue.clear":
            self.errors.clear()
        elif fn == "smua.nvbuffer1.clear":
            self.buffer = np.zeros(0)
        elif fn == "smua.trigger.source.listv":
            if not (args.startswith("{") and args.endswith("}")):
                raise TspError(-285, "TSP Syntax error: listv needs a table")
            self.sweep = np.array([self._value(x) for x in args[1:-1].split(",")])
        elif fn == "smua.trigger.source.linearv":
            a = [self._value(x) for x in args.split(",")]
            if len(a) != 3 or a[2] < 2:
                raise TspError(-285, "TSP Syntax error: linearv(start, stop, points)")
            self.sweep = np.linspace(a[0], a[1], int(a[2]))
        elif fn == "smua.trigger.measure.i":
            if args != "smua.nvbuffer1":
                raise TspError(-286, "only smua.nvbuffer1 is available")
        elif fn == "smua.trigger.initiate":
            self._run()
        elif fn == "waitcomplete":
            pass
        elif fn == "printbuffer":
            return self._printbuffer(args)
        else:
            raise TspError(-286, f"TSP Runtime error: attempt to call {fn}")
        return None

    def _run(self) -> None:
        a = self.attrs
        n = int(a["smua.trigger.count"])
        volts = self.sweep[:n]
        armed = a["smua.trigger.source.action"] and a["smua.trigger.measure.action"]
        if volts.size < n or not armed:
            raise TspError(-286, "trigger model not configured for a sweep")
        if np.abs(volts).max() > 40.0:
            raise TspError(1100, "sweep level out of range")
        if not a["smua.source.output"]:
            self.buffer = np.zeros(n)
            return
        n_avg = int(a["smua.measure.filter.count"]) if a["smua.measure.filter.enable"] else 1
        if a["smua.measure.delay"] != 0.0:
            raise TspError(-286, "this virtual 2600B models measure delay 0 only")
        on = smu_on_time_s(a["smua.source.delay"], a["smua.measure.nplc"] * n_avg,
                           a["smua.measure.autozero"] != 0.0)
        idle = (a["smua.trigger.endpulse.action"] == 0.0
                and a["smua.trigger.endpulse.stimulus"] == 0.0)
        self.buffer = self.hub.apply_source(volts.astype(np.float64), on,
                                            a["smua.trigger.source.limiti"], n_avg,
                                            idle_between=idle)

    def _printbuffer(self, args: str) -> bytes:
        a = [x.strip() for x in args.split(",")]
        if len(a) != 3 or a[2] != "smua.nvbuffer1.readings":
            raise TspError(-285, "TSP Syntax error: printbuffer(start, end, buffer)")
        i0, i1 = int(self._value(a[0])), int(self._value(a[1]))
        if not 1 <= i0 <= i1 <= self.buffer.size:
            raise TspError(1203, "Invalid buffer index")
        data = self.buffer[i0 - 1:i1]
        if self.attrs["format.data"] == 64.0:
            order = "<f8" if self.attrs["format.byteorder"] == 0.0 else ">f8"
            return b"#0" + data.astype(order).tobytes() + b"\n"
        return (", ".join(f"{x:.6e}" for x in data) + "\n").encode()
