"""A virtual Keithley 2602B that executes TSP as real Lua, in a sandboxed lupa runtime.

Behaviour and the manual section it follows (Keithley Series 2600B Reference Manual,
2600BS-901-01):

* Every received line is one Lua chunk ("Introduction to TSP operation"); a syntax error
  queues -285, a runtime error -286 and aborts the rest of that chunk only — the next line
  runs as usual. ``loadandrunscript [name]`` … ``endscript`` collects the lines between
  into one chunk and runs it (and ``loadscript`` … ``endscript`` stores it as a global
  function ``name``), as in "Load a script by sending commands over the remote interface".
  ``*IDN?`` is answered outside Lua, like the instrument's other common commands.
* The smuX object model (tsp_prelude.lua): ``smuX.source``, ``.measure`` (with
  ``.filter``), ``.trigger`` (``.source.listv/linearv``, ``.measure.i``, ``.endpulse``,
  ``.endsweep``, ``initiate()``), ``smuX.nvbuffer1/2`` with ``n``, ``readings``,
  ``sourcevalues``, ``clear()``; setting an attribute that does not exist or a value out
  of its range is a runtime error.
* ``print()`` writes numbers with ``format.asciiprecision`` digits (default 6) and tabs
  between values; ``printbuffer()`` writes ``format.data`` ASCII as ``, ``-separated
  values, REAL32/REAL64 as ``#0`` + raw floats in ``format.byteorder`` + newline.
* Sandbox: only ``string``, ``math``, ``table`` and safe base functions — no ``io``,
  ``os``, ``require``, ``load``, ``debug`` — an instruction budget per chunk
  (:data:`INSTRUCTION_BUDGET`), a memory budget per chunk (:data:`MAX_CHUNK_BYTES`) and a
  cap for the whole state (:data:`MAX_LUA_BYTES`).
* A point's on-time is :func:`labctl.wire.smu_timing.on_time_s` of the 2600B timing —
  the model the driver plans with; ``smuX.measure.delay`` (≥ 0) adds to it.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from importlib import resources
from typing import Any

import numpy as np
from lupa.lua54 import LuaError, LuaMemoryError, LuaRuntime

from labctl.wire.smu_timing import KEITHLEY_2600B, on_time_s
from sim_backend.virtual.hub import LINE_FREQUENCY_HZ, ClampTrip, Hub
from sim_backend.virtual.transport import FaultInjector, serve_lines

INSTRUCTION_BUDGET = 5_000_000
"""Lua VM instructions one chunk may run before it is stopped with a runtime error."""
MAX_LUA_BYTES = 64 << 20
"""Memory cap of the whole Lua state (globals that scripts leave behind included)."""
MAX_CHUNK_BYTES = 16 << 20
"""How much one chunk may grow the state's memory."""
MAX_MESSAGE_BYTES = 1 << 20
QUEUE_LENGTH = 20
MODEL = "2602B"


