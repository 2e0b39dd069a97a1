"""Losses and the Adam optimizer.

Losses return ``(loss, d loss / d prediction)`` so a training step is
``loss, g = mse(model(x), y); model.backward(g); opt.step()``.
Adam: Kingma & Ba, ICLR 2015.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from labctl.inference.layers import Array, Param

__all__ = ["Adam", "cross_entropy", "log_softmax", "mse"]


def mse(pred: Array, target: Array) -> tuple[float, Array]:
    """Mean over every element of ``(pred − target)²``."""
    d = pred - target
    return float(np.mean(d * d)), (2.0 / d.size) * d


def log_softmax(logits: Array) -> Array:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def cross_entropy(logits: Array, labels: npt.NDArray[np.integer]) -> tuple[float, Array]:
    """Mean cross-entropy of integer ``labels`` under softmax(``logits``)."""
    lp = log_softmax(logits)
    n = logits.shape[0]
    idx = np.arange(n)
    loss = -float(np.mean(lp[idx, labels]))
    g = np.exp(lp)
    g[idx, labels] -= 1.0
    return loss, g / n


class Adam:
    """Adam with optional global-norm gradient clipping; zeroes gradients after a step."""

    def __init__(self, params: Sequence[Param], lr: float = 1e-3, betas: tuple[float, float] = (
            0.9, 0.999), eps: float = 1e-8, clip_norm: float | None = None) -> None:
        self.params = list(params)
        self.lr = float(lr)
        self.b1, self.b2 = betas
        self.eps = eps
        self.clip_norm = clip_norm
        self.t = 0
        self.m = [np.zeros_like(p.value) for p in self.params]
        self.v = [np.zeros_like(p.value) for p in self.params]

    def step(self) -> None:
        self.t += 1
        scale = 1.0
        if self.clip_norm is not None:
            norm = float(np.sqrt(sum(float(np.sum(p.grad**2)) for p in self.params)))
            if norm > self.clip_norm:
                scale = self.clip_norm / norm
        c1 = 1.0 - self.b1**self.t
        c2 = 1.0 - self.b2**self.t
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad * scale
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * g * g
            p.value -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
            p.zero_grad()
