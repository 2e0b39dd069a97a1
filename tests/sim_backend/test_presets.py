"""Presets: named ones load, files round-trip, bad files name the key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labctl.core.cells import Cells
from labctl.core.errors import ConfigError
from sim_backend import SimBackend, load_preset, save_preset


@pytest.mark.parametrize("name", ["default_180nm", "ideal"])
def test_named_presets_round_trip_through_a_file(name: str, tmp_path: Path) -> None:
    p = load_preset(name)
    path = tmp_path / f"{name}.yaml"
    save_preset(p, path)
    assert load_preset(path) == p


def test_default_macro_geometry() -> None:
    be = SimBackend()
    c = be.chip
    assert c.n_tiles >= 2 and c.n_rows >= 128 and c.n_cols >= 128
    assert (c.g_min_S, c.g_max_S) == pytest.approx((1e-6, 40e-6))


def test_a_fitted_preset_file_changes_the_simulation(tmp_path: Path) -> None:
    p = load_preset("default_180nm").with_changes(read={"relative_sigma": 0.0,
                                                        "floor_sigma_S": 0.0,
                                                        "lf_relative_sigma": 0.0},
                                                  relaxation_on=False)
    path = tmp_path / "fitted.yaml"
    save_preset(p, path)
    be = SimBackend(path, seed=1)
    c = Cells.block(0, slice(0, 8), slice(0, 8))
    be.pulse(c, "FORM", 3.3, 2.0, 1e-3)
    assert np.array_equal(be.read(c), be.read(c))  # no read noise in this preset


@pytest.mark.parametrize(("body", "key"), [
    ("array: {n_rows: many}\n", "array.n_rows"),
    ("read: {relative_sigma: 0.01, colour: red}\n", "read.colour"),
    ("swiching: {}\n", "swiching"),
    ("relaxation: {sigma_1s_S: [1, x]}\n", "relaxation.sigma_1s_S"),
    ("- just\n- a list\n", "(top level)"),
    ("array: [unclosed\n", "(syntax)"),
])
def test_bad_preset_files_name_the_key(body: str, key: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_preset(path)
    assert e.value.key == key and str(path) in str(e.value)


def test_unknown_preset_name() -> None:
    with pytest.raises(ConfigError, match="not a named preset"):
        load_preset("default_90nm")


@pytest.mark.parametrize(("section", "values", "key"), [
    ("periphery", {"dac_bits": 1}, "periphery.dac_bits"),
    ("periphery", {"adc_bits": -3}, "periphery.adc_bits"),
    ("transistor", {"v_hold_V": 0.0}, "transistor.v_hold_V"),
    ("read", {"relative_sigma": -0.5}, "read.relative_sigma"),
    ("faults", {"stuck_lrs_rate": 2.0}, "faults.stuck_lrs_rate"),
    ("array", {"n_rows": 0}, "array.n_rows"),
    ("array", {"g_max_S": 0.5e-6}, "array.g_max_S"),
])
def test_out_of_range_preset_values_name_the_key(section: str, values: dict, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_preset("default_180nm").with_changes(**{section: values})
    assert e.value.key == key


def test_scientific_notation_in_preset_files(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("read: {relative_sigma: 1e-2, floor_sigma_S: 5E-9}\n")
    assert load_preset(path).read.relative_sigma == 0.01
