"""Executing protocol steps: checkpoints, Ctrl+C pause / abort, and the safe state.

:class:`Runner` drives each step's routine generator. At every
:class:`~labctl.core.routine.Checkpoint` it (1) honours a pending Ctrl+C (pause: ask resume/abort
on a TTY; otherwise abort), (2) commits the checkpoint — state and planned pulses — to the run
file, (3) applies the planned pulses. Every way out — completion, abort, error, a second
Ctrl+C — ends in ``backend.safe_state()`` and a RUN_END record saying how it ended (as far as
the process lives to write it). Starting and resuming runs is ``labctl.runs.runner``'s job.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy.typing as npt

from labctl.core.backend import BackendBase
from labctl.core.calibration_record import CalibrationRecord
from labctl.core.errors import RunInterrupted, StorageFault
from labctl.core.routine import Checkpoint, ResumeState, RoutineSpec, StepContext
from labctl.runs.fast_forward import ResumeDiverged
from labctl.runs.progress import ProgressSubscriber, open_progress
from labctl.runs.protocol import Protocol, Step
from labctl.runs.recording import RecordingBackend, noise_streams, write_ahead
from labctl.runs.store.schema import Kind
from labctl.runs.store.writer import RunWriter

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))
"""Ctrl+C, kill / a scheduler, and a lost terminal: the signals a run handles itself."""


def _on_main_thread() -> bool:
    """Signal handlers can only be installed there (a campaign runs dies in threads too)."""
    import threading

    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _stop_signals_handled_by(handler: Callable[[int, FrameType | None], None]
                             ) -> Iterator[None]:
    """Install ``handler`` for every stop signal; the previous handlers come back after."""
    old = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@dataclass
class RunOptions:
    protocol: str | None = None
    station: str | None = None
    out: str | None = None
    resume: str | None = None
    seed: int | None = None
    calibration_dir: str | None = None
    interactive: bool | None = None
    """Ask resume/abort on Ctrl+C (default: when stdin and stderr are TTYs)."""
    progress: bool | str | None = None
    """How to show progress on stderr: ``auto`` / None (a bar on a terminal, log lines
    otherwise; ``$LABCTL_PROGRESS`` overrides), ``bar`` / True, ``log``, ``off`` / False
    (:mod:`labctl.runs.progress`)."""
    subscribers: tuple[ProgressSubscriber, ...] = ()
    """More progress subscribers (a campaign's display, a test's recorder)."""
    stop_requested: Callable[[], str | None] | None = None
    """Asked at every checkpoint: a reason to abort there (hardware to its safe state, the
    file resumable), or ``None`` to go on. A campaign's dies use it: they cannot receive a
    signal, as they run on a worker thread."""


@dataclass
class RunOutcome:
    path: Path
    status: str
    """completed | aborted | failed | interrupted | nothing-to-do"""
    message: str = ""



class Runner:
    def __init__(self, protocol: Protocol, registry: Mapping[str, RoutineSpec],
                 backend: BackendBase, writer: RunWriter, calibration: CalibrationRecord, *,
                 seed: int, opts: RunOptions) -> None:
        self.protocol = protocol
        self.registry = registry
        self.backend = backend
        self.writer = writer
        self.seed = seed
        self.opts = opts
        self.rec = RecordingBackend(backend, writer, stop_check=self._stop_check)
        self._step: Step | None = None
        self.calibration = calibration
        self._interrupt = False
        self._terminate: str | None = None
        """Name of the signal (SIGTERM, SIGHUP) that asked the run to stop, if any."""
        self.step_results: dict[int, dict[str, Any]] = {}
        """Key figures each step saved in this process (a ``report`` step prints them)."""
        tty = sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty()
        self.interactive = tty if opts.interactive is None else opts.interactive
        self._subscribers: list[ProgressSubscriber] = []
        self.subscribe(open_progress(opts.progress))  # the mode was checked by runner.run
        for sub in opts.subscribers:
            self.subscribe(sub)

    def subscribe(self, sub: ProgressSubscriber) -> None:
        """Report every step's progress to ``sub`` too (bluesky-style subscriber)."""
        self._subscribers.append(sub)

    def execute(self, first_step: int, plan_state: ResumeState | None,
                step_begun: bool) -> RunOutcome:
        status, message = "failed", ""
        error: BaseException | None = None
        try:
            with self._sigint():
                if first_step == 0 and plan_state is None and not step_begun:
                    self.writer.record(Kind.RUN_START, t_chip_s=self.backend.clock.now(),
                                       payload={"steps": [s.routine for s in self.protocol.steps]})
                for step in self.protocol.steps[first_step:]:
                    resumed = step.index == first_step
                    self._run_step(step, plan_state if resumed else None,
                                   begun=step_begun and resumed)
                status = "completed"
        except RunInterrupted as e:
            status, message = ("aborted" if e.aborted else "paused"), str(e)
        except KeyboardInterrupt as e:
            status, message, error = "interrupted", "stopped by a second Ctrl+C", e
        except BaseException as e:
            message, error = f"{type(e).__name__}: {e}", e
        with self._signals_deferred():
            end_written = self._finish(status, message)
        if error is not None:
            raise error
        if not end_written and self.writer.broken is not None:
            raise self.writer.broken  # never report a run the file does not call ended
        return RunOutcome(self.writer.path, status, message)

    def _finish(self, status: str, message: str) -> bool:
        """Safe state, RUN_END, final rewrite, lock, backend — whatever happened before.
        Returns whether the RUN_END record was committed."""
        safe = self._safe_state()
        end_written = False
        try:
            self.writer.record(Kind.RUN_END, t_chip_s=self.backend.clock.now(), payload={
                "status": status, "message": message, "safe_state_reached": safe,
                "ledger": self.backend.ledger.snapshot()})
            end_written = True
        except Exception:  # a StorageFault is kept in writer.broken; the caller reports it
            pass
        try:
            self.writer.close_and_compact()
        except Exception as e:  # the closed, uncompacted file is complete: say so, go on
            print(f"labctl: the run file was not compacted ({type(e).__name__}: "
                  f"{str(e).splitlines()[0] if str(e) else ''}); it is complete as it is",
                  file=sys.stderr)
        with contextlib.suppress(Exception):
            self.writer.release()
        with contextlib.suppress(Exception):
            self.backend.close()
        for sub in self._subscribers:
            with contextlib.suppress(Exception):
                sub.close()
        return end_written

    @contextlib.contextmanager
    def _signals_deferred(self) -> Iterator[None]:
        """While the run file is being finished, a signal must not cut the process between a
        RUN_END that says "completed" and an exit that says otherwise: it is noted, and the
        file decides what is reported."""
        if not _on_main_thread():
            yield
            return

        def note(signum: int, frame: FrameType | None) -> None:
            print(f"\nlabctl: {signal.Signals(signum).name} while finishing the run file; "
                  "finishing it first", file=sys.stderr, flush=True)

        with _stop_signals_handled_by(note):
            yield

    def _safe_state(self) -> bool:
        try:
            self.backend.safe_state()
            return True
        except Exception:
            return False

    # ---- one step ----
    def _run_step(self, step: Step, resume: ResumeState | None, *, begun: bool) -> None:
        spec = self.registry[step.routine]
        self.rec.step = step.index
        self._step = step
        self._pause_point(step)  # step boundaries are checkpoints too
        if not begun:
            self.writer.record(Kind.STEP_BEGIN, step=step.index, t_chip_s=self.backend.clock.now(),
                               payload={"routine": step.routine, "name": step.name,
                                        "params": step.params, **noise_streams(self.backend)})
        ctx = StepContext(backend=self.rec, params=step.params, step=step.index, seed=self.seed,
                          calibration=self.calibration, sink=self, resume=resume,
                          base_dir=self.protocol.base_dir)
        key = f"step{step.index}"
        label = f"[{step.index + 1}/{len(self.protocol.steps)}] {step.name}"
        for sub in self._subscribers:
            sub.begin(key, label)
        for ck in spec.run(ctx):
            self._pause_point(step)
            self._commit(step, ck)
            for b in ck.pulses:
                self.backend.pulse(b.cells, b.kind, b.amplitude_V, b.gate_V, b.width_s,
                                   b.compliance_A)
            self.progress(step.index, ck.done, ck.total)
        for sub in self._subscribers:
            sub.end(key)
        if self.rec.fast_forwarding:
            raise ResumeDiverged(f"resuming re-executed step {step.index + 1} ({step.name}), "
                                 "which ended before repeating everything its record holds; "
                                 "it does not repeat itself exactly. Stopped in the safe state; "
                                 "start a new run of the protocol.")
        if ctx.calibration_changed:
            self.calibration.note(str(self.writer.path), step.routine)
            try:
                saved = self.calibration.save(self.opts.calibration_dir)
            except (OSError, RuntimeError) as e:  # a full disk: end like the run file's faults
                where = self.calibration.path_for(self.calibration.chip_id,
                                                  self.opts.calibration_dir)
                raise StorageFault(str(where), e, self.writer.next_seq - 1,
                                   run_path=str(self.writer.path)) from e
            self.event(step.index, "calibration record saved", path=str(saved))
        self.writer.record(Kind.STEP_END, step=step.index, t_chip_s=self.backend.clock.now(),
                           payload={"status": "completed", **noise_streams(self.backend)})

    def _commit(self, step: Step, ck: Checkpoint) -> None:
        if self.rec.fast_forwarding and not ck.pulses:
            return  # the checkpoint this resume starts from, yielded again
        if self.rec.fast_forwarding:
            raise ResumeDiverged(f"resuming re-executed step {step.index + 1} ({step.name}), "
                                 "which reached a checkpoint its record does not hold; it does "
                                 "not repeat itself exactly. Stopped in the safe state; start "
                                 "a new run of the protocol.")
        write_ahead(self.writer, self.backend, Kind.CHECKPOINT, step.index, ck.pulses,
                    {"meta": dict(ck.meta), "done": ck.done, "total": ck.total},
                    arrays=dict(ck.state))

    # ---- StepSink ----
    # While a resumed step re-executes what its record holds, what it saves is already in
    # the file: nothing is written twice.
    def save_arrays(self, step: int, arrays: Mapping[str, npt.ArrayLike]) -> None:
        if self.rec.fast_forwarding:
            return
        self.writer.record(Kind.ARRAY, step=step, t_chip_s=self.backend.clock.now(),
                           payload={"names": list(arrays)}, arrays=arrays)

    def save_result(self, step: int, figures: Mapping[str, Any]) -> None:
        self.step_results.setdefault(step, {}).update(figures)
        if self.rec.fast_forwarding:
            return
        self.writer.record(Kind.RESULT, step=step, t_chip_s=self.backend.clock.now(),
                           payload=dict(figures))

    def event(self, step: int, message: str, **data: Any) -> None:
        if self.rec.fast_forwarding:
            return
        self._note(step, message, **data)

    def _note(self, step: int, message: str, **data: Any) -> None:
        self.writer.record(Kind.EVENT, step=step, t_chip_s=self.backend.clock.now(),
                           payload={"message": message, **data})

    def progress(self, step: int, done: float, total: float, what: str = "") -> None:
        """A checkpoint's or :meth:`StepContext.progress`'s report, to every subscriber.
        Progress is display only: it is not recorded in the run file."""
        if total <= 0:
            return
        for sub in self._subscribers:
            sub.update(f"step{step}", done, total, what)

    # ---- Ctrl+C: pause at the next checkpoint ----
    @contextlib.contextmanager
    def _sigint(self) -> Iterator[None]:
        if not _on_main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self._interrupt:
                raise KeyboardInterrupt
            self._interrupt = True
            if signum == signal.SIGINT:
                print("\nlabctl: Ctrl+C — pausing at the next cell batch (Ctrl+C again to stop "
                      "now)", file=sys.stderr, flush=True)
            else:  # SIGTERM (kill, systemd, a scheduler) or SIGHUP (the terminal went away)
                self._terminate = signal.Signals(signum).name
                print(f"\nlabctl: {self._terminate} — aborting at the next cell batch",
                      file=sys.stderr, flush=True)

        with _stop_signals_handled_by(handler):
            yield

    def _stop_check(self) -> None:
        """Before every pulse, read and MVM batch of a routine (the recording backend calls
        it): a pending Ctrl+C or SIGTERM stops the step there, whatever the routine."""
        if self._interrupt and self._step is not None:
            self._pause_point(self._step)

    def _pause_point(self, step: Step) -> None:
        if not self._interrupt and self.opts.stop_requested is not None:
            reason = self.opts.stop_requested()
            if reason:
                self._interrupt, self._terminate = True, reason
        if not self._interrupt:
            return
        self._safe_state()
        where = f"step {step.index + 1} ({step.name})"
        if self._terminate:
            self._note(step.index, f"aborted at a checkpoint ({self._terminate})")
            raise RunInterrupted(f"aborted before the next cell batch in {where} "
                                 f"({self._terminate})", aborted=True)
        if not self.interactive:
            self._note(step.index, "aborted at a checkpoint (Ctrl+C, no terminal to ask)")
            raise RunInterrupted(f"aborted before the next cell batch in {where}", aborted=True)
        self._note(step.index, "paused at a checkpoint")
        with contextlib.ExitStack() as held:
            for sub in self._subscribers:
                held.enter_context(sub.hold())
            self._ask(step, where)

    def _ask(self, step: Step, where: str) -> None:
        while True:
            print(f"labctl: paused before the next cell batch in {where}; hardware in its "
                  "safe state. [r]esume or [a]bort? ", end="", file=sys.stderr, flush=True)
            answer = sys.stdin.readline().strip().lower()
            if answer in ("r", "resume"):
                self._interrupt = False
                self._note(step.index, "resumed after pause")
                return
            if answer in ("a", "abort", ""):
                self._note(step.index, "aborted at a checkpoint by the user")
                raise RunInterrupted(f"aborted before the next cell batch in {where}", aborted=True)
