"""Virtual instruments: the simulated macro served on loopback as a test board (framed
binary protocol over TCP, reachable with pyserial ``socket://``), Keithley 2450 and 2600B
SMUs and a Keysight 33500B pulse generator (SCPI/TSP over TCP, VISA
``TCPIP0::127.0.0.1::PORT::SOCKET``). They put the whole wire path under test in CI.
"""

from __future__ import annotations

from typing import Any

from sim_backend.virtual.lab import VirtualLab
from sim_backend.virtual.transport import FaultInjector

__all__ = ["FaultInjector", "VirtualLab", "start_lab"]


def start_lab(preset: str = "default_180nm", seed: int = 0, **kwargs: Any) -> VirtualLab:
    """Entry point named by station files with ``virtual: true`` (see drivers.station)."""
    return VirtualLab.start(preset, seed, **kwargs)
