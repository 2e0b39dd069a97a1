"""Ctrl+C and SIGTERM during a workload's weight programming, against real ``labctl run``
processes on the simulated chip, then ``--resume``.

The fast-weights workload programs its cells through direct pulses (forming, then
verify-write, re-programming every chunk). A signal once the run file holds a seeded random
number of those pulse batches must stop the run at the next cell batch — exit 130, the file
ending "aborted", the step not ended — and the resume must finish it with every cell pulsed
exactly as often as in the uninterrupted run, the same reads and the same results; also when
the first resume is itself stopped after it went live.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CHIP_SHAPE, labctl_cmd, subprocess_env

from labctl.core.errors import ConfigError
from labctl.runs.store import Kind, RunReader

PROTOCOL = """\
name: fw-small
routine: fast_weights
params: {vocab: 32, n_pairs: 16, d_model: 32, d_key: 16, hidden: 16, chunk: 8}
"""
POLL_S = 0.02
TRIALS = [(signal.SIGINT, 0, False), (signal.SIGINT, 1, True), (signal.SIGTERM, 2, False)]
"""(signal, seed of the moment it is sent, whether the first resume is interrupted too)."""


def _contents(path: Path) -> tuple[np.ndarray, bytes, list[dict]]:
    with RunReader(path) as rd:
        return (rd.pulse_counts(CHIP_SHAPE), rd.raw("reads").tobytes(),
                [r.payload for r in rd.of_kind(Kind.RESULT)])


def _pulse_batches(path: Path) -> int:
    try:
        with RunReader(path) as rd:
            return len(rd.of_kind(Kind.PULSE))
    except (ConfigError, OSError):
        return -1  # not there yet


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple]:
    tmp = tmp_path_factory.mktemp("fw-ref")
    (tmp / "fw.yaml").write_text(PROTOCOL, encoding="utf-8")
    out = tmp / "ref.h5"
    r = subprocess.run([*labctl_cmd(), "run", str(tmp / "fw.yaml"), "--out", str(out),
                        "--no-progress"], env=subprocess_env(tmp), capture_output=True,
                       stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, r.stderr.decode()
    counts, reads, results = _contents(out)
    with RunReader(out) as rd:
        n_batches = len(rd.of_kind(Kind.PULSE))
    assert counts.sum() > 10_000 and n_batches > 100
    return tmp / "fw.yaml", (counts, reads, results, n_batches)


def _run_and_signal(args: list[str], out: Path, env: dict[str, str], at: int,
                    signum: int) -> str:
    """Start ``labctl run ARGS``; send ``signum`` once the file holds ``at`` pulse batches."""
    proc = subprocess.Popen([*labctl_cmd(), "run", *args, "--no-progress"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        while proc.poll() is None and _pulse_batches(out) < at:
            time.sleep(POLL_S)
        assert proc.poll() is None, "the run ended before the signal"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.decode()
    assert proc.returncode == 130, text
    assert "aborted" in text and f"--resume {out}" in text and "Traceback" not in text
    return text


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "seed", "twice"), TRIALS)
def test_signal_during_programming_stops_and_resume_repeats_no_pulse(
        reference: tuple[Path, tuple], tmp_path: Path, signum: int, seed: int,
        twice: bool) -> None:
    proto, (counts, reads, results, n_batches) = reference
    rng = random.Random(seed)
    at = rng.randint(1, n_batches // 2)
    env = subprocess_env(tmp_path)
    out = tmp_path / "run.h5"
    _run_and_signal([str(proto), "--out", str(out)], out, env, at, signum)
    with RunReader(out) as rd:
        end = rd.all()[-1]
        assert end.kind == Kind.RUN_END and end.payload["status"] == "aborted"
        assert end.payload["safe_state_reached"] is True
        assert not rd.of_kind(Kind.STEP_END)  # stopped inside the programming step
        stopped_at = len(rd.of_kind(Kind.PULSE))
    assert at <= stopped_at < n_batches
    if twice:  # the resume re-executes, goes live, and is stopped again
        again = rng.randint(stopped_at + 20, stopped_at + (n_batches - stopped_at) // 2)
        _run_and_signal(["--resume", str(out)], out, env, again, signum)

    r = subprocess.run([*labctl_cmd(), "run", "--resume", str(out), "--no-progress"],
                       env=env, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, r.stderr.decode()
    got_counts, got_reads, got_results = _contents(out)
    assert np.array_equal(got_counts, counts)  # per cell: not one pulse more or less
    assert got_reads == reads
    assert got_results == results
    with RunReader(out) as rd:
        resumes = [r.payload for r in rd.of_kind(Kind.RESUME)]
    assert len(resumes) == (2 if twice else 1)
    assert all(p["reexecuted"] > 0 for p in resumes)
