"""Build a ``SimBackend`` from a station document (``station.backend: sim``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import ConfigError
from labctl.core.station_spec import StationSpec
from sim_backend.backend import SimBackend
from sim_backend.preset import Preset
from sim_backend.presets import load_preset

SIM_KEYS = {"backend", "chip_id", "preset", "seed", "envelope", "overrides"}


def build_backend(spec: StationSpec) -> SimBackend:
    st = spec.station
    for key in st:
        if key not in SIM_KEYS:
            raise ConfigError(
                spec.source,
                f"station.{key}",
                f"unknown key for a sim station; allowed: {', '.join(sorted(SIM_KEYS))}",
            )
    seed = st.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(
            spec.source, "station.seed", f"must be a non-negative integer, got {seed!r}"
        )
    preset_ref = st.get("preset", "default_180nm")
    if not isinstance(preset_ref, str):
        raise ConfigError(spec.source, "station.preset", "must be a preset name or file path")
    if spec.path is not None and preset_ref.endswith((".yaml", ".yml")):
        candidate = spec.path.parent / preset_ref
        preset_ref = str(candidate) if candidate.is_file() else preset_ref
    preset = load_preset(preset_ref)
    overrides = st.get("overrides", {}) or {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(spec.source, "station.overrides", "must map preset sections to values")
    if overrides:
        merged: dict[str, Any] = preset.to_dict()
        for section, values in overrides.items():
            if section not in merged:
                raise ConfigError(
                    spec.source, f"station.overrides.{section}", "unknown preset section"
                )
            if isinstance(merged[section], dict):
                if not isinstance(values, Mapping):
                    raise ConfigError(
                        spec.source, f"station.overrides.{section}", "must be a mapping"
                    )
                merged[section] = {**merged[section], **values}
            else:
                merged[section] = values
        preset = Preset.from_dict(merged, source=f"{spec.source} (station.overrides)")
    env_data = st.get("envelope", {}) or {}
    if not isinstance(env_data, Mapping):
        raise ConfigError(spec.source, "station.envelope", "must be a mapping of limits")
    envelope = SafetyEnvelope.from_mapping(env_data, source=f"{spec.source} (station.envelope)")
    chip_id = st.get("chip_id")
    if chip_id is not None and not isinstance(chip_id, str):
        raise ConfigError(spec.source, "station.chip_id", "must be a string")
    return SimBackend(preset, seed, envelope=envelope, chip_id=chip_id)
