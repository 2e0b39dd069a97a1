"""Every routine a protocol may name: the calibration routines and the inference workloads.

The one place that knows both packages (the runs layer sits above both)."""

from __future__ import annotations

from calibration import registry as calibration_registry
from labctl.inference import ROUTINES as INFERENCE_ROUTINES
from labctl.routine import RoutineSpec

__all__ = ["registry"]


def registry() -> dict[str, RoutineSpec]:
    """routine name → spec."""
    out = dict(calibration_registry())
    out.update({r.name: r for r in INFERENCE_ROUTINES})
    return out
