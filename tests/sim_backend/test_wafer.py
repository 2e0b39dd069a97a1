"""The wafer model: die sites on the wafer, per-die presets around the wafer mean, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.core.errors import ConfigError
from sim_backend.presets import default_180nm
from sim_backend.wafer import WaferModel, die_preset, die_sites, wafer_dies


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), diameter=st.floats(50, 300), edge=st.floats(0, 10))
def test_sites_are_distinct_and_wholly_on_the_usable_wafer(n: int, diameter: float,
                                                           edge: float) -> None:
    model = WaferModel(diameter_mm=diameter, edge_exclusion_mm=edge)
    xy = die_sites(n, model)
    assert xy.shape == (n, 2)
    assert len({(round(x, 6), round(y, 6)) for x, y in xy}) == n
    if n > 1:
        d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
        pitch = d[d > 1e-9].min()
        corner = np.hypot(np.abs(xy[:, 0]) + pitch / 2, np.abs(xy[:, 1]) + pitch / 2)
        assert np.all(corner <= model.usable_radius_mm + 1e-6)


def test_fixed_pitch_refuses_more_dies_than_fit() -> None:
    with pytest.raises(ConfigError, match="die_pitch_mm"):
        die_sites(1000, WaferModel(die_pitch_mm=20.0))
    with pytest.raises(ConfigError, match="--dies"):
        die_sites(0, WaferModel())


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 40))
def test_same_seed_same_wafer_and_independent_chip_seeds(seed: int, n: int) -> None:
    a = wafer_dies(default_180nm(), n, seed)
    b = wafer_dies(default_180nm(), n, seed)
    assert a == b
    assert len({d.seed for d in a}) == n
    for d in a:  # every die's preset is a valid preset
        die_preset(default_180nm(), d)


def test_more_dies_do_not_change_the_chip_seeds_of_the_first() -> None:
    """A die's chip seed depends on the campaign seed and its index only."""
    small = [d.seed for d in wafer_dies(default_180nm(), 4, 7)]
    large = [d.seed for d in wafer_dies(default_180nm(), 40, 7)]
    assert small == large[:4]


def test_radial_gradient_raises_forming_voltage_toward_the_edge() -> None:
    """No random part: the forming threshold follows t = 1 + a_rad·ρ² exactly (linear in
    thickness), and the edge dies get the higher fault rate."""
    base = default_180nm()
    model = WaferModel(thickness_linear=0.0, thickness_sigma=0.0, vth_sigma_V=0.0,
                       beta_sigma=0.0, fault_sigma=0.0)
    dies = wafer_dies(base, 60, 0, model)
    R = model.diameter_mm / 2
    for d in dies:
        rho2 = (d.x_mm ** 2 + d.y_mm ** 2) / R ** 2
        want = base.switching.form_V_mean * (1 + model.thickness_radial * rho2)
        assert math.isclose(d.overrides["switching"]["form_V_mean"], want, rel_tol=1e-12)
    r = np.array([d.radius_mm for d in dies])
    rate = np.array([d.overrides["faults"]["unformable_rate"] for d in dies])
    assert rate[np.argmax(r)] > rate[np.argmin(r)] >= base.faults.unformable_rate


def test_linear_gradient_points_along_its_angle() -> None:
    model = WaferModel(thickness_radial=0.0, thickness_sigma=0.0, gradient_angle_deg=90.0)
    dies = wafer_dies(default_180nm(), 30, 0, model)
    y = np.array([d.y_mm for d in dies])
    v = np.array([d.overrides["switching"]["form_V_mean"] for d in dies])
    assert np.corrcoef(y, v)[0, 1] > 0.999


def test_spread_matches_the_model() -> None:
    """Die-to-die σ of V_th over many dies is the model's (no radial part)."""
    model = WaferModel(vth_radial_V=0.0, vth_sigma_V=0.02)
    vth = np.array([d.overrides["transistor"]["v_th_V"]
                    for d in wafer_dies(default_180nm(), 2000, 3, model)])
    assert abs(vth.std() - 0.02) < 0.002
    assert abs(vth.mean() - default_180nm().transistor.v_th_V) < 0.002


def test_bad_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="edge_exclusion_mm"):
        WaferModel(diameter_mm=10.0, edge_exclusion_mm=6.0)
    with pytest.raises(ConfigError, match="thickness_sigma"):
        WaferModel(thickness_sigma=-0.1)
