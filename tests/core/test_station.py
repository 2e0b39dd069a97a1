"""Station files: the default station, and clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.core.errors import ConfigError
from labctl.runs.backends import open_backend

ROOT = Path(__file__).resolve().parents[2]


def test_default_and_sim_station_open_the_simulated_chip() -> None:
    with open_backend(None) as be:
        assert type(be).__name__ == "SimBackend"
    with open_backend(ROOT / "protocols/stations/sim.yaml") as be:
        assert be.chip.chip_id == "sim-180nm-0001"


@pytest.mark.parametrize(("body", "key"), [
    ("station: {backend: sim, seed: -3}\n", "station.seed"),
    ("station: {backend: simulator}\n", "station.backend"),
    ("station: {backend: sim, chip: x}\n", "station.chip"),
    ("station: {backend: sim, envelope: {max_gate_V: 'high'}}\n", "station.envelope.max_gate_V"),
    ("station: {backend: sim, envelope: {max_gait_V: 3}}\n", "station.envelope.max_gait_V"),
    ("station: {backend: sim, overrides: {periphery: {ir_drop: maybe}}}\n", "periphery.ir_drop"),
    ("stations: {}\n", "stations"),
    ("instruments: {}\n", "station"),
    ("station: [1, 2]\n", "station"),
    ("station: {backend: sim\n", "(syntax)"),
])
def test_malformed_station_names_the_key(body: str, key: str, tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as e:
        open_backend(path)
    assert e.value.key == key
    assert str(path) in str(e.value)


def test_missing_station_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        open_backend("no/such/station.yaml")


def test_station_overrides_reach_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "station: {backend: sim, preset: ideal, overrides: {periphery: {ir_drop: true}}}\n"
    )
    with open_backend(path) as be:
        assert be.preset.periphery.ir_drop is True  # type: ignore[attr-defined]
