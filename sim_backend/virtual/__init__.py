"""Virtual instruments: the simulated macro served on loopback as a test board (framed
binary protocol over TCP, reachable with pyserial ``socket://``), Keithley 2450 and 2600B
SMUs and a Keysight 33500B pulse generator (SCPI/TSP over TCP, VISA
``TCPIP0::127.0.0.1::PORT::SOCKET``). They put the whole wire path under test in CI.
"""

from __future__ import annotations

from typing import Any

from labctl.core.station_schema import seed_of
from labctl.core.station_spec import StationSpec
from sim_backend.virtual.lab import VirtualLab
from sim_backend.virtual.transport import FaultInjector

__all__ = ["FaultInjector", "VirtualLab", "start_lab", "start_lab_for_station"]


def start_lab(preset: str = "default_180nm", seed: int = 0, **kwargs: Any) -> VirtualLab:
    """Serve a simulated chip (``preset``, ``seed``) as virtual instruments on loopback."""
    return VirtualLab.start(preset, seed, **kwargs)


def start_lab_for_station(spec: StationSpec) -> VirtualLab:
    """The virtual lab a ``virtual: true`` instrument station describes (its ``preset``,
    ``seed`` and ``chip_id``)."""
    st = spec.station
    seed = seed_of(st, spec.source)  # validated with the station (labctl.core.station_schema)
    preset = str(st.get("preset", "default_180nm"))
    return start_lab(preset, seed, chip_id=st.get("chip_id"))
