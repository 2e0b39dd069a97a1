"""``InstrumentBackend``: the backend interface on real (or virtual) instruments.

Two topologies, named in the station file:

``board``
    The FPGA test board does everything: switch matrix, gate DACs, pulse drivers, read
    TIA/ADC, MVM. Every batched pulse, read or MVM is one frame out and one frame back.

``board+smu+pulsegen``
    The board only routes: it loads a scan list of cells and their gate voltages and steps
    its switch matrix on each trigger from the instrument that is sourcing. The SMU reads
    (a constant-voltage sweep, one point per routed cell, repeat-averaged on the instrument)
    and forms (a list sweep of per-cell amplitudes with the pulse width as the source delay
    and the SMU's confirmed current limit as compliance — the envelope's
    ``max_compliance_A`` when the caller gives none, since an SMU always has a limit); the
    pulse generator fires SET and RESET pulses as one burst per group of cells sharing an
    amplitude and a width (no current compliance: the gate limits the current, and a
    ``compliance_A`` is refused). MVMs still go through the board's DACs and ADCs.

Every failure ends in the safe state through :class:`labctl.core.backend.BackendBase`:
SMU and pulse generator outputs off, board abort (all DACs 0 V, routes open).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from drivers.fpga_board import BoardUnsupported, FpgaTestBoard
from labctl.core.backend import BackendBase, Capabilities, ChipInfo, PulseKind
from labctl.core.cells import Cells, FloatArray
from labctl.core.clock import Clock, WallClock
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import ConfigError, RequestRejected, SafetyInterlock

TOPOLOGIES = ("board", "board+smu+pulsegen")
MAX_SMU_AVERAGE = 100
"""Largest repeat-filter count of the 2450 (``:SENS:CURR:AVER:COUN``) and 2600B
(``smua.measure.filter.count``): 1–100."""


class Smu(Protocol):
    transactions: int

    def sweep(self, voltages_V: npt.ArrayLike, *, delay_s: float, compliance_A: float,
              n_average: int = 1) -> npt.NDArray[np.float64]: ...

    def form_delay_s(self, width_s: float, max_on_s: float) -> float: ...

    def form_sweep(self, voltages_V: npt.ArrayLike, *, width_s: float, compliance_A: float,
                   max_on_s: float) -> npt.NDArray[np.float64]: ...

    def safe_off(self) -> bool: ...

    def close(self) -> None: ...


class PulseGen(Protocol):
    transactions: int

    def fire_burst(self, amplitude_V: float, width_s: float, n: int, *,
                   edge_s: float | None = None) -> None: ...

    def safe_off(self) -> bool: ...

    def close(self) -> None: ...


class BoardClock:
    """The virtual board's clock: ``wait`` advances the simulated macro's time over the
    wire (TIME_ADVANCE), so relaxation on a virtual station takes no wall time."""

    def __init__(self, board: FpgaTestBoard) -> None:
        self._board = board

    def now(self) -> float:
        return self._board.time_now()

    def wait(self, duration_s: float) -> None:
        if not (duration_s >= 0.0) or duration_s == float("inf"):
            raise ValueError(f"a wait must be a finite, non-negative number of seconds, "
                             f"got {duration_s}")
        self._board.time_advance(float(duration_s))


def chip_from_ident(ident: dict[str, Any], overrides: dict[str, Any] | None = None) -> ChipInfo:
    """The chip description the board reports, with station-file overrides on top."""
    data = dict(ident.get("chip", {}))
    data.update(overrides or {})
    known = set(ChipInfo.__dataclass_fields__)
    for k in data:
        if k not in known:
            raise ConfigError("station", f"station.chip.{k}", f"unknown chip key; allowed: "
                              f"{', '.join(sorted(known))}")
    for k in ("chip_id", "n_tiles", "n_rows", "n_cols", "g_min_S", "g_max_S"):
        if k not in data:
            raise ConfigError("station", f"station.chip.{k}",
                              "the board did not report it; give it in the station file")
    return ChipInfo(**data)


class InstrumentBackend(BackendBase):
    """The backend interface over a test board and, optionally, an SMU and a pulse
    generator."""

    def __init__(self, chip: ChipInfo, envelope: SafetyEnvelope, board: FpgaTestBoard, *,
                 topology: str = "board", smu: Smu | None = None,
                 pulsegen: PulseGen | None = None, read_compliance_A: float | None = None,
                 clock: Clock | None = None, watchdog_s: float = 0.0,
                 on_close: Callable[[], None] | None = None) -> None:
        if topology not in TOPOLOGIES:
            raise ConfigError("station", "station.topology",
                              f"must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
        if topology != "board" and (smu is None or pulsegen is None):
            raise ConfigError("station", "instruments",
                              f"topology {topology} needs an smu and a pulsegen instrument")
        self.board = board
        self.smu = smu
        self.pulsegen = pulsegen
        self.topology = topology
        self._on_close = on_close
        self._read_compliance_A = (envelope.max_compliance_A if read_compliance_A is None
                                   else read_compliance_A)
        envelope.check_compliance(self._read_compliance_A)
        virtual = False
        if clock is None:
            try:
                board.time_now()
                clock = BoardClock(board)
                virtual = True
            except BoardUnsupported:
                clock = WallClock()
        verify = bool(board.ident.get("verify_write", False))
        if topology == "board":
            caps = Capabilities(
                batched_pulse=True, batched_read=True, mvm=True,
                device_side_verify=verify, virtual_clock=virtual, energy_model=False,
                round_trips_per_batch=1,
                notes="board: one frame per batched pulse, read or MVM")
        else:
            caps = Capabilities(
                batched_pulse=True, batched_read=True, mvm=True, device_side_verify=False,
                virtual_clock=virtual, energy_model=False, round_trips_per_batch=11,
                notes="board routes; the SMU reads with one instrument-run sweep per batch "
                      "(9-11 exchanges incl. ROUTE; the block is verified against the "
                      "instrument's count and mean) and forms in pulse mode (2600B: one sweep, "
                      "~12 exchanges; 2450: one exchange per cell + ~9, so each cell's FORM "
                      "returns to 0 V before the board switches), the pulse generator fires "
                      "one burst per (amplitude, width) group (6-10 exchanges each)")
        super().__init__(chip, envelope, clock, caps)
        self._ledger.energy_J = float("nan")
        self._ledger.pulse_energy_J = float("nan")
        self._ledger.read_energy_J = float("nan")
        self._ledger.mvm_energy_J = float("nan")
        e = envelope
        board.set_clamp(e.max_bitline_V, e.max_sourceline_V, e.max_gate_V, e.max_read_V)
        self._heartbeat_stop = threading.Event()
        if watchdog_s > 0:
            board.watchdog_s(watchdog_s)
            threading.Thread(target=self._heartbeat, args=(watchdog_s / 3.0,), daemon=True,
                             name=f"{board.name}-heartbeat").start()

    def _heartbeat(self, period_s: float) -> None:
        """Feed the board's watchdog while the host is idle (e.g. during clock.wait). If
        this process dies, the heartbeats stop and the board aborts on its own."""
        while not self._heartbeat_stop.wait(period_s):
            try:
                self.board.heartbeat()
            except Exception:  # the next operation will see the broken link
                return

    # ---- description ----
    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"topology": self.topology, "board": self.board.url,
                             "firmware": self.board.ident.get("firmware")}
        if self.smu is not None:
            d["smu"] = getattr(self.smu, "name", "smu")
        if self.pulsegen is not None:
            d["pulsegen"] = getattr(self.pulsegen, "name", "pulsegen")
        return d

    def transactions(self) -> int:
        """Host↔instrument exchanges so far, over all instruments."""
        return int(self.board.transactions
                   + (self.smu.transactions if self.smu is not None else 0)
                   + (self.pulsegen.transactions if self.pulsegen is not None else 0))

    # ---- operations ----
    def _precheck_pulse(self, kind: PulseKind, amplitude_V: FloatArray, gate_V: FloatArray,
                        width_s: FloatArray, compliance_A: FloatArray | None) -> None:
        """In topology ``board+smu+pulsegen`` a FORM whose real SMU on-time cannot be the
        requested width (or would exceed ``max_width_s``) is refused before any exchange."""
        if self.smu is not None and self.topology != "board" and kind is PulseKind.FORM:
            for w in np.unique(width_s):
                self.smu.form_delay_s(float(w), self._envelope.max_width_s)

    # ---- primitives ----
    def _pulse(self, cells: Cells, kind: PulseKind, amplitude_V: FloatArray, gate_V: FloatArray,
               width_s: FloatArray, compliance_A: FloatArray | None) -> None:
        n = len(cells)
        if self.topology == "board":
            self.board.pulse_batch(kind.value, cells.tile, cells.row, cells.col, amplitude_V,
                                   gate_V, width_s, compliance_A)
        elif kind is PulseKind.FORM:
            self._form_with_smu(cells, amplitude_V, gate_V, width_s, compliance_A)
        else:
            if compliance_A is not None:
                raise RequestRejected(
                    "the pulse generator has no current compliance; in topology "
                    "board+smu+pulsegen the gate voltage limits SET/RESET current — pass "
                    "compliance_A=None")
            assert self.pulsegen is not None
            keys = np.stack([amplitude_V, width_s], axis=1)
            uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
            for g, (amp, width) in enumerate(uniq):
                sel = np.flatnonzero(inverse.reshape(-1) == g)
                sub = cells.subset(sel)
                self.board.route(kind.value, sub.tile, sub.row, sub.col, gate_V[sel])
                self.pulsegen.fire_burst(float(amp), float(width), sel.size)
            self.board.route_clear()
        led = self._ledger
        led.pulses += n
        led.pulse_calls += 1
        led.by_kind[kind.value] = led.by_kind.get(kind.value, 0) + n
        led.device_time_s += float(width_s.sum())

    def _form_with_smu(self, cells: Cells, amplitude_V: FloatArray, gate_V: FloatArray,
                       width_s: FloatArray, compliance_A: FloatArray | None) -> None:
        assert self.smu is not None
        comp = (np.full(len(cells), self._envelope.max_compliance_A) if compliance_A is None
                else compliance_A)
        keys = np.stack([width_s, comp], axis=1)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        max_on = self._envelope.max_width_s
        for width in np.unique(uniq[:, 0]):  # every group's real on-time, before any wire
            self.smu.form_delay_s(float(width), max_on)
        for g, (width, c) in enumerate(uniq):
            sel = np.flatnonzero(inverse.reshape(-1) == g)
            sub = cells.subset(sel)
            self.board.route("FORM", sub.tile, sub.row, sub.col, gate_V[sel])
            self.smu.form_sweep(amplitude_V[sel], width_s=float(width), compliance_A=float(c),
                                max_on_s=max_on)
        self.board.route_clear()

    def _read(self, cells: Cells, read_V: float, gate_V: float, n_average: int) -> FloatArray:
        n = len(cells)
        if self.topology == "board":
            current = self.board.read_batch(cells.tile, cells.row, cells.col, read_V, gate_V,
                                            n_average)
        else:
            assert self.smu is not None
            if n_average > MAX_SMU_AVERAGE:
                raise RequestRejected(
                    f"n_average={n_average}: the SMU's repeat filter averages at most "
                    f"{MAX_SMU_AVERAGE} readings per point")
            self.board.route("READ", cells.tile, cells.row, cells.col, np.full(n, gate_V))
            current = self.smu.sweep(np.full(n, read_V), delay_s=0.0,
                                     compliance_A=self._read_compliance_A, n_average=n_average)
            self.board.route_clear()
        led = self._ledger
        led.reads += n * n_average
        led.read_calls += 1
        g: FloatArray = current / read_V
        return g

    def _mvm(self, tile: int, inputs_V: npt.NDArray[np.floating[Any]], rows: slice, cols: slice,
             differential: bool, adc_range_A: float) -> npt.NDArray[np.floating[Any]]:
        out = self.board.mvm(tile, inputs_V, rows, cols, differential, adc_range_A)
        self._ledger.mvm_calls += 1
        self._ledger.mvm_vectors += int(inputs_V.shape[0])
        return out

    def verify_write(self, cells: Cells, g_target_S: npt.ArrayLike, tolerance_S: float,
                     params: dict[str, float], max_iterations: int = 30
                     ) -> tuple[FloatArray, npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Device-side verify-write (topology ``board`` with firmware support): the board
        reads, pulses and re-reads every cell until it is within ±``tolerance_S`` of its
        target, in one round trip. Returns final conductance, pulses used, success."""
        self._check_open()
        if not self._capabilities.device_side_verify:
            raise RequestRejected("this board has no device-side verify-write program")
        self._check_cells(cells)
        n = len(cells)
        target = np.broadcast_to(np.asarray(g_target_S, dtype=np.float64), (n,))
        e = self._envelope
        e.check_pulse("BL", [params["set_max_V"]], [params["set_gate_V"]], [params["width_s"]])
        e.check_pulse("SL", [params["reset_max_V"]], [params["reset_gate_V"]],
                      [params["width_s"]])
        e.check_read(params["read_V"], params["read_gate_V"])
        with self._guard():
            return self.board.verify_write(cells.tile, cells.row, cells.col,
                                           target - tolerance_S, target + tolerance_S, params,
                                           max_iterations)

    def _safe_state(self) -> None:
        failed = []
        for name, inst in (("smu", self.smu), ("pulsegen", self.pulsegen), ("board", self.board)):
            if inst is not None and not inst.safe_off():
                failed.append(name)
        if failed:
            raise SafetyInterlock(f"could not confirm the safe state of: {', '.join(failed)}")

    def _close(self) -> None:
        self._heartbeat_stop.set()
        for inst in (self.smu, self.pulsegen, self.board):
            if inst is not None:
                with contextlib.suppress(Exception):
                    inst.close()
        if self._on_close is not None:
            self._on_close()
