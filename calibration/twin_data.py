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

Every value of a CSV is checked on import (:data:`RANGES`, :data:`MAX_ADDRESS`; the table in
docs/simulator.md says why each bound): finite, and in a range the fit can use. Currents
may be negative (read noise at low conductance).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable
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
    ConfigError if there are none (not a twin run) or they hold no rows."""
    chunks: dict[int, dict[str, np.ndarray]] = {}
    for name, value in named:
        m = _CHUNK.match(name)
        if m:
            chunks.setdefault(int(m.group(1)), {})[m.group(2)] = value
    if not chunks:
        raise ConfigError(source, "(arrays)", "no twin measurements in this run file; run "
                          "protocols/twin.yaml, or fit a CSV export (docs/simulator.md)")
    table = Table.concat([Table(chunks[k]) for k in sorted(chunks)])
    if not len(table):
        raise ConfigError(source, "(arrays)", "no measurement rows in the twin measurements; "
                          "the run stopped before its first measurement")
    return table


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


# ---------------------------------------------------------------------------------------
# CSV import. A lab's export is input, not trusted: every cell is checked against what the
# fit can use, so a bad value is refused here, naming its line and column, instead of
# surfacing as a NaN in the preset (which the preset loader then refuses).
# ---------------------------------------------------------------------------------------
MAX_ADDRESS = 1 << 20
"""tile, row and col must be below this: :meth:`Table.key` packs an address into 20 bits
per field, so a larger value would merge two cells (or overflow the key)."""
MAX_ABS_V = 100.0
"""No read, gate or pulse voltage of a 1T1R chip comes near 100 V: a larger value is a unit
slip (mV written as V) or garbage, and its square would overflow in the fit."""
MIN_ABS_READ_V = 1e-3
"""The fit reads g = current_A / read_V: below 1 mV (or at 0) a read measures the
instrument's offset, not the cell, and g is meaningless or infinite."""
MAX_ABS_A = 1.0
"""A cell's read current is below 1 mA: 1 A catches µA or nA written as A."""
MAX_TARGET_S = 1.0
"""A programmed level is below 1 mS: 1 S catches µS written as S."""

_Rule = tuple[Callable[[float], bool], str]
_VOLTAGE: _Rule = (lambda x: abs(x) <= MAX_ABS_V, "within ±100 V (check the unit: V)")
_CURRENT: _Rule = (lambda x: abs(x) <= MAX_ABS_A,
                   "within ±1 A (check the unit: A; either sign is fine, read noise takes "
                   "low currents below zero)")
_NONNEG_S: _Rule = (lambda x: x >= 0, "≥ 0 s")
RANGES: dict[str, _Rule] = {
    "time_s": _NONNEG_S,
    "read_V": (lambda x: MIN_ABS_READ_V <= abs(x) <= MAX_ABS_V,
               "1 mV ≤ |read_V| ≤ 100 V (the fit divides current_A by it)"),
    "gate_V": _VOLTAGE,
    "current_A": _CURRENT,
    "n_average": (lambda x: x >= 1 and x == math.floor(x), "a whole number ≥ 1"),
    "stimulus_V": _VOLTAGE,
    "pulse_gate_V": _VOLTAGE,
    "width_s": (lambda x: x > 0, "> 0 s"),
    "before_A": _CURRENT,
    "target_S": (lambda x: 0 < x <= MAX_TARGET_S, "> 0 and ≤ 1 S (check the unit: S)"),
    "age_s": _NONNEG_S,
    "delay_s": _NONNEG_S,
}
"""Allowed range of each number column (every value must also be finite; see the module
docstring for what each column means)."""


