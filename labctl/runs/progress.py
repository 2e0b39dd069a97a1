"""Progress of long work, shown as a subscriber: a bar on a terminal, log lines elsewhere.

Whoever does long work (the runner for each protocol step, ``labctl bench`` for each
section, a campaign over many dies) does not draw anything: it announces *tasks* to a
:class:`ProgressSubscriber` — ``begin``, ``update(done, total, what)``, ``end`` — in the way
bluesky's RunEngine hands documents to its subscribers. Two subscribers exist:

- :class:`BarProgress` (a terminal): a rich progress bar per task with percentage, done/total,
  elapsed time and rich's estimate of the time left (https://rich.readthedocs.io/en/stable/
  progress.html);
- :class:`LogProgress` (CI, log files, pipes): one timestamped line when a task starts, one
  at most every ``interval_s`` while it runs (done/total, elapsed, estimated time left) and
  one when it ends, so a log shows where a long run is without a carriage-return mess.

:func:`open_progress` picks one from a mode: ``auto`` (bar when the stream is a terminal, log
lines otherwise), ``bar``, ``log`` or ``off``; the ``LABCTL_PROGRESS`` environment variable
sets the default mode, so a CI job can say ``LABCTL_PROGRESS=off``.

A task's estimate restarts when its ``what`` (the phase: "training", "sampling", …) or its
total changes, so a step with phases of different speeds does not get an estimate mixed from
both. Estimates use wall time (the time the user waits), never the chip's clock.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TextIO, runtime_checkable

__all__ = [
    "MODES",
    "BarProgress",
    "LogProgress",
    "NoProgress",
    "ProgressFn",
    "ProgressSubscriber",
    "open_progress",
    "resolve_mode",
    "task",
]

MODES: tuple[str, ...] = ("auto", "bar", "log", "off")
ENV_MODE = "LABCTL_PROGRESS"
DEFAULT_INTERVAL_S = 10.0
"""Seconds between two log lines of one task: often enough to see a long step move, rarely
enough that a log of a 4-minute workload stays a screen long."""

ProgressFn = Callable[..., None]
"""``fn(done, total, what="")``: what long work calls to report (see :func:`task`)."""


@runtime_checkable
class ProgressSubscriber(Protocol):
    """What the runner, the bench and campaigns report long work to. ``key`` names a task
    (any string unique among the running ones); ``label`` is what the user reads."""

    def begin(self, key: str, label: str) -> None: ...
    def update(self, key: str, done: float, total: float, what: str = "") -> None: ...
    def end(self, key: str) -> None: ...
    def hold(self) -> contextlib.AbstractContextManager[None]:
        """Stop drawing while the user is asked something on the same terminal."""
        ...
    def close(self) -> None: ...


def resolve_mode(mode: bool | str | None, stream: TextIO | None = None) -> str:
    """``True`` → ``bar``, ``False`` → ``off``, ``None`` → ``$LABCTL_PROGRESS`` or ``auto``;
    ``auto`` → ``bar`` on a terminal, else ``log``. Raises ``ValueError`` for other text."""
    if mode is True:
        return "bar"
    if mode is False:
        return "off"
    chosen = (mode or os.environ.get(ENV_MODE) or "auto").strip().lower()
    if chosen not in MODES:
        source = f"${ENV_MODE}" if mode is None else "progress mode"
        raise ValueError(f"{source} {chosen!r}: must be one of {', '.join(MODES)}")
    if chosen == "auto":
        s = stream if stream is not None else sys.stderr
        return "bar" if _isatty(s) else "log"
    return chosen


def open_progress(mode: bool | str | None = None, *, stream: TextIO | None = None,
                  interval_s: float = DEFAULT_INTERVAL_S) -> ProgressSubscriber:
    """The subscriber for ``mode`` (see :func:`resolve_mode`), writing to ``stream``
    (default: standard error)."""
    s = stream if stream is not None else sys.stderr
    chosen = resolve_mode(mode, s)
    if chosen == "bar":
        return BarProgress(s)
    if chosen == "log":
        return LogProgress(s, interval_s=interval_s, heartbeat=True)
    return NoProgress()


@contextlib.contextmanager
def task(sub: ProgressSubscriber, key: str, label: str) -> Iterator[ProgressFn]:
    """``with task(sub, "bench:sim", "bench sim") as report: report(3, 10, "mvm")`` — begin,
    hand out the report function, end (also on an exception)."""
    sub.begin(key, label)

    def report(done: float, total: float, what: str = "") -> None:
        sub.update(key, done, total, what)

    try:
        yield report
    finally:
        sub.end(key)


class NoProgress:
    """Reports nothing (``--progress off``)."""

    def begin(self, key: str, label: str) -> None:
        pass

    def update(self, key: str, done: float, total: float, what: str = "") -> None:
        pass

    def end(self, key: str) -> None:
        pass

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        yield

    def close(self) -> None:
        pass


@dataclass
class _Phase:
    """One task's current phase, for the estimate of the time left."""

    label: str
    t_begin: float
    t_phase: float
    what: str = ""
    total: float = 0.0
    done0: float | None = None
    done: float = 0.0
    t_line: float = 0.0

    def restart_if_new(self, done: float, total: float, what: str, now: float) -> None:
        if what != self.what or total != self.total:
            self.what, self.total, self.done0, self.t_phase = what, total, None, now
        if self.done0 is None:
            self.done0, self.t_phase = done, now
        self.done = done

    def remaining_s(self, now: float) -> float | None:
        """Linear estimate from this phase's rate so far; None until there is a rate."""
        if self.done0 is None or self.total <= 0:
            return None
        moved, spent = self.done - self.done0, now - self.t_phase
        if moved <= 0 or spent <= 0:
            return None
        return max(self.total - self.done, 0.0) * spent / moved


