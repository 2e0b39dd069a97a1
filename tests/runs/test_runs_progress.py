"""Progress as a subscriber of the runner: log lines with an estimate of the time left, the
rich bar, mode selection, and what the runner and ``StepContext.progress`` report."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write
from hypothesis import given
from hypothesis import strategies as st

from labctl.core.errors import ConfigError
from labctl.core.routine import Checkpoint, RoutineSpec, StepContext
from labctl.runs.progress import (
    BarProgress,
    LogProgress,
    NoProgress,
    ProgressSubscriber,
    format_duration,
    open_progress,
    resolve_mode,
    task,
)
from labctl.runs.runner import RunOptions, run
from labctl.runs.store import Kind, RunReader


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _log(interval_s: float = 10.0) -> tuple[LogProgress, io.StringIO, FakeClock]:
    buf, clock = io.StringIO(), FakeClock()
    return LogProgress(buf, interval_s=interval_s, clock=clock, wall=lambda: 0.0), buf, clock


def test_log_lines_start_every_interval_and_end() -> None:
    lp, buf, clock = _log(10.0)
    lp.begin("s", "[1/2] program")
    lp.update("s", 0, 100)
    clock.t += 5
    lp.update("s", 10, 100)  # within the interval: no line
    assert buf.getvalue().count("\n") == 1
    clock.t += 5
    lp.update("s", 20, 100)  # 20 cells in 10 s: 80 left at 2 / s → 40 s
    clock.t += 3
    lp.end("s")
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith("labctl: [1/2] program: started")
    assert "20% (20/100), 10 s elapsed, about 40 s left" in lines[1]
    assert lines[2].endswith("[1/2] program: finished in 13 s")


def test_log_estimate_restarts_with_a_new_phase() -> None:
    lp, buf, clock = _log(0.0)
    lp.begin("s", "nf")
    lp.update("s", 0, 10, "training")
    clock.t += 100
    lp.update("s", 10, 10, "training")
    lp.update("s", 0, 4, "sampling")  # a new phase: no rate yet, so no estimate
    clock.t += 10
    lp.update("s", 1, 4, "sampling")  # 1 per 10 s: 30 s left, not mixed with training
    lines = buf.getvalue().splitlines()
    assert "training 100% (10/10)" in lines[2] and "about 0 s left" in lines[2]
    assert "sampling 0% (0/4)" in lines[3] and "left" not in lines[3]
    assert "sampling 25% (1/4), 1 min 50 s elapsed, about 30 s left" in lines[4]


def test_heartbeat_speaks_for_a_silent_task() -> None:
    lp, buf, clock = _log(10.0)
    lp.begin("s", "[4/4] bench inference")
    clock.t += 9
    lp.tick()  # not yet silent for a whole interval
    clock.t += 1
    lp.tick()
    lp.tick()  # the line just written counts: no second one
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].endswith("[4/4] bench inference: running, 10 s elapsed")
    lp.update("s", 1, 4, "training")
    clock.t += 10
    lp.tick()
    assert buf.getvalue().splitlines()[-1].endswith("training 25% (1/4), 20 s elapsed")


def test_log_ignores_unknown_tasks_and_empty_totals() -> None:
    lp, buf, _ = _log(0.0)
    lp.update("nobody", 1, 2)
    lp.begin("s", "x")
    lp.update("s", 0, 0)
    lp.end("nobody")
    assert buf.getvalue().count("\n") == 1


@given(rate=st.floats(0.01, 1e5), total=st.integers(1, 10**6), frac=st.floats(0.01, 1.0),
       spent=st.floats(0.1, 1e5))
def test_log_estimate_of_a_steady_rate_is_exact(rate: float, total: int, frac: float,
                                                spent: float) -> None:
    lp, _, clock = _log(1e9)
    lp.begin("s", "x")
    lp.update("s", 0, total)
    done = frac * total
    clock.t += spent
    lp.update("s", done, total)
    ph = lp._tasks["s"]
    left = ph.remaining_s(clock.t)
    assert left is not None
    assert left == pytest.approx((total - done) * spent / done, rel=1e-9)
    assert left >= 0


@given(st.floats(0, 1e7))
def test_format_duration_reads_back_to_the_value(seconds: float) -> None:
    parts = format_duration(seconds).split()
    unit_s = {"h": 3600, "min": 60, "s": 1}
    back = sum(int(n) * unit_s[u] for n, u in zip(parts[::2], parts[1::2], strict=True))
    resolution = 60 if seconds >= 3600 else 1  # hours are shown to the minute
    assert abs(back - seconds) <= resolution


def test_resolve_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABCTL_PROGRESS", raising=False)
    assert resolve_mode(True) == "bar" and resolve_mode(False) == "off"
    assert resolve_mode(None, io.StringIO()) == "log"  # not a terminal
    assert resolve_mode("auto", io.StringIO()) == "log"
    monkeypatch.setenv("LABCTL_PROGRESS", "off")
    assert resolve_mode(None) == "off"
    assert resolve_mode("log") == "log"  # an explicit mode wins over the variable
    monkeypatch.setenv("LABCTL_PROGRESS", "loud")
    with pytest.raises(ValueError, match=r"\$LABCTL_PROGRESS 'loud'"):
        resolve_mode(None)
    assert isinstance(open_progress("off"), NoProgress)
    assert isinstance(open_progress("log", stream=io.StringIO()), LogProgress)


def test_bar_shows_label_phase_count_and_time_left() -> None:
    buf = io.StringIO()
    bar = BarProgress(buf)
    assert isinstance(bar, ProgressSubscriber)
    with task(bar, "k", "[2/3] program-pattern") as report:
        report(3, 4, "verify")
        with bar.hold():
            pass
        report(4, 4, "verify")
    bar.close()
    out = buf.getvalue()
    assert "[2/3] program-pattern · verify" in out
    assert "4/4" in out and "100%" in out and "ETA" in out


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def begin(self, key: str, label: str) -> None:
        self.events.append(("begin", key, label))

    def update(self, key: str, done: float, total: float, what: str = "") -> None:
        self.events.append(("update", key, f"{done:g}/{total:g}", what))

    def end(self, key: str) -> None:
        self.events.append(("end", key))

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        yield

    def close(self) -> None:
        self.events.append(("close",))


def _counting(ctx: StepContext) -> Iterator[Checkpoint]:
    for epoch in range(3):
        ctx.progress(epoch + 1, 3, "training")
    yield Checkpoint(state={}, done=1, total=2)
    yield Checkpoint(state={}, done=2, total=2)


def test_runner_reports_checkpoints_and_step_progress(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    reg = {"counting": RoutineSpec("counting", "test routine", {}, _counting)}
    proto = write(tmp_path / "p.yaml", "name: p\nsteps:\n  - routine: counting\n"
                  "  - routine: counting\n    name: again\n")
    rec = Recorder()
    out = run(RunOptions(protocol=str(proto), out=str(tmp_path / "r.h5"), progress="log",
                         subscribers=(rec,)), registry=reg)
    assert out.status == "completed"
    first = [e for e in rec.events if e[1:2] == ("step0",)]
    assert first == [("begin", "step0", "[1/2] counting"),
                     ("update", "step0", "1/3", "training"),
                     ("update", "step0", "2/3", "training"),
                     ("update", "step0", "3/3", "training"),
                     ("update", "step0", "1/2", ""), ("update", "step0", "2/2", ""),
                     ("end", "step0")]
    assert ("begin", "step1", "[2/2] again") in rec.events
    assert rec.events[-1] == ("close",)
    err = capsys.readouterr().err
    assert "[1/2] counting: started" in err and "[2/2] again: finished in" in err
    with RunReader(tmp_path / "r.h5") as rd:  # progress is display only, never recorded
        assert not [r for r in rd.of_kind(Kind.EVENT) if "progress" in str(r.payload)]


def test_a_sink_without_progress_ignores_it() -> None:
    class Sink:
        def save_arrays(self, step: int, arrays: object) -> None: ...
        def save_result(self, step: int, figures: object) -> None: ...
        def event(self, step: int, message: str, **data: object) -> None: ...

    ctx = StepContext(backend=None, params={}, step=0, seed=0,  # type: ignore[arg-type]
                      calibration=None, sink=Sink())  # type: ignore[arg-type]
    ctx.progress(1, 2, "x")  # no AttributeError


def test_a_bad_progress_mode_is_a_config_error_before_anything(tmp_path: Path) -> None:
    proto = write(tmp_path / "p.yaml", "name: p\nsteps:\n  - routine: counting\n")
    reg = {"counting": RoutineSpec("counting", "test routine", {}, _counting)}
    with pytest.raises(ConfigError, match="--progress"):
        run(RunOptions(protocol=str(proto), out=str(tmp_path / "r.h5"), progress="loud"),
            registry=reg)
    assert not (tmp_path / "r.h5").exists()


def test_bar_on_a_terminal_keeps_a_piped_stdout(tmp_path: Path) -> None:
    """stderr a terminal (the bar), stdout a pipe: the report step's table still goes to the
    pipe, not above the bar on the terminal."""
    import os
    import pty
    import subprocess

    from conftest import labctl_cmd, subprocess_env

    proto = write(tmp_path / "p.yaml", "name: p\nsteps:\n  - routine: read_map\n"
                  "    params: {region: {tile: 0, rows: [0, 4], cols: [0, 4]}}\n"
                  "  - routine: report\n")
    master, slave = pty.openpty()
    try:
        r = subprocess.run([*labctl_cmd(), "run", str(proto), "--out", str(tmp_path / "r.h5"),
                            "--progress", "bar"], stdout=subprocess.PIPE, stderr=slave,
                           stdin=subprocess.DEVNULL, env=subprocess_env(tmp_path), timeout=300)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "=== labctl report" in out and "mean" in out and "µS" in out
