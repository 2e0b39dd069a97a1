"""Exclusive run files: one writer per file, refused with the holder's name; a dead holder's
lock is taken over; nobody deletes a live process's files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import KILL_PROTOCOL, REPO, labctl_cmd, run_summary, subprocess_env

from labctl.core.errors import ConfigError
from labctl.runs.store import Kind, RunFileBusy, RunFileLock, RunReader, RunWriter
from labctl.runs.store.lock import lock_path, temp_files

POLL_S = 0.02


def _committed(path: Path) -> int:
    try:
        with RunReader(path) as rd:
            return len(rd.records)
    except (ConfigError, OSError):
        return -1


def test_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    run = tmp_path / "r.h5"
    with RunFileLock.acquire(run) as held:
        assert held.held and lock_path(run).exists()
        with pytest.raises(RunFileBusy, match=f"pid {os.getpid()} on host") as e:
            RunFileLock.acquire(run)
        assert e.value.holder is not None and e.value.holder.pid == os.getpid()
        with pytest.raises(RunFileBusy):
            RunWriter.create(run, {"chip_id": "c"})
        assert not run.exists()
    assert not lock_path(run).exists()  # released: the lock file goes with it
    RunFileLock.acquire(run).release()


def test_a_symlink_to_a_held_run_file_is_refused_and_resume_keeps_the_link(
        tmp_path: Path) -> None:
    """Every name of one run file takes the same lock: through a symbolic link a second
    writer is refused, and a writer through the link writes the target, not a copy."""
    run = tmp_path / "r.h5"
    link = tmp_path / "link.h5"
    link.symlink_to(run.name)
    with RunWriter.create(run, {"chip_id": "c"}) as w:
        w.record(Kind.EVENT, payload={"n": 1})
        with pytest.raises(RunFileBusy):
            RunFileLock.acquire(link)
        with pytest.raises(RunFileBusy):
            RunWriter.continue_file(link, {})
    with RunWriter.continue_file(link, {"resume_count": 1}) as w:
        w.record(Kind.EVENT, payload={"n": 2})
    assert link.is_symlink() and not lock_path(run).exists()
    assert _committed(run) == 2


def test_a_run_file_with_a_second_hard_link_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "r.h5"
    with RunWriter.create(run, {"chip_id": "c"}) as w:
        w.record(Kind.EVENT, payload={"n": 1})
    os.link(run, tmp_path / "other.h5")
    with pytest.raises(ConfigError, match=r"2 names \(hard links\).*copy it"):
        RunFileLock.acquire(tmp_path / "other.h5")
    with pytest.raises(ConfigError, match="hard links"):
        RunWriter.continue_file(run, {})
    RunFileLock.acquire(tmp_path / "fresh.h5").release()  # a new name is fine


HOLDER = textwrap.dedent("""
    import sys, time
    from labctl.runs.store import RunFileLock
    lock = RunFileLock.acquire(sys.argv[1])
    open(sys.argv[2], "w").close()          # a temporary file of this live writer
    print("locked", flush=True)
    time.sleep(600)
""")


def test_dead_holder_is_taken_over_and_live_files_are_kept(tmp_path: Path) -> None:
    """A live holder's temporary file survives a refused writer; once the holder is killed
    (-9: no clean-up), the next writer takes over, names the dead holder, and removes its
    temporary file."""
    run = tmp_path / "r.h5"
    tmp = run.with_name(f".{run.name}.99999.tmp")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run), str(tmp)],
                            stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"locked"
        with pytest.raises(RunFileBusy, match=f"pid {proc.pid}"):
            RunWriter.create(run, {"chip_id": "c"})
        assert tmp.exists(), "a refused writer deleted a live process's file"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lock = RunFileLock.acquire(run)
    assert lock.stale is not None and lock.stale.pid == proc.pid
    w = RunWriter.create(run, {"chip_id": "c"}, lock)
    assert temp_files(run) == []
    w.record(Kind.RUN_START)
    w.release()
    assert not lock_path(run).exists()


def test_two_processes_on_one_run_file(tmp_path: Path, kill_reference: tuple) -> None:
    """`labctl run P --out r.h5 & labctl run --resume r.h5`, and a second `--out r.h5`: the
    late comers exit 2 naming the running process and touch nothing; the first run
    completes with exactly the pulses of an undisturbed run. (The first run is held with
    SIGSTOP while the others try, so that it cannot finish first on a fast machine.)"""
    env = subprocess_env(tmp_path)
    out = tmp_path / "r.h5"
    first = subprocess.Popen([*labctl_cmd(), "run", str(KILL_PROTOCOL), "--out", str(out),
                              "--no-progress"], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while first.poll() is None and _committed(out) < 5:
            time.sleep(POLL_S)
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None, "the run ended before the test could interfere"
        late = [subprocess.run([*labctl_cmd(), "run", *args, "--no-progress"], env=env,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=120)
                for args in (["--resume", str(out)], [str(KILL_PROTOCOL), "--out", str(out)])]
        holder = json.loads(lock_path(out).read_text())
    finally:
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    for r in late:
        assert r.returncode == 2, r.stderr
        assert f"in use by pid {first.pid}" in r.stderr or "exists" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert holder["pid"] == first.pid
    counts, _, end = run_summary(out)
    np.testing.assert_array_equal(counts, kill_reference[0])
    assert end["ledger"]["pulses"] == int(counts.sum())
    with RunReader(out) as rd:
        assert [r.kind for r in rd.all()].count(Kind.RUN_START) == 1
        assert not rd.of_kind(Kind.RESUME)
    assert sorted(p.name for p in tmp_path.glob(".r.h5*")) == []


def test_readers_open_a_hard_linked_file_with_leftover_temp_files(tmp_path: Path) -> None:
    """Opening a run file tidies a dead writer's temp files under the lock; a file the lock
    refuses (a second hard link) is read untidied, not refused (a campaign took the refusal
    for an unreadable die and ran it again from scratch)."""
    run = tmp_path / "r.h5"
    with RunWriter.create(run, {"chip_id": "c"}) as w:
        w.record(Kind.EVENT, payload={"n": 1})
    os.link(run, tmp_path / "backup.h5")
    leftover = tmp_path / ".r.h5.999999.tmp"
    leftover.write_bytes(b"x")
    assert _committed(run) == 1
    assert leftover.exists() and not lock_path(run).exists()


def test_a_symlink_loop_is_refused_without_leaving_a_lock(tmp_path: Path) -> None:
    loop = tmp_path / "loop.h5"
    loop.symlink_to(loop.name)
    with pytest.raises(ConfigError, match="cannot be examined"):
        RunFileLock.acquire(loop)
    assert not list(tmp_path.glob(".*.lock"))
