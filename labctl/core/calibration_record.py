"""The per-chip calibration record: what later runs on the same chip should know.

One small HDF5 file per chip, ``<calibration_dir>/<chip_id>.h5`` (default directory
``./calibration-records``, or ``$LABCTL_CALIBRATION_DIR``), written atomically (temporary
file + rename) so a killed run never leaves a half-written record. It holds:

- ``fault_map`` (tiles × rows × cols, int8): :data:`FAULT_CODES`
- ``column_gain`` / ``column_offset_A`` (tiles × cols): per-column affine correction
  (IBM HERMES-style; gain 1 and offset 0 until a calibration routine measures them)
- ``drift/<name>``: drift baselines (any float arrays a drift routine wants to keep)
- ``programming``: JSON of the programming parameters that worked, by routine name
- ``history``: JSON list of (run file, time, routine) that updated the record
- ``remap`` (schema 2): JSON, logical → physical column maps around faulty columns, by name
  (``calibration.faults.ColumnRemap.to_dict``); schema-1 records load with none
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from labctl.core.errors import ConfigError

CALIBRATION_FORMAT_NAME = "labctl-calibration"
CALIBRATION_SCHEMA_VERSION = 2
"""Schema 2 added ``remap``; schema-1 records still load."""

FAULT_CODES = {"unknown": -1, "ok": 0, "unformed": 1, "stuck_lrs": 2, "stuck_hrs": 3}
DEFAULT_DIR = "calibration-records"
ENV_DIR = "LABCTL_CALIBRATION_DIR"


def calibration_dir(explicit: str | Path | None = None) -> Path:
    """The directory for calibration records: explicit, else $LABCTL_CALIBRATION_DIR, else
    ./calibration-records."""
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get(ENV_DIR, DEFAULT_DIR))


@dataclass
class CalibrationRecord:
    chip_id: str
    shape: tuple[int, int, int]
    """(tiles, rows, cols) of the chip."""
    fault_map: np.ndarray
    column_gain: np.ndarray
    column_offset_A: np.ndarray
    drift: dict[str, np.ndarray] = field(default_factory=dict)
    programming: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    remap: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def blank(cls, chip_id: str, shape: tuple[int, int, int]) -> CalibrationRecord:
        t, _, c = shape
        return cls(chip_id, shape, np.full(shape, FAULT_CODES["unknown"], np.int8),
                   np.ones((t, c)), np.zeros((t, c)))

    def mark_faults(self, tile: np.ndarray, row: np.ndarray, col: np.ndarray, fault: str) -> None:
        self.fault_map[tile, row, col] = FAULT_CODES[fault]

    # ---- persistence ----
    @staticmethod
    def path_for(chip_id: str, directory: str | Path | None = None) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in chip_id)
        return calibration_dir(directory) / f"{safe}.h5"

    @classmethod
    def load(cls, chip_id: str, shape: tuple[int, int, int],
             directory: str | Path | None = None) -> CalibrationRecord:
        """The chip's record, or a blank one when none exists yet."""
        p = cls.path_for(chip_id, directory)
        if not p.is_file():
            return cls.blank(chip_id, shape)
        try:
            with h5py.File(p, "r") as f:
                if f.attrs.get("format") != CALIBRATION_FORMAT_NAME:
                    raise ConfigError(str(p), "format", "not a labctl calibration record")
                ver = int(f.attrs.get("schema_version", 0))
                if not 1 <= ver <= CALIBRATION_SCHEMA_VERSION:
                    raise ConfigError(str(p), "schema_version",
                                      f"record has schema {ver}; this labctl reads "
                                      f"1..{CALIBRATION_SCHEMA_VERSION}")
                if f.attrs.get("chip_id") != chip_id:
                    raise ConfigError(str(p), "chip_id",
                                      f"record is for {f.attrs.get('chip_id')!r}, not {chip_id!r}")
                rec = cls(chip_id, tuple(int(x) for x in f["fault_map"].shape),  # type: ignore[arg-type]
                          f["fault_map"][...], f["column_gain"][...], f["column_offset_A"][...],
                          {k: v[...] for k, v in f.get("drift", {}).items()},
                          json.loads(f.attrs.get("programming", "{}")),
                          json.loads(f.attrs.get("history", "[]")),
                          json.loads(f.attrs.get("remap", "{}")))
        except OSError as e:
            raise ConfigError(str(p), "(file)", f"unreadable calibration record: {e}") from None
        if rec.shape != tuple(shape):
            raise ConfigError(str(p), "fault_map",
                              f"record shape {rec.shape} does not match the chip {tuple(shape)}")
        return rec

    def save(self, directory: str | Path | None = None) -> Path:
        """Write the record by rename, so a reader never sees half of one. The HDF5 image is
        built in memory and written with ordinary file I/O: a full disk is then a plain
        ``OSError`` and the former record stays as it was. (HDF5 writing to a full disk itself
        keeps using metadata whose write failed and crashed the process when the file was
        closed; ``tests/core/test_calibration_record_full_disk.py``.)"""
        p = self.path_for(self.chip_id, directory)
        p.parent.mkdir(parents=True, exist_ok=True)
        image = io.BytesIO()
        with h5py.File(image, "w") as f:
            f.attrs["format"] = CALIBRATION_FORMAT_NAME
            f.attrs["schema_version"] = CALIBRATION_SCHEMA_VERSION
            f.attrs["chip_id"] = self.chip_id
            f.attrs["updated_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            f.attrs["programming"] = json.dumps(self.programming)
            f.attrs["history"] = json.dumps(self.history)
            f.attrs["remap"] = json.dumps(self.remap)
            f.create_dataset("fault_map", data=self.fault_map, compression="gzip")
            f.create_dataset("column_gain", data=self.column_gain)
            f.create_dataset("column_offset_A", data=self.column_offset_A)
            g = f.create_group("drift")
            for k, v in self.drift.items():
                g.create_dataset(k, data=v)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as out:
                out.write(image.getbuffer())
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, p)
        return p

    def note(self, run_file: str, routine: str, what: Mapping[str, Any] | None = None) -> None:
        self.history.append({"run": run_file, "routine": routine,
                             "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             **dict(what or {})})
