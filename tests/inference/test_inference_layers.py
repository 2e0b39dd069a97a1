"""Every backward pass against central finite differences, over random shapes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.inference import MLP, Adam, FourierFeatures, Linear, ReLU, SiLU, Sine, Tanh
from labctl.inference.layers import Array, Layer
from labctl.inference.training import cross_entropy, mse

shapes = st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 6), st.integers(0, 999))


def _fd_input(layer: Layer, x: Array, eps: float = 1e-6) -> tuple[Array, Array]:
    rng = np.random.default_rng(0)
    y = layer.forward(x)
    g_out = rng.normal(size=y.shape)
    analytic = layer.backward(g_out)
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num[idx] = (np.sum(layer.forward(xp) * g_out) - np.sum(layer.forward(xm) * g_out)) / (
            2 * eps)
    return analytic, num


def _fd_params(layer: Layer, x: Array, eps: float = 1e-6) -> None:
    rng = np.random.default_rng(1)
    for p in layer.params():
        p.zero_grad()
    g_out = rng.normal(size=layer.forward(x).shape)
    layer.backward(g_out)
    for p in layer.params():
        num = np.zeros_like(p.value)
        for idx in np.ndindex(*p.value.shape):
            old = p.value[idx]
            p.value[idx] = old + eps
            fp = np.sum(layer.forward(x) * g_out)
            p.value[idx] = old - eps
            fm = np.sum(layer.forward(x) * g_out)
            p.value[idx] = old
            num[idx] = (fp - fm) / (2 * eps)
        np.testing.assert_allclose(p.grad, num, rtol=1e-5, atol=1e-7)


@settings(max_examples=15, deadline=None)
@given(shapes)
def test_linear_backward(s: tuple[int, int, int, int]) -> None:
    b, n_in, n_out, seed = s
    rng = np.random.default_rng(seed)
    layer = Linear(n_in, n_out, rng)
    layer.b.value[:] = rng.normal(size=n_out)  # type: ignore[union-attr]
    x = rng.normal(size=(b, n_in))
    a, n = _fd_input(layer, x)
    np.testing.assert_allclose(a, n, rtol=1e-5, atol=1e-7)
    _fd_params(layer, x)


@settings(max_examples=10, deadline=None)
@given(shapes)
def test_activation_backward(s: tuple[int, int, int, int]) -> None:
    b, n, _, seed = s
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, n))
    x[np.abs(x) < 1e-3] = 0.5  # keep ReLU away from its kink
    for layer in (ReLU(), SiLU(), Tanh(), Sine(w0=3.0)):
        a, num = _fd_input(layer, x)
        np.testing.assert_allclose(a, num, rtol=1e-5, atol=1e-7)


@settings(max_examples=10, deadline=None)
@given(shapes)
def test_fourier_and_mlp_backward(s: tuple[int, int, int, int]) -> None:
    b, n_in, width, seed = s
    rng = np.random.default_rng(seed)
    ff = FourierFeatures(n_in, 3, 1.0, rng)
    x = rng.uniform(-1, 1, size=(b, n_in))
    a, num = _fd_input(ff, x)
    np.testing.assert_allclose(a, num, rtol=1e-5, atol=1e-6)
    mlp = MLP([ff, *MLP.build([ff.n_out, width, 2], SiLU, rng).layers, Tanh()])
    a, num = _fd_input(mlp, x)
    np.testing.assert_allclose(a, num, rtol=1e-5, atol=1e-6)
    _fd_params(mlp, x)


@settings(max_examples=10, deadline=None)
@given(shapes)
def test_losses_gradients(s: tuple[int, int, int, int]) -> None:
    b, n, _, seed = s
    rng = np.random.default_rng(seed)
    pred, target = rng.normal(size=(b, n)), rng.normal(size=(b, n))
    labels = rng.integers(0, n, size=b)
    for fn, arg in ((mse, target), (cross_entropy, labels)):
        _, g = fn(pred, arg)  # type: ignore[operator]
        num = np.zeros_like(pred)
        for idx in np.ndindex(*pred.shape):
            p, m = pred.copy(), pred.copy()
            p[idx] += 1e-6
            m[idx] -= 1e-6
            num[idx] = (fn(p, arg)[0] - fn(m, arg)[0]) / 2e-6  # type: ignore[operator]
        np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-7)


def test_weight_noise_is_bounded_and_gradient_flows_through_noisy_weight() -> None:
    from labctl.inference import WeightNoise

    rng = np.random.default_rng(3)
    layer = Linear(4, 3, rng, noise=WeightNoise())
    layer.training = True
    x = rng.normal(size=(5, 4))
    g_out = rng.normal(size=(5, 3))
    layer.forward(x)
    w_eff = layer._w_eff
    assert w_eff is not None
    ratio = w_eff / layer.W.value
    assert not np.allclose(ratio, 1.0)
    assert np.all(np.abs(ratio - 1) <= 0.2 + 1e-12)
    layer.W.zero_grad()
    gx = layer.backward(g_out)
    np.testing.assert_allclose(layer.W.grad, (x.T @ g_out) * ratio)
    np.testing.assert_allclose(gx, g_out @ w_eff.T)
    layer.training = False
    assert layer.b is not None
    np.testing.assert_allclose(layer.forward(x), x @ layer.W.value + layer.b.value)


def test_adam_fits_a_small_regression() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (256, 2))
    y = np.sin(3 * x[:, :1]) * x[:, 1:]
    model = MLP.build([2, 32, 32, 1], SiLU, rng)
    opt = Adam(model.params(), lr=3e-3)
    first = None
    for _ in range(400):
        loss, g = mse(model.forward(x), y)
        first = loss if first is None else first
        model.backward(g)
        opt.step()
    assert loss < 0.1 * first
