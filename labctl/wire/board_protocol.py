"""The FPGA test board's framed binary protocol: one definition for both ends.

The host driver (``drivers.fpga_board``) and the virtual board
(``sim_backend.virtual.board``) must agree byte for byte, and import-linter keeps those two
packages independent of each other, so the codec lives here in the core. It is pure
``struct``/``zlib``/numpy: no I/O. The protocol is specified for firmware authors in
``docs/board-protocol.md``; this module is its executable form.

Frame (all integers little-endian)::

    A5 5A | u32 length | u8 opcode | u8 status | u16 seq | u16 hcrc | payload | u32 crc

``length`` counts payload bytes only. ``hcrc`` is CRC-16/CCITT (``binascii.crc_hqx``, init
0xFFFF) over bytes 2..9, so a receiver hunting for the sync word after line noise rejects a
false header before trusting its length. ``crc`` is CRC-32 (``zlib.crc32``, the IEEE 802.3
polynomial) over the 12 header bytes and the payload. Replies carry the request's opcode and
sequence number; ``status`` is 0 in requests and one of :class:`Status` in replies.
"""

from __future__ import annotations

import binascii
import enum
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

SYNC = b"\xa5\x5a"
HEADER = struct.Struct("<2sIBBHH")
HEADER_SIZE = HEADER.size  # 12
CRC_SIZE = 4
MAX_PAYLOAD = 64 * 1024 * 1024
"""Largest payload a receiver accepts; a longer length is treated as line noise."""


class Op(enum.IntEnum):
    """Opcodes. 0x0_: link and status, 0x1_: cell operations, 0x2_: routing for external
    instruments, 0x3_: virtual-time control (virtual board only)."""

    IDENT = 0x01
    STATUS = 0x02
    ERROR_NEXT = 0x03
    SET_CLAMP = 0x04
    WATCHDOG = 0x05
    HEARTBEAT = 0x06
    ABORT = 0x07
    PULSE_BATCH = 0x10
    READ_BATCH = 0x11
    MVM = 0x12
    VERIFY_WRITE = 0x13
    ROUTE = 0x20
    ROUTE_CLEAR = 0x21
    TIME_GET = 0x30
    TIME_ADVANCE = 0x31


class Status(enum.IntEnum):
    OK = 0
    ERROR = 1
    """The board refused or failed the request; payload is i32 code + UTF-8 message."""
    UNSUPPORTED = 2
    """The firmware does not implement this opcode (e.g. virtual time on real hardware)."""
    BAD_FRAME = 3
    """The request failed its CRC or could not be parsed; payload is a UTF-8 message."""


KIND_CODES = {"SET": 0, "RESET": 1, "FORM": 2}
KIND_NAMES = {v: k for k, v in KIND_CODES.items()}
ROUTE_MODES = {"READ": 0, "SET": 1, "RESET": 2, "FORM": 3}
ROUTE_NAMES = {v: k for k, v in ROUTE_MODES.items()}


@dataclass(frozen=True)
class Frame:
    op: int
    seq: int
    payload: bytes
    status: int = 0


class FrameError(Exception):
    """A frame whose header was sound but whose CRC or body was not. ``op``/``seq`` are
    known so a board can answer BAD_FRAME to the right request."""

    def __init__(self, message: str, op: int | None = None, seq: int | None = None,
                 consumed: int = 0) -> None:
        super().__init__(message)
        self.op = op
        self.seq = seq
        self.consumed = consumed
        """Bytes of the receive buffer the bad frame occupied (discard them)."""


def encode(frame: Frame) -> bytes:
    n = len(frame.payload)
    if n > MAX_PAYLOAD:
        raise ValueError(f"payload of {n} bytes exceeds the protocol limit {MAX_PAYLOAD}")
    head = bytearray(HEADER.pack(SYNC, n, frame.op, frame.status, frame.seq & 0xFFFF, 0))
    struct.pack_into("<H", head, 10, binascii.crc_hqx(bytes(head[2:10]), 0xFFFF))
    crc = zlib.crc32(frame.payload, zlib.crc32(head))
    return bytes(head) + frame.payload + struct.pack("<I", crc)


def try_parse(buf: bytearray) -> tuple[Frame | None, int, int]:
    """Look for one frame at the start of ``buf``, dropping line noise before it.

    Returns ``(frame, consumed, need)``: the frame (or ``None``), how many bytes of ``buf``
    the caller must discard, and how many more bytes are needed at least before another
    call can make progress. Raises :class:`FrameError` (after the caller discards
    ``err.consumed`` bytes, set on the exception) for a frame that fails its CRC.
    """
    start = buf.find(SYNC)
    if start < 0:
        keep = 1 if buf[-1:] == SYNC[:1] else 0
        return None, len(buf) - keep, HEADER_SIZE - keep
    while True:
        if len(buf) - start < HEADER_SIZE:
            return None, start, HEADER_SIZE - (len(buf) - start)
        _, n, op, status, seq, hcrc = HEADER.unpack_from(buf, start)
        if binascii.crc_hqx(bytes(buf[start + 2:start + 10]), 0xFFFF) != hcrc or n > MAX_PAYLOAD:
            nxt = buf.find(SYNC, start + 1)
            if nxt < 0:
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                return None, len(buf) - keep, HEADER_SIZE - keep
            start = nxt
            continue
        total = HEADER_SIZE + n + CRC_SIZE
        if len(buf) - start < total:
            return None, start, total - (len(buf) - start)
        end = start + total
        body = bytes(buf[start:end - CRC_SIZE])
        (crc,) = struct.unpack_from("<I", buf, end - CRC_SIZE)
        if zlib.crc32(body) != crc:
            raise FrameError(
                f"frame seq {seq} op 0x{op:02x}: CRC-32 mismatch ({n} payload bytes)", op, seq, end)
        return Frame(op, seq, body[HEADER_SIZE:], status), end, 0


