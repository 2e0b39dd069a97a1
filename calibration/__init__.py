"""Calibration algorithms over the backend interface.

Each routine lives in the module named after it and exposes ``ROUTINE`` (a
:class:`labctl.core.routine.RoutineSpec`); :data:`ROUTINES` lists them for the protocol runner
(``labctl.runs.registry``). Routines never import a backend implementation.
"""

from __future__ import annotations

from calibration import (
    characterize,
    compensate,
    drift_monitor,
    fault_map,
    forming,
    read_map,
    refresh,
    report,
    twin,
    verify_write,
)
from labctl.core.routine import RoutineSpec

ROUTINES: tuple[RoutineSpec, ...] = (
    forming.ROUTINE,
    verify_write.ROUTINE,
    read_map.ROUTINE,
    drift_monitor.ROUTINE,
    characterize.ROUTINE,
    compensate.ROUTINE,
    refresh.ROUTINE,
    fault_map.ROUTINE,
    report.ROUTINE,
    twin.ROUTINE,
)
