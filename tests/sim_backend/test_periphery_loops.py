"""The fused MVM kernel against the plain numpy formulation of the same periphery.

The reference below is the textbook chain, one numpy call per step: DAC (scale in float32,
round), signal matmul, variance matmul with the output-referred variance, σ·ξ, ADC
(saturate, round, scale). The fused loops promise the same float32 operations in the same
order, so the outputs must be *bit-identical*, whatever the batch, the input dtype, the
ADC range (saturating or not) and whether the noise is on.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
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


def _laid_out(x: np.ndarray, layout: str) -> np.ndarray:
    """The same values in the memory layouts an MVM caller can hand over."""
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "strided":
        wide = np.zeros((x.shape[0], 2 * x.shape[1]), dtype=x.dtype)
        wide[:, ::2] = x
        return wide[:, ::2]
    if layout == "read-only":
        x = x.copy()
        x.setflags(write=False)
        return x
    if layout == "broadcast":  # every vector the same (stride 0), read-only
        return np.broadcast_to(x[0], x.shape)
    return x


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
    layout=st.sampled_from(["C", "F", "strided", "read-only", "broadcast"]),
    noisy=st.booleans(),
    adc_range_A=st.sampled_from([1e-7, 3e-6, 1e-4]),
)
def test_fused_kernel_is_bit_identical_to_the_numpy_chain(
    seed: int, batch: int, n_in: int, n_out: int, float32_input: bool, layout: str,
    noisy: bool, adc_range_A: float,
) -> None:
    rng = np.random.default_rng(seed)
    kernel = _kernel(rng, n_in, n_out, noisy)
    x = rng.uniform(-0.2, 0.2, size=(batch, n_in))
    x[rng.random(x.shape) < 0.1] = 0.0
    if float32_input:
        x = x.astype(np.float32)
    x = _laid_out(x, layout)
    noise = rng.standard_normal((batch, n_out)).astype(np.float32)
    got, energy = kernel.run(x, noise if noisy else None, adc_range_A)
    want, want_energy = _reference(kernel, x, noise if noisy else None, adc_range_A)
    assert got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))  # −0.0 ≠ 0.0 here
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


def test_a_shape_the_kernel_was_not_built_for_is_refused() -> None:
    """The loops index without bounds checks, so run() checks shapes first."""
    rng = np.random.default_rng(4)
    kernel = _kernel(rng, 12, 6, noisy=True)
    noise = rng.standard_normal((2, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="12 inputs"):
        kernel.run(np.zeros((2, 11)), noise, 1e-5)
    with pytest.raises(ValueError, match="noise"):
        kernel.run(np.zeros((2, 12)), noise[:1], 1e-5)


def test_loops_compile_without_a_writable_cache_directory() -> None:
    """A read-only install with a read-only home leaves numba no cache directory; the loops
    then compile in memory instead of failing every MVM."""
    code = (
        "import numba.core.caching as c; c.CacheImpl._locator_classes = []\n"
        "import numpy as np\n"
        "from sim_backend import periphery_loops as loops\n"
        "y = np.array([[0.5, 300.0]], np.float32)\n"
        "loops.adc(y, np.float32(255), np.float32(1.0))\n"
        "print(y.tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[[0.0, 255.0]]"
