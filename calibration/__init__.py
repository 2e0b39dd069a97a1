"""Calibration algorithms over the backend interface.

Each routine is a module exposing ``ROUTINE`` (a :class:`labctl.routine.RoutineSpec`);
:func:`registry` collects them for the protocol runner. To add a routine, write a module and
add it to ``ROUTINE_MODULES``. Routines never import a backend implementation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.routine import RoutineSpec

ROUTINE_MODULES: tuple[str, ...] = (
    "calibration.forming",
    "calibration.verify_write",
    "calibration.read_map",
    "calibration.drift_monitor",
    "calibration.levels",
    "calibration.twin",
    "calibration.drift_compensation",
    "calibration.refresh",
    "calibration.fault_map",
    "calibration.report",
    # the inference workloads (labctl.inference) as routines: calibration.workloads, which
    # programs their weights with calibration.weights (forming + verify-write)
    "calibration.neural_field",
    "calibration.diffusion",
    "calibration.fast_weights",
)


def registry() -> dict[str, RoutineSpec]:
    """routine name → spec, for every module in ``ROUTINE_MODULES``."""
    out: dict[str, RoutineSpec] = {}
    for name in ROUTINE_MODULES:
        spec: RoutineSpec = importlib.import_module(name).ROUTINE
        out[spec.name] = spec
    return out
