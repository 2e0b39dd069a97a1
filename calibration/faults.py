"""Fault maps and column remapping.

Faults are classified from forming and programming outcomes and from reads (docs/references.md:
distinguish stuck-at-LRS, stuck-at-HRS and unformed; 0.2 % in a mature process, Li 2018, up
to 10–13 % in research arrays):

- *unformed*: never read above the forming threshold during the gate ramp;
- *stuck at LRS*: verify-write could not move it and it reads above its target (or above
  the window);
- *stuck at HRS*: could not move it and it reads below its target.

A verify-write "stuck" verdict is one-way: no progress over several pulses towards the target.
A healthy cell asked for a level its transistor cannot source (a die with low β or high V_th)
gets it going up while sitting well inside the window, and it still RESETs as any cell does.
So when the verify-write's direction is known the classification asks where the cell sits:
stuck going up in the bottom quarter of the window (it never SET) is stuck at HRS, stuck going
down in the upper half (it never RESET; the simulator's stuck-LRS cells sit at ≥ 30 µS, i.e.
at or above the upper half of the default 1–40 µS window) is stuck at LRS, and anything else
switched, capped short of that target: no fault is recorded for it (``unknown``: a stuck verdict
mid-window does not show the cell healthy either, so it is not marked ``ok``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.core.backend import Backend
from labctl.core.calibration_record import FAULT_CODES
from labctl.core.cells import Cells

BAD_CODES = (FAULT_CODES["unformed"], FAULT_CODES["stuck_lrs"], FAULT_CODES["stuck_hrs"])
FORMED_THRESHOLD_S = 2e-6
"""A cell reading above this after a FORM pulse is formed (protocols/forming.yaml)."""


def form_block(be: Backend, cells: Cells, *, bitline_V: float = 3.3, gate_start_V: float = 1.3,
               gate_step_V: float = 0.05, gate_stop_V: float = 4.0, width_s: float = 1e-3,
               threshold_S: float = FORMED_THRESHOLD_S) -> np.ndarray:
    """Form ``cells`` directly (no run file) with the gate ramp of the ``forming`` routine
    (Stanford NI-RRAM-Python settings — docs/references.md); returns the unformed mask."""
    from calibration import forming

    st = forming.form_direct(be, cells, {
        "bitline_V": bitline_V, "gate_start_V": gate_start_V, "gate_step_V": gate_step_V,
        "gate_stop_V": gate_stop_V, "width_s": width_s, "formed_threshold_S": threshold_S})
    return np.asarray(st["outcome"] != forming.FORMED)


def stuck_bounds(g_min_S: float, g_max_S: float) -> tuple[float, float]:
    """(stuck at HRS below, stuck at LRS above), S: a cell stuck going up below the first
    never SET; a cell stuck going down above the second never RESET (module docstring)."""
    window = g_max_S - g_min_S
    return g_min_S + 0.25 * window, g_min_S + 0.5 * window


def classify(unformed: np.ndarray, stuck: np.ndarray, g_S: np.ndarray,
             target_S: np.ndarray, *, went_up: np.ndarray | None = None,
             window_S: tuple[float, float] | None = None) -> np.ndarray:
    """Per-cell fault codes from a forming mask, a verify-write stuck mask and a read.

    With the verify-write's last direction (``went_up``) and the chip's window (``window_S``
    = (g_min, g_max)), a stuck cell is a fault only where it sits (:func:`stuck_bounds`) and
    ``unknown`` elsewhere; without them, by its read against its target."""
    code = np.full(g_S.shape, FAULT_CODES["ok"], np.int8)
    if went_up is None or window_S is None:
        code[stuck & (g_S > target_S)] = FAULT_CODES["stuck_lrs"]
        code[stuck & (g_S <= target_S)] = FAULT_CODES["stuck_hrs"]
    else:
        hrs_below, lrs_above = stuck_bounds(*window_S)
        code[stuck] = FAULT_CODES["unknown"]
        code[stuck & went_up & (g_S < hrs_below)] = FAULT_CODES["stuck_hrs"]
        code[stuck & ~went_up & (g_S > lrs_above)] = FAULT_CODES["stuck_lrs"]
    code[unformed] = FAULT_CODES["unformed"]
    return code


def is_bad(fault_map: np.ndarray) -> np.ndarray:
    return np.isin(fault_map, BAD_CODES)


@dataclass
class ColumnRemap:
    """Logical column → physical column of one tile block, with spares.

    ``physical[k]`` is where logical column k lives. Built from a fault map: every logical
    column whose physical column has a faulty cell in the used rows is moved to the first
    unused spare whose cells are all known good (formed, not stuck); columns that find no
    spare stay put and are listed in
    ``unrepaired``. With ``pair`` (differential layouts) columns move two at a time.
    """

    physical: np.ndarray
    unrepaired: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, fault_map_block: np.ndarray, n_logical: int, spares: list[int] | np.ndarray,
              pair: bool = False) -> ColumnRemap:
        """``fault_map_block``: (used rows × physical columns) codes; logical columns are the
        first ``n_logical`` physical ones; ``spares`` are physical columns (pair starts when
        ``pair``) available as replacements."""
        bad_col = np.asarray(is_bad(fault_map_block).any(axis=0), bool)
        width = 2 if pair else 1
        phys = np.arange(n_logical)
        ok_col = np.asarray((fault_map_block == FAULT_CODES["ok"]).all(axis=0), bool)
        free = [int(s) for s in spares if ok_col[s:s + width].all()]
        unrepaired: list[int] = []
        for k in range(0, n_logical, width):
            if bad_col[k:k + width].any():
                if free:
                    s = free.pop(0)
                    phys[k:k + width] = np.arange(s, s + width)
                else:
                    unrepaired.append(k)
        return cls(phys, unrepaired)

    def gather(self, y_physical: np.ndarray) -> np.ndarray:
        """Logical outputs from a vector (or batch) of physical column outputs."""
        return y_physical[..., self.physical]

    def to_dict(self) -> dict[str, Any]:
        return {"physical": self.physical.tolist(), "unrepaired": self.unrepaired}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnRemap:
        return cls(np.asarray(d["physical"], np.int64), list(d.get("unrepaired", [])))
