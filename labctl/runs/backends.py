"""The composition root: the one place that knows every backend.

A station file (:mod:`labctl.core.station_spec`) names its backend; this module hands the
parsed document to the package that builds it, and for a ``virtual: true`` instrument station
it hands the drivers the simulator's virtual-lab starter (drivers never import the
simulator). The drivers are imported only when an instrument station is opened, so a
simulator run never pays for importing qcodes.
"""

from __future__ import annotations

from pathlib import Path

from labctl.core.backend import BackendBase
from labctl.core.station_spec import StationSpec, load_station
from sim_backend.sim_station import build_backend as build_sim
from sim_backend.virtual import start_lab_for_station


def open_backend(station: str | Path | StationSpec | None = None) -> BackendBase:
    """Build the backend a station file describes (the simulated chip when ``None``)."""
    spec = station if isinstance(station, StationSpec) else load_station(station)
    if spec.backend == "sim":
        return build_sim(spec)
    from drivers.instrument_station import build_backend as build_instruments

    backend: BackendBase = build_instruments(spec, start_lab=start_lab_for_station)
    return backend
