"""Shared helpers for the run-infrastructure tests (run store, protocols, runner, CLI)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labctl.core.backend import BackendBase, Capabilities, ChipInfo, PulseKind
from labctl.core.cells import Cells, FloatArray
from labctl.core.clock import VirtualClock
from labctl.core.envelope import SafetyEnvelope

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
KILL_PROTOCOL = HERE / "vw_kill.yaml"
CHIP_SHAPE = (8, 256, 512)  # default_180nm


def labctl_cmd() -> list[str]:
    """The CLI as a subprocess command (same interpreter as the tests)."""
    return [sys.executable, "-m", "labctl"]


def subprocess_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LABCTL_CALIBRATION_DIR"] = str(tmp / "calibration-records")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def cal_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cal"
    monkeypatch.setenv("LABCTL_CALIBRATION_DIR", str(d))
    return d


class FakeBackend(BackendBase):
    """A tiny deterministic backend for store / runner unit tests: SET adds 5 µS, RESET
    removes 5 µS, FORM sets 10 µS; reads are exact. Counts safe_state calls."""

    def __init__(self, n_rows: int = 8, n_cols: int = 8, g: np.ndarray | None = None) -> None:
        chip = ChipInfo("fake-chip", 1, n_rows, n_cols, 1e-6, 40e-6)
        super().__init__(chip, SafetyEnvelope(), VirtualClock(),
                         Capabilities(virtual_clock=False))  # "hardware": nothing replayed
        self.g = np.full((n_rows, n_cols), 0.5e-6) if g is None else g
        """The chip's state; pass the same array to a new backend to model a real chip
        that outlives the host process."""
        self.safe_states = 0

    def _pulse(self, cells: Cells, kind: PulseKind, amplitude_V: FloatArray, gate_V: FloatArray,
               width_s: FloatArray, compliance_A: FloatArray | None) -> None:
        step = {PulseKind.SET: 5e-6, PulseKind.RESET: -5e-6, PulseKind.FORM: 0.0}[kind]
        if kind is PulseKind.FORM:
            self.g[cells.row, cells.col] = 10e-6
        else:
            self.g[cells.row, cells.col] = np.clip(self.g[cells.row, cells.col] + step, 0, 40e-6)

    def _read(self, cells: Cells, read_V: float, gate_V: float, n_average: int) -> FloatArray:
        return self.g[cells.row, cells.col].astype(np.float64)

    def _mvm(self, tile: int, inputs_V: Any, rows: slice, cols: slice, differential: bool,
             adc_range_A: float) -> Any:
        return np.asarray(inputs_V) @ self.g[rows, cols]

    def _safe_state(self) -> None:
        self.safe_states += 1


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BackendBase]]:
    """Every backend ``labctl.runs.backends.open_backend`` builds during the test, in order."""
    import labctl.runs.backends as station

    made: list[BackendBase] = []
    real = station.open_backend

    def spy(spec: Any = None) -> BackendBase:
        be = real(spec)
        made.append(be)
        return be

    monkeypatch.setattr(station, "open_backend", spy)
    return made


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def run_summary(path: Path) -> tuple[np.ndarray, dict[tuple[int, str], np.ndarray], dict]:
    """Per-cell pulse counts, the verify outcomes and pulse counts per step, and the RUN_END
    payload (empty unless the run completed) of a run file."""
    from labctl.runs.store import Kind, RunReader

    with RunReader(path) as rd:
        counts = rd.pulse_counts(CHIP_SHAPE)
        outcomes = {(r.step, n): r.array(n) for r in rd.of_kind(Kind.ARRAY)
                    for n in r.array_names() if n in ("outcome", "n_pulses")}
        end = rd.all()[-1].payload if rd.complete else {}
    return counts, outcomes, end


@pytest.fixture(scope="session")
def kill_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, dict]:
    """The uninterrupted run of ``vw_kill.yaml``: what every interrupted-and-resumed run of it
    must equal, cell by cell."""
    from labctl.runs.runner import RunOptions, run

    tmp = tmp_path_factory.mktemp("ref")
    old = os.environ.get("LABCTL_CALIBRATION_DIR")
    os.environ["LABCTL_CALIBRATION_DIR"] = str(tmp / "cal")
    try:
        o = run(RunOptions(protocol=str(KILL_PROTOCOL), out=str(tmp / "ref.h5"), progress=False))
    finally:
        if old is None:
            os.environ.pop("LABCTL_CALIBRATION_DIR")
        else:
            os.environ["LABCTL_CALIBRATION_DIR"] = old
    assert o.status == "completed"
    counts, outcomes, _ = run_summary(tmp / "ref.h5")
    assert counts.sum() > 1000
    assert len(outcomes) == 4
    return counts, outcomes
