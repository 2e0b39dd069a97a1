"""MVM periphery: DAC, array (with optional IR drop), output-referred noise, ADC.

Why the MVM is one matmul plus one for the noise variance
---------------------------------------------------------
Per-cell read noise in an MVM means each cell's current is x_i·G_ij·(1 + η·ξ_ij). Summed
on a column, the noise is Gaussian with variance η²·Σ_i x_i² G_ij². Drawing that one
column-level Gaussian per output is *statistically identical* to drawing a number per cell
(sum of independent Gaussians), at a cost of one extra matmul instead of batch × rows ×
cols random draws; ``tests/sim_backend/test_noise_equivalence.py`` checks the equality.
The normals come from a seeded pool, sliced at an offset keyed by (seed, tile, call count).

IR drop (first order)
---------------------
With rows driven from column 0 and columns sensed at row R−1 into virtual ground, wire
resistance r per segment, and ideal currents I⁰ = x_i G_ij, the first-order voltage loss at
cell (i, j) is a row drop x_i·a_ij with a_ij = r·Σ_{k≤j} Σ_{m≥k} G_im, plus a column rise
r·Σ_m x_m G_mj (R − max(i, m)). Both are linear in x, so the output is x @ M with the
relative loss ε_mj = a_mj + c_mj, c_mj = r·Σ_i G_ij (R − max(i, m)). We use the resummed
M = G / (1 + ε), equal to G (1 − ε) to first order but accurate well beyond it (against an
exact nodal solve: 0.3 % error at a 25 % drop, where G (1 − ε) is off by 13 %). The
effective matrix is computed once per array state and the MVM stays one matmul. On one line
of N equal cells ε at the far end is r·g·N(N+1)/2 ≈ r·g·N²/2, docs/references.md's worst-case
estimate (≈ 11 % for N = 128, 0.35 Ω, 40 µS); ``tests/sim_backend/test_periphery.py`` checks both.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

def ir_drop_matrix(G: F64, r_ohm: float) -> F64:
    """Effective conductance matrix with IR drop, G / (1 + ε) (see module docstring)."""
    R = G.shape[0]
    suffix = np.cumsum(G[:, ::-1], axis=1)[:, ::-1]  # S_i(k) = Σ_{m≥k} G_im
    a = r_ohm * np.cumsum(suffix, axis=1)  # a_ij = r Σ_{k≤j} S_i(k)
    i_idx = np.arange(R, dtype=np.float64)[:, None]
    prefix = np.cumsum(G, axis=0)  # P(m) = Σ_{i≤m} G_ij
    weighted = G * (R - i_idx)  # G_ij (R − i)
    tail = np.cumsum(weighted[::-1], axis=0)[::-1]  # Σ_{i≥m} G_ij (R − i)
    tail_after = np.vstack([tail[1:], np.zeros((1, G.shape[1]))])  # Σ_{i>m}
    c = r_ohm * ((R - i_idx) * prefix + tail_after)
    return G / (1.0 + a + c)


class MvmKernel:
    """The cached, ready-to-multiply form of one array block.

    Weights are stored pre-scaled so the hot path is: the DAC loop, one matmul for the
    signal and one for the noise variance (both already in ADC LSB units), and the ADC loop
    (noise, saturate, round, scale). Scaled copies are cached per ADC range.
    """

    def __init__(
        self,
        M: F64,
        M_var: F64,
        *,
        dac_bits: int,
        input_max_V: float,
        read_sigma_rel: float,
        output_sigma_A: float,
        row_sum_S: F64,
        adc_bits: int,
    ) -> None:
        self.levels_in = float(2 ** (dac_bits - 1) - 1)
        self.lsb_in_V = input_max_V / self.levels_in
        self.inv_lsb_in = np.float32(1.0 / self.lsb_in_V)
        self.levels_out = float(2 ** (adc_bits - 1) - 1)
        self._M = M * self.lsb_in_V  # A per DAC code
        self._M_var = M_var * (read_sigma_rel * self.lsb_in_V) ** 2  # A² per code²
        self._out_var_A2 = output_sigma_A**2
        self.noisy = read_sigma_rel > 0 or output_sigma_A > 0
        self.n_out = M.shape[1]
        self._scaled: dict[float, tuple[F32, F32, np.float32]] = {}
        self._work: dict[int, tuple[F32, F32, F32]] = {}
        self._row_sum = np.asarray(row_sum_S, dtype=np.float64)
        """Physical conductance on each row (both cells of a pair), S: Σ_i x_i² ΣG_i, for
        the energy."""
        self._code2_per_row = np.empty(M.shape[0])
        """Σ over a batch of each row's squared DAC code (written by the DAC loop)."""
        self._clip_hi = np.float32(self.levels_out)
        from sim_backend import periphery_loops  # numba: imported with the first kernel

        self._loops = periphery_loops

    def _for_range(self, adc_range_A: float) -> tuple[F32, F32, np.float32]:
        """Weights scaled to ADC LSBs: the signal matrix, the variance matrix augmented with
        one row (the output-referred periphery variance, fed by a constant input of 1), and
        the LSB."""
        hit = self._scaled.get(adc_range_A)
        if hit is None:
            lsb = adc_range_A / self.levels_out
            n_in = self._M.shape[0]
            var_aug = np.empty((n_in + 1, self.n_out))
            var_aug[:n_in] = self._M_var / lsb**2
            var_aug[n_in] = self._out_var_A2 / lsb**2
            hit = ((self._M / lsb).astype(np.float32), var_aug.astype(np.float32), np.float32(lsb))
            self._scaled[adc_range_A] = hit
        return hit

    def _buffers(self, batch: int) -> tuple[F32, F32, F32]:
        """Work arrays for one batch size, kept between calls: the DAC codes, their squares
        beside a constant-1 column (it feeds the output-referred variance) and the
        variance."""
        bufs = self._work.get(batch)
        if bufs is None:
            n_in = self._M.shape[0]
            codes = np.empty((batch, n_in), dtype=np.float32)
            squared = np.ones((batch, n_in + 1), dtype=np.float32)
            var = np.empty((batch, self.n_out), dtype=np.float32)
            bufs = (codes, squared, var)
            self._work[batch] = bufs
        return bufs

    def run(
        self, inputs_V: npt.NDArray[np.floating], noise: F32 | None, adc_range_A: float
    ) -> tuple[F32, float]:
        """(column currents A, Σ_batch Σ_i codes_i² · ΣG_i in code²·S — for the energy).

        The DAC loop writes the codes and, beside a constant-1 column, their squares (the
        constant adds the periphery variance in the variance matmul); then two matmuls
        (signal, variance) and the ADC loop in place on the output array, the one
        allocation, since the caller keeps it (:mod:`sim_backend.periphery_loops`)."""
        loops = self._loops
        w, var_aug, lsb = self._for_range(adc_range_A)
        codes, squared, var = self._buffers(inputs_V.shape[0])
        if inputs_V.shape != codes.shape or (noise is not None and noise.shape != var.shape):
            raise ValueError(  # the loops index without bounds checks
                f"MVM kernel of {codes.shape[1]} inputs × {self.n_out} outputs got inputs "
                f"{inputs_V.shape} and noise {None if noise is None else noise.shape}"
            )
        loops.dac(inputs_V, self.inv_lsb_in, codes, squared, self._code2_per_row)
        energy_code2_S = float(np.dot(self._code2_per_row, self._row_sum))
        y: F32 = np.matmul(codes, w)
        if self.noisy and noise is not None:
            np.matmul(squared, var_aug, out=var)
            loops.adc_noisy(y, var, noise, self._clip_hi, lsb)
        else:
            loops.adc(y, self._clip_hi, lsb)
        return y, energy_code2_S
