"""Running a protocol: steps, checkpoints, pause / abort, resume, and the safe state.

The runner owns the backend and the run file. For each step it drives the routine's
generator; at every :class:`~labctl.routine.Checkpoint` it (1) honours a pending Ctrl+C
(pause: ask resume/abort on a TTY; otherwise abort), (2) commits the checkpoint — state and
planned pulses — to the run file, (3) applies the planned pulses. Every way out of a run —
completion, abort, error, a second Ctrl+C — ends in ``backend.safe_state()`` and a
RUN_END record saying how it ended (as far as the process lives to write it).

``labctl.runner`` may import ``calibration`` (lazily, for the routine registry); nothing
else in the labctl core does.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import platform
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from labctl.backend import BackendBase
from labctl.errors import ConfigError, RunInterrupted
from labctl.progress import Progress
from labctl.protocol import (
    Protocol,
    Step,
    check_against_chip,
    load_protocol,
    parse_protocol_text,
)
from labctl.recording import RecordingBackend, pulse_rows
from labctl.replay import plan_resume, replay
from labctl.routine import Checkpoint, ResumeState, RoutineSpec, StepContext
from labctl.station import StationSpec, load_station, parse_station
from labctl.store.calibration import CalibrationRecord
from labctl.store.reader import RunReader
from labctl.store.schema import Kind
from labctl.store.writer import RunWriter


def load_registry() -> dict[str, RoutineSpec]:
    """Every routine a protocol may name (imports the calibration package)."""
    from calibration import registry

    return registry()


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
    progress: bool | None = None
    """Show a progress bar (default: when stderr is a TTY)."""


@dataclass
class RunOutcome:
    path: Path
    status: str
    """completed | aborted | failed | interrupted | nothing-to-do"""
    message: str = ""


# ---------------------------------------------------------------- entry points
def run(opts: RunOptions, *, registry: Mapping[str, RoutineSpec] | None = None) -> RunOutcome:
    """Start (or, with ``opts.resume``, continue) a run. Validation errors raise
    :class:`ConfigError` before any hardware action."""
    reg = dict(registry) if registry is not None else load_registry()
    if opts.resume:
        return _resume(opts, reg)
    if not opts.protocol:
        raise ConfigError("labctl run", "PROTOCOL", "give a protocol file (or --resume RUN.h5)")
    protocol = load_protocol(opts.protocol, reg)                    # 1. the file, no backend
    spec, seed = _effective_station(opts.station, opts.seed)        # 2. the station file
    out = Path(opts.out) if opts.out else _default_out(protocol)
    if out.exists():
        raise ConfigError("labctl run", "--out", f"{out} exists; a run file is never "
                          f"overwritten — choose another name, or continue it with --resume")
    from labctl.station import open_backend

    backend = open_backend(spec)                                    # 3. no operation yet
    try:
        check_against_chip(protocol, reg, backend.chip, backend.envelope)  # 4. still none
        calibration = _load_calibration(backend, opts)
        writer = RunWriter.create(out, _provenance(protocol, spec, seed, backend))
    except BaseException:
        backend.close()
        raise
    runner = Runner(protocol, reg, backend, writer, calibration, seed=seed, opts=opts)
    return runner.execute(first_step=0, plan_state=None, step_begun=False)


def _resume(opts: RunOptions, reg: dict[str, RoutineSpec]) -> RunOutcome:
    path = Path(str(opts.resume))
    with RunReader(path) as rd:
        attrs = rd.attrs
        source = f"{path} (recorded protocol)"
        protocol = parse_protocol_text(str(attrs.get("protocol_text", "")), source, reg,
                                       Path(str(attrs.get("protocol_dir", "."))))
        if opts.protocol:
            given = load_protocol(opts.protocol, reg)
            if given.text != protocol.text:
                raise ConfigError(opts.protocol, "(file)", f"differs from the protocol recorded "
                                  f"in {path}; a resume runs the recorded protocol")
        if opts.station or opts.seed is not None:
            raise ConfigError("labctl run", "--resume", "a resume uses the station and seed "
                              "recorded in the run file; do not give --station or --seed")
        station_map = json.loads(str(attrs.get("station_effective", "{}")))
        spath = str(attrs.get("station_path", ""))
        spec = parse_station(station_map, f"{path} (recorded station)",
                             Path(spath) if spath else None)
        seed = int(attrs.get("seed", 0))
        if rd.complete:
            return RunOutcome(path, "nothing-to-do", "the run had already completed")
        _check_recorded_params(rd, protocol)
        plan = plan_resume(rd, len(protocol.steps))
        from labctl.station import open_backend

        backend = open_backend(spec)
        try:
            if backend.chip.chip_id != attrs.get("chip_id"):
                raise ConfigError(str(path), "chip_id", f"run was on chip {attrs.get('chip_id')!r}"
                                  f" but the station now has {backend.chip.chip_id!r}")
            check_against_chip(protocol, reg, backend.chip, backend.envelope)
            calibration = _load_calibration(backend, opts)
            stats: dict[str, Any] = {"replayed_pulses": 0, "replayed_reads": 0}
            if backend.capabilities.virtual_clock:
                stats = replay(rd, backend, plan)
            ledger_after_replay = backend.ledger.snapshot()
        except BaseException:
            backend.close()
            raise
        n_resumed = int(attrs.get("resume_count", 0)) + 1
    try:
        writer = RunWriter.continue_file(path, {"resume_count": n_resumed})
    except BaseException:
        backend.close()
        raise
    runner = Runner(protocol, reg, backend, writer, calibration, seed=seed, opts=opts)
    try:
        writer.record(Kind.RESUME, t_chip_s=backend.clock.now(), payload={
            "resume": n_resumed, "first_step": plan.first_step, "cut_seq": plan.cut_seq,
            "checkpoint_seq": plan.resume_state.checkpoint_seq if plan.resume_state else None,
            "not_replayed": plan.not_replayed, "host": socket.gethostname(),
            "ledger_after_replay": ledger_after_replay, **stats})
    except BaseException:
        writer.close()
        backend.close()
        raise
    return runner.execute(first_step=plan.first_step, plan_state=plan.resume_state,
                          step_begun=plan.step_begun)


# ---------------------------------------------------------------- the runner
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
        self.rec = RecordingBackend(backend, writer)
        self.calibration = calibration
        self._interrupt = False
        tty = sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty()
        self.interactive = tty if opts.interactive is None else opts.interactive

    def execute(self, first_step: int, plan_state: ResumeState | None,
                step_begun: bool) -> RunOutcome:
        status, message = "failed", ""
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
        except KeyboardInterrupt:
            status, message = "interrupted", "stopped by a second Ctrl+C"
            raise
        except BaseException as e:
            message = f"{type(e).__name__}: {e}"
            raise
        finally:
            safe = self._safe_state()
            with contextlib.suppress(Exception):
                self.writer.record(Kind.RUN_END, t_chip_s=self.backend.clock.now(), payload={
                    "status": status, "message": message, "safe_state_reached": safe,
                    "ledger": self.backend.ledger.snapshot()})
            with contextlib.suppress(Exception):
                self.writer.close()
            with contextlib.suppress(Exception):
                self.backend.close()
        return RunOutcome(self.writer.path, status, message)

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
        if not begun:
            self.writer.record(Kind.STEP_BEGIN, step=step.index, t_chip_s=self.backend.clock.now(),
                               payload={"routine": step.routine, "name": step.name,
                                        "params": step.params})
        ctx = StepContext(backend=self.rec, params=step.params, step=step.index, seed=self.seed,
                          calibration=self.calibration, sink=self, resume=resume,
                          base_dir=self.protocol.base_dir)
        show = sys.stderr.isatty() if self.opts.progress is None else self.opts.progress
        bar = Progress(f"[{step.index + 1}/{len(self.protocol.steps)}] {step.name}", enabled=show)
        try:
            for ck in spec.run(ctx):
                self._pause_point(step)
                self._commit(step, ck)
                for b in ck.pulses:
                    self.backend.pulse(b.cells, b.kind, b.amplitude_V, b.gate_V, b.width_s,
                                       b.compliance_A)
                bar.update(ck.done, ck.total)
        finally:
            bar.close()
        if ctx.calibration_changed:
            self.calibration.note(str(self.writer.path), step.routine)
            saved = self.calibration.save(self.opts.calibration_dir)
            self.event(step.index, "calibration record saved", path=str(saved))
        self.writer.record(Kind.STEP_END, step=step.index, t_chip_s=self.backend.clock.now(),
                           payload={"status": "completed"})

    def _commit(self, step: Step, ck: Checkpoint) -> None:
        env = self.backend.envelope
        chip = self.backend.chip
        parts, batches = [], []
        for b in ck.pulses:
            b.cells.check_bounds(chip.n_tiles, chip.n_rows, chip.n_cols)
            rows = pulse_rows(b.cells, b.kind, b.amplitude_V, b.gate_V, b.width_s, b.compliance_A)
            env.check_pulse(b.kind.terminal, rows["amplitude_V"], rows["gate_V"], rows["width_s"],
                            None if b.compliance_A is None else rows["compliance_A"])
            parts.append(rows)
            batches.append([b.kind.value, len(rows)])
        self.writer.record(
            Kind.CHECKPOINT, step=step.index, t_chip_s=self.backend.clock.now(),
            payload={"meta": dict(ck.meta), "batches": batches, "done": ck.done,
                     "total": ck.total},
            arrays=dict(ck.state), pulses=np.concatenate(parts) if parts else None)

    # ---- StepSink ----
    def save_arrays(self, step: int, arrays: Mapping[str, npt.ArrayLike]) -> None:
        self.writer.record(Kind.ARRAY, step=step, t_chip_s=self.backend.clock.now(),
                           payload={"names": list(arrays)}, arrays=arrays)

    def save_result(self, step: int, figures: Mapping[str, Any]) -> None:
        self.writer.record(Kind.RESULT, step=step, t_chip_s=self.backend.clock.now(),
                           payload=dict(figures))

    def event(self, step: int, message: str, **data: Any) -> None:
        self.writer.record(Kind.EVENT, step=step, t_chip_s=self.backend.clock.now(),
                           payload={"message": message, **data})

    # ---- Ctrl+C: pause at the next checkpoint ----
    @contextlib.contextmanager
    def _sigint(self) -> Iterator[None]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self._interrupt:
                raise KeyboardInterrupt
            self._interrupt = True
            print("\nlabctl: Ctrl+C — pausing at the next checkpoint (Ctrl+C again to stop "
                  "now)", file=sys.stderr, flush=True)

        old = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old)

    def _pause_point(self, step: Step) -> None:
        if not self._interrupt:
            return
        self._safe_state()
        where = f"step {step.index + 1} ({step.name})"
        if not self.interactive:
            self.event(step.index, "aborted at a checkpoint (Ctrl+C, no terminal to ask)")
            raise RunInterrupted(f"aborted at a checkpoint in {where}", aborted=True)
        self.event(step.index, "paused at a checkpoint")
        while True:
            print(f"labctl: paused at a checkpoint in {where}; hardware in its safe state. "
                  "[r]esume or [a]bort? ", end="", file=sys.stderr, flush=True)
            answer = sys.stdin.readline().strip().lower()
            if answer in ("r", "resume"):
                self._interrupt = False
                self.event(step.index, "resumed after pause")
                return
            if answer in ("a", "abort", ""):
                self.event(step.index, "aborted at a checkpoint by the user")
                raise RunInterrupted(f"aborted at a checkpoint in {where}", aborted=True)


# ---------------------------------------------------------------- helpers
def _load_calibration(backend: BackendBase, opts: RunOptions) -> CalibrationRecord:
    c = backend.chip
    return CalibrationRecord.load(c.chip_id, (c.n_tiles, c.n_rows, c.n_cols),
                                  opts.calibration_dir)


def _check_recorded_params(rd: RunReader, protocol: Protocol) -> None:
    """A resume re-validates the recorded protocol with today's code; if that fills in
    different parameters (defaults changed by an upgrade), the resumed steps would not be
    the ones that started — refuse."""
    for r in rd.of_kind(Kind.STEP_BEGIN):
        if not 0 <= r.step < len(protocol.steps):
            raise ConfigError(str(rd.path), f"steps[{r.step}]", "not in the recorded protocol")
        now = json.loads(json.dumps(protocol.steps[r.step].params))
        if now != r.payload.get("params"):
            raise ConfigError(str(rd.path), f"steps[{r.step}].params",
                              "the step started with other parameters than this labctl "
                              "version gives the recorded protocol (defaults changed?); "
                              "cannot resume it safely")


def _effective_station(station: str | None, seed: int | None) -> tuple[StationSpec, int]:
    spec = load_station(station)
    st = dict(spec.station)
    if seed is None:
        raw = st.get("seed", 0)
        seed = raw if isinstance(raw, int) and not isinstance(raw, bool) else 0
    if seed < 0:
        raise ConfigError("labctl run", "--seed", f"must be a non-negative integer, got {seed}")
    if spec.backend == "sim":
        st["seed"] = seed
    return replace(spec, station=st), seed


def _default_out(protocol: Protocol) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Path("runs") / f"{Path(protocol.source).stem}-{stamp}.h5"


def _provenance(protocol: Protocol, spec: StationSpec, seed: int,
                backend: BackendBase) -> dict[str, Any]:
    from labctl import __version__

    station_text = spec.path.read_text(encoding="utf-8") if spec.path else \
        yaml.safe_dump({"station": dict(spec.station)})
    caps = backend.capabilities
    return {
        "run_id": uuid.uuid4().hex,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "labctl_version": __version__,
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "user": _user(),
        "argv": " ".join(sys.argv),
        "protocol_source": protocol.source,
        "protocol_dir": str(protocol.base_dir),
        "protocol_name": protocol.name,
        "protocol_text": protocol.text,
        "station_source": spec.source,
        "station_path": str(spec.path.resolve()) if spec.path else "",
        "station_text": station_text,
        "station_effective": json.dumps({"station": dict(spec.station),
                                         "instruments": dict(spec.instruments)}, default=str),
        "seed": seed,
        "backend": type(backend).__name__,
        "chip_id": backend.chip.chip_id,
        "chip": json.dumps(backend.chip.to_dict()),
        "envelope": json.dumps(backend.envelope.to_dict()),
        "capabilities": json.dumps({k: getattr(caps, k) for k in caps.__dataclass_fields__}),
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""
