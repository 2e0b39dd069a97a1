"""Property tests for the text parsers on both ends of the SCPI/TSP links."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers._link import fmt, parse_float, parse_scpi_error
from drivers.keithley2600b import parse_tsp_error
from labctl.core.errors import CommunicationError
from sim_backend.virtual.scpi import normalize, split_units

messages = st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"'),
                   max_size=40)


@given(st.integers(-999, 999), messages)
def test_scpi_error_round_trip(code: int, message: str) -> None:
    assert parse_scpi_error(f'{code:+d},"{message}"') == (code, message)


@given(st.text(max_size=30))
def test_scpi_error_parser_never_crashes_on_garbage(reply: str) -> None:
    with contextlib.suppress(CommunicationError):
        parse_scpi_error(reply)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_fmt_is_a_bit_exact_round_trip(x: float) -> None:
    assert float(fmt(x)) == x
    assert parse_float(fmt(x) + "\n", "x") == x


@given(st.integers(-9999, 9999), messages.filter(lambda m: "\t" not in m))
def test_tsp_error_round_trip(code: int, message: str) -> None:
    line = f"{float(code):.5e}\t{message}\t0.00000e+00\t0.00000e+00\n"
    assert parse_tsp_error(line) == (code, message)


@given(st.lists(st.text(st.characters(min_codepoint=33, max_codepoint=126,
                                      exclude_characters=";\"'"), min_size=1, max_size=12),
                min_size=1, max_size=6), st.text(st.sampled_from("a;b "), max_size=8))
def test_split_units_respects_quotes(units: list[str], quoted: str) -> None:
    msg = ";".join(units) + f';:SENS:FUNC "{quoted}"'
    parts = split_units(msg)
    assert parts[:-1] == units
    assert parts[-1] == f':SENS:FUNC "{quoted}"'


@pytest.mark.parametrize(("header", "short"), [
    (":SOURce1:VOLTage:ILIMit?", "SOUR:VOLT:ILIM?"), (":sour:volt:ilim?", "SOUR:VOLT:ILIM?"),
    ("SOURCE:SWEEP:VOLTAGE:LINEAR", "SOUR:SWE:VOLT:LIN"), ("*idn?", "*IDN?"),
    ("FUNCtion:PULSe:TRANsition:LEADing", "FUNC:PULS:TRAN:LEAD"),
    (":TRACe:DATA?", "TRAC:DATA?"), ("SYSTem:ERRor:NEXT?", "SYST:ERR:NEXT?")])
def test_normalize_long_and_short_forms(header: str, short: str) -> None:
    assert normalize(header) == short


def test_parse_float_reports_garbage_as_communication_error() -> None:
    with pytest.raises(CommunicationError, match="expected a number"):
        parse_float("1.0\x8fe-6", "level")
    assert math.isinf(parse_float("inf", "x"))
