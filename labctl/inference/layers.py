"""Numpy layers with explicit forward and backward passes.

A deliberately small autograd-free layer set, enough for the three workloads of the seed
papers (docs/references.md, "The seed papers' workloads"): MLPs with ReLU / SiLU / tanh, sine
layers (SIREN, Sitzmann et al., NeurIPS 2020) and Fourier features (Tancik et al., NeurIPS
2020) for neural fields (Yu et al., Nature 2026), and SiLU MLPs for score models (Yang et
al., Nat. Commun. 2026).

Conventions: activations are ``(batch, features)``; a :class:`Linear` weight is
``(n_in, n_out)`` so ``y = x @ W + b`` — its rows are the crossbar's rows (inputs as row
voltages) and its columns the crossbar's columns (outputs as column currents). ``forward``
caches what ``backward`` needs; ``backward(grad_out)`` accumulates parameter gradients into
``Param.grad`` and returns the gradient with respect to the input.

Hardware-aware training (Yang et al.: ``W·(1+n)``, n ~ N(0, 0.1) clipped at ±0.2) is a
:class:`WeightNoise` attached to a :class:`Linear`; it is active only while ``training``.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

__all__ = [
    "MLP",
    "Array",
    "FourierFeatures",
    "Layer",
    "Linear",
    "Param",
    "ReLU",
    "SiLU",
    "Sine",
    "Tanh",
    "WeightNoise",
]


@dataclass(eq=False)
class Param:
    """A trainable array and its accumulated gradient."""

    value: Array
    grad: Array = field(init=False)

    def __post_init__(self) -> None:
        self.value = np.asarray(self.value, dtype=np.float64)
        self.grad = np.zeros_like(self.value)

    def zero_grad(self) -> None:
        self.grad[...] = 0.0


class Layer(abc.ABC):
    """Base class: ``forward`` caches, ``backward`` returns d(loss)/d(input)."""

    training: bool = False

    @abc.abstractmethod
    def forward(self, x: Array) -> Array: ...

    @abc.abstractmethod
    def backward(self, grad_out: Array) -> Array: ...

    def params(self) -> list[Param]:
        return []

    def __call__(self, x: Array) -> Array:
        return self.forward(x)


@dataclass(frozen=True)
class WeightNoise:
    """Multiplicative training noise ``W·(1+n)``, ``n ~ N(0, sigma)`` limited to ±``clip``.

    Defaults are the diffusion paper's hardware-aware training (Yang et al., Nat. Commun.
    2026: σ = 0.1, limit 0.2; their code, github.com/yangjc97/memristor-sde-diffusion,
    ``add_noise``, redraws a draw beyond the limit uniformly in ±limit, as done here).
    ``additive_frac`` adds noise proportional to the layer's
    max |W| instead — the shape of a device's programming spread, which is roughly constant
    in siemens across the window (AIHWKit ``ReRamWan2022NoiseModel``; use
    :func:`labctl.inference.mapping.device_noise` to derive it from g_max and σ_G).
    """

    sigma: float = 0.1
    clip: float = 0.2
    additive_frac: float = 0.0

    def sample(self, w: Array, rng: np.random.Generator) -> Array:
        """A noisy copy of ``w``."""
        out = w
        if self.sigma > 0:
            n = rng.normal(0.0, self.sigma, w.shape)
            out_of = np.abs(n) >= self.clip
            n[out_of] = rng.uniform(-self.clip, self.clip, int(out_of.sum()))
            out = w * (1.0 + n)
        if self.additive_frac > 0:
            scale = float(np.max(np.abs(w))) if w.size else 0.0
            out = out + rng.normal(0.0, self.additive_frac * scale, w.shape)
        return out


class Linear(Layer):
    """``y = x @ W + b``; ``W`` is ``(n_in, n_out)``."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, *,
                 init: str = "he", bias: bool = True, w0: float = 1.0,
                 noise: WeightNoise | None = None) -> None:
        if init == "he":
            w = rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, n_out))
        elif init == "xavier":
            w = rng.normal(0.0, np.sqrt(1.0 / n_in), (n_in, n_out))
        elif init == "siren_first":
            w = rng.uniform(-1.0 / n_in, 1.0 / n_in, (n_in, n_out))
        elif init == "siren":
            lim = np.sqrt(6.0 / n_in) / w0
            w = rng.uniform(-lim, lim, (n_in, n_out))
        else:
            raise ValueError(f"unknown init {init!r}; use he, xavier, siren_first or siren")
        self.W = Param(w)
        self.b: Param | None = Param(np.zeros(n_out)) if bias else None
        self.noise = noise
        self._rng = np.random.default_rng(rng.integers(2**63))
        self._x: Array | None = None
        self._w_eff: Array | None = None
        self._mult: Array | None = None

    @property
    def n_in(self) -> int:
        return int(self.W.value.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.W.value.shape[1])

    def forward(self, x: Array) -> Array:
        w = self.W.value
        self._mult = None
        if self.training and self.noise is not None:
            w_noisy = self.noise.sample(w, self._rng)
            # d(w_noisy)/dw is the multiplicative factor (the additive part is w-independent
            # up to the max scale, which we treat as a constant, straight-through)
            self._mult = np.where(w != 0, w_noisy / np.where(w != 0, w, 1.0), 1.0)
            w = w_noisy
        self._x = x
        self._w_eff = w
        y = x @ w
        if self.b is not None:
            y = y + self.b.value
        return y

    def backward(self, grad_out: Array) -> Array:
        if self._x is None or self._w_eff is None:
            raise RuntimeError("call forward before backward")
        gw = self._x.T @ grad_out
        if self._mult is not None and self.noise is not None and self.noise.additive_frac == 0:
            gw = gw * self._mult
        self.W.grad += gw
        if self.b is not None:
            self.b.grad += grad_out.sum(axis=0)
        return grad_out @ self._w_eff.T

    def params(self) -> list[Param]:
        return [self.W] if self.b is None else [self.W, self.b]


