"""Drift compensation of analog MVM outputs, as strategy objects that only use ``backend.mvm``.

- :class:`GlobalDriftCompensation` (IBM AIHWKit ``GlobalDriftCompensation`` — docs/references.md
  "Drift compensation"): at programming time a fixed reference input runs through the
  analog path and mean |y0| is stored; later the same input gives mean |y_t| and outputs are
  scaled by mean|y0| / mean|y_t|. One scalar per block: it removes a common gain change
  (e.g. the mean relaxation of every cell, −0.089 µS per e-fold of time, AIHWKit CMO fit).
- :class:`ColumnAffineCorrection` (IBM HERMES, Le Gallo et al., Nat. Electron. 2023 —
  docs/references.md): per output column a gain and an offset, fitted by least squares on
  calibration inputs so that gain·y_measured + offset matches the outputs the intended
  conductances would give. It removes per-column systematic errors (column-wise drift,
  ADC/periphery offsets); what is left is the random, cell-by-cell part of drift, which only
  re-programming (refresh) removes.

Both work on an :class:`MvmView` (tile, rows, columns, differential, ADC range) and never
know which backend runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.core.backend import Backend


@dataclass(frozen=True)
class MvmView:
    """A block of a tile used as one matrix. With ``differential`` output k is column
    pair (c0 + 2k, c0 + 2k + 1): G+ on the even column, G− on the odd one."""

    tile: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    differential: bool = True
    adc_range_A: float | None = None

    @property
    def n_rows(self) -> int:
        return self.rows[1] - self.rows[0]

    @property
    def n_out(self) -> int:
        n = self.cols[1] - self.cols[0]
        return n // 2 if self.differential else n

    def mvm(self, be: Backend, x_V: np.ndarray) -> np.ndarray:
        return np.asarray(be.mvm(self.tile, x_V, rows=slice(*self.rows), cols=slice(*self.cols),
                                 differential=self.differential,
                                 adc_range_A=self.adc_range_A), dtype=np.float64)

    def weights_S(self, g_S: np.ndarray) -> np.ndarray:
        """The effective matrix (rows × outputs) of a conductance block (rows × cols)."""
        return g_S[:, 0::2] - g_S[:, 1::2] if self.differential else g_S


def reference_inputs(n_rows: int, n_vectors: int, input_max_V: float, seed: int) -> np.ndarray:
    """Fixed, reproducible reference / calibration inputs: uniform in ±``input_max_V``.
    Reproducible from the seed so a later run regenerates exactly the stored reference."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-input_max_V, input_max_V, size=(n_vectors, n_rows))


class GlobalDriftCompensation:
    """y_corrected = y · mean|y0| / mean|y_t| (AIHWKit ``GlobalDriftCompensation``)."""

    def __init__(self, view: MvmView, x_ref_V: np.ndarray) -> None:
        self.view = view
        self.x_ref_V = x_ref_V
        self.y0_mean_abs_A = float("nan")
        self.scale = 1.0

    def baseline(self, be: Backend) -> float:
        """At programming time: store mean |y0| of the reference input."""
        self.y0_mean_abs_A = float(np.mean(np.abs(self.view.mvm(be, self.x_ref_V))))
        self.scale = 1.0
        return self.y0_mean_abs_A

    def update(self, be: Backend) -> float:
        """Later: run the reference again and set the scale mean|y0| / mean|y_t|."""
        yt = float(np.mean(np.abs(self.view.mvm(be, self.x_ref_V))))
        self.scale = self.y0_mean_abs_A / yt if yt > 0 else 1.0
        return self.scale

    def apply(self, y_A: np.ndarray) -> np.ndarray:
        return y_A * self.scale


def fit_column_affine(y: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column least squares ``ref ≈ gain·y + offset`` over the batch (rows): the HERMES
    affine correction (Le Gallo et al., Nat. Electron. 2023). A column whose ``y`` does not
    vary keeps gain 1. Returns ``(gain, offset)``, one entry per column."""
    ym, rm = y.mean(axis=0), ref.mean(axis=0)
    dy, dr = y - ym, ref - rm
    var = (dy * dy).sum(axis=0)
    gain = np.where(var > 0, (dy * dr).sum(axis=0) / np.where(var > 0, var, 1), 1.0)
    return gain, rm - gain * ym


class ColumnAffineCorrection:
    """Per-column gain and offset (HERMES): y_corrected = gain ⊙ y + offset."""

    def __init__(self, view: MvmView, x_cal_V: np.ndarray) -> None:
        self.view = view
        self.x_cal_V = x_cal_V
        self.gain = np.ones(view.n_out)
        self.offset_A = np.zeros(view.n_out)

    def fit(self, be: Backend, w_expected_S: np.ndarray,
            y_measured_A: np.ndarray | None = None) -> None:
        """Least squares per column of the expected outputs x·W on the measured ones.
        ``y_measured_A`` may be given when the caller already ran the calibration inputs
        (e.g. after a global scale; the fit then composes with it)."""
        y = self.view.mvm(be, self.x_cal_V) if y_measured_A is None else y_measured_A
        self.gain, self.offset_A = fit_column_affine(y, self.x_cal_V @ w_expected_S)

    def apply(self, y_A: np.ndarray) -> np.ndarray:
        return y_A * self.gain + self.offset_A


def relative_error(y_A: np.ndarray, y_ref_A: np.ndarray) -> float:
    """‖y − y_ref‖ / ‖y_ref‖ (Frobenius over the batch)."""
    return float(np.linalg.norm(y_A - y_ref_A) / np.linalg.norm(y_ref_A))
