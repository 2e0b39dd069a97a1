"""Instrument station files: the shipped ones parse; malformed ones raise ConfigError that
names the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drivers.station import build_backend
from labctl.errors import ConfigError
from labctl.station import load_station, parse_station

STATIONS = Path(__file__).resolve().parents[2] / "protocols" / "stations"


def spec(station: dict[str, Any], instruments: dict[str, Any] | None = None) -> Any:
    doc: dict[str, Any] = {"station": {"backend": "instruments", **station}}
    if instruments is not None:
        doc["instruments"] = instruments
    return parse_station(doc, "test.yaml")


@pytest.mark.parametrize("name", ["virtual-lab.yaml", "virtual-lab-discrete.yaml",
                                  "example-lab.yaml"])
def test_shipped_station_files_parse(name: str) -> None:
    s = load_station(STATIONS / name)
    assert s.backend == "instruments"
    assert "board" in s.instruments


@pytest.mark.parametrize(("station", "instruments", "key"), [
    ({"topolgy": "board"}, {"board": {"type": "FpgaTestBoard", "address": "x"}},
     "station.topolgy"),
    ({"topology": "ring"}, {"board": {"type": "FpgaTestBoard", "address": "x"}},
     "station.topology"),
    ({"virtual": "yes"}, {"board": {"type": "FpgaTestBoard"}}, "station.virtual"),
    ({}, {}, "instruments.board"),
    ({}, {"board": {"type": "FpgaTestBoard"}}, "instruments.board.address"),
    ({}, {"board": {"type": "Keithley2450", "address": "x"}}, "instruments.board.type"),
    ({}, {"board": {"type": "os.system", "address": "x"}}, "instruments.board.type"),
    ({}, {"board": {"type": "FpgaTestBoard", "adress": "x"}}, "instruments.board.adress"),
    ({"topology": "board+smu+pulsegen"}, {"board": {"type": "FpgaTestBoard", "address": "x"},
                                          "smu": {"type": "Keithley2450", "address": "y"}},
     "instruments.pulsegen"),
    ({}, {"board": {"type": "FpgaTestBoard", "address": "x"}, "dmm": {}}, "instruments.dmm"),
    ({"envelope": {"max_bitline_V": -1}}, {"board": {"type": "FpgaTestBoard",
                                                     "address": "x"}}, "max_bitline_V"),
    ({"virtual": True}, {"board": {"type": "FpgaTestBoard", "address": "x"}},
     "instruments.board.address"),
    ({}, {"board": {"type": "FpgaTestBoard", "address": "x", "timeout": "5 s"}},
     "instruments.board.timeout"),
    ({"watchdog_s": -1}, {"board": {"type": "FpgaTestBoard", "address": "x"}},
     "station.watchdog_s"),
])
def test_malformed_station_names_the_key(station: dict[str, Any],
                                         instruments: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_backend(spec(station, instruments))
    assert info.value.key == key
    assert key in str(info.value)


def test_unknown_chip_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"station\.chip\.n_rowz"):
        build_backend(spec({"virtual": True, "chip": {"n_rowz": 3}},
                           {"board": {"type": "FpgaTestBoard"}}))
