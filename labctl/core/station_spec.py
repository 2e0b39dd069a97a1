"""Station files: which backend, which chip, which instruments.

A station file is YAML with a ``station`` section (always) and, for instrument stations, an
``instruments`` section following qcodes' station-file conventions (name → type, address,
parameters). This module parses the document into a :class:`StationSpec`; the package that
owns the named backend builds it (``sim_backend.sim_station``, ``drivers.instrument_station``),
and :func:`labctl.runs.backends.open_backend` is the one place that knows both.

    station:
      backend: sim            # sim | instruments
      chip_id: sim-180nm-0001
      preset: default_180nm   # a named preset or a preset file path
      seed: 1234

With no station file, the default simulated chip (:data:`DEFAULT_STATION`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.core import yamlio
from labctl.core.errors import ConfigError
from labctl.core.station_schema import validate_station

DEFAULT_STATION: dict[str, Any] = {
    "station": {
        "backend": "sim",
        "chip_id": "sim-180nm-0001",
        "preset": "default_180nm",
        "seed": 1234,
    }
}
"""With no station file: the same chip as ``protocols/stations/sim.yaml``."""


@dataclass(frozen=True)
class StationSpec:
    """A parsed station document. ``source`` names the file in every error message."""

    source: str
    backend: str
    station: Mapping[str, Any]
    instruments: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None


def load_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(str(p), "(file)", f"{what} file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(p), "(file)", "not a UTF-8 text file") from None
    except OSError as e:
        raise ConfigError(str(p), "(file)", f"cannot read it: {e.strerror or e}") from None
    data = yamlio.load(text, str(p))
    if not isinstance(data, dict):
        raise ConfigError(
            str(p), "(top level)", f"must be a mapping of keys, got {type(data).__name__}"
        )
    return data


def parse_station(data: Mapping[str, Any], source: str, path: Path | None = None) -> StationSpec:
    """Validate a station document (:func:`labctl.core.station_schema.validate_station`:
    every problem at once) and wrap it. Also used for the station a run file recorded, so a
    resume trusts that file no more than a station file."""
    station, _ = validate_station(data, source)
    st = data["station"]
    instruments = data.get("instruments") or {}
    return StationSpec(source, str(getattr(station, "backend", "sim")), st, instruments, path)


def load_station(path: str | Path | None) -> StationSpec:
    if path is None:
        return parse_station(DEFAULT_STATION, "(default simulated station)")
    return parse_station(load_yaml_mapping(path, "station"), str(path), Path(path))


def chip_state_in_process(spec: StationSpec) -> bool:
    """Whether the chip's state is created by this process when the backend opens (the
    in-process simulator, or virtual instruments the station starts itself): then a run
    killed with the process lost its chip, and a resume rebuilds it by replay."""
    return spec.backend == "sim" or spec.station.get("virtual") is True
