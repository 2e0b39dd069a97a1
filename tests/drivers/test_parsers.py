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
from sim_backend.virtual.scpi_parser import split_top

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
                                      exclude_characters=";\"'(){}"), min_size=1, max_size=12),
                min_size=1, max_size=6), st.text(st.sampled_from("a;b "), max_size=8))
def test_split_units_respects_quotes(units: list[str], quoted: str) -> None:
    msg = ";".join(units) + f';:SENS:FUNC "{quoted}"'
    parts = [p.strip() for p in split_top(msg, ";")]
    assert parts[:-1] == units
    assert parts[-1] == f':SENS:FUNC "{quoted}"'


def test_parse_float_reports_garbage_as_communication_error() -> None:
    with pytest.raises(CommunicationError, match="expected a number"):
        parse_float("1.0\x8fe-6", "level")
    assert math.isinf(parse_float("inf", "x"))


@given(st.lists(st.floats(-1e-4, 1e-4, allow_nan=False), min_size=1, max_size=40),
       st.data())
def test_a_corrupted_block_is_an_error_or_within_the_mean_tolerance(
        currents: list[float], data: st.DataObject) -> None:
    """Any byte of a ``#0`` block replaced (the count, the terminator and the mean being
    what the instrument reported for the true readings): ``verify_block`` raises, or what
    it returns differs from the truth by no more than the mean check can see."""
    import numpy as np

    from drivers._link import verify_block

    true = np.asarray(currents, dtype=np.float64)
    raw = bytearray(b"#0" + true.astype("<f8").tobytes() + b"\n")
    k = data.draw(st.integers(0, len(raw) - 1))
    raw[k] = data.draw(st.integers(0, 255))
    try:
        got = verify_block("smu", bytes(raw), true.size, 2e-4, true.size, float(np.mean(true)))
    except CommunicationError:
        return
    scale = max(float(np.max(np.abs(got))), float(np.max(np.abs(true))), 1e-300)
    assert float(np.max(np.abs(got - true))) <= true.size * 2e-12 * scale + 1e-300


@given(st.sampled_from(["2450", "2600B"]), st.floats(1e-5, 1e-2), st.sampled_from([50, 60]))
def test_form_delay_is_exact_or_refused(model: str, width_s: float, lf: int) -> None:
    from labctl.core.errors import RequestRejected
    from labctl.wire.smu_timing import KEITHLEY_2450, KEITHLEY_2600B, form_delay_s, on_time_s

    t = KEITHLEY_2450 if model == "2450" else KEITHLEY_2600B
    try:
        d = form_delay_s(t, width_s, float(lf), 1e-2)
    except RequestRejected:
        return
    assert d == 0.0 or t.min_nonzero_delay_s <= d <= t.max_delay_s
    on = on_time_s(t, d, t.min_nplc, float(lf), autozero=False)
    assert 0.0 <= width_s - on <= 4 * math.ulp(width_s)
