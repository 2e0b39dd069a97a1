"""The MVM periphery's element-wise stages as fused loops, compiled by numba.

Why loops and not numpy expressions
-----------------------------------
Around its two matmuls an analog MVM does nine element-wise steps: DAC (scale, round),
squares for the noise variance, and after the matmuls σ = √var, σ·ξ, add, ADC saturation,
rounding and scaling. As numpy calls each step is one pass over a (batch × outputs)
float32 array, and at the bench's shape (64 × 256, 64 KiB, larger than L1) nine passes cost
about as much as a third matmul. Fused, each stage is one pass over its data, which is
what keeps the analog MVM within 3× of the float32 matmul (``labctl bench``, section sim).

Every step is the same float32 operation numpy would do, in the same order, with no fast-math
(no reassociation, no fused multiply-add), so the outputs are bit-identical to the numpy
formulation ``tests/sim_backend/test_periphery_loops.py`` keeps as the reference. The
functions compile on first call and are cached on disk: beside this file, else in the
user's cache directory, else (nothing writable, e.g. a read-only install and home) not at
all; ``NUMBA_CACHE_DIR`` names another directory. The loops do not check shapes:
:meth:`sim_backend.periphery.MvmKernel.run` does before calling them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit


def _compiled(fn: Callable[..., None]) -> Any:
    """``fn`` compiled, cached on disk where a cache directory is writable."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache function …: no locator available"
        return njit(cache=False, nogil=True)(fn)


@_compiled
def dac(
    inputs_V: np.ndarray, inv_lsb_per_V: np.float32, codes: np.ndarray, squared: np.ndarray,
    code2_per_row: np.ndarray,
) -> None:  # pragma: no cover - compiled; covered through MvmKernel.run
    """DAC codes ``rint(float32(V) · 1/LSB)`` into ``codes``, their squares into the first
    columns of ``squared`` and Σ over the batch of each row's squared code into
    ``code2_per_row`` (float64: exact for any batch)."""
    batch, n_in = inputs_V.shape
    code2_per_row[:] = 0.0
    for b in range(batch):
        for i in range(n_in):
            c = np.rint(np.float32(inputs_V[b, i]) * inv_lsb_per_V)
            codes[b, i] = c
            s = c * c
            squared[b, i] = s
            code2_per_row[i] += s


@_compiled
def adc_noisy(
    y: np.ndarray, var: np.ndarray, noise: np.ndarray, full_scale: np.float32, lsb: np.float32
) -> None:  # pragma: no cover - compiled; covered through MvmKernel.run
    """In place on ``y`` (ADC LSB units in, A out): add √var · ξ, saturate at ±full scale,
    round to a code, scale by the LSB."""
    batch, n_out = y.shape
    for b in range(batch):
        for j in range(n_out):
            v = y[b, j] + np.sqrt(var[b, j]) * noise[b, j]
            v = min(max(v, -full_scale), full_scale)
            y[b, j] = np.rint(v) * lsb


@_compiled
def adc(y: np.ndarray, full_scale: np.float32, lsb: np.float32) -> None:  # pragma: no cover
    """:func:`adc_noisy` without noise (a noiseless preset)."""
    batch, n_out = y.shape
    for b in range(batch):
        for j in range(n_out):
            v = min(max(y[b, j], -full_scale), full_scale)
            y[b, j] = np.rint(v) * lsb