def format_duration(seconds: float) -> str:
    """``7 s``, ``2 min 05 s``, ``1 h 02 min``: what a person reads in a log line."""
    s = max(round(seconds), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _count(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.3g}"


class LogProgress:
    """Timestamped progress lines: at a task's start, at most every ``interval_s`` while it
    moves, and at its end. With ``heartbeat`` a daemon thread also writes a line for a task
    that has reported nothing for ``interval_s`` (a section or step that does not report its
    own loops), so a log never goes silent for long. ``clock`` is injectable for tests."""

    def __init__(self, stream: TextIO, *, interval_s: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, heartbeat: bool = False) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.clock = clock
        self.wall = wall
        self._tasks: dict[str, _Phase] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if heartbeat and interval_s > 0:
            self._thread = threading.Thread(target=self._beat, name="labctl-progress",
                                            daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

    def _line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.wall()))
        with contextlib.suppress(OSError, ValueError):  # a closed pipe must not end the run
            self.stream.write(f"{stamp} labctl: {text}\n")
            self.stream.flush()

    def begin(self, key: str, label: str) -> None:
        with self._lock:
            now = self.clock()
            self._tasks[key] = _Phase(label, now, now, t_line=now)
            self._line(f"{label}: started")

    def update(self, key: str, done: float, total: float, what: str = "") -> None:
        with self._lock:
            ph = self._tasks.get(key)
            if ph is None or total <= 0:
                return
            now = self.clock()
            ph.restart_if_new(done, total, what, now)
            if now - ph.t_line < self.interval_s:
                return
            ph.t_line = now
            self._line(self.describe(ph, now))

    def tick(self) -> None:
        """A line for every task silent for ``interval_s`` (called by the heartbeat)."""
        with self._lock:
            now = self.clock()
            for ph in self._tasks.values():
                if now - ph.t_line >= self.interval_s:
                    ph.t_line = now
                    self._line(self.describe(ph, now))

    def describe(self, ph: _Phase, now: float) -> str:
        elapsed = f"{format_duration(now - ph.t_begin)} elapsed"
        if ph.total <= 0:
            return f"{ph.label}: running, {elapsed}"
        frac = min(max(ph.done / ph.total, 0.0), 1.0)
        what = f" {ph.what}" if ph.what else ""
        left = ph.remaining_s(now)
        eta = f", about {format_duration(left)} left" if left is not None else ""
        return (f"{ph.label}:{what} {frac * 100:.0f}% ({_count(ph.done)}/{_count(ph.total)}), "
                f"{elapsed}{eta}")

    def end(self, key: str) -> None:
        with self._lock:
            ph = self._tasks.pop(key, None)
            if ph is not None:
                self._line(f"{ph.label}: finished in "
                           f"{format_duration(self.clock() - ph.t_begin)}")

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        yield

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        with self._lock:
            self._tasks.clear()


class BarProgress:
    """rich progress bars on a terminal: description (label and phase), bar, percentage,
    done/total, elapsed and estimated time left. Output printed while the bars show (the
    report routine's table, Ctrl+C notices) appears above them."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._console = Console(file=stream, stderr=stream is sys.stderr)
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[count]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self._console, refresh_per_second=4,
            # printing goes above the bars only when it would reach the same terminal; a
            # piped stdout (labctl run ... > report.txt) must keep its output
            redirect_stdout=_isatty(sys.stdout), redirect_stderr=stream is sys.stderr)
        self._ids: dict[str, Any] = {}
        self._phase: dict[str, tuple[str, float]] = {}
        self._labels: dict[str, str] = {}
        self._running = False

    def _ensure_started(self) -> None:
        if not self._running:
            self._progress.start()
            self._running = True

    def begin(self, key: str, label: str) -> None:
        self._ensure_started()
        self._labels[key] = label
        self._ids[key] = self._progress.add_task(label, total=None, count="")
        self._phase[key] = ("", 0.0)

    def update(self, key: str, done: float, total: float, what: str = "") -> None:
        tid = self._ids.get(key)
        if tid is None or total <= 0:
            return
        desc = self._labels[key] + (f" · {what}" if what else "")
        count = f"{_count(done)}/{_count(total)}"
        if self._phase[key] != (what, total):
            # a new phase: restart the speed estimate, keep the task's elapsed time
            self._phase[key] = (what, total)
            self._progress.reset(tid, total=total, completed=int(done), description=desc,
                                 count=count, start=True)
            self._progress.update(tid, completed=done)
        else:
            self._progress.update(tid, completed=done, description=desc, count=count)

    def end(self, key: str) -> None:
        tid = self._ids.pop(key, None)
        if tid is None:
            return
        task = next(t for t in self._progress.tasks if t.id == tid)
        total = task.total if task.total is not None else 1.0
        count = f"{_count(total)}/{_count(total)}" if task.total is not None else ""
        self._progress.update(tid, total=total, completed=total, count=count)
        self._progress.stop_task(tid)
        self._phase.pop(key, None)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        was = self._running
        if was:
            self._progress.stop()
            self._running = False
        try:
            yield
        finally:
            if was:
                self._ensure_started()

    def close(self) -> None:
        if self._running:
            self._progress.stop()
            self._running = False


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