class ReLU(Layer):
    def forward(self, x: Array) -> Array:
        self._mask = x > 0
        return np.where(self._mask, x, 0.0)

    def backward(self, grad_out: Array) -> Array:
        return np.where(self._mask, grad_out, 0.0)


class SiLU(Layer):
    """``x·sigmoid(x)`` (swish), the score models' activation."""

    def forward(self, x: Array) -> Array:
        self._x = x
        self._s = 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free sigmoid
        return x * self._s

    def backward(self, grad_out: Array) -> Array:
        s = self._s
        return grad_out * (s + self._x * s * (1.0 - s))


class Tanh(Layer):
    def forward(self, x: Array) -> Array:
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad_out: Array) -> Array:
        return grad_out * (1.0 - self._y**2)


class Sine(Layer):
    """``sin(w0·x)`` — the SIREN activation (Sitzmann et al. 2020; w0 = 30 there)."""

    def __init__(self, w0: float = 30.0) -> None:
        self.w0 = float(w0)

    def forward(self, x: Array) -> Array:
        self._x = x
        return np.sin(self.w0 * x)

    def backward(self, grad_out: Array) -> Array:
        return grad_out * self.w0 * np.cos(self.w0 * self._x)


class FourierFeatures(Layer):
    """``[sin(2π x B), cos(2π x B)]`` with a fixed Gaussian ``B ~ N(0, sigma²)``
    (Tancik et al., "Fourier features let networks learn high frequency functions", 2020).
    Output is in [−1, 1], which suits a DAC."""

    def __init__(self, n_in: int, n_freq: int, sigma: float, rng: np.random.Generator) -> None:
        self.B = rng.normal(0.0, sigma, (n_in, n_freq))

    @property
    def n_out(self) -> int:
        return 2 * int(self.B.shape[1])

    def forward(self, x: Array) -> Array:
        self._z = 2.0 * np.pi * (x @ self.B)
        return np.concatenate([np.sin(self._z), np.cos(self._z)], axis=1)

    def backward(self, grad_out: Array) -> Array:
        m = self.B.shape[1]
        gz = grad_out[:, :m] * np.cos(self._z) - grad_out[:, m:] * np.sin(self._z)
        return (2.0 * np.pi) * gz @ self.B.T


class MLP(Layer):
    """A sequential container. ``replace_linears`` builds an inference copy whose linear
    layers are something else (an :class:`~labctl.inference.analog.AnalogLinear`)."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = list(layers)

    @classmethod
    def build(cls, sizes: Sequence[int], activation: type[Layer] | Layer,
              rng: np.random.Generator, *, init: str = "he",
              noise: WeightNoise | None = None, head: Layer | None = None) -> MLP:
        """``sizes[0] → sizes[1] → … → sizes[-1]`` with ``activation`` between layers."""
        layers: list[Layer] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(Linear(a, b, rng, init=init, noise=noise))
            if i < len(sizes) - 2:
                layers.append(activation if isinstance(activation, Layer) else activation())
        if head is not None:
            layers.append(head)
        return cls(layers)

    def forward(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out: Array) -> Array:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def params(self) -> list[Param]:
        return [p for layer in self.layers for p in layer.params()]

    def linears(self) -> list[Linear]:
        return [la for la in self.layers if isinstance(la, Linear)]

    def train(self, mode: bool = True) -> MLP:
        for layer in self._walk():
            layer.training = mode
        return self

    def _walk(self) -> Iterable[Layer]:
        for layer in self.layers:
            yield layer
            if isinstance(layer, MLP):
                yield from layer._walk()

    def zero_grad(self) -> None:
        for p in self.params():
            p.zero_grad()

    def replace_linears(self, factory: dict[int, Layer]) -> MLP:
        """A new MLP sharing every layer except linear layer *k* → ``factory[k]``."""
        out: list[Layer] = []
        k = 0
        for layer in self.layers:
            if isinstance(layer, Linear):
                out.append(factory.get(k, layer))
                k += 1
            else:
                out.append(layer)
        return MLP(out)
