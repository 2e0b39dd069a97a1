"""A plain-text progress bar on stderr: no dependency, silent when stderr is not a TTY
(so logs and CI output stay clean)."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, label: str, *, stream: TextIO | None = None,
                 enabled: bool | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.width = width
        self._last = ""

    def update(self, done: int, total: int, note: str = "") -> None:
        if not self.enabled or total <= 0:
            return
        frac = min(max(done / total, 0.0), 1.0)
        fill = round(frac * self.width)
        line = (f"\r{self.label} [{'#' * fill}{'.' * (self.width - fill)}] "
                f"{frac * 100:5.1f}% {done}/{total} {note}")
        if line != self._last:
            self.stream.write(line.ljust(len(self._last)))
            self.stream.flush()
            self._last = line

    def close(self) -> None:
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()
            self._last = ""
