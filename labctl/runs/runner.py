"""Starting and resuming runs: validate everything, open the backend, set up the run file.

A fresh run validates the protocol (no backend yet), loads the station, opens the backend,
runs the chip-dependent checks (still no operation), loads the chip's calibration record and
creates the run file with its provenance; a resume reads all of that back from the run file,
plans the resume (:mod:`labctl.runs.replay`), restores a simulated chip by replay, and reopens the
file for appending. Both then hand over to :class:`labctl.runs.run_loop.Runner`.

``labctl.runs.runner`` may import ``calibration`` (lazily, for the routine registry); nothing
else in the labctl core does.
"""

from __future__ import annotations

import getpass
import json
import platform
import socket
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labctl.core.backend import BackendBase
from labctl.core.calibration_record import CalibrationRecord, calibration_dir
from labctl.core.errors import ConfigError
from labctl.core.output_paths import check_writable_dir
from labctl.core.routine import RoutineSpec
from labctl.core.station_schema import SEED_MAX, seed_of
from labctl.core.station_spec import StationSpec, chip_state_in_process, load_station, parse_station
from labctl.core.validation import shown
from labctl.runs import backends
from labctl.runs import registry as routine_registry
from labctl.runs.fast_forward import FastForward, recorded_ops
from labctl.runs.progress import resolve_mode
from labctl.runs.protocol import Protocol, check_against_chip, load_protocol, parse_protocol_text
from labctl.runs.replay import plan_resume, replay
from labctl.runs.run_loop import Runner, RunOptions, RunOutcome
from labctl.runs.store.lock import RunFileLock, run_file_path
from labctl.runs.store.reader import RunReader
from labctl.runs.store.schema import Kind
from labctl.runs.store.writer import RunWriter

__all__ = ["RunOptions", "RunOutcome", "Runner", "load_registry", "run"]


def load_registry() -> dict[str, RoutineSpec]:
    """Every routine a protocol may name: calibration's and the inference workloads'."""
    return routine_registry.routines()


# ---------------------------------------------------------------- entry points
def run(opts: RunOptions, *, registry: Mapping[str, RoutineSpec] | None = None) -> RunOutcome:
    """Start (or, with ``opts.resume``, continue) a run. Validation errors raise
    :class:`ConfigError` before any hardware action."""
    reg = dict(registry) if registry is not None else load_registry()
    try:
        resolve_mode(opts.progress)
    except ValueError as e:
        raise ConfigError("labctl run", "--progress", str(e)) from None
    if opts.resume:
        return _resume(opts, reg)
    if not opts.protocol:
        raise ConfigError("labctl run", "PROTOCOL", "give a protocol file (or --resume RUN.h5)")
    protocol = load_protocol(opts.protocol, reg)                    # 1. the file, no backend
    spec, seed = _effective_station(opts.station, opts.seed)        # 2. the station file
    out = run_file_path(opts.out) if opts.out else _default_out(protocol)
    _check_outputs(out, opts)              # writable, before the lock file and any operation
    lock = RunFileLock.acquire(out)        # held until the run's file is closed for good
    try:
        if out.exists():
            raise ConfigError("labctl run", "--out", f"{out} exists; a run file is never "
                              "overwritten — choose another name, or continue it with --resume")
        backend = backends.open_backend(spec)                       # 3. no operation yet
    except BaseException:
        lock.release()
        raise
    try:
        check_against_chip(protocol, reg, backend.chip, backend.envelope)  # 4. still none
        calibration = _load_calibration(backend, opts)
        writer = RunWriter.create(out, _provenance(protocol, spec, seed, backend), lock)
        writer.fsync = not backend.capabilities.virtual_clock
    except BaseException:
        backend.close()
        lock.release()
        raise
    runner = Runner(protocol, reg, backend, writer, calibration, seed=seed, opts=opts)
    return runner.execute(first_step=0, plan_state=None, step_begun=False)


def _resume(opts: RunOptions, reg: dict[str, RoutineSpec]) -> RunOutcome:
    path = run_file_path(str(opts.resume))
    if not path.is_file():
        raise ConfigError(str(path), "(file)", "run file not found")
    lock = RunFileLock.acquire(path)       # before reading: the file must not change under us
    try:
        return _resume_locked(opts, reg, path, lock)
    except BaseException:
        lock.release()                     # (a no-op once the runner has released it)
        raise


