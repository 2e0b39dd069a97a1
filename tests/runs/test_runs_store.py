"""Run store: round trip, committed prefix, schema checks, calibration records, and a
writer killed with SIGKILL at random moments."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import REPO

from labctl.core.cells import Cells
from labctl.core.errors import ConfigError
from labctl.runs.recording import pulse_rows, read_rows
from labctl.runs.store import CalibrationRecord, Kind, RunReader, RunWriter
from labctl.runs.store.schema import RECORD_DTYPE


def _write_some(path: Path, n: int = 5) -> None:
    cells = Cells.block(0, range(2), range(3))
    with RunWriter.create(path, {"chip_id": "c1", "seed": 3, "meta": {"a": [1, 2]}}) as w:
        w.record(Kind.RUN_START, payload={"hello": "world"})
        for i in range(n):
            w.record(Kind.CHECKPOINT, step=0, t_chip_s=float(i), payload={"meta": {"i": i}},
                     arrays={"state": np.arange(6) * i, "mask": np.arange(6) % 2 == 0},
                     pulses=pulse_rows(cells, "SET", 1.2 + 0.1 * i, 2.5, 1e-6, None))
            w.record(Kind.READ, step=0, reads=read_rows(cells, np.full(6, 1e-6 * i)))


def test_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "r.h5"
    _write_some(p)
    with RunReader(p) as rd:
        assert rd.complete is False  # no RUN_END
        recs = rd.all()
        assert [r.seq for r in recs] == list(range(1, 12))
        assert rd.attrs["chip_id"] == "c1"
        assert rd.attrs["seed"] == 3
        assert rd.attr_json("meta") == {"a": [1, 2]}
        ck = rd.of_kind(Kind.CHECKPOINT)[3]
        assert ck.payload["meta"] == {"i": 3}
        np.testing.assert_array_equal(ck.array("state"), np.arange(6) * 3)
        assert ck.array("mask").dtype == bool
        np.testing.assert_allclose(ck.pulses()["amplitude_V"], 1.5)
        assert rd.of_kind(Kind.READ)[2].reads()["g_S"][0] == pytest.approx(2e-6)
        counts = rd.pulse_counts((1, 4, 4))
        assert counts[0, :2, :3].tolist() == [[5] * 3] * 2
        assert counts.sum() == 30


def test_uncommitted_tail_is_ignored(tmp_path: Path) -> None:
    """A record row that is half-written (bad CRC) or missing ends the committed prefix."""
    p = tmp_path / "r.h5"
    _write_some(p)
    with h5py.File(p, "r+", libver="latest") as f:
        rec = f["log/records"]
        row = rec[7]
        row["step"] = 42  # corrupt row 8 without fixing its CRC
        rec[7] = row
        rec.resize((rec.shape[0] + 2,))  # and two rows of fill (zeros) after the end
    with RunReader(p) as rd:
        assert len(rd.records) == 7
        assert rd.n_rows_on_disk == 13


def test_schema_version_checked(tmp_path: Path) -> None:
    p = tmp_path / "r.h5"
    _write_some(p, 1)
    with h5py.File(p, "r+", libver="latest") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ConfigError, match="schema"):
        RunReader(p)
    q = tmp_path / "other.h5"
    with h5py.File(q, "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(ConfigError, match="not a labctl run file"):
        RunReader(q)
    with pytest.raises(ConfigError, match="not found"):
        RunReader(tmp_path / "missing.h5")


def test_continue_file_keeps_prefix(tmp_path: Path) -> None:
    p = tmp_path / "r.h5"
    _write_some(p, 3)
    w = RunWriter.continue_file(p, {"resume_count": 1})
    assert w.next_seq == 8
    w.record(Kind.RUN_END, payload={"status": "completed"})
    w.close()
    with RunReader(p) as rd:
        assert rd.complete
        assert rd.attrs["resume_count"] == 1
        assert rd.attrs["chip_id"] == "c1"
        np.testing.assert_array_equal(rd.of_kind(Kind.CHECKPOINT)[2].array("state"),
                                      np.arange(6) * 2)
    assert not list(tmp_path.glob(".*.tmp"))


def test_calibration_record_round_trip(tmp_path: Path) -> None:
    rec = CalibrationRecord.load("chip/7", (1, 4, 5), tmp_path)  # blank: no file yet
    assert (rec.fault_map == -1).all()
    rec.mark_faults(np.array([0]), np.array([1]), np.array([2]), "stuck_lrs")
    rec.column_gain[0, 3] = 1.1
    rec.drift["baseline_g_S"] = np.ones((4, 5))
    rec.programming["verify_write"] = {"tolerance_S": 1e-6}
    rec.note("run.h5", "verify_write")
    path = rec.save(tmp_path)
    assert path.name == "chip_7.h5"
    back = CalibrationRecord.load("chip/7", (1, 4, 5), tmp_path)
    assert back.fault_map[0, 1, 2] == 2
    assert back.column_gain[0, 3] == pytest.approx(1.1)
    assert back.programming == rec.programming
    assert back.history[0]["routine"] == "verify_write"
    with pytest.raises(ConfigError, match="shape"):
        CalibrationRecord.load("chip/7", (1, 4, 6), tmp_path)


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from labctl.core.cells import Cells
    from labctl.runs.recording import pulse_rows
    from labctl.runs.store import Kind, RunWriter
    cells = Cells.block(0, range(16), range(16))
    with RunWriter.create(sys.argv[1], {"chip_id": "c"}) as w:
        print("ready", flush=True)
        for i in range(100000):
            w.record(Kind.CHECKPOINT, step=0, payload={"meta": {"i": i}},
                     arrays={"state": np.full(256, i)}, pulses=pulse_rows(cells, "SET", 1.0,
                     2.0, 1e-6, None))
""")


def test_writer_killed_at_random_moments(tmp_path: Path) -> None:
    """SIGKILL a writer at seeded random moments: the file always opens, and every committed
    checkpoint is whole (its arrays and pulses are all there and consistent)."""
    rng = random.Random(1234)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    for trial in range(6):
        p = tmp_path / f"k{trial}.h5"
        proc = subprocess.Popen([sys.executable, str(script), str(p)], stdout=subprocess.PIPE,
                                cwd=REPO)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        try:
            proc.wait(rng.uniform(0.0, 0.6))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        with RunReader(p) as rd:
            recs = rd.all()
            for k, r in enumerate(recs):
                assert r.payload["meta"]["i"] == k
                np.testing.assert_array_equal(r.array("state"), np.full(256, k))
                assert len(r.pulses()) == 256
            assert rd.records.dtype == RECORD_DTYPE
