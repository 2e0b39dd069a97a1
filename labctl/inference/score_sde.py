"""Score-based diffusion on 2-D data: VP SDE, the paper's small score network, classifier-free
guidance, probability-flow ODE sampling with Euler steps.

After Yang et al. (Nat. Commun. 2026, doi 10.1038/s41467-026-72900-z; arXiv 2404.05648) and
their code (github.com/yangjc97/memristor-sde-diffusion, ``unconditional/my_sde.py``):

- the score network is an MLP 2 → 14 → 14 → 2 with ReLU and no bias; a random Fourier time
  encoding (``[sin 2πtW, cos 2πtW]``, W ~ N(0, 1), as wide as a hidden layer) is *added* to
  both hidden layers' pre-activations, and the output is scaled ×5. It predicts the score
  directly, trained on ``(s·σ(t) + z)²``: an error of the network then enters the ODE drift
  as ½β·δ, not amplified by 1/σ(t) as an ε-prediction would be — which is why the whole
  network can run in the analog loop;
- conditional models take the class as a one-hot input (a null token for classifier-free
  guidance, Ho & Salimans 2021): the class rows of the first layer's crossbar add the class
  embedding, so the network stays three analog layers;
- hardware-aware training ``W·(1+n)``, n ~ N(0, 0.1) limited to ±0.2
  (:class:`~labctl.inference.layers.WeightNoise`);
- sampling integrates the probability-flow ODE of the VP SDE (Song et al., ICLR 2021;
  β(t) = β_min + t(β_max − β_min), dx/dt = −½β(t)(x + s(x, t))) with forward Euler, the
  paper's software stand-in for its continuous-time analog integrator.

The data: a ring with radius r ~ N(0.7, 0.04) (the paper's), and — standing in for the
paper's 2-D VAE latents of EMNIST letters H, K, U — three overlapping Gaussian classes whose
Bayes accuracy is well below 1, so that guidance visibly moves samples into their class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labctl.inference.layers import MLP, Array, Layer, Linear, ReLU, WeightNoise
from labctl.inference.training import Adam

__all__ = [
    "BLOB_CENTRES", "RING_RADIUS", "RING_SIGMA", "VPSDE", "ForwardFn", "ScoreModel",
    "blobs_data", "classify_blobs", "outlier_fraction", "ring_data", "ring_distance", "sample_ode",
    "sliced_wasserstein", "train_score_model",
]

ForwardFn = Callable[[Array], Array]
"""Network evaluation on assembled inputs ``(batch, n_in)`` → score ``(batch, 2)``."""

RING_RADIUS = 0.7
RING_SIGMA = 0.04
"""The paper's ring: radius r ~ N(0.7, 0.04)."""
BLOB_SIGMA = 0.3
BLOB_CENTRES = 0.5 * np.array([[np.cos(a), np.sin(a)] for a in np.deg2rad([90, 210, 330])])
"""Three classes, isotropic σ = 0.3, centres 0.87 apart (2.9σ): Bayes accuracy ≈ 0.85."""


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


# ---- data and metrics ----
def ring_data(n: int, rng: np.random.Generator, radius: float = RING_RADIUS,
              width: float = RING_SIGMA) -> Array:
    """Points on a ring, radius ~ N(``radius``, ``width``)."""
    th = rng.uniform(0.0, 2 * np.pi, n)
    r = radius + width * rng.normal(size=n)
    return np.stack([r * np.cos(th), r * np.sin(th)], axis=1)


def blobs_data(n: int, rng: np.random.Generator) -> tuple[Array, npt.NDArray[np.int64]]:
    """The three overlapping classes; returns points and labels."""
    y = rng.integers(0, len(BLOB_CENTRES), n)
    return BLOB_CENTRES[y] + BLOB_SIGMA * rng.normal(size=(n, 2)), y.astype(np.int64)


def classify_blobs(x: Array) -> npt.NDArray[np.int64]:
    """Bayes classifier of :func:`blobs_data` (equal priors and σ): nearest centre."""
    d = np.linalg.norm(x[:, None, :] - BLOB_CENTRES[None, :, :], axis=2)
    return np.argmin(d, axis=1).astype(np.int64)


