"""Damaged run files never hang and never crash a reader: ``show``, ``export``, ``plot`` and
``run --resume`` on truncated and bit-flipped copies of a run file answer (exit 0 with what
can be read, or 2 with a clear statement) and never print a traceback.

Each command runs in its own process (a crash would show as a negative exit code) with a
generous timeout that only catches a hang (the SWMR read retry loop used to sleep for
minutes on such files); no test asserts on how long anything takes.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import KILL_PROTOCOL, labctl_cmd, subprocess_env

from labctl.core.errors import ConfigError
from labctl.runs.store import RunReader
from labctl.runs.store.h5open import bounded_attempts_available

HANG_S = 120


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resumable run file: the run aborted by SIGTERM after 60 records."""
    tmp = tmp_path_factory.mktemp("damaged")
    out = tmp / "base.h5"
    proc = subprocess.Popen([*labctl_cmd(), "run", str(KILL_PROTOCOL), "--out", str(out),
                             "--no-progress"], env=subprocess_env(tmp),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while proc.poll() is None and _committed(out) < 60:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=HANG_S) == 130
    with RunReader(out) as rd:
        assert not rd.damage and not rd.complete
    return out


def _committed(path: Path) -> int:
    try:
        with RunReader(path) as rd:
            return len(rd.records)
    except (ConfigError, OSError):
        return -1


def _answers(path: Path, *, resume: bool) -> None:
    env = subprocess_env(path.parent)
    cmds = [["show", str(path)], ["export", str(path), "--out", str(path.with_suffix(".nc"))],
            ["plot", str(path), "--outdir", str(path.parent / f"{path.stem}_plots")]]
    if resume:
        cmds.append(["run", "--resume", str(path), "--no-progress"])
    for cmd in cmds:
        r = subprocess.run([*labctl_cmd(), *cmd], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=HANG_S)
        what = f"labctl {' '.join(cmd)} → {r.returncode}\n{r.stderr[-2000:]}"
        assert r.returncode in (0, 2), what
        assert "Traceback" not in r.stderr, what
        if r.returncode == 2:
            assert "error:" in r.stderr, what


@pytest.mark.parametrize("cut", [0.0005, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999])
def test_truncated_file(tmp_path: Path, interrupted: Path, cut: float) -> None:
    data = interrupted.read_bytes()
    damaged = tmp_path / "t.h5"
    damaged.write_bytes(data[:max(1, int(len(data) * cut))])
    _answers(damaged, resume=True)


@pytest.mark.parametrize("trial", range(16))
def test_bit_flipped_file(tmp_path: Path, interrupted: Path, trial: int) -> None:
    rng = random.Random(7000 + trial)
    data = bytearray(interrupted.read_bytes())
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    damaged = tmp_path / "f.h5"
    damaged.write_bytes(bytes(data))
    _answers(damaged, resume=trial % 2 == 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps")
def test_read_attempts_are_bounded() -> None:
    """The fix for the hang is active: the HDF5 library h5py uses was found and takes the
    bounded number of metadata read attempts."""
    assert bounded_attempts_available()


def test_what_can_be_read_is_stated(tmp_path: Path, interrupted: Path) -> None:
    """A file cut inside its data: the reader keeps the readable prefix and says what is
    missing (and a resume refuses it rather than guess)."""
    data = interrupted.read_bytes()
    with RunReader(interrupted) as rd:
        n_full = len(rd.records)
    statements = []
    for cut in (0.6, 0.8, 0.95):
        damaged = tmp_path / f"c{cut}.h5"
        damaged.write_bytes(data[:int(len(data) * cut)])
        try:
            with RunReader(damaged) as rd:
                assert len(rd.records) <= n_full
                statements.append("; ".join(rd.damage))
        except ConfigError as e:  # nothing readable at all: the error says why
            statements.append(str(e))
    assert all("shorter than its superblock" in s for s in statements), statements
