"""Relaxation after programming: a persistent per-cell random walk in log time.

After a programming pulse at time t_p a cell's conductance deviates by

    D(t) = sqrt(r(G))·W(τ) + m(G)·ln(1 + Δt / 1 s),   τ = ln(1 + Δt / t0(G)),

where W is a standard Brownian motion in τ, private to the cell and to that programming
event, and m is the mean shift of [AIHW-CMO] (−0.089 µS per e-fold of t). The variance rate
r and the time origin t0 are solved per tabulated level so that the ensemble spread of
reads, σ² = σ_prog² + σ_lf² + r·τ, matches the NeuRRAM-fitted spread at 1 s and at 1 day
[AIHW-Wan] (docs/references.md), where σ_lf is the stationary low-frequency read noise at
that level (``read_noise``): the fitted spreads were measured through reads that carried it,
so the walk gets the rest. Between levels r and t0 are interpolated (r linearly, t0 in log).

W is built on a grid of 2**L points over [0, τ_max] by a Brownian bridge whose node values
are counter-based draws keyed by (seed, cell, programming event, node) (normals by the
inverse CDF of one keyed uniform: half the cost of Box–Muller), so W at any grid
point is a fixed function of the key: reading a cell now or later, once or many times,
alone or in a batch, gives the same walk. Between grid points D is held constant, so the
conductance only changes at discrete times — which also lets MVM cache the array.

Cost: W at any grid index takes L + 1 keyed draws, however many steps the clock has moved —
the bridge already sums the steps in law. Drawing the sum of k steps forward as one normal
of k·Δτ variance from the last value seen would be the same process in distribution, but W
would then depend on when the cell was looked at, and the guarantees above (and the direct
and wire paths agreeing bit for bit) would go; so the speed-up is in evaluating the bridge
(:meth:`RelaxationModel.walk`), which keeps every bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq
from scipy.special import ndtri

from sim_backend import rng
from sim_backend.preset import RelaxationParams

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DAY_S = 86400.0


@dataclass(frozen=True)
class RelaxationFit:
    """Per-level (r, t0) solved from the spread table."""

    G_S: F64
    rate_S2: F64
    """Walk variance per unit τ, S²."""
    log_t0: F64
    """ln(t0 / 1 s)."""


def fit_levels(p: RelaxationParams, lf_var_S2: F64 | None = None) -> RelaxationFit:
    """Solve r and t0 at each tabulated level (see module docstring). ``lf_var_S2``: the
    low-frequency read-noise variance at each tabulated level (default none). σ_prog is
    clamped to ``sigma_prog_max_fraction`` · σ(1 s); if σ_prog and σ_lf leave less than
    1 % of the 1 s variance to the walk, the walk keeps that 1 %.

    The table's times count from the read that accepted the cell, which comes
    ``accept_delay_s`` after the cell's last pulse (where the walk starts): so
    σ(t)² = σ_prog² + σ_lf² + r·(τ(t + d) − τ(d)). If the ratio of the 1 s to the 1-day
    growth cannot be reached with that delay, the fastest walk (t0 = 1 ps) is used."""
    G = np.asarray(p.table_G_S, dtype=np.float64)
    s1 = np.asarray(p.sigma_1s_S, dtype=np.float64)
    sd = np.asarray(p.sigma_1day_S, dtype=np.float64)
    if not (len(G) == len(s1) == len(sd)) or len(G) < 2:
        raise ValueError("relaxation table columns must have one length ≥ 2")
    lf = np.zeros_like(G) if lf_var_S2 is None else np.asarray(lf_var_S2, dtype=np.float64)
    rates, logs = [], []
    d = p.accept_delay_s
    for s1_i, sd_i, lf_i in zip(s1, sd, lf, strict=True):
        sp = min(p.sigma_prog_S, p.sigma_prog_max_fraction * s1_i)
        a = max(s1_i**2 - sp**2 - lf_i, 0.01 * s1_i**2)
        b = max(sd_i**2 - s1_i**2, 1e-30)
        target = a / b

        def growth(log_t0: float) -> tuple[float, float]:
            t0 = math.exp(log_t0)
            tau_d = math.log1p(d / t0)
            return math.log1p((1.0 + d) / t0) - tau_d, math.log1p((DAY_S + d) / t0) - tau_d

        def f(log_t0: float, target: float = target) -> float:
            t1, td = growth(log_t0)
            return t1 / (td - t1) - target

        lo, hi = math.log(1e-12), math.log(1e4)
        if f(lo) < 0:
            log_t0 = lo
        elif f(hi) > 0:
            log_t0 = hi
        else:
            log_t0 = float(brentq(f, lo, hi, xtol=1e-10))
        t1, td = growth(log_t0)
        rates.append(b / (td - t1))
        logs.append(log_t0)
    return RelaxationFit(G, np.array(rates), np.array(logs))


class RelaxationModel:
    """Evaluates relaxation for arrays of cells."""

    def __init__(self, params: RelaxationParams, seed: int,
                 lf_var_S2: F64 | None = None) -> None:
        self.p = params
        self.seed = seed
        self.fit = fit_levels(params, lf_var_S2)
        self.n_grid = 1 << params.grid_levels
        self.dtau = params.tau_max / self.n_grid

    def params_for(self, g_S: F64) -> tuple[F64, F64]:
        """(rate S², t0 s) for cells just programmed to ``g_S``."""
        rate = np.interp(g_S, self.fit.G_S, self.fit.rate_S2)
        t0 = np.exp(np.interp(g_S, self.fit.G_S, self.fit.log_t0))
        return rate, t0

    def grid_index(self, dt_s: F64, t0_s: F64) -> I64:
        tau = np.log1p(np.maximum(dt_s, 0.0) / t0_s)
        return np.minimum((tau / self.dtau).astype(np.int64), self.n_grid)

    def next_change_s(self, k: I64, t0_s: F64) -> F64:
        """Time after programming at which each cell's grid index next increases."""
        tau_next = (k + 1).astype(np.float64) * self.dtau
        out = t0_s * np.expm1(tau_next)
        out[k >= self.n_grid] = np.inf
        return out

    def deviation(
        self,
        cell: I64,
        prog_event: I64,
        k: I64,
        t0_s: F64,
        rate_S2: F64,
        g_prog_S: F64,
        walk: F64 | None = None,
    ) -> F64:
        """Conductance deviation D at grid index ``k`` for each cell, S. ``walk``: W at
        ``k`` if the caller already has it (a cache), else it is computed."""
        out = np.zeros(cell.shape, dtype=np.float64)
        live = k > 0
        if not live.any():
            return out
        c, e, kk = cell[live], prog_event[live], k[live]
        w = self.walk(c, e, kk) if walk is None else walk[live]
        dt_grid = t0_s[live] * np.expm1(kk * self.dtau)
        scale = np.minimum(1.0, g_prog_S[live] / self.p.mean_shift_full_above_S)
        shift = self.p.mean_shift_S_per_ln_t * np.log1p(dt_grid) * scale
        out[live] = np.sqrt(rate_S2[live]) * w + shift
        return out

    def walk(self, cell: I64, prog_event: I64, k: I64) -> F64:
        """W(k·Δτ) by a Brownian bridge over the dyadic grid, L + 1 keyed draws per cell
        whatever k is (so a cell first looked at a day after programming costs what one
        looked at after a microsecond does).

        The descent is written from k's bits: at level l the bracket is the one containing
        k (its width and so the bridge σ are one number per level), the node drawn is
        (1 << l) | (k >> (L − l)), and the cell stage of the hash is computed once for all
        levels (:func:`rng.cell_hash`). Same operations on the same values as the plain
        bracket-halving loop, so the same bits (``tests/sim_backend/test_relaxation.py``
        keeps that loop as the reference)."""
        L = self.p.grid_levels
        k = np.asarray(k, dtype=np.int64)
        key_base = prog_event.astype(np.int64) << (L + 3)
        h_cell = rng.cell_hash(self.seed, cell, rng.Stream.RELAX_BRIDGE)
        whi = np.sqrt(self.p.tau_max) * ndtri(
            rng.uniform_from_bits(rng.event_hash(h_cell, key_base + 1))
        )
        inner = k < self.n_grid
        if not inner.any():
            return whi
        out = whi.copy()
        ki, hi_w = k[inner], whi[inner]
        hc, kb = h_cell[inner], key_base[inner]
        lo_w = np.zeros(ki.size)
        mid_w = np.empty(ki.size)
        for level in range(L):
            shift = L - level
            sd = np.sqrt(float(self.n_grid >> level) * self.dtau / 4.0)
            node = (ki >> shift) | (1 << level)
            z = ndtri(rng.uniform_from_bits(rng.event_hash(hc, kb + 2 * node)))
            np.add(lo_w, hi_w, out=mid_w)
            mid_w *= 0.5
            z *= sd
            mid_w += z
            right = ((ki >> (shift - 1)) & 1).astype(bool)
            np.copyto(lo_w, mid_w, where=right)
            np.copyto(hi_w, mid_w, where=~right)
        out[inner] = lo_w
        return out
