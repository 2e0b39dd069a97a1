"""When each cell of a batch is touched, and how long the batch takes on the chip.

The simulated clock runs: every operation advances it by its device time, as the macro's
periphery executes the batch (``EnergyParams`` holds the figures):

- pulse: cells on one row of one tile are pulsed in parallel (one driver per column), rows
  in sequence in ascending (tile, row) order; a row takes its longest width plus the driver
  settling ``pulse_overhead_s``;
- read: rows in sequence, columns in parallel; a row takes ``n_average · read_time_s``;
- MVM: ``batch · (mvm_integration_s + adc_conversion_s)``.

So a cell pulsed on the last row of a 256-row batch is pulsed 256 row-times after one on the
first row, and its relaxation starts then. A caller that executes a batch differently (an
SMU stepping cell by cell through a switch matrix) passes its own :class:`Schedule`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labctl.core.cells import Cells

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Schedule:
    """Start of each cell's operation after the batch begins, and the batch's duration."""

    start_s: F64
    """Per cell, seconds after the batch starts."""
    duration_s: float
    """Device time of the whole batch, s; the clock advances by this much."""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.duration_s) and self.duration_s >= 0):
            raise ValueError(f"a batch duration must be finite and ≥ 0, got {self.duration_s}")
        if self.start_s.size and not (
            np.all(self.start_s >= 0) and float(self.start_s.max()) <= self.duration_s
        ):
            raise ValueError("every cell must start within the batch")

    @classmethod
    def sequential(cls, on_s: F64) -> Schedule:
        """One cell after another, each for its own on-time (an SMU stepping a scan list)."""
        on = np.asarray(on_s, dtype=np.float64)
        ends = np.cumsum(on)
        return cls(ends - on, float(ends[-1]) if on.size else 0.0)


def row_groups(cells: Cells, n_rows: int) -> tuple[I64, I64]:
    """(order, group starts): cells sorted by (tile, row), and where each row begins."""
    key = cells.tile.astype(np.int64) * n_rows + cells.row
    order = np.argsort(key, kind="stable")
    ks = key[order]
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    return order.astype(np.int64), starts.astype(np.int64)


def rows_in_sequence(cells: Cells, n_rows: int, per_cell_s: F64, per_row_s: float) -> Schedule:
    """Rows in ascending (tile, row) order, columns of a row in parallel: a row lasts its
    longest ``per_cell_s`` plus ``per_row_s``."""
    n = len(cells)
    if n == 0:
        return Schedule(np.zeros(0), 0.0)
    order, starts = row_groups(cells, n_rows)
    row_s = np.maximum.reduceat(np.asarray(per_cell_s, dtype=np.float64)[order], starts)
    row_s = row_s + per_row_s
    row_start = np.concatenate([[0.0], np.cumsum(row_s)[:-1]])
    sizes = np.diff(np.r_[starts, n])
    start = np.empty(n)
    start[order] = np.repeat(row_start, sizes)
    return Schedule(start, float(row_s.sum()))