def decode_one(data: bytes) -> Frame:
    """Decode exactly one complete frame (tests and tools; receivers use :func:`try_parse`)."""
    frame, consumed, _ = try_parse(bytearray(data))
    if frame is None or consumed != len(data):
        raise FrameError(f"not exactly one frame ({len(data)} bytes)")
    return frame


# ---- payload helpers (vectorized; numpy tobytes/frombuffer) ----

U16 = np.dtype("<u2")
F64 = np.dtype("<f8")
F32 = np.dtype("<f4")


def pack_cells(tile: npt.ArrayLike, row: npt.ArrayLike, col: npt.ArrayLike) -> bytes:
    t = np.asarray(tile)
    n = t.size
    arr = np.empty((3, n), dtype=U16)
    arr[0] = t
    arr[1] = row
    arr[2] = col
    return struct.pack("<I", n) + arr.tobytes()


def unpack_cells(buf: bytes, offset: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                                   npt.NDArray[np.int64], int]:
    (n,) = struct.unpack_from("<I", buf, offset)
    offset += 4
    arr = np.frombuffer(buf, dtype=U16, count=3 * n, offset=offset).reshape(3, n).astype(np.int64)
    return arr[0], arr[1], arr[2], offset + 6 * n


def pack_f64(*arrays: npt.ArrayLike) -> bytes:
    return b"".join(np.ascontiguousarray(a, dtype=F64).tobytes() for a in arrays)


def unpack_f64(buf: bytes, offset: int, n: int) -> tuple[npt.NDArray[np.float64], int]:
    a = np.frombuffer(buf, dtype=F64, count=n, offset=offset).astype(np.float64)
    return a, offset + 8 * n


def pack_error(code: int, message: str) -> bytes:
    return struct.pack("<i", code) + message.encode("utf-8", "replace")


def unpack_error(payload: bytes) -> tuple[int, str]:
    if len(payload) < 4:
        return -1, payload.decode("utf-8", "replace")
    (code,) = struct.unpack_from("<i", payload, 0)
    return code, payload[4:].decode("utf-8", "replace")


CLAMP = struct.Struct("<dddd")
"""SET_CLAMP payload and reply: max |V| on bit line, source line, word line, and read."""
STATUS_REPLY = struct.Struct("<IIddddd")
"""STATUS reply: flags, pending errors, clamp (BL, SL, WL, read) volts, watchdog seconds."""
READ_HEAD = struct.Struct("<ddI")
"""READ_BATCH payload head: read_V, gate_V, n_average; then a cell block."""
PULSE_HEAD = struct.Struct("<BBH")
"""PULSE_BATCH payload head: kind, has_compliance, reserved; then cells and f64 arrays."""
MVM_HEAD = struct.Struct("<HHHHHBBdI")
"""MVM payload head: tile, row0, row1, col0, col1, differential, dtype (0 f32, 1 f64),
adc_range_A, batch; then batch × rows inputs of that dtype. Reply: :data:`MVM_REPLY` then
batch × cols outputs (amperes) of the reply's dtype."""
MVM_REPLY = struct.Struct("<IIB3x")
"""MVM reply head: batch, output columns, dtype (0 f32, 1 f64)."""
ROUTE_HEAD = struct.Struct("<B")
"""ROUTE payload head: mode (READ, SET, RESET, FORM); then cells and f64 gate volts."""
VERIFY_HEAD = struct.Struct("<dddddddddddI")
"""VERIFY_WRITE head: read_V, read_gate_V, set_start_V, set_step_V, set_max_V, set_gate_V,
reset_start_V, reset_step_V, reset_max_V, reset_gate_V, width_s, max_iterations; then
cells and f64 g_lo_S, g_hi_S arrays. Reply: f64 final G, u16 pulses used, u8 success."""

FLAG_OUTPUTS_LIVE = 1
FLAG_WATCHDOG_TRIPPED = 2
FLAG_ABORTED = 4
FLAG_ROUTED = 8


def status_dict(payload: bytes) -> dict[str, Any]:
    flags, n_err, bl, sl, wl, rd, wd = STATUS_REPLY.unpack(payload)
    return {
        "flags": flags, "outputs_live": bool(flags & FLAG_OUTPUTS_LIVE),
        "watchdog_tripped": bool(flags & FLAG_WATCHDOG_TRIPPED),
        "aborted": bool(flags & FLAG_ABORTED), "routed": bool(flags & FLAG_ROUTED),
        "pending_errors": n_err, "clamp_bitline_V": bl, "clamp_sourceline_V": sl,
        "clamp_gate_V": wl, "clamp_read_V": rd, "watchdog_s": wd,
    }
