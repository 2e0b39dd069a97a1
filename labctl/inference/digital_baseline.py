"""The digital baseline the chip's figures stand beside: host time measured, 180 nm energy
modelled.

- Time: the float network on the same batch, timed on this host with
  :func:`time.perf_counter` (numpy, one BLAS thread under ``labctl bench``). A CPU is not
  a 180 nm accelerator; the figure says what the host took, nothing more.
- Energy: a stated model of a digital 180 nm datapath, ``E = MACs × E_MAC``. E_MAC is an
  8-bit multiply-accumulate at 45 nm, 0.2 pJ + 0.03 pJ (Horowitz, "Computing's energy
  problem", ISSCC 2014, doi 10.1109/ISSCC.2014.6757323), scaled to 180 nm by C·V²: ×4 in
  capacitance (feature size) and ×4 in V² (0.9 V → 1.8 V), i.e. ×16 ≈ 3.7 pJ. Weight
  fetches are not counted (the small networks here fit in registers), so the model is a
  lower bound on a real digital chip's energy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DIGITAL_MAC_ENERGY_J", "digital_energy_J", "timed"]

DIGITAL_MAC_ENERGY_J = 16 * (0.2e-12 + 0.03e-12)
"""8-bit MAC at 180 nm (module docstring): ≈ 3.7 pJ."""

T = TypeVar("T")


def digital_energy_J(macs: float) -> float:
    """Energy of ``macs`` multiply-accumulates on the modelled 180 nm datapath."""
    return float(macs) * DIGITAL_MAC_ENERGY_J


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` and the host seconds it took."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
