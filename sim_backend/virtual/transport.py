"""Loopback TCP plumbing for the virtual instruments, with a seeded fault injector.

Each virtual instrument is a :class:`TcpServer` bound to 127.0.0.1 on a free port, one
thread per connection (instrument links are one-client, request/reply, so threads are
simpler than asyncio and plenty fast). Replies go out through :class:`FaultInjector`,
which tests use to garble, truncate, drop or delay them — the failures a real cable,
adapter or overloaded instrument produces — reproducibly from a seed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

FAULT_KINDS = ("garble", "truncate", "drop", "delay")


@dataclass
class FaultInjector:
    """Decides, reply by reply, whether to damage what an instrument sends.

    Two ways to use it: ``rates`` (probability per reply of each fault kind, drawn from a
    generator seeded with ``seed``) for soak tests, and :meth:`schedule` (the next ``count``
    replies of one instrument get one fault) for exact tests.
    """

    seed: int = 0
    rates: dict[str, float] = field(default_factory=dict)
    delay_s: float = 1.0
    _rng: np.random.Generator = field(init=False, repr=False)
    _queue: dict[str, deque[str]] = field(init=False, repr=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    injected: list[tuple[str, str]] = field(init=False, default_factory=list)
    """(instrument, fault kind) of every fault applied, in order."""

    def __post_init__(self) -> None:
        for k in self.rates:
            if k not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {k!r}; use {', '.join(FAULT_KINDS)}")
        self._rng = np.random.default_rng(self.seed)

    def schedule(self, instrument: str, kind: str, count: int = 1) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._queue.setdefault(instrument, deque()).extend([kind] * count)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.rates = {}

    def _pick(self, instrument: str) -> str | None:
        with self._lock:
            q = self._queue.get(instrument)
            if q:
                return q.popleft()
            for kind, p in self.rates.items():
                if p > 0 and self._rng.random() < p:
                    return kind
            return None

    def send(self, instrument: str, sock: socket.socket, data: bytes) -> None:
        kind = self._pick(instrument)
        if kind is None:
            sock.sendall(data)
            return
        with self._lock:
            self.injected.append((instrument, kind))
            if kind == "garble":
                buf = np.frombuffer(data, dtype=np.uint8).copy()
                body = max(buf.size - 1, 1)  # keep a line terminator where there is one
                k = max(1, body // 8)
                pos = self._rng.choice(body, size=min(k, body), replace=False)
                buf[pos] = self._rng.integers(0x80, 0x100, size=pos.size, dtype=np.uint8)
                out = buf.tobytes()
            elif kind == "truncate":
                out = data[: max(1, len(data) // 2) - 1] if len(data) > 2 else b""
            else:
                out = data
        if kind == "drop":
            return
        if kind == "delay":
            time.sleep(self.delay_s)
        if out:
            sock.sendall(out)


class TcpServer:
    """Accepts connections on 127.0.0.1 and hands each to ``handler(conn, stop_event)`` in
    its own daemon thread."""

    def __init__(
        self, name: str, handler: Callable[[socket.socket, threading.Event], None], port: int = 0
    ) -> None:
        self.name = name
        self._handler = handler
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))  # loopback only, by design
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name=f"virtual-{name}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.2)
            self._conns.append(conn)
            threading.Thread(
                target=self._serve, args=(conn,), daemon=True, name=f"virtual-{self.name}-conn"
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._handler(conn, self._stop)
        except OSError:
            pass
        finally:
            conn.close()
            with contextlib.suppress(ValueError):
                self._conns.remove(conn)

    def close(self, join: bool = True) -> None:
        self._stop.set()
        self._sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        if join:
            self.join()

    def join(self) -> None:
        self._thread.join(timeout=2.0)


def recv_some(conn: socket.socket, stop: threading.Event) -> bytes | None:
    """Next chunk from ``conn``; ``None`` when the peer closed or the server stops."""
    while not stop.is_set():
        try:
            data = conn.recv(1 << 20)
        except TimeoutError:
            continue
        return data or None
    return None


def serve_lines(
    conn: socket.socket,
    stop: threading.Event,
    on_line: Callable[[str], bytes | None],
    send: Callable[[bytes], None],
    *,
    max_line: int = 1 << 20,
    on_overflow: Callable[[], None] | None = None,
) -> None:
    """Line-oriented (``\\n``-terminated) request loop for SCPI / TSP instruments. A line
    longer than ``max_line`` bytes is discarded up to its newline (``on_overflow`` is told),
    so no client can make the server hold more than that."""
    buf = bytearray()
    skipping = False
    while True:
        data = recv_some(conn, stop)
        if data is None:
            return
        buf += data
        if skipping:
            i = buf.find(b"\n")
            if i < 0:
                buf.clear()
                continue
            del buf[: i + 1]
            skipping = False
        if buf.find(b"\n") < 0 and len(buf) > max_line:
            buf.clear()
            skipping = True
            if on_overflow is not None:
                on_overflow()
            continue
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            line = bytes(buf[:i]).decode("ascii", "replace").rstrip("\r")
            del buf[: i + 1]
            reply = on_line(line)
            if reply:
                send(reply)
