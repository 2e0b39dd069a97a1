"""The twin's measurement table: one row per cell and measurement, from a run file or a CSV.

``labctl fit`` fits a simulator preset to this table (:mod:`calibration.fitting`). The twin
protocol (``protocols/twin.yaml``, routine :mod:`calibration.twin`) writes it into its run
file; a lab can also export its own measurements as CSV with these columns (a header row
with the names; extra columns are ignored; optional columns may be left empty):

=============  ==========  ===============================================================
column         unit        meaning
=============  ==========  ===============================================================
measurement    —           one of ``MEASUREMENTS`` (below)
tile,row,col   —           cell address
time_s         s           when the read started, on one clock for the whole file
read_V         V           read voltage across the cell
gate_V         V           read gate (word-line) voltage
current_A      A           measured read current (averaged over ``n_average`` reads)
n_average      —           reads averaged into ``current_A`` (default 1)
stimulus_V     V           the measurement's stimulus: forming → the ramp gate at which the
                           cell formed (empty: never formed); as_formed → the FORM gate;
                           gate_curve → the SET gate; set/reset_kinetics → the pulse
                           amplitude
pulse_gate_V   V           gate during a kinetics pulse
width_s        s           kinetics pulse width
before_A       A           kinetics: read current before the pulse
target_S       S           levels / noise: the level the cell was programmed to
age_s          s           levels: time since programming ended
delay_s        s           noise: time since the series' first read (0 for that read)
=============  ==========  ===============================================================

Measurements: ``survey`` (every cell of a tile before forming), ``form`` (after a gate-ramp
forming), ``as_formed`` (after one FORM at a gate that does not cap the filament), ``hrs``
(after a full RESET), ``gate_curve`` (after one strong SET from HRS at a known gate),
``transistor`` (a cell at the top of the window read at a low read gate, where the
transistor saturates), ``reset_kinetics`` / ``set_kinetics`` (one pulse from a known state),
``levels`` (verify-written levels read at ages), ``noise`` (single reads at delays after a
first one).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from labctl.core.errors import ConfigError

MEASUREMENTS = ("survey", "form", "as_formed", "hrs", "gate_curve", "transistor",
                "reset_kinetics", "set_kinetics", "levels", "noise")
REQUIRED = ("tile", "row", "col", "time_s", "read_V", "gate_V", "current_A")
OPTIONAL = ("n_average", "stimulus_V", "pulse_gate_V", "width_s", "before_A", "target_S",
            "age_s", "delay_s")
COLUMNS = ("measurement", *REQUIRED, *OPTIONAL)
_INT = ("tile", "row", "col")
_CHUNK = re.compile(r"^twin(\d+)_(\w+)$")


class Table:
    """Columns of equal length; ``measurement`` as an index into ``MEASUREMENTS``."""

    def __init__(self, cols: dict[str, np.ndarray]) -> None:
        n = len(cols["measurement"])
        self.cols: dict[str, np.ndarray] = {"measurement": cols["measurement"].astype(np.int8)}
        for c in REQUIRED + OPTIONAL:
            v = cols.get(c)
            if v is None:
                v = np.ones(n) if c == "n_average" else np.full(n, np.nan)
            self.cols[c] = np.asarray(v, dtype=np.int64 if c in _INT else np.float64)
            if self.cols[c].shape != (n,):
                raise ValueError(f"column {c} has {self.cols[c].shape}, expected ({n},)")

    @classmethod
    def of(cls, measurement: str, tile: Any, row: Any, col: Any, time_s: Any, read_V: Any,
           gate_V: Any, current_A: Any, **optional: Any) -> Table:
        """Rows of one measurement; scalars broadcast over the cells."""
        n = len(np.atleast_1d(row))
        cols: dict[str, np.ndarray] = {
            "measurement": np.full(n, MEASUREMENTS.index(measurement))}
        for name, v in (("tile", tile), ("row", row), ("col", col), ("time_s", time_s),
                        ("read_V", read_V), ("gate_V", gate_V), ("current_A", current_A),
                        *optional.items()):
            if name not in COLUMNS:
                raise ValueError(f"unknown column {name!r}")
            cols[name] = np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy()
        return cls(cols)

    def __len__(self) -> int:
        return len(self.cols["measurement"])

    def kind(self) -> str:
        """The measurement of a one-measurement table."""
        return MEASUREMENTS[int(self.cols["measurement"][0])] if len(self) else ""

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.cols)

    def only(self, measurement: str) -> Table:
        m = self.cols["measurement"] == MEASUREMENTS.index(measurement)
        return Table({k: v[m] for k, v in self.cols.items()})

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    @property
    def g_S(self) -> np.ndarray:
        """Read conductance, S (current / read voltage)."""
        out: np.ndarray = self.cols["current_A"] / self.cols["read_V"]
        return out

    def key(self) -> np.ndarray:
        """One integer per cell address (for joining measurements of the same cell)."""
        c = self.cols
        out: np.ndarray = (c["tile"] << 40) + (c["row"] << 20) + c["col"]
        return out

    @classmethod
    def concat(cls, parts: list[Table]) -> Table:
        if not parts:
            return cls({"measurement": np.zeros(0, dtype=np.int8),
                        **{c: np.zeros(0) for c in REQUIRED}})
        return cls({k: np.concatenate([p.cols[k] for p in parts]) for k in COLUMNS})


def from_named_arrays(named: Iterable[tuple[str, np.ndarray]], source: str) -> Table:
    """The twin table from a run file's arrays: every ``twin<k>_<column>`` chunk, in order
    (the caller reads the file; calibration does not know the run store). Raises
    ConfigError if there are none (not a twin run)."""
    chunks: dict[int, dict[str, np.ndarray]] = {}
    for name, value in named:
        m = _CHUNK.match(name)
        if m:
            chunks.setdefault(int(m.group(1)), {})[m.group(2)] = value
    if not chunks:
        raise ConfigError(source, "(arrays)", "no twin measurements in this run file; run "
                          "protocols/twin.yaml, or fit a CSV export (docs/simulator.md)")
    return Table.concat([Table(chunks[k]) for k in sorted(chunks)])


def write_csv(t: Table, path: str | Path) -> Path:
    """The table as CSV in the documented import format."""
    p = Path(path)
    with p.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        names = [MEASUREMENTS[int(i)] for i in t["measurement"]]
        cols = [t[c] for c in COLUMNS[1:]]
        for i, name in enumerate(names):
            w.writerow([name, *(("" if np.isnan(v[i]) else repr(float(v[i])))
                                if v.dtype.kind == "f" else int(v[i]) for v in cols)])
    return p


def load_csv(path: str | Path) -> Table:
    """Read a CSV in the documented format. Errors name the line and column."""
    src = str(path)
    with Path(path).open(newline="", encoding="utf-8") as f:
        rd = csv.DictReader(f)
        header = rd.fieldnames or []
        missing = [c for c in ("measurement", *REQUIRED) if c not in header]
        if missing:
            raise ConfigError(src, "(header)", f"missing column(s) {', '.join(missing)}; "
                              f"expected {', '.join(COLUMNS)}")
        data: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        for line, row in enumerate(rd, start=2):
            m = (row.get("measurement") or "").strip()
            if m not in MEASUREMENTS:
                raise ConfigError(src, f"line {line}: measurement",
                                  f"must be one of {', '.join(MEASUREMENTS)}; got {m!r}")
            data["measurement"].append(MEASUREMENTS.index(m))
            for c in COLUMNS[1:]:
                text = (row.get(c) or "").strip()
                if not text:
                    if c in REQUIRED:
                        raise ConfigError(src, f"line {line}: {c}", "required, but empty")
                    data[c].append(1.0 if c == "n_average" else np.nan)
                    continue
                try:
                    data[c].append(int(text) if c in _INT else float(text))
                except ValueError:
                    raise ConfigError(src, f"line {line}: {c}",
                                      f"must be a number; got {text!r}") from None
    return Table({k: np.asarray(v) for k, v in data.items()})
