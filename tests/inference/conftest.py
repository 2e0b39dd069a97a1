"""Fixtures of the inference tests (the in-test backend lives in ``helpers``)."""

from __future__ import annotations

import pytest

from tests.inference.helpers import FakeBackend


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def noisy_backend() -> FakeBackend:
    return FakeBackend(prog_sigma_S=1.0e-6, read_noise_rel=0.01, seed=1)