def _resume_locked(opts: RunOptions, reg: dict[str, RoutineSpec], path: Path,
                   lock: RunFileLock) -> RunOutcome:
    lock.remove_dead_temp_files()
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
        if opts.seed is not None:
            raise ConfigError("labctl run", "--seed", "a resume uses the seed recorded in the "
                              "run file; do not give --seed")
        station_map = json.loads(str(attrs.get("station_effective", "{}")))
        spath = str(attrs.get("station_path", ""))
        spec = parse_station(station_map, f"{path} (recorded station)",
                             Path(spath) if spath else None)
        if opts.station:
            # On real instruments an address can change (a re-plugged USB adapter); the chip
            # id check below still guards against resuming on the wrong chip.
            if chip_state_in_process(spec):
                raise ConfigError("labctl run", "--station", "this run was on a simulated chip, "
                                  "which a resume rebuilds from the recorded station; do not "
                                  "give --station")
            spec = load_station(opts.station)
            if chip_state_in_process(spec):
                raise ConfigError(str(opts.station), "station", "a run on real instruments "
                                  "cannot be resumed on a simulated or virtual station")
        seed = _recorded_seed(attrs.get("seed", 0), str(path))
        if rd.complete:
            lock.release()
            return RunOutcome(path, "nothing-to-do", "the run had already completed")
        if rd.damage:
            raise ConfigError(str(path), "(file)", "damaged: " + "; ".join(rd.damage) + " — a "
                              "resume could repeat pulses the unreadable part recorded; "
                              "start a new run (labctl show / export read what is there)")
        _check_outputs(None, opts)
        _check_recorded_params(rd, protocol)
        plan = plan_resume(rd, len(protocol.steps))
        reexecute = recorded_ops(rd, plan.reexecute)
        earlier: dict[int, dict[str, Any]] = {}  # for steps that read them (the report)
        for r in rd.of_kind(Kind.RESULT):
            if 0 <= r.step < plan.first_step:
                earlier.setdefault(r.step, {}).update(r.payload)
        backend = backends.open_backend(spec)
        try:
            if backend.chip.chip_id != attrs.get("chip_id"):
                raise ConfigError(str(path), "chip_id", f"run was on chip {attrs.get('chip_id')!r}"
                                  f" but the station now has {backend.chip.chip_id!r}")
            check_against_chip(protocol, reg, backend.chip, backend.envelope)
            calibration = _load_calibration(backend, opts)
            stats: dict[str, Any] = {"replayed_pulses": 0, "replayed_reads": 0}
            if chip_state_in_process(spec) and backend.capabilities.virtual_clock:
                # The simulated chip died with the killed process: rebuild its state by
                # replaying the record onto a fresh one. A live chip (hardware, or virtual
                # instruments some other process serves) *is* the state: never replay onto it.
                stats = replay(rd, backend, plan)
            ledger_after_replay = backend.ledger.snapshot()
        except BaseException:
            backend.close()
            raise
        n_resumed = int(attrs.get("resume_count", 0)) + 1
    try:
        writer = RunWriter.continue_file(path, {"resume_count": n_resumed}, lock)
        writer.fsync = not backend.capabilities.virtual_clock
    except BaseException:
        backend.close()
        raise
    runner = Runner(protocol, reg, backend, writer, calibration, seed=seed, opts=opts)
    runner.step_results.update(earlier)
    if reexecute:
        replayed = chip_state_in_process(spec) and backend.capabilities.virtual_clock
        runner.rec.fast_forward = FastForward(reexecute, live_chip=not replayed)
    try:
        writer.record(Kind.RESUME, t_chip_s=backend.clock.now(), payload={
            "resume": n_resumed, "first_step": plan.first_step, "cut_seq": plan.cut_seq,
            "checkpoint_seq": plan.resume_state.checkpoint_seq if plan.resume_state else None,
            "not_replayed": plan.not_replayed, "reexecuted": len(reexecute),
            "host": socket.gethostname(),
            "ledger_after_replay": ledger_after_replay, **stats})
    except BaseException:
        writer.release()
        backend.close()
        raise
    return runner.execute(first_step=plan.first_step, plan_state=plan.resume_state,
                          step_begun=plan.step_begun)


# ---------------------------------------------------------------- the runner
# ---------------------------------------------------------------- helpers
def _recorded_seed(raw: Any, source: str) -> int:
    """The seed a run file recorded (an int64 attribute), checked like a station's."""
    if isinstance(raw, bool | np.bool_) or not isinstance(raw, int | np.integer) \
            or not 0 <= int(raw) <= SEED_MAX:
        raise ConfigError(source, "seed", f"the recorded seed must be an integer from 0 to "
                          f"2**63 - 1, got {shown(raw)}; the file is damaged or was edited")
    return int(raw)


def _check_outputs(out: Path | None, opts: RunOptions) -> None:
    """The run file's directory and the calibration-record directory are writable — checked
    before the backend opens, so no step forms cells and then cannot save its results."""
    if out is not None:
        check_writable_dir(out.parent, "--out")
    check_writable_dir(calibration_dir(opts.calibration_dir), "--calibration-dir")


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
        seed = seed_of(st, spec.source)  # validated by load_station
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError("labctl run", "--seed", f"must be an integer from 0 to 2**63 - 1, "
                          f"got {shown(seed)}")
    if spec.backend == "sim":
        if seed != st.get("seed", 0) and "chip_id" in st:
            # A different seed is a different simulated chip: it must not share the
            # station's chip id, or it would load another chip's calibration record.
            st["chip_id"] = f"{st['chip_id']}-seed{seed}"
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
