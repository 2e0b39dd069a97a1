"""Refresh: re-program the cells whose measured drift exceeds a tolerance.

No open-source stack schedules re-programming from measured drift (docs/references.md, "Drift
compensation"); this is the simple form: read every cell (averaged), and verify-write again
only the cells further than ``drift_tolerance_S`` from their target. Compensation removes the
systematic part of drift; this removes the random, cell-by-cell part that compensation
cannot. The routine ``refresh`` runs it on a schedule.
"""

from __future__ import annotations

import numpy as np

from calibration import programming as pg
from calibration.policies import Policy
from labctl.core.backend import Backend
from labctl.core.cells import Cells


def drifted(g_S: np.ndarray, target_S: np.ndarray, tolerance_S: float,
            usable: np.ndarray | None = None) -> np.ndarray:
    """Cells whose conductance is further than ``tolerance_S`` from the target."""
    m = np.abs(g_S - target_S) > tolerance_S
    return m if usable is None else m & usable


def refresh_direct(be: Backend, cells: Cells, target_S: np.ndarray, tolerance_S: float,
                   settings: pg.Settings, policy: Policy,
                   usable: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read, select drifted cells, verify-write them (pulses applied directly). Returns the
    selection mask and the engine state of the re-programmed cells."""
    g = be.read(cells, settings.read_V, n_average=settings.n_average)
    sel = drifted(g, target_S, tolerance_S, usable)
    idx = np.flatnonzero(sel)
    st = pg.program_direct(be, cells.subset(idx), target_S[idx], settings, policy)
    return sel, st
