"""Instrument station files: the shipped ones parse; malformed ones raise ConfigError that
names the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drivers.instrument_station import build_backend
from labctl.core.errors import CommunicationError, ConfigError
from labctl.core.station_spec import load_station, parse_station
from sim_backend.virtual import VirtualLab, start_lab_for_station

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
                                                     "address": "x"}},
     "station.envelope.max_bitline_V"),
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
                           {"board": {"type": "FpgaTestBoard"}}), start_lab_for_station)


@pytest.mark.parametrize(("station", "instruments", "key", "text"), [
    ({}, {"board": {"type": "FpgaTestBoard", "address": "x", "init": {"baudrat": 9600}}},
     "instruments.board.init.baudrat", "allowed: baudrate"),
    ({"topology": "board+smu+pulsegen"},
     {"board": {"type": "FpgaTestBoard", "address": "x"},
      "smu": {"type": "Keithley2450", "address": "y", "init": {"nplc": 1}},
      "pulsegen": {"type": "Keysight33500B", "address": "z"}},
     "instruments.smu.init.nplc", "line_frequency_Hz"),
    ({}, {"board": {"type": "FpgaTestBoard", "address": "x",
                    "init": {"timeout_s": 3}}},  # set from instruments.board.timeout
     "instruments.board.init.timeout_s", "allowed"),
    ({"topology": "board+smu+pulsegen"},
     {"board": {"type": "FpgaTestBoard", "address": "x"},
      "smu": {"type": "Keithley2600B", "address": "y", "init": {"line_frequency_Hz": 55}},
      "pulsegen": {"type": "Keysight33500B", "address": "z"}},
     "instruments.smu.init.line_frequency_Hz", "50 or 60"),
    ({}, {"board": {"type": "FpgaTestBoard", "address": 12345}},
     "instruments.board.address", "must be a string"),
    ({"preset": "default_180nm"}, {"board": {"type": "FpgaTestBoard", "address": "x"}},
     "station.preset", "virtual"),
    ({"chip_id": 17}, {"board": {"type": "FpgaTestBoard", "address": "x"}},
     "station.chip_id", "string"),
    ({"chip_id": "a", "chip": {"chip_id": "b"}},
     {"board": {"type": "FpgaTestBoard", "address": "x"}}, "station.chip_id", "disagrees"),
])
def test_station_errors_name_the_key_and_say_what_is_wrong(
        station: dict[str, Any], instruments: dict[str, Any], key: str, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_backend(spec(station, instruments))
    assert info.value.key == key
    assert key in str(info.value) and text in str(info.value)


def test_connection_error_names_the_address_key_and_the_address() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"socket://127.0.0.1:{port}"
    with pytest.raises(CommunicationError) as info:
        build_backend(spec({}, {"board": {"type": "FpgaTestBoard", "address": url,
                                          "timeout": 0.5}}))
    assert "instruments.board.address" in str(info.value)
    assert url in str(info.value)


@pytest.mark.parametrize("topology", ["board", "board+smu+pulsegen"])
def test_instrument_station_honours_chip_id(topology: str) -> None:
    """Each socketed die gets its own calibration record: ``station.chip_id`` names it on a
    real (here: non-virtual, pointed at a running virtual lab) instrument station."""
    with VirtualLab.start("default_180nm", 0) as lab:
        a = lab.addresses
        inst: dict[str, Any] = {"board": {"type": "FpgaTestBoard", "address": a["board"]}}
        if topology != "board":
            inst["smu"] = {"type": "Keithley2450", "address": a["smu2450"], "visalib": "@py"}
            inst["pulsegen"] = {"type": "Keysight33500B", "address": a["pulsegen"],
                                "visalib": "@py"}
        with build_backend(spec({"topology": topology, "chip_id": "lot42-wafer3-die18"},
                                inst)) as be:
            assert be.chip.chip_id == "lot42-wafer3-die18"
        with build_backend(spec({"topology": topology}, inst)) as be:
            assert be.chip.chip_id != "lot42-wafer3-die18"


def test_idn_mismatch_names_the_station_key() -> None:
    """A 2600B driver pointed at a 2450: refused on ``*IDN?`` before anything is configured,
    naming ``instruments.smu.type``."""
    with VirtualLab.start("default_180nm", 0) as lab:
        a = lab.addresses
        s = spec({"topology": "board+smu+pulsegen"},
                 {"board": {"type": "FpgaTestBoard", "address": a["board"]},
                  "smu": {"type": "Keithley2600B", "address": a["smu2450"], "visalib": "@py"},
                  "pulsegen": {"type": "Keysight33500B", "address": a["pulsegen"],
                               "visalib": "@py"}})
        with pytest.raises(ConfigError, match=r"instruments\.smu\.type.*2450"):
            build_backend(s)
        assert not lab.instruments["smu2450"].output