class Virtual2600B:
    idn = "Keithley Instruments Inc., Model 2602B, 4000001, 3.3.5 (labctl virtual)"

    def __init__(self, hub: Hub, faults: FaultInjector, name: str = "smu2600b") -> None:
        self.hub = hub
        self.faults = faults
        self.name = name
        self.errors: deque[tuple[int, str]] = deque()
        self._out: list[bytes] = []
        self._script: list[str] | None = None
        self._script_name = ""
        self._script_run = False
        self.lua = LuaRuntime(register_eval=False, register_builtins=False,
                              unpack_returned_tuples=True, max_memory=MAX_LUA_BYTES)
        prelude = resources.files("sim_backend.virtual").joinpath(
            "tsp_prelude.lua").read_text(encoding="utf-8")
        py = self.lua.table_from({
            "source": self._source, "emit": self._emit, "emit_values": self._emit_values,
            "next_error": self._next_error, "clear_errors": self.errors.clear,
            "error_count": lambda: len(self.errors), "advance": lambda t: None,
            "model": MODEL, "linefreq": LINE_FREQUENCY_HZ, "idn": self.idn,
        })
        self._run, self._env = self.lua.execute(prelude, py)

    def output_state(self) -> float:
        """``smua.source.output`` as the instrument holds it (tests look inside)."""
        with self.hub.lock:
            return float(self._env.smua.source.output)

    # ---- callbacks from Lua ----
    def _emit(self, text: str) -> None:
        self._out.append(text.encode("ascii", "replace"))

    def _emit_values(self, values: Any, data: float, byteorder: float, precision: float) -> None:
        vals = np.array([float(values[k]) for k in range(1, len(values) + 1)])
        if data in (32.0, 64.0):
            dtype = ("<" if byteorder == 0.0 else ">") + ("f4" if data == 32.0 else "f8")
            self._out.append(b"#0" + vals.astype(dtype).tobytes() + b"\n")
        else:
            p = int(precision) - 1
            self._out.append((", ".join(f"{x:.{p}e}" for x in vals) + "\n").encode())

    def _next_error(self) -> tuple[float, str, float, float]:
        if not self.errors:
            return 0.0, "Queue Is Empty", 0.0, 1.0
        code, msg = self.errors.popleft()
        return float(code), msg, 2.0, 1.0

    def push_error(self, code: int, message: str) -> None:
        if len(self.errors) >= QUEUE_LENGTH:
            self.errors[-1] = (-350, "Queue overflow")
            return
        self.errors.append((code, message))

    def _source(self, volts: Any, delay_s: float, nplc: float, n_avg: int, autozero: float,
                measure_delay_s: float, limit_A: float, output: float, idle: bool) -> Any:
        """One SMU point per entry of ``volts`` on the routed cells; Lua table of amps."""
        v = np.array([float(volts[k]) for k in range(1, len(volts) + 1)])
        on = on_time_s(KEITHLEY_2600B, delay_s, nplc * n_avg, LINE_FREQUENCY_HZ,
                       autozero=autozero != 0.0, auto_delay_s=max(measure_delay_s, 0.0))
        if output != 1.0:
            got = np.zeros(v.size)
        else:
            try:
                got = self.hub.apply_source(v, on, limit_A, int(n_avg),
                                            idle_between=bool(idle))
            except ClampTrip as e:  # becomes a Lua runtime error of the running chunk
                raise RuntimeError(f"board clamp on {e} opened the route") from None
        return self.lua.table_from([float(x) for x in got])

    # ---- messages ----
    def serve(self, conn: socket.socket, stop: threading.Event) -> None:
        serve_lines(conn, stop, self.execute, lambda b: self.faults.send(self.name, conn, b),
                    max_line=MAX_MESSAGE_BYTES,
                    on_overflow=lambda: self.push_error(-223, "Too much data"))

    def execute(self, line: str) -> bytes | None:
        """One received line: a chunk, a script line, or ``*IDN?``."""
        text = line.strip()
        words = text.split()
        if self._script is not None:
            if text == "endscript":
                body, self._script = "\n".join(self._script), None
                return self._finish_script(body)
            if sum(len(x) for x in self._script) > MAX_MESSAGE_BYTES:
                self._script = None
                self.push_error(-223, "Too much data; script too long")
                return None
            self._script.append(line)
            return None
        if words and words[0] in ("loadandrunscript", "loadscript"):
            self._script = []
            self._script_name = words[1] if len(words) > 1 else ""
            self._script_run = words[0] == "loadandrunscript"
            return None
        if text.upper() == "*IDN?":
            return (self.idn + "\n").encode()
        return self.chunk(line)

    def _finish_script(self, body: str) -> bytes | None:
        name = self._script_name
        if name and not name.isidentifier():
            self.push_error(-285, f"TSP Syntax error: bad script name {name!r}")
            return None
        if name:
            self.chunk(f"{name} = function()\n{body}\nend")
            return self.chunk(f"{name}()") if self._script_run else None
        return self.chunk(body) if self._script_run else None

    def chunk(self, code: str) -> bytes | None:
        self._out = []
        used = int(self.lua.get_memory_used())
        self.lua.set_max_memory(min(used + MAX_CHUNK_BYTES, MAX_LUA_BYTES), total=True)
        with self.hub.lock:
            try:
                ok, kind, msg = self._call(code)
            except ClampTrip:
                ok, kind, msg = False, "runtime", "board clamp opened the route"
            except LuaMemoryError:
                ok, kind, msg = False, "runtime", "not enough memory"
        if not ok:
            if kind == "syntax":
                self.push_error(-285, f"TSP Syntax error at line 1: {msg}")
            else:
                self.push_error(-286, f"TSP Runtime error at line 1: {msg}")
        out = b"".join(self._out)
        return out or None

    def _call(self, code: str) -> tuple[bool, str, str]:
        try:
            r = self._run(code, INSTRUCTION_BUDGET)
        except LuaError as e:
            return False, "runtime", str(e)
        if not isinstance(r, tuple):
            return bool(r), "", ""
        return bool(r[0]), str(r[1]) if len(r) > 1 else "", str(r[2]) if len(r) > 2 else ""

