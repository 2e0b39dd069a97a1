"""Low-frequency read noise: a per-cell 1/f fluctuation that consecutive reads share.

RRAM read current carries 1/f and random-telegraph noise, so averaging consecutive reads
leaves a floor (Ambrogio et al., IEEE TED 62, 3805, 2015, doi 10.1109/TED.2015.2475598).
Model (``ReadParams``): the relative fluctuation is a sum of J components, one per decade of
time scale τ_j from ``lf_tau_min_s`` to ``lf_tau_max_s``, each a level drawn afresh every
τ_j (with a per-cell phase, so cells do not step together). A piecewise-constant random
level with mean dwell τ has a Lorentzian-like spectrum with its corner at ≈ 1/τ; equal
variance per decade of corners sums to a 1/f spectrum between the extreme corners (the
McWhorter construction). Each level is a counter-based draw keyed by (seed, cell,
component, bin index), so the noise at a time does not depend on when or how often it is
looked at.

An average of n reads over a window W sees each component as constant if τ_j ≥ W, and
averaged over W/τ_j independent levels otherwise: its weight is √min(1, τ_j / W).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from sim_backend import rng
from sim_backend.preset import ReadParams

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_PHASE_A = 0.6180339887498949  # golden-ratio conjugate: per-cell phases spread evenly
_PHASE_B = 0.4142135623730951  # √2 − 1: a different phase pattern per component


class LowFrequencyNoise:
    def __init__(self, p: ReadParams, seed: int) -> None:
        self.p = p
        self.seed = seed
        self.taus_s = np.asarray(p.lf_taus_s, dtype=np.float64)
        self.on = p.lf_relative_sigma > 0

    def sigma_S(self, g_S: F64) -> F64:
        """σ of the low-frequency part at conductance ``g_S``, S:
        rel · ref^γ · G^(1 − γ)."""
        p = self.p
        g = np.maximum(g_S, 0.0)
        return p.lf_relative_sigma * p.lf_ref_G_S**p.lf_g_exponent * g ** (1.0 - p.lf_g_exponent)

    def variance_S2(self, g_S: F64) -> F64:
        """Variance of the low-frequency part of one read at ``g_S`` (all components), S²."""
        s: F64 = self.sigma_S(g_S) ** 2
        return s

    def standard(self, cells: I64, t_s: F64, window_s: float) -> F64:
        """The fluctuation in units of its σ (variance 1 for ``window_s`` = 0) at per-cell
        times ``t_s``, averaged over a read window of ``window_s``."""
        out = np.zeros(cells.shape)
        if not self.on:
            return out
        c = cells.astype(np.float64)
        t = np.maximum(np.asarray(t_s, dtype=np.float64), 0.0)
        scale = 1.0 / math.sqrt(self.taus_s.size)
        for j, tau in enumerate(self.taus_s):
            phase = np.modf(c * _PHASE_A + (j + 1) * _PHASE_B)[0]
            b = np.floor(t / tau + phase).astype(np.int64)
            z = ndtri(rng.uniform(self.seed, cells, b, rng.Stream.LF_NOISE + j))
            w = 1.0 if window_s <= tau else math.sqrt(tau / window_s)
            out += (w * scale) * z
        return out
