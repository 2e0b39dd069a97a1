"""The fused MVM kernel against the plain numpy formulation of the same periphery.

The reference below is the textbook chain, one numpy call per step: DAC (scale in float32,
round), signal matmul, variance matmul with the output-referred variance, σ·ξ, ADC
(saturate, round, scale). The fused loops promise the same float32 operations in the same
order, so the outputs must be *bit-identical*, whatever the batch, the input dtype, the
ADC range (saturating or not) and whether the noise is on.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_backend.periphery import MvmKernel


def _reference(
    kernel: MvmKernel, x: np.ndarray, noise: np.ndarray | None, adc_range_A: float
) -> tuple[np.ndarray, float]:
    w, var_aug, lsb = kernel._for_range(adc_range_A)
    codes = np.rint(np.multiply(x, kernel.inv_lsb_in, dtype=np.float32))
    y = codes @ w
    if kernel.noisy and noise is not None:
        squared = np.hstack([codes * codes, np.ones((len(x), 1), np.float32)])
        y = y + np.sqrt(squared @ var_aug) * noise
    hi = np.float32(kernel.levels_out)
    y = np.rint(np.clip(y, -hi, hi)) * lsb
    energy = float(np.sum((codes.astype(np.float64) ** 2) @ kernel._row_sum))
    return y, energy


def _kernel(rng: np.random.Generator, n_in: int, n_out: int, noisy: bool) -> MvmKernel:
    G = rng.uniform(1e-6, 40e-6, size=(n_in, 2 * n_out))
    return MvmKernel(
        G[:, 0::2] - G[:, 1::2],
        G[:, 0::2] ** 2 + G[:, 1::2] ** 2,
        dac_bits=8,
        input_max_V=0.2,
        read_sigma_rel=0.03 if noisy else 0.0,
        output_sigma_A=0.06 * 40e-6 * 0.2 if noisy else 0.0,
        row_sum_S=G.sum(axis=1),
        adc_bits=9,
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    batch=st.integers(1, 70),
    n_in=st.integers(1, 40),
    n_out=st.integers(1, 40),
    float32_input=st.booleans(),
    noisy=st.booleans(),
    adc_range_A=st.sampled_from([1e-7, 3e-6, 1e-4]),
)
def test_fused_kernel_is_bit_identical_to_the_numpy_chain(
    seed: int, batch: int, n_in: int, n_out: int, float32_input: bool, noisy: bool,
    adc_range_A: float,
) -> None:
    rng = np.random.default_rng(seed)
    kernel = _kernel(rng, n_in, n_out, noisy)
    x = rng.uniform(-0.2, 0.2, size=(batch, n_in))
    x[rng.random(x.shape) < 0.1] = 0.0
    if float32_input:
        x = x.astype(np.float32)
    noise = rng.standard_normal((batch, n_out)).astype(np.float32)
    got, energy = kernel.run(x, noise if noisy else None, adc_range_A)
    want, want_energy = _reference(kernel, x, noise if noisy else None, adc_range_A)
    assert got.dtype == np.float32
    assert np.array_equal(got, want)
    assert np.isclose(energy, want_energy, rtol=1e-12)


def test_adc_loops_round_half_to_even_and_saturate() -> None:
    """Values exactly between two codes go to the even one (np.rint's rule); beyond full scale
    they saturate; with zero variance the noisy loop does the same."""
    from sim_backend import periphery_loops as loops

    y = np.array([[0.5, 1.5, 2.5, -0.5, -2.5, 254.5, 300.0, -300.0]], dtype=np.float32)
    want = np.array([[0, 2, 2, -0, -2, 254, 255, -255]], dtype=np.float32) * np.float32(0.25)
    plain = y.copy()
    loops.adc(plain, np.float32(255), np.float32(0.25))
    noisy = y.copy()
    loops.adc_noisy(noisy, np.zeros_like(y), np.ones_like(y), np.float32(255), np.float32(0.25))
    assert np.array_equal(plain, want)
    assert np.array_equal(noisy, want)


def test_saturating_range_matches_the_reference() -> None:
    rng = np.random.default_rng(3)
    kernel = _kernel(rng, 16, 8, noisy=False)
    x = rng.uniform(-0.2, 0.2, size=(5, 16))
    y, _ = kernel.run(x, None, 1e-8)
    codes = np.rint(y / np.float32(1e-8 / kernel.levels_out))
    assert np.mean(np.abs(codes) == kernel.levels_out) > 0.5
    assert np.array_equal(y, _reference(kernel, x, None, 1e-8)[0])


def test_a_strided_input_view_gives_what_its_copy_gives() -> None:
    rng = np.random.default_rng(4)
    kernel = _kernel(rng, 12, 6, noisy=True)
    wide = rng.uniform(-0.2, 0.2, size=(8, 24)).astype(np.float32)
    noise = rng.standard_normal((8, 6)).astype(np.float32)
    view = wide[:, ::2]
    y_view = kernel.run(view, noise, 1e-5)[0].copy()
    y_copy = kernel.run(np.ascontiguousarray(view), noise, 1e-5)[0]
    assert np.array_equal(y_view, y_copy)
