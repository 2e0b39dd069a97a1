"""A calibration record saved onto a full disk: the save fails with an error the runner turns
into a storage fault — never a crash of HDF5 on close — the former record stays readable and
no temporary file is left behind. The full disk is a file-size limit (``RLIMIT_FSIZE``, with
SIGXFSZ ignored so that the write fails with EFBIG, as ENOSPC would), in a child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHILD = r"""
import resource, signal, sys
import numpy as np
from labctl.core.calibration_record import CalibrationRecord

d = sys.argv[1]
shape = (4, 256, 256)
old = CalibrationRecord.blank("chip-x", shape)
old.save(d)
new = CalibrationRecord.blank("chip-x", shape)
new.fault_map[...] = np.random.default_rng(0).integers(0, 3, size=shape)  # incompressible-ish
new.column_gain[...] = np.random.default_rng(1).random(new.column_gain.shape)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    new.save(d)
except (OSError, RuntimeError) as e:
    print("FAILED-CLEANLY", type(e).__name__)
else:
    print("SAVED")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.parametrize("limit", [2_000, 20_000, 60_000])
def test_full_disk_during_a_calibration_save_is_an_error_not_a_crash(tmp_path: Path,
                                                                     limit: int) -> None:
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(limit)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "FAILED-CLEANLY" in r.stdout, r.stdout + r.stderr[-2000:]
    from labctl.core.calibration_record import CalibrationRecord

    rec = CalibrationRecord.load("chip-x", (4, 256, 256), tmp_path)
    blank = CalibrationRecord.blank("chip-x", (4, 256, 256))
    assert (rec.fault_map == blank.fault_map).all()  # the former (blank) record, intact
    assert [p.name for p in tmp_path.rglob(".*.tmp")] == []
