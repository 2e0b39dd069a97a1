"""The run store: one crash-safe HDF5 file per run, plus per-chip calibration records.

- :class:`RunWriter` appends records so that ``kill -9`` leaves a readable file;
- :class:`RunReader` reads the committed prefix of any run file, finished or not;
- :class:`CalibrationRecord` is what later runs on the same chip load by chip id.

The on-disk layout is documented in ``docs/run-file-schema.md``.
"""

from labctl.core.calibration_record import FAULT_CODES, CalibrationRecord, calibration_dir
from labctl.runs.store.lock import RunFileBusy, RunFileLock
from labctl.runs.store.reader import Record, RunReader
from labctl.runs.store.schema import SCHEMA_VERSION, Kind
from labctl.runs.store.writer import RunWriter

__all__ = ["FAULT_CODES", "SCHEMA_VERSION", "CalibrationRecord", "Kind", "Record", "RunFileBusy",
           "RunFileLock", "RunReader", "RunWriter", "calibration_dir"]
