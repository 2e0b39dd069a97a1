"""Relaxation against docs/references.md: NeuRRAM-fitted spread at 1 s and 1 day
(AIHWKit ReRamWan2022NoiseModel), saturation by 2 days, CMO mean shift, correlated reads."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtri

from labctl.core.cells import Cells
from sim_backend import SimBackend, load_preset, rng
from sim_backend.preset import RelaxationParams, uS
from sim_backend.relaxation import DAY_S, RelaxationModel, fit_levels
from tests.sim_backend.helpers import healthy, place

LEVELS_uS = (5.0, 10.0, 20.0, 30.0, 40.0)
TABLE = dict(zip((0.0, 5.0, 10.0, 20.0, 30.0, 40.0),
                 zip(RelaxationParams().sigma_1s_S, RelaxationParams().sigma_1day_S,
                     strict=True), strict=True))


def test_fit_reproduces_the_table_exactly() -> None:
    """Times in the table count from the accepting read, ``accept_delay_s`` after the
    pulse where the walk starts."""
    p = RelaxationParams()
    fit = fit_levels(p)
    t0 = np.exp(fit.log_t0)
    d = p.accept_delay_s

    def tau(t: float, i: int) -> float:
        return float(np.log1p((t + d) / t0[i]) - np.log1p(d / t0[i]))

    for i, (s1, sd) in enumerate(zip(p.sigma_1s_S, p.sigma_1day_S, strict=True)):
        sp = min(p.sigma_prog_S, 0.8 * s1)
        at_1s = np.sqrt(sp**2 + fit.rate_S2[i] * tau(1.0, i))
        at_day = np.sqrt(sp**2 + fit.rate_S2[i] * tau(DAY_S, i))
        assert at_1s == pytest.approx(s1, rel=1e-6)
        assert at_day == pytest.approx(sd, rel=1e-6)


def _programmed_levels(seed: int = 3, lf: bool = True
                       ) -> tuple[SimBackend, list[Cells], list[np.ndarray]]:
    """Cells placed at each level with the ±1 µS uniform spread write-verify leaves."""
    preset = load_preset("default_180nm")
    if not lf:
        preset = preset.with_changes(read={"lf_relative_sigma": 0.0})
    be = SimBackend(preset, seed=seed)
    rng = np.random.default_rng(seed)
    groups, targets = [], []
    for k, level in enumerate(LEVELS_uS):
        c = Cells.block(k, slice(0, 128), slice(0, 128))
        g = (level + rng.uniform(-1.0, 1.0, len(c))) * uS
        place(be.macro, c, g)
        groups.append(c)
        targets.append(np.full(len(c), level * uS))
    return be, groups, targets


@pytest.mark.parametrize(("when_s", "column"), [(1.0, 0), (DAY_S, 1)])
def test_ensemble_spread_matches_neurram_fit(when_s: float, column: int) -> None:
    """Spread of averaged reads around the target at 1 s and 1 day within 10 % of the fitted
    figures: the table is what reads measured, so the low-frequency read noise is in it."""
    be, groups, targets = _programmed_levels()
    be.clock.wait(when_s)
    for level, c, target in zip(LEVELS_uS, groups, targets, strict=True):
        ok = healthy(be.macro, c)
        dev = (be.read(c, n_average=8) - target)[ok]
        expected = TABLE[level][column]
        assert np.std(dev) == pytest.approx(expected, rel=0.10), (level, when_s)


def test_spread_saturates_after_a_day() -> None:
    be, groups, targets = _programmed_levels(seed=4)
    be.clock.wait(DAY_S)
    day = [np.std(be.macro.conductance(c) - t) for c, t in zip(groups, targets, strict=True)]
    be.clock.wait(DAY_S)
    two = [np.std(be.macro.conductance(c) - t) for c, t in zip(groups, targets, strict=True)]
    assert np.allclose(two, day, rtol=0.08)


def test_mean_shift_at_one_hour_matches_cmo_fit() -> None:
    """−0.089·ln(3600) = −0.73 µS at 1 h for G in the CMO fit's range (≥ 8 µS)."""
    be, groups, targets = _programmed_levels(seed=5)
    be.clock.wait(3600.0)
    for level, c, t in zip(LEVELS_uS, groups, targets, strict=True):
        if level < 8:
            continue
        ok = healthy(be.macro, c)  # stuck cells do not relax
        shift = np.mean((be.macro.conductance(c) - t)[ok]) / uS
        assert shift == pytest.approx(-0.73, abs=0.08), level


