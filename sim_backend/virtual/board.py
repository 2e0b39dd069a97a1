"""The virtual FPGA test board: ``docs/board-protocol.md`` served over TCP (reach it with
pyserial's ``socket://127.0.0.1:PORT``), backed by the shared simulated macro.

It behaves as the firmware is specified to: the clamp is programmed by the host and
enforced by refusal (a pulse above it is an ERROR reply, nothing applied); a watchdog,
when armed, aborts (all DACs 0 V, routes open) if no frame arrives in time; a request that
fails its CRC is answered BAD_FRAME. Unlike real firmware it also accepts TIME_GET /
TIME_ADVANCE, which read and advance the macro's virtual clock.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.core.backend import PulseKind
from labctl.core.cells import Cells
from labctl.wire import board_protocol as bp
from sim_backend.virtual.hub import ClampTrip, Hub
from sim_backend.virtual.transport import FaultInjector, recv_some

FIRMWARE = "virtual-board 1.0 (labctl sim_backend)"


class BoardError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class VirtualBoard:
    """Protocol state machine; one instance per virtual lab, any number of connections."""

    def __init__(self, hub: Hub, faults: FaultInjector, name: str = "board") -> None:
        self.hub = hub
        self.faults = faults
        self.name = name
        self.watchdog_s = 0.0
        self.last_frame = time.monotonic()
        self.flags = 0
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="virtual-board-watchdog").start()

    def close(self) -> None:
        self._stop.set()

    # ---- watchdog ----
    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            with self.hub.lock:
                if self.watchdog_s > 0 and time.monotonic() - self.last_frame > self.watchdog_s:
                    self._abort()
                    self.flags |= bp.FLAG_WATCHDOG_TRIPPED
                    self.watchdog_s = 0.0
                    self.hub.board_errors.append((310, "watchdog expired: outputs off"))

    def _abort(self) -> None:
        self.hub.route_clear()
        self.flags = (self.flags | bp.FLAG_ABORTED) & ~(bp.FLAG_ROUTED | bp.FLAG_OUTPUTS_LIVE)

    # ---- connection loop ----
    def serve(self, conn: socket.socket, stop: threading.Event) -> None:
        buf = bytearray()
        while True:
            data = recv_some(conn, stop)
            if data is None:
                return
            buf += data
            while buf:
                try:
                    frame, consumed, _ = bp.try_parse(buf)
                except bp.FrameError as e:
                    del buf[: e.consumed]
                    reply = bp.Frame(e.op or 0, e.seq or 0, str(e).encode(), bp.Status.BAD_FRAME)
                    self.faults.send(self.name, conn, bp.encode(reply))
                    continue
                del buf[:consumed]
                if frame is None:
                    break
                self.faults.send(self.name, conn, bp.encode(self.handle(frame)))

    def handle(self, frame: bp.Frame) -> bp.Frame:
        with self.hub.lock:
            self.last_frame = time.monotonic()
            try:
                op = bp.Op(frame.op)
            except ValueError:
                return bp.Frame(frame.op, frame.seq, b"", bp.Status.UNSUPPORTED)
            try:
                payload = self._dispatch(op, frame.payload)
            except BoardError as e:
                self.hub.board_errors.append((e.code, str(e)))
                return bp.Frame(frame.op, frame.seq, bp.pack_error(e.code, str(e)), bp.Status.ERROR)
            except ClampTrip:
                code, msg = self.hub.board_errors[-1]
                return bp.Frame(frame.op, frame.seq, bp.pack_error(code, msg), bp.Status.ERROR)
            except (struct.error, ValueError, IndexError) as e:
                return bp.Frame(
                    frame.op,
                    frame.seq,
                    bp.pack_error(400, f"malformed {op.name} payload: {e}"),
                    bp.Status.ERROR,
                )
            return bp.Frame(frame.op, frame.seq, payload, bp.Status.OK)

    # ---- opcodes ----
    def _cells(self, payload: bytes, off: int) -> tuple[Cells, int]:
        t, r, c, off = bp.unpack_cells(payload, off)
        m = self.hub.macro
        for name, a, n in (("tile", t, m.n_tiles), ("row", r, m.n_rows), ("col", c, m.n_cols)):
            if a.size and int(a.max()) >= n:
                raise BoardError(201, f"{name} {int(a.max())} outside 0..{n - 1}")
        return Cells(t, r, c), off

    def _dispatch(self, op: bp.Op, p: bytes) -> bytes:
        hub, macro = self.hub, self.hub.macro
        if op is bp.Op.IDENT:
            return json.dumps(
                {
                    "vendor": "labctl",
                    "model": "virtual 1T1R test board",
                    "serial": macro.chip.chip_id,
                    "firmware": FIRMWARE,
                    "verify_write": True,
                    "chip": macro.chip.to_dict(),
                }
            ).encode()
        if op is bp.Op.STATUS:
            routed = bp.FLAG_ROUTED if hub.cells is not None else 0
            c = hub.clamp_V
            return bp.STATUS_REPLY.pack(
                self.flags | routed,
                len(hub.board_errors),
                c["BL"],
                c["SL"],
                c["WL"],
                c["READ"],
                self.watchdog_s,
            )
        if op is bp.Op.ERROR_NEXT:
            code, msg = hub.board_errors.popleft() if hub.board_errors else (0, "no error")
            return bp.pack_error(code, msg)
        if op is bp.Op.SET_CLAMP:
            bl, sl, wl, rd = bp.CLAMP.unpack(p)
            if min(bl, sl, wl, rd) < 0 or max(bl, sl, wl) > 10.0 or rd > 1.0:
                raise BoardError(220, "clamp outside the board's range (0..10 V, read 0..1 V)")
            hub.clamp_V = {"BL": bl, "SL": sl, "WL": wl, "READ": rd}
            return bp.CLAMP.pack(bl, sl, wl, rd)
        if op is bp.Op.WATCHDOG:
            (self.watchdog_s,) = struct.unpack("<d", p)
            self.flags &= ~bp.FLAG_WATCHDOG_TRIPPED
            return b""
        if op is bp.Op.HEARTBEAT:
            return b""
        if op is bp.Op.ABORT:
            self._abort()
            return b""
        if op is bp.Op.PULSE_BATCH:
            kind_code, has_comp, _ = bp.PULSE_HEAD.unpack_from(p, 0)
            cells, off = self._cells(p, bp.PULSE_HEAD.size)
            n = len(cells)
            amp, off = bp.unpack_f64(p, off, n)
            gate, off = bp.unpack_f64(p, off, n)
            width, off = bp.unpack_f64(p, off, n)
            comp = bp.unpack_f64(p, off, n)[0] if has_comp else None
            kind = PulseKind(bp.KIND_NAMES[kind_code])
            self._clamp(kind.terminal, amp)
            self._clamp("WL", gate)
            macro.pulse(cells, kind, amp, gate, width, comp)
            self.flags &= ~bp.FLAG_ABORTED
            return b""
        if op is bp.Op.READ_BATCH:
            read_V, gate_V, n_avg = bp.READ_HEAD.unpack_from(p, 0)
            cells, _ = self._cells(p, bp.READ_HEAD.size)
            self._clamp("READ", [read_V])
            self._clamp("WL", [gate_V])
            if n_avg < 1:
                raise BoardError(221, "n_average must be at least 1")
            return bp.pack_f64(macro.read_current(cells, read_V, gate_V, n_avg))
        if op is bp.Op.MVM:
            tile, r0, r1, c0, c1, diff, code, adc, batch = bp.MVM_HEAD.unpack_from(p, 0)
            dt = bp.F64 if code else bp.F32
            raw = np.frombuffer(p, dt, batch * (r1 - r0), bp.MVM_HEAD.size)
            x: npt.NDArray[np.floating[Any]] = raw.reshape(batch, r1 - r0).astype(
                np.float64 if code else np.float32
            )
            self._clamp("READ", x)
            y = macro.mvm_current(tile, x, slice(r0, r1), slice(c0, c1), bool(diff), adc)
            out_code = 1 if y.dtype == np.float64 else 0
            y = np.ascontiguousarray(y, dtype=bp.F64 if out_code else bp.F32)
            return bp.MVM_REPLY.pack(y.shape[0], y.shape[1], out_code) + y.tobytes()
        if op is bp.Op.VERIFY_WRITE:
            return self._verify_write(p)
        if op is bp.Op.ROUTE:
            (mode,) = bp.ROUTE_HEAD.unpack_from(p, 0)
            cells, off = self._cells(p, bp.ROUTE_HEAD.size)
            gate, _ = bp.unpack_f64(p, off, len(cells))
            self._clamp("WL", gate)
            hub.route(bp.ROUTE_NAMES[mode], cells, gate)
            return b""
        if op is bp.Op.ROUTE_CLEAR:
            hub.route_clear()
            return b""
        if op is bp.Op.TIME_GET:
            return struct.pack("<d", macro.clock.now())
        if op is bp.Op.TIME_ADVANCE:
            (dt_s,) = struct.unpack("<d", p)
            if not (dt_s >= 0.0) or not np.isfinite(dt_s):
                raise BoardError(222, f"cannot advance time by {dt_s!r} s")
            macro.clock.wait(dt_s)
            return struct.pack("<d", macro.clock.now())
        raise BoardError(100, f"opcode {op.name} not handled")

    def _clamp(self, terminal: str, values: object) -> None:
        v = np.abs(np.asarray(values, dtype=np.float64))
        lim = self.hub.clamp_V[terminal]
        if v.size and float(v.max()) > lim:
            raise BoardError(
                301,
                f"{terminal} request {float(v.max()):g} V exceeds the "
                f"clamp {lim:g} V; refused, nothing applied",
            )

    def _verify_write(self, p: bytes) -> bytes:
        """Program-and-verify in 'firmware': read; SET cells below the band and RESET cells
        above it with amplitudes rising one step per visit; repeat until every cell is in
        band or out of iterations. (NeuRRAM-style incremental pulses, docs/references.md.)"""
        (
            read_V,
            read_gate,
            set0,
            set_step,
            set_max,
            set_gate,
            rst0,
            rst_step,
            rst_max,
            rst_gate,
            width,
            max_iter,
        ) = bp.VERIFY_HEAD.unpack_from(p, 0)
        cells, off = self._cells(p, bp.VERIFY_HEAD.size)
        n = len(cells)
        lo, off = bp.unpack_f64(p, off, n)
        hi, _ = bp.unpack_f64(p, off, n)
        self._clamp("BL", [set_max])
        self._clamp("SL", [rst_max])
        self._clamp("WL", [set_gate, rst_gate, read_gate])
        self._clamp("READ", [read_V])
        macro = self.hub.macro
        set_amp = np.full(n, set0)
        rst_amp = np.full(n, rst0)
        used = np.zeros(n, dtype=np.int64)
        g = macro.read_current(cells, read_V, read_gate, 1) / read_V
        for _ in range(int(max_iter)):
            low, high = g < lo, g > hi
            if not (low.any() or high.any()):
                break
            for mask, kind, amp, gate in (
                (low, PulseKind.SET, set_amp, set_gate),
                (high, PulseKind.RESET, rst_amp, rst_gate),
            ):
                idx = np.flatnonzero(mask)
                if idx.size:
                    macro.pulse(
                        cells.subset(idx),
                        kind,
                        amp[idx].copy(),
                        np.full(idx.size, gate),
                        np.full(idx.size, width),
                        None,
                    )
                    used[idx] += 1
            set_amp[low] = np.minimum(set_amp[low] + set_step, set_max)
            rst_amp[high] = np.minimum(rst_amp[high] + rst_step, rst_max)
            active = np.flatnonzero(low | high)
            g[active] = macro.read_current(cells.subset(active), read_V, read_gate, 1) / read_V
        ok = (g >= lo) & (g <= hi)
        return (
            g.astype(bp.F64).tobytes()
            + used.astype(bp.U16).tobytes()
            + ok.astype(np.uint8).tobytes()
        )
