"""Figures in their display unit: conductance always in µS, SI prefixes for energy and time,
NaN as "not measured"."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labctl.core.quantity_text import NOT_MEASURED, display, quantity, split_unit

PREFIX = {"G": 1e9, "M": 1e6, "k": 1e3, "": 1.0, "m": 1e-3, "µ": 1e-6, "n": 1e-9, "p": 1e-12,
          "f": 1e-15}


@given(st.floats(-1e-2, 1e-2, allow_nan=False))
def test_conductance_is_always_microsiemens(g_S: float) -> None:
    text = quantity(g_S, "S")
    number, unit = text.split(" ")
    assert unit == "µS"
    assert float(number) * 1e-6 == pytest.approx(g_S, rel=1e-3, abs=1e-20)


@given(st.floats(1e-14, 1e8), st.sampled_from(["J", "Hz", "W"]))
def test_prefixed_units_read_back(v: float, unit: str) -> None:
    number, shown = quantity(v, unit).split(" ")
    assert shown.endswith(unit)
    assert 1 <= abs(float(number)) < 1000 or shown == unit
    assert float(number) * PREFIX[shown[: -len(unit)]] == pytest.approx(v, rel=1e-3)


@given(st.floats(60, 1e9))
def test_long_times_in_seconds_and_words(t_s: float) -> None:
    text = quantity(t_s, "s")
    assert float(text.split(" s (")[0].replace(",", "")) == pytest.approx(t_s, abs=0.5)
    assert text.endswith(("min)", "h)", "day)", "days)"))


@pytest.mark.parametrize("unit", ["S", "J", "s", "V", ""])
def test_nan_is_not_measured(unit: str) -> None:
    assert quantity(math.nan, unit) == NOT_MEASURED
    assert display(f"energy_{unit}" if unit else "energy", math.nan)[1] == NOT_MEASURED


@pytest.mark.parametrize(("key", "name", "unit"), [
    ("rms_error_usable_S", "rms_error_usable", "S"), ("levels_uS", "levels", "uS"),
    ("energy_J_per_sample_chip", "energy_per_sample_chip", "J"), ("wait_s", "wait", "s"),
    ("distinguishable_86400s", "distinguishable_86400s", ""), ("n_cells", "n_cells", ""),
    ("S", "S", "")])
def test_split_unit(key: str, name: str, unit: str) -> None:
    assert split_unit(key) == (name, unit)


def test_one_unit_in_a_report() -> None:
    assert display("rms_error_usable_S", 3.926e-7) == ("rms_error_usable", "0.3926 µS")
    assert display("sigma_1s_uS", [1.5, 2.1]) == ("sigma_1s", "[1.5, 2.1] µS")
    assert display("wait_s", 86400.0) == ("wait", "86,400 s (1 day)")
    assert display("device_time_s", 0.3133) == ("device_time", "313.3 ms")
    assert display("n_cells", 4096) == ("n_cells", "4096")
    assert display("policy", "gate") == ("policy", "gate")
