"""Test-only helpers that put the simulated macro in a known state directly.

Used to test one model component at a time (e.g. relaxation from an exactly known
programmed conductance) without depending on a programming algorithm.
"""

from __future__ import annotations

import numpy as np

from labctl.core.cells import Cells
from sim_backend.macro import Macro

uS = 1e-6


def place(macro: Macro, cells: Cells, g_S: np.ndarray) -> None:
    """Make ``cells`` formed and just programmed to ``g_S`` now (as a pulse would)."""
    idx = macro.index(cells)
    macro.static(idx)
    macro.formed[idx] = True
    macro.g_prog_S[idx] = g_S
    macro.t_prog_s[idx] = macro.clock.now()
    macro.prog_event[idx] = macro.events[idx]
    macro.events[idx] += 1
    rate, t0 = macro.relax.params_for(np.asarray(g_S, dtype=np.float64))
    macro.relax_rate_S2[idx] = rate
    macro.relax_t0_s[idx] = t0
    macro._walk_k[idx] = -1
    for tile in np.unique(cells.tile):
        macro._tile_version[int(tile)] += 1


def healthy(macro: Macro, cells: Cells) -> np.ndarray:
    """Mask of cells with no fault (ground truth)."""
    idx = macro.index(cells)
    return macro.static(idx).fault == 0
