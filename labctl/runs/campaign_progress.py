"""Progress of a campaign: dies done / running / failed, with an ETA.

The mode is chosen as for every progress display (:func:`labctl.runs.progress.resolve_mode`:
``auto`` — a live rich bar on a terminal, log lines otherwise — ``bar``, ``log``, ``off``,
``$LABCTL_PROGRESS``). Log lines come every ``every_s`` seconds and at the end, so a campaign
under a batch scheduler or in CI leaves a readable trace. The ETA is remaining dies × wall
time per finished die at the rate seen so far (dies that were already complete when a
resumed campaign started do not count toward the rate). A campaign's line carries three
counts — done, running, failed — which is why it is drawn here rather than as a task of the
runner's subscribers, whose estimate restarts whenever the task's text changes.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from labctl.runs.progress import format_duration


class CampaignProgress:
    def __init__(self, total: int, *, mode: bool | str | None = None,
                 stream: TextIO | None = None, every_s: float = 10.0) -> None:
        from labctl.runs.progress import resolve_mode

        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        self.enabled = self.mode != "off"
        self.every_s = every_s
        self.t0 = time.monotonic()
        self._last_line = -1e9
        self._skipped = 0
        self._state = (0, 0, 0)
        self._bar: Any = None
        self._task: Any = None
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(TextColumn("dies"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.description}"),
                                 console=Console(file=self.stream), transient=False)
            self._task = self._bar.add_task("", total=total)
            self._bar.start()

    def skipped(self, n: int) -> None:
        """``n`` dies were complete before this process started (not in the rate)."""
        self._skipped = n

    def eta_s(self, finished: int) -> float | None:
        fresh = finished - self._skipped
        if fresh <= 0:
            return None
        return (self.total - finished) * (time.monotonic() - self.t0) / fresh

    def text(self) -> str:
        done, running, failed = self._state
        eta = self.eta_s(done + failed)
        left = "" if eta is None else f", about {format_duration(eta)} left"
        return f"{done} done, {running} running, {failed} failed of {self.total}{left}"

    def update(self, done: int, running: int, failed: int) -> None:
        if not self.enabled:
            return
        self._state = (done, running, failed)
        if self._bar is not None:
            self._bar.update(self._task, completed=done + failed, description=self.text())
            return
        now = time.monotonic()
        if now - self._last_line >= self.every_s:
            self._last_line = now
            print(f"labctl campaign: {self.text()}", file=self.stream, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.stop()
            return
        print(f"labctl campaign: {self.text()} "
              f"({format_duration(time.monotonic() - self.t0)} wall)",
              file=self.stream, flush=True)
