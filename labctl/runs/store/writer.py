"""Writing a run file so that ``kill -9``, a full disk or a second process never costs data.

How (see ``docs/run-file-schema.md`` and ``docs/reliability.md``):

1. Only the holder of the run file's lock (:mod:`labctl.runs.store.lock`) writes it. The file
   is created under a temporary name, every dataset and the provenance attributes are made,
   SWMR mode is switched on (HDF5 then orders its own metadata writes so the file on disk is
   always consistent), and only then is it renamed to its real name.
2. Each record first appends its payload (pulse rows, read rows, array bytes, JSON text) and
   flushes, then appends its one ``records`` row (with a CRC) and flushes again. A reader
   trusts only the leading rows of ``records`` whose sequence number and CRC check out.
3. Resuming copies the committed prefix into a fresh file (same temporary-name dance) and
   carries on appending there; the run's end rewrites it once more, compacted and with the
   labelled ``/data`` view.
4. Any failed write (ENOSPC, EDQUOT, EIO, a file-size limit) ends the writer at once: the
   HDF5 handle is pointed at ``/dev/null`` before it is closed, so HDF5's clean-up writes
   cannot reach the file (they used to crash the process: HDF5 keeps using a file whose
   metadata write failed, and segfaults when it is closed or flushed again). The file stays as
   it was after the last good flush, and :class:`~labctl.core.errors.StorageFault` says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from labctl.core.errors import ConfigError, StorageFault
from labctl.runs.store.lock import RunFileLock, run_file_path
from labctl.runs.store.schema import (
    DATA_COLUMNS,
    DATASETS,
    FORMAT_NAME,
    GZIP_LEVEL,
    KEYFRAME_EVERY,
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


@dataclass
class _Last:
    """The previous checkpoint's bytes of one named array (what the next one is XOR-ed with)."""

    seq: int
    raw: np.ndarray
    shape: tuple[int, ...]
    dtype: str
    chain: int


def encode_array(value: npt.ArrayLike) -> tuple[np.ndarray, tuple[int, ...], str]:
    """Little-endian raw bytes, shape and dtype string of an array (numbers and booleans)."""
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"arrays must hold numbers or booleans, not {a.dtype}")
    if a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return np.frombuffer(a.tobytes(), dtype=np.uint8), tuple(a.shape), a.dtype.str