def _read_text(path: str | Path) -> str:
    """The file as text: UTF-8, with or without the byte-order mark Excel's "CSV UTF-8"
    writes. Read whole so a decoding error can name its line."""
    src = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(src, "(file)", "measurement file not found; check the path") from None
    except IsADirectoryError:
        raise ConfigError(src, "(file)", "is a directory; give a CSV or a run file") from None
    except OSError as e:
        raise ConfigError(src, "(file)", f"cannot read: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(src, f"line {line}",
                          f"cannot read as UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
                          f"{e.start}); export the measurements as CSV in UTF-8 (Excel: "
                          f"'CSV UTF-8')") from None


def _value(src: str, line: int, column: str, text: str) -> float | int:
    """One non-empty cell of a number column, checked against :data:`RANGES`."""
    where = f"line {line}: {column}"
    if column in _INT:
        try:
            i = int(text)
        except ValueError:
            raise ConfigError(src, where, f"must be a whole number; got {text[:40]!r}") from None
        if not 0 <= i < MAX_ADDRESS:
            raise ConfigError(src, where, f"must be in 0 … {MAX_ADDRESS - 1} (a cell address); "
                              f"got {text[:40]!r}")
        return i
    try:
        x = float(text)
    except ValueError:
        raise ConfigError(src, where, f"must be a number; got {text[:40]!r}") from None
    if not math.isfinite(x):
        fix = ("a required column needs a measured value: fix or drop the row"
               if column in REQUIRED else "leave the cell empty where it was not measured")
        raise ConfigError(src, where, f"must be a finite number; got {text[:40]!r} ({fix})")
    ok, allowed = RANGES[column]
    if not ok(x):
        raise ConfigError(src, where, f"must be {allowed}; got {text[:40]!r}")
    return x


def _is_blank(row: dict[str | Any, Any]) -> bool:
    """A row with every cell empty (spreadsheets write them below the data)."""
    return not any(v.strip() for v in row.values() if isinstance(v, str))


def load_csv(path: str | Path) -> Table:
    """Read a CSV in the documented format. Every problem — unreadable file, bad header, a
    value outside :data:`RANGES`, no rows — is a ConfigError naming the file, line and
    column; blank rows are skipped."""
    src = str(path)
    rd = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    data: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    try:
        if rd.fieldnames is None:
            raise ConfigError(src, "(header)", "empty file; expected a header row with the "
                              f"column names {', '.join(COLUMNS)}")
        rd.fieldnames = [h.strip() for h in rd.fieldnames]
        missing = [c for c in ("measurement", *REQUIRED) if c not in rd.fieldnames]
        if missing:
            raise ConfigError(src, "(header)", f"missing column(s) {', '.join(missing)}; "
                              f"expected {', '.join(COLUMNS)}")
        for row in rd:
            if not _is_blank(row):
                _append_row(src, rd.line_num, row, data)
    except csv.Error as e:
        raise ConfigError(src, f"line {rd.line_num}", f"not valid CSV ({e})") from None
    if not data["measurement"]:
        raise ConfigError(src, "(rows)", "no measurement rows below the header; add one row "
                          "per cell and measurement (docs/simulator.md)")
    return Table({k: np.asarray(v) for k, v in data.items()})


def _append_row(src: str, line: int, row: dict[str | Any, Any], data: dict[str, list[Any]]) -> None:
    """Check one row and append its values to ``data`` (empty optional cells as NaN, or 1
    for ``n_average``)."""
    m = (row.get("measurement") or "").strip()
    if m not in MEASUREMENTS:
        raise ConfigError(src, f"line {line}: measurement",
                          f"must be one of {', '.join(MEASUREMENTS)}; got {m[:40]!r}")
    values: dict[str, Any] = {"measurement": MEASUREMENTS.index(m)}
    for c in COLUMNS[1:]:
        text = (row.get(c) or "").strip()
        if text:
            values[c] = _value(src, line, c, text)
        elif c in REQUIRED:
            raise ConfigError(src, f"line {line}: {c}", "required, but empty")
        else:
            values[c] = 1.0 if c == "n_average" else np.nan
    for c, v in values.items():
        data[c].append(v)
