"""Reading run files, including the truncated file of a killed run.

The reader opens in SWMR-read mode (which works on a cleanly closed file, on a file still
being written and on the file a ``kill -9`` left behind), checks ``format`` and
``schema_version``, and exposes only the committed prefix of the record log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from labctl.core.errors import ConfigError
from labctl.runs.store.schema import (
    FORMAT_NAME,
    SCHEMA_VERSION,
    Kind,
    valid_prefix,
)


@dataclass
class Record:
    """One committed record, decoded lazily: arrays and rows are read on demand."""

    seq: int
    kind: Kind
    step: int
    t_wall_s: float
    t_chip_s: float
    payload: dict[str, Any]
    row: np.void = field(repr=False)
    reader: RunReader = field(repr=False)

    def array(self, name: str) -> np.ndarray:
        return self.reader.record_array(self, name)

    def array_names(self) -> list[str]:
        return list(self.payload.get("_arrays", {}))

    def pulses(self) -> np.ndarray:
        s, n = int(self.row["pulse_start"]), int(self.row["pulse_count"])
        return self.reader.raw("pulses")[s:s + n]

    def reads(self) -> np.ndarray:
        s, n = int(self.row["read_start"]), int(self.row["read_count"])
        return self.reader.raw("reads")[s:s + n]


class RunReader:
    """Read-only view of a run file's committed records."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(str(self.path), "(file)", "run file not found")
        try:
            self._f = h5py.File(self.path, "r", libver="latest", swmr=True)
        except OSError as e:
            raise ConfigError(str(self.path), "(file)",
                              f"not a readable HDF5 run file: {e}") from None
        try:
            fmt = self._f.attrs.get("format")
            ver = self._f.attrs.get("schema_version")
            if fmt != FORMAT_NAME:
                raise ConfigError(str(self.path), "format", f"not a labctl run file ({fmt!r})")
            if ver is None or int(ver) > SCHEMA_VERSION or int(ver) < 1:
                raise ConfigError(str(self.path), "schema_version",
                                  f"file has schema {ver!r}; this labctl reads 1..{SCHEMA_VERSION}")
            self._log = self._f["log"]
            for name in ("records", "pulses", "reads", "arrays", "text"):
                self._log[name].refresh()
            rows = self._log["records"][...]
            self._attrs = {k: v.item() if isinstance(v, np.generic) else v
                           for k, v in self._f.attrs.items()}
        except BaseException:
            self._f.close()
            raise
        self.n_rows_on_disk = int(rows.shape[0])
        n = valid_prefix(rows)
        self.records = rows[:n]
        self._cache: dict[str, np.ndarray] = {}
        self._decoded: list[Record] | None = None

    # ---- provenance ----
    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._attrs)

    def attr_json(self, key: str, default: Any = None) -> Any:
        v = self._attrs.get(key)
        if v is None:
            return default
        try:
            return json.loads(v)
        except (TypeError, ValueError):
            return v

    # ---- raw datasets ----
    def raw(self, name: str, end: int | None = None) -> np.ndarray:
        """The first ``end`` rows of a /log dataset (default: all that committed records
        reference). Read once, then served from memory."""
        have = self._cache.get(name)
        if have is None:
            have = self._log[name][:self._committed_end(name)]
            self._cache[name] = have
        if end is not None and end > have.shape[0]:
            raise ValueError(f"{name}[:{end}] reaches past the committed data")
        return have if end is None else have[:end]

    def _committed_end(self, name: str) -> int:
        start, count = {"pulses": ("pulse_start", "pulse_count"),
                        "reads": ("read_start", "read_count"),
                        "arrays": ("array_start", "array_count"),
                        "text": ("text_start", "text_len")}[name]
        if len(self.records) == 0:
            return 0
        return int(np.max(self.records[start].astype(np.int64)
                          + self.records[count].astype(np.int64)))

    # ---- records ----
    def __iter__(self) -> Iterator[Record]:
        return iter(self.all())

    def all(self) -> list[Record]:
        if self._decoded is None:
            text = self.raw("text").tobytes()
            out = []
            for r in self.records:
                s, n = int(r["text_start"]), int(r["text_len"])
                payload = json.loads(text[s:s + n].decode("utf-8")) if n else {}
                out.append(Record(int(r["seq"]), Kind(int(r["kind"])), int(r["step"]),
                                  float(r["t_wall_s"]), float(r["t_chip_s"]), payload, r, self))
            self._decoded = out
        return self._decoded

    def of_kind(self, *kinds: Kind, step: int | None = None) -> list[Record]:
        return [r for r in self.all() if r.kind in kinds and (step is None or r.step == step)]

    def record_array(self, rec: Record, name: str) -> np.ndarray:
        ref = rec.payload.get("_arrays", {}).get(name)
        if ref is None:
            raise KeyError(f"record {rec.seq} has no array {name!r}")
        start, size, shape, dtype = ref
        data = self.raw("arrays")[start:start + size]
        return data.astype(np.dtype(dtype)).reshape(shape)

    @property
    def complete(self) -> bool:
        """True when the run's last record is a RUN_END saying it completed."""
        recs = self.all()
        return bool(recs) and recs[-1].kind == Kind.RUN_END \
            and recs[-1].payload.get("status") == "completed"

    def pulse_counts(self, shape: tuple[int, int, int]) -> np.ndarray:
        """Cell-pulses per cell over all committed records, shape (tiles, rows, cols)."""
        # Rows are appended in record order, so every row below the committed end belongs
        # to a committed PULSE or CHECKPOINT record.
        counts = np.zeros(shape, dtype=np.int64)
        p = self.raw("pulses")
        np.add.at(counts, (p["tile"].astype(np.int64), p["row"].astype(np.int64),
                           p["col"].astype(np.int64)), 1)
        return counts

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