class RunWriter:
    """Append-only writer of one run file. Not thread-safe; one writer per file (the lock)."""

    def __init__(self, f: h5py.File, path: Path, next_seq: int, lock: RunFileLock) -> None:
        self._f = f
        self.path = path
        self._ds = {name: f["log"][name] for name in DATASETS}
        # Dataset handles live as long as the writer: closing one flushes it, and a write
        # error there would be swallowed by h5py's deallocator instead of reaching us.
        self._next_seq = next_seq
        self._lock = lock
        self._last: dict[tuple[int, str], _Last] = {}
        self._broken: StorageFault | None = None
        self.fsync = False
        """Also ``fsync`` at each commit step: survives a power cut of the host, not just a
        killed process (the runner turns it on for backends on real time, i.e. hardware,
        where a pulse batch costs far more than an fsync)."""

    # ---- opening ----
    @classmethod
    def create(cls, path: str | Path, attrs: Mapping[str, Any],
               lock: RunFileLock | None = None) -> RunWriter:
        """A new run file with provenance ``attrs`` (str / number values, or JSON-able).
        ``lock``: the file's lock, already taken (default: take it now)."""
        final = run_file_path(path)
        own = lock is None
        lock = RunFileLock.acquire(final) if lock is None else lock
        try:
            _check_lock(lock, final)
            if own and final.exists():
                raise FileExistsError(f"{final} exists; a run file is never overwritten")
            lock.remove_dead_temp_files()
            f, tmp = _new_file(final, attrs)
            try:
                f.swmr_mode = True
                f.flush()
                os.replace(tmp, final)
            except BaseException:
                _discard(f, tmp)
                raise
            _fsync_dir(final.parent)
        except BaseException:
            if own:
                lock.release()
            raise
        return cls(f, final, 1, lock)

    @classmethod
    def continue_file(cls, path: str | Path, extra_attrs: Mapping[str, Any],
                      lock: RunFileLock | None = None) -> RunWriter:
        """Reopen an interrupted run for appending: copy its committed prefix into a fresh
        file that atomically replaces it, and return a writer positioned after it."""
        final = run_file_path(path)
        own = lock is None
        lock = RunFileLock.acquire(final) if lock is None else lock
        try:
            f, n_records = _rewrite(final, extra_attrs, lock, live=True)
        except BaseException:
            if own:
                lock.release()
            raise
        return cls(f, final, n_records + 1, lock)

    # ---- appending ----
    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def broken(self) -> StorageFault | None:
        """The storage fault that ended this writer, if one did."""
        return self._broken

    def record(self, kind: Kind, *, step: int = -1, t_chip_s: float = float("nan"),
               payload: Mapping[str, Any] | None = None,
               arrays: Mapping[str, npt.ArrayLike] | None = None,
               pulses: np.ndarray | None = None, reads: np.ndarray | None = None) -> int:
        """Commit one record and return its sequence number.

        ``arrays`` keep their dtype and shape. A CHECKPOINT's arrays are stored XOR-ed with
        the same step's previous checkpoint array of that name (most cells do not change
        between two checkpoints, so the XOR is mostly zeros and compresses to little), and
        whole every :data:`KEYFRAME_EVERY` checkpoints.
        """
        if self._broken is not None:
            raise self._broken
        seq = self._next_seq
        # Everything that can fail on bad input is done before the file is touched.
        body = dict(payload or {})
        prow = None if pulses is None else pulses.astype(PULSE_DTYPE, copy=False)
        rrow = None if reads is None else reads.astype(READ_DTYPE, copy=False)
        blob, new_last = None, {}
        if arrays:
            start = int(self._ds["blobs"].shape[0])
            refs: dict[str, list[Any]] = {}
            parts = []
            for name, value in arrays.items():
                raw, shape, dtype = encode_array(value)
                prev = self._last.get((step, name)) if kind == Kind.CHECKPOINT else None
                if (prev is not None and prev.shape == shape and prev.dtype == dtype
                        and prev.chain + 1 < KEYFRAME_EVERY):
                    stored, base, chain = raw ^ prev.raw, prev.seq, prev.chain + 1
                else:
                    stored, base, chain = raw, 0, 0
                refs[name] = [start, int(raw.size), list(shape), dtype, base]
                parts.append(stored)
                start += int(raw.size)
                if kind == Kind.CHECKPOINT:
                    new_last[(step, name)] = _Last(seq, raw, shape, dtype, chain)
            blob = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
            body["_arrays"] = refs
        text = np.frombuffer(to_json_bytes(body), dtype=np.uint8)
        row = np.zeros((), dtype=RECORD_DTYPE)
        try:
            if prow is not None:
                row["pulse_start"], row["pulse_count"] = self._append("pulses", prow)
            if rrow is not None:
                row["read_start"], row["read_count"] = self._append("reads", rrow)
            if blob is not None:
                row["array_start"], row["array_count"] = self._append("blobs", blob)
            row["text_start"], row["text_len"] = self._append("text", text)
            self._flush()  # the payload reaches the file before the row that vouches for it
            row["seq"] = seq
            row["kind"] = int(kind)
            row["step"] = step
            row["t_wall_s"] = time.time()
            row["t_chip_s"] = t_chip_s
            row["crc"] = row_crc(row)
            self._append("records", row.reshape(1))
            self._flush()
        except Exception as e:
            self._fail(e)
        self._last.update(new_last)
        self._next_seq += 1
        return seq

    def _flush(self) -> None:
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.id.get_vfd_handle())

    def _append(self, name: str, data: np.ndarray) -> tuple[int, int]:
        ds = self._ds[name]
        n0 = ds.shape[0]
        n = int(data.shape[0])
        if n:
            ds.resize((n0 + n,))
            ds[n0:n0 + n] = data
        return n0, n

    def _fail(self, e: BaseException) -> None:
        self._broken = StorageFault(str(self.path), e, self._next_seq - 1)
        _abandon(self._f, self._ds)
        raise self._broken from e

    # ---- closing ----
    def close(self) -> None:
        """Flush and close the HDF5 file (the lock stays held: see :meth:`release`)."""
        if self._broken is not None or not self._f.id.valid:
            return
        try:
            self._f.flush()
            self._ds.clear()
            self._f.close()
        except Exception as e:  # the last good flush already holds every committed record
            self._broken = StorageFault(str(self.path), e, self._next_seq - 1)
            _abandon(self._f, self._ds)

    def close_and_compact(self) -> None:
        """Close, then rewrite the file compacted and with the labelled ``/data`` view.

        Every flush rewrites the last, partly filled compressed chunk of each dataset in new
        space, and a SWMR file does not track freed space, so a long run's file can be
        several times its data. Rewriting the committed prefix into a fresh file (the same
        atomic copy-and-rename a resume does) gives that back; a kill or a full disk during
        it leaves the original file in place.
        """
        self.close()
        if self._broken is None:
            _rewrite(self.path, {}, self._lock, live=False)

    def release(self) -> None:
        """Give up the run file's lock (after :meth:`close`)."""
        self.close()
        self._lock.release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _check_lock(lock: RunFileLock, final: Path) -> None:
    if not lock.held or lock.run_path.resolve() != final.resolve():
        raise RuntimeError(f"writing {final} needs its lock")


