"""``kill -9`` and Ctrl+C against real ``labctl run`` processes on the simulated chip.

The kill test SIGKILLs runs (and some resumes) at seeded random moments — some timed from the
moment the run file appears, most once the run file holds a seeded random number of committed
records, some just after the RUN_END record, i.e. inside the final rewrite of the file — then
checks that every file opens and ``labctl show`` reads it, that every resume completes, and
that no cell got a pulse it would not have got without the kill: each cell's pulse count in
the run record equals the uninterrupted run's, the verify outcomes are identical, and the
resumed process's own ledger (replay + new pulses) equals the record's total; and that no
temporary or lock file is left behind.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import KILL_PROTOCOL, labctl_cmd, run_summary, subprocess_env

from labctl.app.cli import main as cli_main
from labctl.core.errors import ConfigError
from labctl.runs.store import Kind, RunReader
from labctl.runs.store.summary import summarize

N_TRIALS = 24
POLL_S = 0.02


@pytest.fixture(scope="module")
def reference(kill_reference: tuple[np.ndarray, dict]) -> tuple[np.ndarray, dict]:
    return kill_reference


_summary = run_summary


def _committed(path: Path) -> int:
    try:
        with RunReader(path) as rd:
            return len(rd.records)
    except (ConfigError, OSError):
        return -1  # not there yet


def _ended(path: Path) -> bool:
    try:
        with RunReader(path) as rd:
            return rd.complete
    except (ConfigError, OSError):
        return False


def _start_and_kill(args: list[str], out: Path, env: dict[str, str], rng: random.Random,
                    mode: str) -> str:
    """Start ``labctl run ARGS`` and SIGKILL it: ``time`` after a random delay from the
    moment the run file exists; ``records`` once the file holds a random number of committed
    records (then a random short delay); ``end`` as soon as the file says the run completed
    (the final rewrite is then under way). Returns what happened."""
    proc = subprocess.Popen([*labctl_cmd(), "run", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if mode == "time":  # timed from the moment the run file appears
            while proc.poll() is None and not out.exists():
                time.sleep(POLL_S / 4)
            proc.wait(rng.uniform(0.0, 1.0))
        elif mode == "end":
            while proc.poll() is None and not _ended(out):
                time.sleep(POLL_S / 4)
            proc.wait(rng.uniform(0.0, 0.01))
        else:
            k = rng.randint(1, 230)
            while proc.poll() is None and _committed(out) < k:
                time.sleep(POLL_S)
            proc.wait(rng.uniform(0.0, 0.05))
        return "finished"
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return "killed"
    finally:
        if proc.stderr:
            proc.stderr.close()


def _trial(i: int, root: Path) -> dict:
    rng = random.Random(1000 + i)
    tmp = root / f"t{i}"
    tmp.mkdir()
    env = subprocess_env(tmp)
    out = tmp / "run.h5"
    mode = "time" if i % 4 == 0 else "end" if i % 6 == 5 else "records"
    what = _start_and_kill([str(KILL_PROTOCOL), "--out", str(out), "--no-progress"], out, env,
                           rng, mode)
    log = {"trial": i, "first": what, "file": out.exists(),
           "tmp_after_kill": sorted(p.name for p in tmp.glob(".run.h5.*.tmp")),
           "committed": _committed(out)}
    if not out.exists():
        return log  # killed before the file existed: nothing was pulsed, nothing to resume
    with RunReader(out) as rd:  # what `labctl show` prints, on the file the kill left
        log["show_truncated"] = summarize(rd)[1]
    if i % 3 == 1:  # kill the resume too
        log["second"] = _start_and_kill(["--resume", str(out), "--no-progress"], out, env,
                                        rng, "records")
        log["committed2"] = _committed(out)
    r = subprocess.run([*labctl_cmd(), "run", "--resume", str(out), "--no-progress"], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    log["resume_rc"] = r.returncode
    log["resume_err"] = r.stderr[-2000:]
    with RunReader(out):  # a reader tidies what a writer killed in its final rewrite left
        pass
    log["left_behind"] = sorted(p.name for p in tmp.glob(".run.h5*"))
    return log


def test_kill9_at_random_moments_then_resume(tmp_path: Path, reference: tuple,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ref_counts, ref_outcomes = reference
    with ThreadPoolExecutor(2) as pool:
        logs = list(pool.map(lambda i: _trial(i, tmp_path), range(N_TRIALS)))
    killed_mid_run = 0
    (tmp_path / "kill-trials.json").write_text(  # where the kills landed, for a look
        json.dumps([{k: v for k, v in log.items() if k != "resume_err"} for log in logs],
                   indent=1))
    for log in logs:
        out = tmp_path / f"t{log['trial']}" / "run.h5"
        if not log["file"]:
            continue
        killed_mid_run += log["first"] == "killed" and log["committed"] > 0
        assert log["show_truncated"].startswith("status"), log
        assert log["resume_rc"] == 0, log
        # readable, and labctl show works on it
        assert cli_main(["show", str(out)]) == 0, log
        assert "status     completed" in capsys.readouterr().out
        counts, outcomes, end = _summary(out)
        assert end, f"run did not complete: {log}"
        diff = np.argwhere(counts != ref_counts)
        assert diff.size == 0, f"pulse counts differ at {diff[:5].tolist()}: {log}"
        for key, arr in ref_outcomes.items():
            np.testing.assert_array_equal(outcomes[key], arr, err_msg=str((key, log)))
        assert end["ledger"]["pulses"] == int(counts.sum()), log
        assert end["safe_state_reached"] is True
        assert log["left_behind"] == [], log
    assert killed_mid_run >= 1, logs


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_aborts_safely_then_resumes(tmp_path: Path, reference: tuple,
                                           sig: signal.Signals) -> None:
    """Ctrl+C without a terminal, kill (SIGTERM) or a lost terminal (SIGHUP): the run stops
    at the next checkpoint, reaches the safe state, exits 130 and leaves a readable,
    resumable file."""
    env = subprocess_env(tmp_path)
    out = tmp_path / "int.h5"
    proc = subprocess.Popen([*labctl_cmd(), "run", str(KILL_PROTOCOL), "--out", str(out),
                             "--no-progress"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while proc.poll() is None and _committed(out) < 60:
        time.sleep(POLL_S)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "--resume" in err
    with RunReader(out) as rd:
        end = rd.all()[-1]
        assert end.kind == Kind.RUN_END
        assert end.payload["status"] == "aborted"
        assert end.payload["safe_state_reached"] is True
    r = subprocess.run([*labctl_cmd(), "run", "--resume", str(out), "--no-progress"], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    counts, _, _ = _summary(out)
    np.testing.assert_array_equal(counts, reference[0])


def test_sigint_on_a_tty_pauses_asks_and_resumes(tmp_path: Path, reference: tuple) -> None:
    """On a terminal, Ctrl+C pauses at the next checkpoint and asks; answering 'r' carries on
    and the run completes with the same pulses as the uninterrupted one."""
    import os
    import pty
    import select

    master, slave = pty.openpty()
    out = tmp_path / "tty.h5"
    proc = subprocess.Popen([*labctl_cmd(), "run", str(KILL_PROTOCOL), "--out", str(out)],
                            stdin=slave, stdout=slave, stderr=slave, env=subprocess_env(tmp_path))
    os.close(slave)
    seen = b""

    def pump_until(marker: bytes) -> None:
        nonlocal seen
        while marker not in seen and proc.poll() is None:
            if select.select([master], [], [], 0.05)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    return

    try:
        pump_until(b"ETA")  # the progress bar (rich) is on: stderr is a TTY
        proc.send_signal(signal.SIGINT)
        pump_until(b"[r]esume or [a]bort?")
        os.write(master, b"r\n")
        proc.wait(timeout=120)
        pump_until(b"completed")
    finally:
        os.close(master)
    assert proc.returncode == 0, seen.decode(errors="replace")[-2000:]
    with RunReader(out) as rd:
        msgs = [r.payload["message"] for r in rd.of_kind(Kind.EVENT)]
        assert "paused at a checkpoint" in msgs
        assert "resumed after pause" in msgs
        assert rd.complete
    np.testing.assert_array_equal(_summary(out)[0], reference[0])
