"""A scripted instrument for message-level driver tests: a loopback TCP server that expects
an exact sequence of messages and answers each with an exact reply (pymeasure's
``expected_protocol`` idea, over a socket so the driver runs unmodified through pyvisa-py).
Any unexpected message is recorded and the server stops answering, so the test fails with
the first mismatch instead of a later symptom."""

from __future__ import annotations

import socket
import threading


class ScriptedInstrument:
    def __init__(self, script: list[tuple[bytes, bytes | None]], *, line: bool = True) -> None:
        self.script = list(script)
        self.line = line
        self.received: list[bytes] = []
        self.mismatch: tuple[bytes, bytes] | None = None
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self.port = self._sock.getsockname()[1]
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    @property
    def visa_address(self) -> str:
        return f"TCPIP0::127.0.0.1::{self.port}::SOCKET"

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def _run(self) -> None:
        conn, _ = self._sock.accept()
        buf = b""
        with conn:
            while self.script:
                expected, reply = self.script[0]
                while len(buf) < len(expected):
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        return
                    buf += chunk
                got, buf = buf[:len(expected)], buf[len(expected):]
                self.received.append(got)
                if got != expected:
                    self.mismatch = (expected, got)
                    return
                self.script.pop(0)
                if reply is not None:
                    conn.sendall(reply)
            conn.settimeout(0.5)
            try:
                extra = conn.recv(1 << 16)
            except (TimeoutError, OSError):
                extra = b""
            if extra:
                self.mismatch = (b"<end of script>", extra)

    def finish(self) -> None:
        self._t.join(timeout=2.0)
        self._sock.close()
        assert self.mismatch is None, f"expected {self.mismatch[0]!r}, got {self.mismatch[1]!r}"
        assert not self.script, f"never received: {[m for m, _ in self.script]}"