def _rewrite(final: Path, extra_attrs: Mapping[str, Any], lock: RunFileLock,
             *, live: bool) -> tuple[h5py.File, int]:
    """Copy the committed prefix of ``final`` into a fresh file that replaces it. ``live``:
    keep it open in SWMR mode for appending (resume); else close it, with ``/data`` added
    when the run has ended (final compaction)."""
    from labctl.runs.store.labels import write_data_group
    from labctl.runs.store.reader import RunReader

    _check_lock(lock, final)
    lock.remove_dead_temp_files()
    with RunReader(final) as rd:
        if rd.schema_version != SCHEMA_VERSION:
            raise ConfigError(str(final), "schema_version", f"written by an older labctl (schema "
                              f"{rd.schema_version}); it can be read (show, plot, export) but "
                              "not continued by this version — start a new run")
        if rd.damage:
            raise ConfigError(str(final), "(file)", "damaged: " + "; ".join(rd.damage)
                              + " — it cannot be continued; start a new run")
        attrs = {k: v for k, v in rd.attrs.items() if k not in ("format", "schema_version")}
        attrs.update(extra_attrs)
        records = rd.records
        f, tmp = _new_file(final, attrs)
        try:
            log = f["log"]
            for name in DATASETS:
                data = records if name == "records" else rd.raw(name)
                if len(data):
                    log[name].resize((len(data),))
                    log[name][:] = data
            if live:
                f.swmr_mode = True
            elif rd.all() and rd.all()[-1].kind == Kind.RUN_END:
                write_data_group(rd, f)
            f.flush()
            # On disk before it replaces the original, or a power cut right after the
            # rename could leave neither (the rename may reach the disk before the data).
            os.fsync(f.id.get_vfd_handle())
            if not live:
                f.close()
        except BaseException:
            _discard(f, tmp)
            raise
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    return f, len(records)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _new_file(final: Path, attrs: Mapping[str, Any]) -> tuple[h5py.File, Path]:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    f = h5py.File(tmp, "w", libver="latest")
    try:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["schema_version"] = SCHEMA_VERSION
        for k, v in attrs.items():
            if isinstance(v, str):
                _check_storable(final, k, v)
            f.attrs[k] = v if isinstance(v, str | int | float) else json.dumps(v, default=_jsonable)
        log = f.create_group("log")
        for name, (dtype, chunk) in DATASETS.items():
            opts: dict[str, Any] = {} if name == "records" else {
                "compression": "gzip", "compression_opts": GZIP_LEVEL,
                "shuffle": dtype.itemsize > 1}
            log.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                               chunks=(chunk,), **opts)
    except BaseException:
        _discard(f, tmp)
        raise
    return f, tmp


def _check_storable(final: Path, key: str, text: str) -> None:
    """HDF5 string attributes end at NUL and must be UTF-8: refuse, never cut or crash (a
    surrogate-escaped file name in another encoding raised a UnicodeEncodeError)."""
    if "\0" in text:
        raise ConfigError(str(final), key, "contains a NUL character, which a run file cannot "
                          "store; use printable text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(str(final), key, f"{text!r} is not valid UTF-8 text (a file name in "
                          "another encoding?); rename it") from None


def _abandon(f: h5py.File, handles: dict[str, h5py.Dataset] | None = None) -> None:
    """Close ``f`` without HDF5 writing another byte to it: point its descriptor at
    /dev/null first, and only then let go of any object of the file (closing a dataset
    flushes it). After a failed write HDF5's state is not to be trusted, and its clean-up
    (flushing the metadata cache, truncating to the end of allocated space) used to segfault;
    the file keeps what the last good flush wrote."""
    with contextlib.suppress(Exception):
        fd = f.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, fd)
        os.close(null)
    if handles is not None:
        handles.clear()
    with contextlib.suppress(Exception):
        f.close()


def _discard(f: h5py.File, tmp: Path) -> None:
    _abandon(f)
    tmp.unlink(missing_ok=True)


def committed_end(records: np.ndarray, name: str) -> int:
    """How many elements of a data dataset the committed ``records`` reference."""
    if len(records) == 0:
        return 0
    start, count = DATA_COLUMNS[name]
    return int(np.max(records[start].astype(np.int64) + records[count].astype(np.int64)))
