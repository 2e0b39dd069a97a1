"""Every routine a protocol file may name: calibration's and the inference workloads'.

The runner is handed this mapping; the core never imports a routine.
"""

from __future__ import annotations

from calibration import ROUTINES as CALIBRATION_ROUTINES
from labctl.core.routine import RoutineSpec
from labctl.inference.workload_routines import ROUTINES as WORKLOAD_ROUTINES


def routines() -> dict[str, RoutineSpec]:
    """routine name → spec."""
    out: dict[str, RoutineSpec] = {}
    for spec in (*CALIBRATION_ROUTINES, *WORKLOAD_ROUTINES):
        if spec.name in out:
            raise ValueError(f"two routines are named {spec.name!r}")
        out[spec.name] = spec
    return out
