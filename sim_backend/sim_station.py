"""Build a ``SimBackend`` from a station document (``station.backend: sim``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import ConfigError, ConfigErrors
from labctl.core.station_schema import SimStation, validate_station
from labctl.core.station_spec import StationSpec
from labctl.core.validation import did_you_mean
from sim_backend.backend import SimBackend
from sim_backend.preset import Preset
from sim_backend.presets import NAMED, load_preset


def build_backend(spec: StationSpec) -> SimBackend:
    """A simulated chip from a validated sim station (types and ranges: the station schema,
    :mod:`labctl.core.station_schema`); the preset and its overrides are checked here, where
    the preset's fields are known."""
    station, _ = validate_station({"station": spec.station}, spec.source)
    assert isinstance(station, SimStation)
    preset_ref = station.preset
    if spec.path is not None and preset_ref.endswith((".yaml", ".yml")):
        candidate = spec.path.parent / preset_ref
        preset_ref = str(candidate) if candidate.is_file() else preset_ref
    try:
        preset = load_preset(preset_ref)
    except ConfigError as e:
        if e.source != preset_ref:
            raise  # a preset file's own error names that file and its key
        raise ConfigError(spec.source, "station.preset",
                          f"{preset_ref!r}: {e.problem}"
                          f"{did_you_mean(preset_ref, list(NAMED))}") from None
    if station.overrides:
        merged: dict[str, Any] = preset.to_dict()
        problems: list[tuple[str, str]] = []
        for section, values in station.overrides.items():
            if section not in merged:
                problems.append((f"station.overrides.{section}", "unknown preset section"
                                 f"{did_you_mean(section, list(merged))}; allowed: "
                                 f"{', '.join(merged)}"))
            elif isinstance(merged[section], dict):
                if not isinstance(values, Mapping):
                    problems.append((f"station.overrides.{section}", "must be a mapping"))
                else:
                    merged[section] = {**merged[section], **values}
            else:
                merged[section] = values
        if problems:
            raise ConfigErrors(spec.source, problems)
        preset = Preset.from_dict(merged, source=f"{spec.source} (station.overrides)")
    envelope = SafetyEnvelope.from_mapping(station.envelope.model_dump(),
                                           source=f"{spec.source} (station.envelope)")
    return SimBackend(preset, station.seed, envelope=envelope, chip_id=station.chip_id)
