"""The one simulated chip all virtual instruments share, and the board's switch matrix.

The board's ROUTE loads a scan list (cells, gate volts, mode); whichever instrument then
sources — an SMU sweep point or a pulse-generator pulse — takes the next routed cell, as
the real board's switch matrix steps on each trigger. So a pulse fired by the pulse
generator while the board routes a cell changes exactly that cell of the shared
:class:`~sim_backend.macro.Macro`. One lock serialises access to the macro.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
import numpy.typing as npt

from labctl.core.backend import PulseKind
from labctl.core.cells import Cells
from sim_backend.macro import Macro

F64 = npt.NDArray[np.float64]


LINE_FREQUENCY_HZ = 50.0
"""Mains frequency of the virtual lab (NPLC → seconds)."""


class ClampTrip(Exception):
    """A source tried to exceed the board's clamp: the board opens the route instead."""


class Hub:
    def __init__(self, macro: Macro) -> None:
        self.macro = macro
        self.lock = threading.RLock()
        self.clamp_V = {"BL": 0.0, "SL": 0.0, "WL": 0.0, "READ": 0.0}
        """Board clamp, volts; 0 until the host programs it (nothing can be driven)."""
        self.board_errors: deque[tuple[int, str]] = deque(maxlen=64)
        self.source_on_times_s: list[float] = []
        """Real on-time of every SMU point that pulsed a cell (FORM/SET/RESET routes)."""
        self.read_log: list[F64] = []
        """Currents every SMU point on a READ route measured, per sweep (ground truth)."""
        self.pulse_log: list[tuple[str, Cells, F64, F64]] = []
        """(kind, cells, amplitude V, width s) of every pulse that reached the chip."""
        self.hot_switches = 0
        """Times the board stepped to the next cell while an SMU held a pulse level (the
        source did not return to 0 V between points)."""
        self.route_clear()

    # ---- routing ----
    def route(self, mode: str, cells: Cells, gate_V: F64) -> None:
        self.mode: str | None = mode
        self.cells: Cells | None = cells
        self.gate_V: F64 = gate_V
        self.pos = 0

    def route_clear(self) -> None:
        self.mode = None
        self.cells = None
        self.gate_V = np.zeros(0)
        self.pos = 0

    def take(self, n: int) -> tuple[str | None, Cells | None, F64]:
        """The next ``n`` routed cells (fewer if the scan list runs out)."""
        if self.cells is None or self.mode is None:
            return None, None, np.zeros(0)
        k = min(n, len(self.cells) - self.pos)
        sel = np.arange(self.pos, self.pos + k)
        self.pos += k
        if k < n:
            self.board_errors.append((302, f"scan list exhausted: {n - k} trigger(s) with no "
                                           "routed cell"))
        return self.mode, self.cells.subset(sel), self.gate_V[sel]

    def check_clamp(self, terminal: str, values_V: npt.ArrayLike) -> None:
        v = np.abs(np.asarray(values_V, dtype=np.float64))
        if v.size and float(v.max()) > self.clamp_V[terminal]:
            self.board_errors.append((301, f"clamp tripped on {terminal}: {float(v.max()):g} V "
                                           f"> {self.clamp_V[terminal]:g} V; route opened"))
            self.route_clear()
            raise ClampTrip(terminal)

    # ---- what a sourcing instrument does to the routed cells ----
    def apply_source(self, voltages_V: F64, width_s: float, compliance_A: float | None,
                     n_average: int, *, idle_between: bool = False) -> F64:
        """An SMU sweep point per routed cell: read (READ route) or pulse (others).

        ``width_s`` is the point's real on-time (:func:`labctl.wire.smu_timing.on_time_s`);
        ``idle_between`` says whether the source returns to 0 V after each point (2600B
        pulse mode) — when it does not, every step of the board to the next cell of a
        pulse route happens under voltage and is counted in :attr:`hot_switches`.

        Returns the measured current per point; 0 A for open (unrouted) points and for
        pulse points (the virtual SMU does not model the current during a pulse).
        """
        n = voltages_V.size
        out = np.zeros(n)
        with self.lock:
            mode, cells, gates = self.take(n)
            if cells is None or len(cells) == 0:
                return out
            k = len(cells)
            v = voltages_V[:k]
            if mode == "READ":
                self.check_clamp("READ", v)
                for key in np.unique(np.stack([v, gates], axis=1), axis=0):
                    sel = np.flatnonzero((v == key[0]) & (gates == key[1]))
                    out[sel] = self.macro.read_current(cells.subset(sel), float(key[0]),
                                                       float(key[1]), n_average)
                self.read_log.append(out.copy())
            else:
                assert mode is not None
                kind = PulseKind(mode)
                self.check_clamp(kind.terminal, v)
                comp = None if compliance_A is None else np.full(k, compliance_A)
                self.source_on_times_s.extend([width_s] * k)
                if not idle_between:
                    self.hot_switches += k - 1
                self.macro.pulse(cells, kind, v.astype(np.float64), gates, np.full(k, width_s),
                                 comp)
                self.pulse_log.append((kind.value, cells, v.astype(np.float64).copy(),
                                       np.full(k, width_s)))
        return out

    def apply_pulses(self, amplitude_V: float, width_s: float, n: int) -> None:
        """A burst of ``n`` pulses from the pulse generator, one per routed cell."""
        with self.lock:
            mode, cells, gates = self.take(n)
            if cells is None or len(cells) == 0 or mode is None:
                return
            if mode == "READ":
                self.board_errors.append((303, "pulse generator fired into a READ route; "
                                               "route opened"))
                self.route_clear()
                return
            kind = PulseKind(mode)
            k = len(cells)
            amp = np.full(k, amplitude_V)
            self.check_clamp(kind.terminal, amp)
            self.macro.pulse(cells, kind, amp, gates, np.full(k, width_s), None)
            self.pulse_log.append((kind.value, cells, amp, np.full(k, width_s)))
