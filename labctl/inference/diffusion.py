"""Score-based diffusion on 2-D data: VP SDE, ε-prediction network, classifier-free
guidance, probability-flow ODE sampling.

After Yang et al. (Nat. Commun. 2026, arXiv 2404.05648; docs/references.md): a small score
network trained with hardware-aware weight noise, the reverse-time probability-flow ODE
solved with every network evaluation going through a pluggable ``forward`` (float model or
the analog network), unconditional and classifier-free guided (Ho & Salimans, 2021, with a
real null token). The VP SDE and its probability-flow ODE are those of Song et al. (ICLR
2021): β(t) = β_min + t(β_max − β_min), dx/dt = −½β(t)·(x + score), score = −ε̂/σ(t).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labctl.inference.layers import MLP, Array, SiLU, WeightNoise
from labctl.inference.training import Adam, mse

__all__ = [
    "VPSDE", "EpsModel", "ForwardFn", "classify_rings", "ring_data", "rings_data",
    "sample_ode", "sliced_wasserstein", "train_eps_model",
]

ForwardFn = Callable[[Array], Array]
"""Network evaluation on assembled inputs ``(batch, n_in)`` → ε̂ ``(batch, 2)``."""


@dataclass(frozen=True)
class VPSDE:
    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3

    def beta(self, t: Array | float) -> Array:
        return np.asarray(self.beta_min + t * (self.beta_max - self.beta_min))

    def alpha(self, t: Array | float) -> Array:
        """Signal scale α(t) = exp(−½∫₀ᵗ β)."""
        t = np.asarray(t)
        return np.exp(-0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min)

    def sigma(self, t: Array | float) -> Array:
        a = self.alpha(t)
        return np.sqrt(np.maximum(1.0 - a * a, 1e-12))


# ---- data ----
def ring_data(n: int, rng: np.random.Generator, radius: float = 1.0,
              width: float = 0.05) -> Array:
    """Points on a ring with Gaussian radial spread."""
    th = rng.uniform(0.0, 2 * np.pi, n)
    r = radius + width * rng.normal(size=n)
    return np.stack([r * np.cos(th), r * np.sin(th)], axis=1)


def rings_data(n: int, rng: np.random.Generator, radii: tuple[float, ...] = (0.5, 1.5),
               width: float = 0.05) -> tuple[Array, npt.NDArray[np.int64]]:
    """Concentric rings, one class per ring; returns points and integer labels."""
    y = rng.integers(0, len(radii), n)
    th = rng.uniform(0.0, 2 * np.pi, n)
    r = np.asarray(radii)[y] + width * rng.normal(size=n)
    return np.stack([r * np.cos(th), r * np.sin(th)], axis=1), y


def classify_rings(x: Array, radii: tuple[float, ...] = (0.5, 1.5)) -> npt.NDArray[np.int64]:
    """Bayes classifier of :func:`rings_data` (equal widths): nearest ring radius."""
    r = np.linalg.norm(x, axis=1)
    return np.argmin(np.abs(r[:, None] - np.asarray(radii)[None, :]), axis=1).astype(np.int64)


def sliced_wasserstein(a: Array, b: Array, n_proj: int = 128, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between two equal-size 2-D samples."""
    rng = np.random.default_rng(seed)
    th = rng.uniform(0, np.pi, n_proj)
    d = np.stack([np.cos(th), np.sin(th)], axis=0)
    n = min(len(a), len(b))
    pa = np.sort(a[:n] @ d, axis=0)
    pb = np.sort(b[:n] @ d, axis=0)
    return float(np.mean(np.abs(pa - pb)))


# ---- the ε model ----
@dataclass
class EpsModel:
    """ε̂(x, t, c): MLP over [x, time features, one-hot class with a null token]."""

    net: MLP
    n_classes: int
    """Real classes; index ``n_classes`` is the null (unconditional) token. 0: none."""
    n_time_freq: int = 8

    @property
    def n_in(self) -> int:
        k = self.n_classes + 1 if self.n_classes else 0
        return 2 + 2 * self.n_time_freq + k

    def inputs(self, x: Array, t: Array, c: npt.NDArray[np.int64] | None = None) -> Array:
        f = np.pi * 2.0 ** np.arange(self.n_time_freq) / 8.0
        z = t.reshape(-1, 1) * f[None, :]
        parts = [x, np.sin(z), np.cos(z)]
        if self.n_classes:
            onehot = np.zeros((len(x), self.n_classes + 1))
            cc = np.full(len(x), self.n_classes) if c is None else c
            onehot[np.arange(len(x)), cc] = 1.0
            parts.append(onehot)
        return np.concatenate(parts, axis=1)

    @classmethod
    def build(cls, n_classes: int, width: int, depth: int, rng: np.random.Generator,
              noise: WeightNoise | None = None, n_time_freq: int = 8) -> EpsModel:
        k = n_classes + 1 if n_classes else 0
        n_in = 2 + 2 * n_time_freq + k
        net = MLP.build([n_in] + [width] * depth + [2], SiLU, rng, noise=noise)
        return cls(net, n_classes, n_time_freq)


