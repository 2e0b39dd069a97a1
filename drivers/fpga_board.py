"""FPGA test-board driver: the framed binary protocol of ``docs/board-protocol.md`` over any
pyserial URL (a COM port, ``socket://host:port``, ``rfc2217://``...).

One request frame, one reply frame: a whole batch of per-cell pulses, reads or an MVM is one
round trip, with the arrays as raw little-endian numpy buffers. Every reply is matched to its
request by sequence number, so a late reply to an earlier, timed-out request is recognised
and discarded instead of being taken for the current answer. Exchanges run under
``DelayedKeyboardInterrupt`` so a Ctrl+C lands between a request and its reply, never inside.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import serial
from qcodes.instrument import Instrument
from qcodes.utils import DelayedKeyboardInterrupt

from drivers._link import Limit
from labctl.core.errors import (
    CommunicationError,
    InstrumentError,
    InstrumentFault,
    InstrumentTimeout,
    SafetyInterlock,
)
from labctl.wire import board_protocol as bp


class BoardUnsupported(InstrumentError):
    """The firmware answered UNSUPPORTED (e.g. virtual-time opcodes on real hardware)."""


class FpgaTestBoard(Instrument):
    """The switch-matrix / gate-DAC / pulse / ADC board behind a pyserial URL.

    ``address`` is the pyserial URL (``/dev/ttyUSB0``, ``socket://host:port``), named like
    every qcodes instrument's address; ``url`` keeps it."""

    def __init__(self, name: str, address: str, *, timeout_s: float = 5.0,
                 baudrate: int = 921600, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        url = address
        self.url = address
        self.timeout_s = timeout_s
        self.safe_timeout_s = 2.0
        """Timeout for the abort frame of the safe state (see :meth:`safe_off`)."""
        self.transactions = 0
        self._lock = threading.RLock()
        """One exchange at a time (the heartbeat thread shares the link)."""
        self._seq = 0
        self._rx = bytearray()
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout_s,
                                               write_timeout=timeout_s)
        except (serial.SerialException, OSError, ValueError) as e:
            raise CommunicationError(f"{name}: cannot open {url}: {e}") from None
        self.watchdog_s = self.add_parameter(
            "watchdog_s", unit="s", set_cmd=self._set_watchdog,
            vals=Limit("watchdog", 0.0, 3600.0, "s"))
        self.clamp_V: tuple[float, float, float, float] | None = None
        self.ident: dict[str, Any] = self.get_ident()

    # ---- the one door to the wire ----
    def transact(self, op: bp.Op, payload: bytes = b"", *, timeout_s: float | None = None
                 ) -> bytes:
        """Send one request and return the payload of its OK reply."""
        with self._lock, DelayedKeyboardInterrupt(
                context={"instrument": self.name, "reason": op.name}):
            self._seq = (self._seq + 1) & 0xFFFF
            seq = self._seq
            self.transactions += 1
            frame = bp.encode(bp.Frame(int(op), seq, payload))
            try:
                self._port.write(frame)
                reply = self._receive(seq, op, self.timeout_s if timeout_s is None else timeout_s)
            except InstrumentFault:
                raise
            except (serial.SerialException, OSError) as e:
                raise CommunicationError(
                    f"{self.name}: link failed during {op.name}: {e}") from None
        if reply.status == bp.Status.OK:
            return reply.payload
        if reply.status == bp.Status.UNSUPPORTED:
            raise BoardUnsupported(f"{self.name}: firmware does not support {op.name}")
        if reply.status == bp.Status.BAD_FRAME:
            raise CommunicationError(f"{self.name}: board rejected the {op.name} frame: "
                                     f"{reply.payload.decode('utf-8', 'replace')}")
        code, msg = bp.unpack_error(reply.payload)
        raise InstrumentError(f"{self.name}: board error {code} \"{msg}\" during {op.name}")

    def _receive(self, seq: int, op: bp.Op, timeout_s: float) -> bp.Frame:
        deadline = time.monotonic() + timeout_s
        need = bp.HEADER_SIZE
        received = 0
        while True:
            if len(self._rx) >= need:
                try:
                    frame, consumed, need = bp.try_parse(self._rx)
                except bp.FrameError as e:
                    del self._rx[:e.consumed]
                    if e.seq == seq:
                        raise CommunicationError(f"{self.name}: corrupted reply to {op.name}: "
                                                 f"{e}") from None
                    continue
                del self._rx[:consumed]
                if frame is not None:
                    if frame.seq == seq and frame.op == op:
                        return frame
                    continue  # a stale reply to an earlier request: drop it
                need = max(need, 1)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._rx.clear()
                if received:
                    raise CommunicationError(
                        f"{self.name}: no valid reply frame to {op.name}: {received} bytes "
                        f"arrived (garbled or truncated), then silence for {timeout_s:g} s")
                raise InstrumentTimeout(
                    f"{self.name}: no reply to {op.name} within {timeout_s:g} s")
            self._port.timeout = remaining
            chunk = self._port.read(max(need - len(self._rx), self._port.in_waiting, 1))
            received += len(chunk)
            self._rx += chunk

    # ---- link and status ----
    def get_ident(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads(self.transact(bp.Op.IDENT).decode("utf-8"))
        return info

    def get_idn(self) -> dict[str, str | None]:
        ident = getattr(self, "ident", None) or {}
        return {"vendor": ident.get("vendor"), "model": ident.get("model"),
                "serial": ident.get("serial"), "firmware": ident.get("firmware")}

    def status(self) -> dict[str, Any]:
        return bp.status_dict(self.transact(bp.Op.STATUS))

    def next_error(self) -> tuple[int, str]:
        return bp.unpack_error(self.transact(bp.Op.ERROR_NEXT))

    def set_clamp(self, bitline_V: float, sourceline_V: float, gate_V: float,
                  read_V: float) -> None:
        """Program the on-board voltage clamp and confirm it by readback."""
        want = (bitline_V, sourceline_V, gate_V, read_V)
        got = bp.CLAMP.unpack(self.transact(bp.Op.SET_CLAMP, bp.CLAMP.pack(*want)))
        if not np.allclose(got, want, rtol=1e-9, atol=0.0):
            self.abort()
            raise SafetyInterlock(f"{self.name}: clamp read back as {got}, wanted {want}")
        self.clamp_V = want

    def _set_watchdog(self, timeout_s: float) -> None:
        self.transact(bp.Op.WATCHDOG, struct.pack("<d", float(timeout_s)))

    def heartbeat(self) -> None:
        self.transact(bp.Op.HEARTBEAT)

    def abort(self) -> None:
        self.transact(bp.Op.ABORT)

    def safe_off(self) -> bool:
        """Abort (all DACs to 0 V, routes open). A fresh sequence number makes any stale
        reply harmless; the receive buffer is emptied first. The abort gets a longer
        timeout (``safe_timeout_s``) than ordinary frames: after a timeout the board may
        still be finishing the previous request, and the abort queues behind it."""
        for _ in range(3):
            try:
                self._rx.clear()
                self._port.reset_input_buffer()
                self.transact(bp.Op.ABORT, timeout_s=max(self.timeout_s, self.safe_timeout_s))
                return True
            except Exception:  # best effort; the caller reports the outcome
                continue
        return False

    # ---- cell operations (one round trip each) ----
    def pulse_batch(self, kind: str, tile: npt.ArrayLike, row: npt.ArrayLike,
                    col: npt.ArrayLike, amplitude_V: npt.ArrayLike, gate_V: npt.ArrayLike,
                    width_s: npt.ArrayLike, compliance_A: npt.ArrayLike | None) -> None:
        head = bp.PULSE_HEAD.pack(bp.KIND_CODES[kind], compliance_A is not None, 0)
        arrays = [amplitude_V, gate_V, width_s] + ([compliance_A] if compliance_A is not None
                                                   else [])
        self.transact(bp.Op.PULSE_BATCH, head + bp.pack_cells(tile, row, col)
                      + bp.pack_f64(*arrays))

    def read_batch(self, tile: npt.ArrayLike, row: npt.ArrayLike, col: npt.ArrayLike,
                   read_V: float, gate_V: float, n_average: int) -> npt.NDArray[np.float64]:
        n = np.asarray(tile).size
        reply = self.transact(bp.Op.READ_BATCH, bp.READ_HEAD.pack(read_V, gate_V, n_average)
                              + bp.pack_cells(tile, row, col))
        if len(reply) != 8 * n:
            raise CommunicationError(f"{self.name}: READ_BATCH reply has {len(reply)} bytes "
                                     f"for {n} cells")
        return bp.unpack_f64(reply, 0, n)[0]

    def mvm(self, tile: int, inputs_V: npt.NDArray[np.floating[Any]], rows: slice, cols: slice,
            differential: bool, adc_range_A: float) -> npt.NDArray[np.floating[Any]]:
        x = np.ascontiguousarray(inputs_V)
        code = 1 if x.dtype == np.float64 else 0
        x = x.astype(bp.F64 if code else bp.F32, copy=False)
        head = bp.MVM_HEAD.pack(tile, rows.start, rows.stop, cols.start, cols.stop,
                                differential, code, adc_range_A, x.shape[0])
        reply = self.transact(bp.Op.MVM, head + x.tobytes())
        batch, ncols, out_code = bp.MVM_REPLY.unpack_from(reply, 0)
        dt = bp.F64 if out_code else bp.F32
        off = bp.MVM_REPLY.size
        if len(reply) != off + dt.itemsize * batch * ncols:
            raise CommunicationError(f"{self.name}: MVM reply length {len(reply)} does not "
                                     f"match {batch}×{ncols}")
        out = np.frombuffer(reply, dt, batch * ncols, off).reshape(batch, ncols)
        return out.astype(np.float64 if out_code else np.float32)

    def verify_write(self, tile: npt.ArrayLike, row: npt.ArrayLike, col: npt.ArrayLike,
                     g_lo_S: npt.ArrayLike, g_hi_S: npt.ArrayLike, params: dict[str, float],
                     max_iterations: int) -> tuple[npt.NDArray[np.float64],
                                                   npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Run the device-side verify-write program; see docs/board-protocol.md."""
        keys = ("read_V", "read_gate_V", "set_start_V", "set_step_V", "set_max_V", "set_gate_V",
                "reset_start_V", "reset_step_V", "reset_max_V", "reset_gate_V", "width_s")
        n = np.asarray(tile).size
        head = bp.VERIFY_HEAD.pack(*(float(params[k]) for k in keys), int(max_iterations))
        reply = self.transact(bp.Op.VERIFY_WRITE, head + bp.pack_cells(tile, row, col)
                              + bp.pack_f64(g_lo_S, g_hi_S),
                              timeout_s=max(self.timeout_s, 60.0))
        if len(reply) != 11 * n:
            raise CommunicationError(f"{self.name}: VERIFY_WRITE reply length {len(reply)}")
        g, off = bp.unpack_f64(reply, 0, n)
        used = np.frombuffer(reply, "<u2", n, off).astype(np.int64)
        ok = np.frombuffer(reply, "u1", n, off + 2 * n).astype(bool)
        return g, used, ok

    # ---- routing for external instruments (topology board+smu+pulsegen) ----
    def route(self, mode: str, tile: npt.ArrayLike, row: npt.ArrayLike, col: npt.ArrayLike,
              gate_V: npt.ArrayLike) -> None:
        """Load a scan list: the switch matrix connects the SMU or the pulse generator to
        each cell in turn (stepping on the instrument's trigger), gate DACs per cell."""
        self.transact(bp.Op.ROUTE, bp.ROUTE_HEAD.pack(bp.ROUTE_MODES[mode])
                      + bp.pack_cells(tile, row, col) + bp.pack_f64(gate_V))

    def route_clear(self) -> None:
        self.transact(bp.Op.ROUTE_CLEAR)

    # ---- virtual time (virtual board only; real firmware answers UNSUPPORTED) ----
    def time_now(self) -> float:
        return float(struct.unpack("<d", self.transact(bp.Op.TIME_GET))[0])

    def time_advance(self, duration_s: float) -> float:
        return float(struct.unpack("<d", self.transact(bp.Op.TIME_ADVANCE,
                                                       struct.pack("<d", duration_s)))[0])

    def close(self) -> None:
        try:
            self._port.close()
        finally:
            super().close()
