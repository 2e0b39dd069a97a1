"""Writing a run file so that ``kill -9`` at any moment leaves a readable file.

How (see ``docs/run-file-schema.md``):

1. The file is created under a temporary name, every dataset and the provenance attributes
   are made, SWMR mode is switched on (HDF5 then orders its own metadata writes so the file
   on disk is always consistent), and only then is it renamed to its real name. A run file
   therefore never exists in a half-created state.
2. Each record first appends its payload (pulse rows, read rows, array data, JSON text) and
   flushes, then appends its one ``records`` row (with a CRC) and flushes again. A reader
   trusts only the leading rows of ``records`` whose sequence number and CRC check out, so
   it never sees a record whose data did not reach the file.
3. Resuming copies the committed prefix into a fresh file (same temporary-name dance) and
   carries on appending there: an interrupted file's uncommitted tail is dropped, never
   patched in place.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from labctl.runs.store.schema import (
    DATASETS,
    FORMAT_NAME,
    PULSE_DTYPE,
    READ_DTYPE,
    RECORD_DTYPE,
    SCHEMA_VERSION,
    Kind,
    row_crc,
)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


def to_json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, default=_jsonable, allow_nan=True).encode("utf-8")


class RunWriter:
    """Append-only writer of one run file. Not thread-safe; one writer per file."""

    def __init__(self, f: h5py.File, path: Path, next_seq: int) -> None:
        self._f = f
        self.path = path
        self._log = f["log"]
        self._next_seq = next_seq
        self.fsync = False
        """Also ``fsync`` at each commit step: survives a power cut of the host, not just a
        killed process (the runner turns it on for backends on real time, i.e. hardware,
        where a pulse batch costs far more than an fsync)."""

    # ---- opening ----
    @classmethod
    def create(cls, path: str | Path, attrs: Mapping[str, Any]) -> RunWriter:
        """A new run file with provenance ``attrs`` (str / number values, or JSON-able)."""
        final = Path(path)
        f, tmp = _new_file(final, attrs)
        return cls._go_live(f, tmp, final, next_seq=1)

    @classmethod
    def continue_file(cls, path: str | Path, extra_attrs: Mapping[str, Any]) -> RunWriter:
        """Reopen an interrupted run for appending: copy its committed prefix into a fresh
        file that atomically replaces it, and return a writer positioned after it."""
        from labctl.runs.store.reader import RunReader

        final = Path(path)
        with RunReader(final) as rd:
            attrs = dict(rd.attrs)
            attrs.update(extra_attrs)
            records = rd.records
            ends = {
                "pulses": _end(records, "pulse_start", "pulse_count"),
                "reads": _end(records, "read_start", "read_count"),
                "arrays": _end(records, "array_start", "array_count"),
                "text": _end(records, "text_start", "text_len"),
            }
            f, tmp = _new_file(final, attrs)
            try:
                log = f["log"]
                for name, end in ends.items():
                    if end:
                        log[name].resize((end,))
                        log[name][:end] = rd.raw(name, end)
                if len(records):
                    log["records"].resize((len(records),))
                    log["records"][:] = records
            except BaseException:
                f.close()
                tmp.unlink(missing_ok=True)
                raise
        return cls._go_live(f, tmp, final, next_seq=len(records) + 1)

    @classmethod
    def _go_live(cls, f: h5py.File, tmp: Path, final: Path, next_seq: int) -> RunWriter:
        try:
            f.swmr_mode = True
            f.flush()
            os.replace(tmp, final)
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
        return cls(f, final, next_seq)

    # ---- appending ----
    @property
    def next_seq(self) -> int:
        return self._next_seq

    def record(self, kind: Kind, *, step: int = -1, t_chip_s: float = float("nan"),
               payload: Mapping[str, Any] | None = None,
               arrays: Mapping[str, npt.ArrayLike] | None = None,
               pulses: np.ndarray | None = None, reads: np.ndarray | None = None) -> int:
        """Commit one record and return its sequence number.

        ``arrays`` are stored as float64 (integers up to 2**53 and booleans round-trip
        exactly; the original dtype is kept in the payload and restored on read).
        """
        body = dict(payload or {})
        row = np.zeros((), dtype=RECORD_DTYPE)
        if pulses is not None:
            row["pulse_start"], row["pulse_count"] = self._append("pulses", pulses.astype(
                PULSE_DTYPE, copy=False))
        if reads is not None:
            row["read_start"], row["read_count"] = self._append("reads", reads.astype(
                READ_DTYPE, copy=False))
        if arrays:
            refs: dict[str, list[Any]] = {}
            flat = []
            offset = self._log["arrays"].shape[0]
            for name, value in arrays.items():
                a = np.asarray(value)
                refs[name] = [offset, int(a.size), list(a.shape), a.dtype.str]
                flat.append(a.astype(np.float64).reshape(-1))
                offset += a.size
            data = np.concatenate(flat) if flat else np.zeros(0)
            row["array_start"], row["array_count"] = self._append("arrays", data)
            body["_arrays"] = refs
        text = np.frombuffer(to_json_bytes(body), dtype=np.uint8)
        row["text_start"], row["text_len"] = self._append("text", text)
        self._flush()  # the payload reaches the file before the row that vouches for it
        seq = self._next_seq
        row["seq"] = seq
        row["kind"] = int(kind)
        row["step"] = step
        row["t_wall_s"] = time.time()
        row["t_chip_s"] = t_chip_s
        row["crc"] = row_crc(row)
        self._append("records", row.reshape(1))
        self._flush()
        self._next_seq += 1
        return seq

    def _flush(self) -> None:
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.id.get_vfd_handle())

    def _append(self, name: str, data: np.ndarray) -> tuple[int, int]:
        ds = self._log[name]
        n0 = ds.shape[0]
        n = int(data.shape[0])
        if n:
            ds.resize((n0 + n,))
            ds[n0:n0 + n] = data
        return n0, n

    def close(self) -> None:
        if self._f.id.valid:
            self._f.flush()
            self._f.close()

    def close_and_compact(self) -> None:
        """Close, then rewrite the file without the space HDF5 could not reuse.

        Every flush rewrites the last, partly filled compressed chunk of each dataset in new
        space, and a SWMR file does not track freed space, so a long run's file can be
        several times its data. Rewriting the committed prefix into a fresh file (the same
        atomic copy-and-rename a resume does) gives that back; a kill during it leaves the
        original file in place.
        """
        self.close()
        RunWriter.continue_file(self.path, {}).close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _end(records: np.ndarray, start: str, count: str) -> int:
    if len(records) == 0:
        return 0
    return int(np.max(records[start].astype(np.int64) + records[count].astype(np.int64)))


def _new_file(final: Path, attrs: Mapping[str, Any]) -> tuple[h5py.File, Path]:
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a process killed
        stale.unlink(missing_ok=True)                        # while creating this file
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    f = h5py.File(tmp, "w", libver="latest")
    try:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["schema_version"] = SCHEMA_VERSION
        for k, v in attrs.items():
            f.attrs[k] = v if isinstance(v, str | int | float) else json.dumps(v, default=_jsonable)
        log = f.create_group("log")
        for name, (dtype, chunk) in DATASETS.items():
            opts: dict[str, Any] = {} if name == "records" else {
                "compression": "gzip", "compression_opts": 1, "shuffle": True}
            log.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                               chunks=(chunk,), **opts)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
    return f, tmp
