"""Reading run files, including the truncated file of a killed run and damaged files.

The reader opens in SWMR-read mode (which works on a cleanly closed file, on a file still
being written and on the file a ``kill -9`` left behind) with bounded metadata retries (see
:mod:`labctl.runs.store.h5open`), checks ``format`` and ``schema_version``, and exposes only
the committed prefix of the record log — further cut to the longest prefix whose data can
actually be read. What could not be read is stated in :attr:`RunReader.damage`, so a damaged
file answers at once with what it holds instead of hanging or crashing its reader.
Schema 1 (float64 ``arrays``) and 2 (typed, delta-coded ``blobs``) files are both read.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from labctl.core.errors import ConfigError
from labctl.runs.store.h5open import open_for_reading, superblock_eof
from labctl.runs.store.lock import tidy
from labctl.runs.store.schema import (
    DATA_COLUMNS,
    FORMAT_NAME,
    LOG_DTYPES,
    READABLE_VERSIONS,
    RECORD_DTYPE,
    Kind,
    log_datasets,
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
    """Read-only view of a run file's committed, readable records."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.damage: list[str] = []
        """What could not be read, in words (empty for a sound file)."""
        if not self.path.is_file():
            raise ConfigError(str(self.path), "(file)", "run file not found")
        self.tidied: list[Path] = []
        """Temporary files of a killed writer that opening this file removed."""
        with contextlib.suppress(OSError):
            self.tidied = tidy(self.path)
        size = self.path.stat().st_size
        eof = superblock_eof(self.path)
        self._why = (f"the file is shorter than its superblock says ({size} of {eof} bytes: "
                     "truncated, or cut short by a full disk)") if eof and size < eof else ""
        """Context for any read that fails (a disk-full run's file is short too, yet its
        committed records read fine: then this is no damage)."""
        try:
            self._f = open_for_reading(self.path)
        except OSError as e:
            why = self._why or _first_line(e)
            raise ConfigError(str(self.path), "(file)",
                              f"not a readable HDF5 run file: {why}") from None
        try:
            self._attrs = self._read_attrs()
            fmt = self._attrs.get("format")
            ver = self._attrs.get("schema_version")
            if fmt != FORMAT_NAME:
                raise ConfigError(str(self.path), "format", f"not a labctl run file ({fmt!r})")
            if not isinstance(ver, int) or ver not in READABLE_VERSIONS:
                raise ConfigError(str(self.path), "schema_version",
                                  f"file has schema {ver!r}; this labctl reads "
                                  f"{', '.join(map(str, READABLE_VERSIONS))}")
            self.schema_version = ver
            self._names = log_datasets(ver)
            self._data_name = self._names[3]
            rows = self._read_records()
        except BaseException:
            self._f.close()
            raise
        self.n_rows_on_disk = int(rows.shape[0])
        n = valid_prefix(rows)
        self.records = rows[:n]
        self._cache: dict[str, np.ndarray] = {}
        self._decoded: list[Record] | None = None
        self._by_seq: dict[int, Record] = {}
        self._bytes: dict[tuple[int, str], np.ndarray] = {}
        self._cut_to_readable()

    # ---- opening, defensively ----
    def _read_attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            keys = list(self._f.attrs.keys())
        except (OSError, RuntimeError, KeyError) as e:
            why = "; ".join(x for x in (self._why, _first_line(e)) if x)
            raise ConfigError(str(self.path), "(attributes)",
                              f"cannot be read: {why}") from None
        for k in keys:
            try:
                v = self._f.attrs[k]
            except (OSError, RuntimeError, KeyError, TypeError) as e:
                self._damaged(f"attribute {k!r} cannot be read ({_first_line(e)})")
                continue
            out[k] = v.item() if isinstance(v, np.generic) else v
        return out

    def _damaged(self, what: str) -> None:
        if self._why and not self.damage:
            self.damage.append(self._why)
        self.damage.append(what)

    def _read_records(self) -> np.ndarray:
        self._dsets: dict[str, h5py.Dataset] = {}
        try:
            log = self._f["log"]
            for name in self._names:
                self._dsets[name] = log[name]
                self._dsets[name].refresh()
            ds = self._dsets["records"]
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            self._damaged(f"the record log cannot be opened ({_first_line(e)})")
            return np.zeros(0, RECORD_DTYPE)
        rows, err = _read_prefix(ds, int(ds.shape[0]))
        if err:
            self._damaged(f"records from #{rows.shape[0] + 1} on cannot be read ({err})")
        return rows

    def _cut_to_readable(self) -> None:
        """Keep the longest prefix of committed records whose data and JSON can be read."""
        n = len(self.records)
        for name in self._names[1:]:
            if name == self._data_name:
                continue  # array bytes are large: read per record, on demand (record_array)
            want = self._committed_end(name, n)
            if not want:
                self._cache[name] = np.zeros(0, LOG_DTYPES[name])
                continue
            have, err = _read_prefix(self._dsets[name], want)
            self._cache[name] = have
            if have.shape[0] < want:
                start, count = DATA_COLUMNS[name]
                ends = (self.records[start].astype(np.int64)
                        + self.records[count].astype(np.int64))
                bad = np.flatnonzero(ends[:n] > have.shape[0])
                n = int(bad[0]) if bad.size else n
                self._damaged(f"{name} from element {have.shape[0]} on cannot be read "
                                   f"({err})")
        if n < len(self.records):
            self._damaged(f"records #{n + 1}–#{len(self.records)} are committed but their "
                               f"data cannot be read; {_shown_prefix(n)}")
            self.records = self.records[:n]
        text = self._cache.get("text", np.zeros(0, np.uint8)).tobytes()
        out: list[Record] = []
        for r in self.records:
            s, k = int(r["text_start"]), int(r["text_len"])
            try:
                payload = json.loads(text[s:s + k].decode("utf-8")) if k else {}
                if not isinstance(payload, dict):
                    raise ValueError("payload is not a JSON object")
            except ValueError as e:
                self._damaged(f"record #{int(r['seq'])} has an unreadable payload ({e}); "
                                   f"{_shown_prefix(len(out))}")
                break
            out.append(Record(int(r["seq"]), Kind(int(r["kind"])), int(r["step"]),
                              float(r["t_wall_s"]), float(r["t_chip_s"]), payload, r, self))
        self.records = self.records[:len(out)]
        self._decoded = out
        self._by_seq = {r.seq: r for r in out}

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
        if name == "blobs" and self.schema_version == 1:
            raise KeyError("schema-1 files have no blobs")
        end_c = self._committed_end(name, len(self.records))
        if name not in self._cache:  # the array data, read in full only for a rewrite
            have, err = _read_prefix(self._dsets[name], end_c)
            if err:
                raise ConfigError(str(self.path), f"/log/{name}",
                                  f"cannot be read from element {have.shape[0]} on ({err})")
            self._cache[name] = have
        # Everything else committed was read (and checked readable) when the file was opened.
        have = self._cache[name][:end_c]
        if end is not None and end > have.shape[0]:
            raise ValueError(f"{name}[:{end}] reaches past the committed data")
        return have if end is None else have[:end]

    def _committed_end(self, name: str, n: int) -> int:
        if n == 0:
            return 0
        start, count = DATA_COLUMNS[name]
        recs = self.records[:n]
        return int(np.max(recs[start].astype(np.int64) + recs[count].astype(np.int64)))

    # ---- records ----
    def __iter__(self) -> Iterator[Record]:
        return iter(self.all())

    def all(self) -> list[Record]:
        return self._decoded if self._decoded is not None else []

    def by_seq(self, seq: int) -> Record:
        return self._by_seq[seq]

    def of_kind(self, *kinds: Kind, step: int | None = None) -> list[Record]:
        return [r for r in self.all() if r.kind in kinds and (step is None or r.step == step)]

    def record_array(self, rec: Record, name: str) -> np.ndarray:
        ref = rec.payload.get("_arrays", {}).get(name)
        if ref is None:
            raise KeyError(f"record {rec.seq} has no array {name!r}")
        if self.schema_version == 1:
            start, size, shape, dtype = ref[:4]
            data = self._slice(rec, name, start, size)
            return data.astype(np.dtype(dtype)).reshape(shape)
        _, _, shape, dtype, _ = ref
        return np.frombuffer(self._array_bytes(rec, name).tobytes(),
                             dtype=np.dtype(dtype)).reshape(shape).copy()

    def _array_bytes(self, rec: Record, name: str) -> np.ndarray:
        key = (rec.seq, name)
        have = self._bytes.get(key)
        if have is None:
            start, nbytes, _, _, base = rec.payload["_arrays"][name]
            have = self._slice(rec, name, start, nbytes)
            if base:
                have = have ^ self._array_bytes(self.by_seq(int(base)), name)
            if len(self._bytes) > 256:
                self._bytes.clear()
            self._bytes[key] = have
        return have

    def _slice(self, rec: Record, name: str, start: int, n: int) -> np.ndarray:
        cached = self._cache.get(self._data_name)
        if cached is not None:
            return cached[start:start + n]
        try:
            return self._dsets[self._data_name][start:start + n]
        except _READ_ERRORS as e:
            what = (f"array {name!r} of record #{rec.seq} cannot be read "
                    f"({_first_line(e)})")
            self._damaged(what)
            raise ConfigError(str(self.path), f"/log/{self._data_name}", what) from None

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


_READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError)


def _read_prefix(ds: h5py.Dataset, want: int) -> tuple[np.ndarray, str]:
    """The first ``want`` elements of ``ds``, or as many leading whole chunks as can be read,
    with the reason reading stopped ("" when everything was read)."""
    try:
        if want > int(ds.shape[0]):
            return ds[:], f"the dataset ends at {ds.shape[0]} of {want} committed elements"
        return ds[:want], ""
    except _READ_ERRORS as e:
        first_err = _first_line(e)
    step = int(ds.chunks[0]) if ds.chunks else want
    parts = []
    got = 0
    while got < want:
        try:
            parts.append(ds[got:min(got + step, want)])
        except _READ_ERRORS as e:
            return (np.concatenate(parts) if parts else np.zeros(0, ds.dtype)), _first_line(e)
        got += parts[-1].shape[0]
    return np.concatenate(parts), first_err


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:160]


def _shown_prefix(n: int) -> str:
    """What a damaged file's readers go on to show: its first ``n`` records, or nothing."""
    if n == 0:
        return "no record can be shown"
    return "what follows shows record #1" if n == 1 else f"what follows shows records #1–#{n}"


def refuse_run_file(path: Path, option: str) -> None:
    """An output that would overwrite a labctl run file is refused: it may be another run's
    only record (``labctl export A.h5 --out B.h5`` replaced B)."""
    if not path.is_file():
        return
    try:  # SWMR read, bounded: the file may be a live run's or a damaged one
        with open_for_reading(path) as f:
            fmt = f.attrs.get("format")
    except (OSError, ValueError):
        return  # not HDF5 (or unreadable): not a run file to protect
    if str(fmt) == FORMAT_NAME:
        raise ConfigError("command line", option, f"{path} is a labctl run file; it is never "
                          "overwritten — choose another name")