def ring_distance(x: Array, radius: float = RING_RADIUS) -> Array:
    """Distance of each sample from the ring's centre line."""
    return np.asarray(np.abs(np.linalg.norm(x, axis=1) - radius))


def outlier_fraction(x: Array, threshold: float) -> float:
    """Fraction of ring samples farther than ``threshold`` from the ring. SWD averages over
    the sample and hides a few stray points; this counts them. The workload sets
    ``threshold`` to the 99th percentile of the float reference's distances, so the float
    sampler scores ≈ 0.01 and a chip's stray samples show as the excess over it."""
    return float(np.mean(ring_distance(x) > threshold))


def sliced_wasserstein(a: Array, b: Array, n_proj: int = 128, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance between two equal-size 2-D samples."""
    rng = np.random.default_rng(seed)
    th = rng.uniform(0, np.pi, n_proj)
    d = np.stack([np.cos(th), np.sin(th)], axis=0)
    n = min(len(a), len(b))
    pa = np.sort(a[:n] @ d, axis=0)
    pb = np.sort(b[:n] @ d, axis=0)
    return float(np.mean(np.abs(pa - pb)))


# ---- the network ----
class TimeEncoding:
    """Random Fourier time features ``[sin 2πtW, cos 2πtW]``, W ~ N(0, scale²), fixed.
    Shared by the layers that split the time off the inputs and add it back."""

    def __init__(self, width: int, rng: np.random.Generator, scale: float = 1.0) -> None:
        self.W = rng.normal(0.0, scale, width // 2)
        self.value: Array = np.zeros((0, 2 * (width // 2)))

    def set(self, t: Array) -> None:
        z = 2.0 * np.pi * t[:, None] * self.W[None, :]
        self.value = np.concatenate([np.sin(z), np.cos(z)], axis=1)


class SplitTime(Layer):
    """Takes the last input column (t) off and sets the shared time encoding from it: the
    time features come from a signal generator beside the array, not from weights."""

    def __init__(self, enc: TimeEncoding) -> None:
        self.enc = enc

    def forward(self, x: Array) -> Array:
        self.enc.set(x[:, -1])
        return x[:, :-1]

    def backward(self, grad_out: Array) -> Array:
        return np.concatenate([grad_out, np.zeros((len(grad_out), 1))], axis=1)


class AddTime(Layer):
    """Adds the current time encoding to a hidden layer's pre-activation."""

    def __init__(self, enc: TimeEncoding) -> None:
        self.enc = enc

    def forward(self, x: Array) -> Array:
        return x + self.enc.value

    def backward(self, grad_out: Array) -> Array:
        return grad_out


class Gain(Layer):
    """Fixed output gain (the paper's ×5: a feedback-resistor ratio in the loop)."""

    def __init__(self, gain: float) -> None:
        self.gain = float(gain)

    def forward(self, x: Array) -> Array:
        return self.gain * x

    def backward(self, grad_out: Array) -> Array:
        return self.gain * grad_out


@dataclass
class ScoreModel:
    """s(x, t, c): inputs ``[x, one-hot class (null token last), t]``."""

    net: MLP
    n_classes: int
    """Real classes; index ``n_classes`` is the null (unconditional) token. 0: none."""

    @property
    def n_in(self) -> int:
        return 2 + (self.n_classes + 1 if self.n_classes else 0) + 1

    def inputs(self, x: Array, t: Array, c: npt.NDArray[np.int64] | None = None) -> Array:
        parts = [x]
        if self.n_classes:
            onehot = np.zeros((len(x), self.n_classes + 1))
            cc = np.full(len(x), self.n_classes) if c is None else c
            onehot[np.arange(len(x)), cc] = 1.0
            parts.append(onehot)
        parts.append(t.reshape(-1, 1))
        return np.concatenate(parts, axis=1)

    @classmethod
    def build(cls, n_classes: int, width: int, rng: np.random.Generator,
              noise: WeightNoise | None = None, output_gain: float = 5.0,
              time_scale: float = 1.0) -> ScoreModel:
        """The paper's 2 → width → width → 2 (+ class rows), ReLU, no bias."""
        enc = TimeEncoding(width, rng, time_scale)
        n_x = 2 + (n_classes + 1 if n_classes else 0)
        w = 2 * (width // 2)
        layers: list[Layer] = [
            SplitTime(enc),
            Linear(n_x, w, rng, bias=False, noise=noise), AddTime(enc), ReLU(),
            Linear(w, w, rng, bias=False, noise=noise), AddTime(enc), ReLU(),
            Linear(w, 2, rng, init="xavier", bias=False, noise=noise), Gain(output_gain),
        ]
        return cls(MLP(layers), n_classes)


def train_score_model(model: ScoreModel, data: Array, labels: npt.NDArray[np.int64] | None,
                      sde: VPSDE, steps: int, rng: np.random.Generator, *, batch: int = 512,
                      lr: float = 3e-3, p_uncond: float = 0.15) -> list[float]:
    """Denoising score matching with the paper's loss ``(s·σ + z)²`` (label dropout to the
    null token with probability ``p_uncond``); Adam, cosine decay, gradient clipping."""
    opt = Adam(model.net.params(), lr=lr, clip_norm=1.0)
    losses: list[float] = []
    model.net.train(True)
    for k in range(steps):
        opt.lr = lr * 0.5 * (1 + np.cos(np.pi * k / steps))
        i = rng.integers(0, len(data), batch)
        x0 = data[i]
        t = rng.uniform(sde.t_min, 1.0, batch)
        z = rng.normal(size=x0.shape)
        sig = sde.sigma(t)[:, None]
        xt = sde.alpha(t)[:, None] * x0 + sig * z
        c = None
        if model.n_classes and labels is not None:
            c = labels[i].copy()
            c[rng.random(batch) < p_uncond] = model.n_classes
        s = model.net.forward(model.inputs(xt, t, c))
        r = s * sig + z
        losses.append(float(np.mean(r * r)))
        model.net.backward(2.0 * r * sig / r.size)
        opt.step()
    model.net.train(False)
    return losses


def guided_score(model: ScoreModel, forward: ForwardFn, x: Array, t: Array,
                 c: npt.NDArray[np.int64] | None, guidance: float) -> Array:
    """Score with classifier-free guidance: (1+w)·s(x,c) − w·s(x,∅), one batched call."""
    if not model.n_classes or c is None:
        return forward(model.inputs(x, t, None))
    n = len(x)
    both = np.concatenate([model.inputs(x, t, c),
                           model.inputs(x, t, np.full(n, model.n_classes))], axis=0)
    s = forward(both)
    return (1.0 + guidance) * s[:n] - guidance * s[n:]


def sample_ode(model: ScoreModel, forward: ForwardFn, sde: VPSDE, x1: Array, *,
               n_steps: int = 200, c: npt.NDArray[np.int64] | None = None,
               guidance: float = 0.0, integrator_noise: float = 0.0,
               rng: np.random.Generator | None = None,
               record_inputs: list[Array] | None = None,
               progress: Callable[[int, int], None] | None = None) -> Array:
    """Probability-flow ODE from t = 1 to t_min, forward Euler at ``n_steps`` points (one
    network evaluation each). With ``integrator_noise > 0`` the state also gets white noise
    of that density per √(ODE time): an analog integrator's input-referred noise, for the
    simulated continuous-time loop."""
    ts = np.linspace(1.0, sde.t_min, n_steps + 1)
    x = x1.copy()
    r = rng if rng is not None else np.random.default_rng(0)
    for k in range(n_steps):
        t0, h = float(ts[k]), float(ts[k + 1] - ts[k])
        tt = np.full(len(x), t0)
        if record_inputs is not None:
            record_inputs.append(model.inputs(x, tt, c))
        s = guided_score(model, forward, x, tt, c, guidance)
        x = x + h * (-0.5 * sde.beta(t0) * (x + s))
        if integrator_noise > 0:
            x = x + integrator_noise * np.sqrt(abs(h)) * r.normal(size=x.shape)
        if progress is not None and (k + 1) % 20 == 0:
            progress(k + 1, n_steps)
    return x
