"""A full file system mid-run: the run stops at once with a clear message and exit code 4,
the file holds every record up to the last good flush, and a resume with room again ends
with exactly the pulses of an undisturbed run.

The full disk is a file-size limit (``RLIMIT_FSIZE``, with SIGXFSZ ignored so that a write
past it fails with EFBIG, as ENOSPC or EDQUOT fail a write): CI needs no root and no tmpfs.
Every write error takes the same path in the writer, whatever its errno.
"""

from __future__ import annotations

import random
import resource
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import KILL_PROTOCOL, labctl_cmd, run_summary, subprocess_env

from labctl.runs.store import RunReader

N_TRIALS = 6


def _limited(limit_bytes: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))


@pytest.mark.parametrize("trial", range(N_TRIALS))
def test_full_disk_stops_the_run_cleanly_then_resume_completes(tmp_path: Path, trial: int,
                                                              kill_reference: tuple) -> None:
    limit = random.Random(500 + trial).randrange(30_000, 220_000)  # the finished file is ~230 kB
    env = subprocess_env(tmp_path)
    out = tmp_path / "r.h5"
    r = subprocess.run([*labctl_cmd(), "run", str(KILL_PROTOCOL), "--out", str(out),
                        "--no-progress"], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=300,
                       preexec_fn=lambda: _limited(limit))
    assert r.returncode == 4, f"limit {limit}: rc {r.returncode}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr and "Fatal Python error" not in r.stderr, r.stderr
    with RunReader(out) as rd:  # readable, with everything up to the last good flush
        assert rd.damage == []
        committed = len(rd.records)
        complete = rd.complete
    assert "cannot write the run file" in r.stderr and "File too large" in r.stderr
    assert f"holds the first {committed} records" in r.stderr
    assert not complete, "a run stopped by a full disk must not be reported as completed"
    assert "completed" not in r.stdout
    rr = subprocess.run([*labctl_cmd(), "run", "--resume", str(out), "--no-progress"], env=env,
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert rr.returncode == 0, rr.stderr
    counts, _, end = run_summary(out)
    assert end, "the resumed run did not complete"
    np.testing.assert_array_equal(counts, kill_reference[0])
    assert sorted(p.name for p in tmp_path.glob(".r.h5*")) == []
