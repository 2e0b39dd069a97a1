"""The run file's on-disk schema (version 2): record kinds and row layouts.

Documented for humans in ``docs/run-file-schema.md``; this module is the single source of
truth for the code. Everything a run writes goes into five append-only 1-D datasets under
``/log`` so that a SWMR writer never has to create an object after the file is set up:

- ``records``  one row per record (the commit log; a reader trusts only these rows)
- ``pulses``   one row per cell-pulse, referenced by PULSE and CHECKPOINT records
- ``reads``    one row per cell-read result, referenced by READ records
- ``blobs``    named arrays as raw little-endian bytes in their own dtype (schema 1: ``arrays``,
               everything as float64), a checkpoint's arrays XOR-ed with the previous one's
- ``text``     UTF-8 JSON payloads, referenced by every record

When the run ends, the final rewrite adds ``/data``: one group per step with every result
array as a named dataset with units and dimension scales (see ``labels.py``).
"""

from __future__ import annotations

import enum
import zlib

import numpy as np

SCHEMA_VERSION = 2
"""Bump when a reader of the old version could misread a new file. 2: typed, delta-coded
array blobs instead of float64 ``arrays``; the labelled ``/data`` view."""
READABLE_VERSIONS = (1, 2)
KEYFRAME_EVERY = 16
"""A checkpoint array is stored whole at least every this many checkpoints of its step (else
XOR-ed with the previous one), so decoding one never chains through more records."""
FORMAT_NAME = "labctl-run"


class Kind(enum.IntEnum):
    """What a record says. Values are stored in files: never renumber."""

    RUN_START = 1
    STEP_BEGIN = 2
    READ = 3
    PULSE = 4
    """A pulse applied outside a checkpoint (written before the pulse: write-ahead)."""
    CHECKPOINT = 5
    """A routine's state after its planned pulses, with those pulses (written before them)."""
    ARRAY = 6
    RESULT = 7
    STEP_END = 8
    EVENT = 9
    RESUME = 10
    RUN_END = 11


RECORD_DTYPE = np.dtype([
    ("seq", "<u8"),          # 1, 2, 3 … equal to row index + 1 in a valid file
    ("kind", "u1"),
    ("step", "<i4"),         # protocol step index, -1 for run-level records
    ("t_wall_s", "<f8"),     # UNIX time when the record was written
    ("t_chip_s", "<f8"),     # backend.clock.now() when the record was written
    ("pulse_start", "<u8"), ("pulse_count", "<u8"),
    ("read_start", "<u8"), ("read_count", "<u8"),
    ("array_start", "<u8"), ("array_count", "<u8"),
    ("text_start", "<u8"), ("text_len", "<u8"),
    ("crc", "<u4"),          # zlib.crc32 of the row with crc = 0
])

PULSE_KIND_CODES = {"SET": 1, "RESET": 2, "FORM": 3}
PULSE_KIND_NAMES = {v: k for k, v in PULSE_KIND_CODES.items()}

PULSE_DTYPE = np.dtype([
    ("tile", "<u2"), ("row", "<u2"), ("col", "<u2"), ("kind", "u1"),
    ("amplitude_V", "<f8"), ("gate_V", "<f8"), ("width_s", "<f8"),
    ("compliance_A", "<f8"),  # NaN: none requested. float64 so a replay is bit-exact
])

READ_DTYPE = np.dtype([("tile", "<u2"), ("row", "<u2"), ("col", "<u2"), ("g_S", "<f8")])

DATASETS: dict[str, tuple[np.dtype, int]] = {
    "records": (RECORD_DTYPE, 256),
    "pulses": (PULSE_DTYPE, 8192),
    "reads": (READ_DTYPE, 8192),
    "blobs": (np.dtype("u1"), 65536),
    "text": (np.dtype("u1"), 16384),
}
"""name → (dtype, chunk length). ``records`` is uncompressed so a row is one small write."""
GZIP_LEVEL = 4
"""gzip level of the data datasets: on the quickstart's delta-coded blobs level 4 gives 16 %
less than level 1 at about 1.5× the compression time (measured with zlib on its arrays)."""

LOG_DTYPES = {**{name: dtype for name, (dtype, _) in DATASETS.items()},
              "arrays": np.dtype("<f8")}
"""The dtype of every /log dataset of either schema."""

DATA_COLUMNS = {"pulses": ("pulse_start", "pulse_count"), "reads": ("read_start", "read_count"),
                "blobs": ("array_start", "array_count"), "arrays": ("array_start", "array_count"),
                "text": ("text_start", "text_len")}
"""Data dataset → the record fields that say which of its elements a record owns (schema 1
had ``arrays`` where schema 2 has ``blobs``)."""


def log_datasets(schema_version: int) -> tuple[str, ...]:
    data = "arrays" if schema_version == 1 else "blobs"
    return ("records", "pulses", "reads", data, "text")


def row_crc(row: np.void | np.ndarray) -> int:
    """CRC of one record row with its crc field zeroed."""
    r = np.array(row, dtype=RECORD_DTYPE).reshape(1).copy()
    r["crc"] = 0
    return zlib.crc32(r.tobytes()) & 0xFFFFFFFF


def valid_prefix(records: np.ndarray) -> int:
    """How many leading rows are committed: seq = index + 1 and the CRC matches.

    A row can be missing or half-written only at the tail of a killed run; everything a
    committed row references was flushed before the row itself was written.
    """
    rows = np.ascontiguousarray(records, dtype=RECORD_DTYPE).copy()
    want = rows["crc"].copy()
    rows["crc"] = 0
    seq_ok = rows["seq"] == np.arange(1, rows.shape[0] + 1, dtype=np.uint64)
    raw = rows.tobytes()
    size = RECORD_DTYPE.itemsize
    for i in range(rows.shape[0]):
        if not seq_ok[i] or zlib.crc32(raw[i * size:(i + 1) * size]) & 0xFFFFFFFF != want[i]:
            return i
    return int(rows.shape[0])
