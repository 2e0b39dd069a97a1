"""Clocks. Protocols wait with ``backend.clock.wait(s)``, never ``time.sleep``.

On hardware the clock is wall time; on the simulator it is virtual, so a simulated day of
relaxation takes no wall time at all.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

from labctl.core.errors import RequestRejected


@runtime_checkable
class Clock(Protocol):
    """Time as the chip experiences it, in seconds."""

    def now(self) -> float:
        """Seconds since an arbitrary epoch fixed for this backend."""
        ...

    def wait(self, duration_s: float) -> None:
        """Let ``duration_s`` seconds pass for the chip."""
        ...


class WallClock:
    """Real time, for instrument backends."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def wait(self, duration_s: float) -> None:
        _check_duration(duration_s)
        time.sleep(duration_s)


class VirtualClock:
    """Simulated time: ``wait`` advances it instantly. Operations do not move it by
    themselves (their cost is booked on the ledger as device time), so the simulated chip's
    state never depends on how operations were batched."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._t = float(start_s)

    def now(self) -> float:
        return self._t

    def wait(self, duration_s: float) -> None:
        _check_duration(duration_s)
        self._t += float(duration_s)

    def set(self, t_s: float) -> None:
        """Jump to an absolute time (used by the virtual instruments to share one clock)."""
        if not t_s >= self._t:
            raise RequestRejected(f"virtual time cannot go backwards ({t_s} < {self._t})")
        self._t = float(t_s)


def _check_duration(duration_s: float) -> None:
    ok = isinstance(duration_s, int | float) and not isinstance(duration_s, bool)
    if not ok or not 0.0 <= duration_s < float("inf"):
        raise RequestRejected(
            f"a wait must be a finite, non-negative number of seconds, got {duration_s!r}"
        )