def test_repeated_reads_are_correlated_through_relaxation() -> None:
    """(Low-frequency read noise off: this is about the relaxation walk alone.)"""
    be, groups, targets = _programmed_levels(seed=6, lf=False)
    c, t = groups[2], targets[2]
    be.clock.wait(600.0)
    a = be.read(c, n_average=1)
    b = be.read(c, n_average=1)
    be.clock.wait(60.0)
    later = be.read(c, n_average=1)
    read_sigma = be.preset.read.relative_sigma * 20 * uS
    # two reads at one time differ only by read noise …
    assert np.std(a - b) == pytest.approx(np.sqrt(2) * read_sigma, rel=0.1)
    # … and a minute later the relaxation state is nearly the same cell by cell
    assert np.corrcoef(a - t, later - t)[0, 1] > 0.8


def test_walk_does_not_depend_on_when_it_was_observed() -> None:
    be1, g1, _ = _programmed_levels(seed=8)
    be2, g2, _ = _programmed_levels(seed=8)
    be1.clock.wait(10.0)
    be1.macro.conductance(g1[1])
    be1.clock.wait(3590.0)
    be2.clock.wait(3600.0)
    assert np.array_equal(be1.macro.conductance(g1[1]), be2.macro.conductance(g2[1]))


def _bracket_halving_walk(m: RelaxationModel, cell: np.ndarray, prog_event: np.ndarray,
                          k: np.ndarray) -> np.ndarray:
    """The plain Brownian-bridge descent (bracket arrays halved level by level, one keyed
    uniform per node through :func:`rng.uniform`): the reference ``RelaxationModel.walk``
    must reproduce bit for bit."""
    L = m.p.grid_levels
    n = cell.size
    lo = np.zeros(n, dtype=np.int64)
    hi = np.full(n, m.n_grid, dtype=np.int64)
    wlo = np.zeros(n)
    key_base = prog_event.astype(np.int64) << (L + 3)
    whi = np.sqrt(m.p.tau_max) * ndtri(
        rng.uniform(m.seed, cell, key_base + 1, rng.Stream.RELAX_BRIDGE))
    node = np.ones(n, dtype=np.int64)
    for _ in range(L):
        mid = (lo + hi) >> 1
        sd = np.sqrt((hi - lo) * m.dtau / 4.0)
        z = ndtri(rng.uniform(m.seed, cell, key_base + 2 * node, rng.Stream.RELAX_BRIDGE))
        wmid = 0.5 * (wlo + whi) + sd * z
        right = k >= mid
        lo, wlo = np.where(right, mid, lo), np.where(right, wmid, wlo)
        hi, whi = np.where(right, hi, mid), np.where(right, whi, wmid)
        node = 2 * node + right
    return np.where(k >= m.n_grid, whi, wlo)


@pytest.mark.parametrize("seed", [0, 5, 2**63 + 11])
def test_walk_is_the_bracket_halving_bridge_bit_for_bit(seed: int) -> None:
    """The fast descent (from k's bits, cell hash once per call) changes no bit of W,
    at every grid index including 0, the last step and past the grid."""
    m = RelaxationModel(RelaxationParams(), seed)
    r = np.random.default_rng(seed % 2**32)
    n = 4000
    cell = r.integers(0, 1 << 21, n)
    ev = r.integers(0, 200, n)
    k = r.integers(0, m.n_grid + 1, n)
    k[:8], k[8:16], k[16:24] = 0, m.n_grid - 1, m.n_grid
    assert np.array_equal(m.walk(cell, ev, k), _bracket_halving_walk(m, cell, ev, k))
    k_all = np.arange(m.n_grid + 1)
    one = np.full(k_all.size, 12345)
    assert np.array_equal(m.walk(one, one * 0 + 3, k_all),
                          _bracket_halving_walk(m, one, one * 0 + 3, k_all))