def train_eps_model(model: EpsModel, data: Array, labels: npt.NDArray[np.int64] | None,
                    sde: VPSDE, steps: int, rng: np.random.Generator, *, batch: int = 512,
                    lr: float = 2e-3, p_uncond: float = 0.15) -> list[float]:
    """Denoising score matching (ε-prediction) with label dropout to the null token."""
    opt = Adam(model.net.params(), lr=lr, clip_norm=1.0)
    losses: list[float] = []
    model.net.train(True)
    for k in range(steps):
        opt.lr = lr * 0.5 * (1 + np.cos(np.pi * k / steps))  # cosine decay
        i = rng.integers(0, len(data), batch)
        x0 = data[i]
        t = rng.uniform(sde.t_min, 1.0, batch)
        eps = rng.normal(size=x0.shape)
        xt = sde.alpha(t)[:, None] * x0 + sde.sigma(t)[:, None] * eps
        c = None
        if model.n_classes and labels is not None:
            c = labels[i].copy()
            c[rng.random(batch) < p_uncond] = model.n_classes
        pred = model.net.forward(model.inputs(xt, t, c))
        loss, g = mse(pred, eps)
        model.net.backward(g)
        opt.step()
        losses.append(loss)
    model.net.train(False)
    return losses


def guided_eps(model: EpsModel, forward: ForwardFn, x: Array, t: Array,
               c: npt.NDArray[np.int64] | None, guidance: float) -> Array:
    """ε̂ with classifier-free guidance: (1+w)·ε(x,c) − w·ε(x,∅), one batched call."""
    if not model.n_classes or c is None:
        return forward(model.inputs(x, t, None))
    n = len(x)
    both = np.concatenate([model.inputs(x, t, c),
                           model.inputs(x, t, np.full(n, model.n_classes))], axis=0)
    e = forward(both)
    return (1.0 + guidance) * e[:n] - guidance * e[n:]


def sample_ode(model: EpsModel, forward: ForwardFn, sde: VPSDE, x1: Array, *,
               n_steps: int = 50, c: npt.NDArray[np.int64] | None = None,
               guidance: float = 0.0, integrator_noise: float = 0.0,
               rng: np.random.Generator | None = None,
               record_inputs: list[Array] | None = None) -> Array:
    """Probability-flow ODE from t = 1 to t_min.

    With ``integrator_noise = 0`` this is Heun's method (2 network evaluations per step).
    With ``integrator_noise > 0`` it is the continuous-time analog loop simulated with
    forward Euler at ``n_steps`` points: the integrator's state gets white noise of
    density ``integrator_noise`` (per √unit of ODE time) — an RC/op-amp integrator's
    input-referred noise (Yang et al. run the loop on an analog integrator).
    """
    ts = np.linspace(1.0, sde.t_min, n_steps + 1)
    x = x1.copy()

    def drift(xx: Array, t: float) -> Array:
        tt = np.full(len(xx), t)
        if record_inputs is not None:
            record_inputs.append(model.inputs(xx, tt, c))
        e = guided_eps(model, forward, xx, tt, c, guidance)
        return -0.5 * sde.beta(t) * (xx - e / sde.sigma(t))

    for t0, t1 in itertools.pairwise(ts):
        h = t1 - t0
        d0 = drift(x, float(t0))
        if integrator_noise > 0:
            r = rng if rng is not None else np.random.default_rng(0)
            x = x + h * d0 + integrator_noise * np.sqrt(abs(h)) * r.normal(size=x.shape)
        else:
            xe = x + h * d0
            x = x + 0.5 * h * (d0 + drift(xe, float(t1)))
    return x
