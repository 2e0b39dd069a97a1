"""One die of a campaign, as a Dask task: start its run, or resume it from its run file.

This function is what a worker executes; it is written so that executing it again is always
safe — after a worker was killed mid-die, after the whole campaign was killed, or for a die
that already finished:

- a completed run file: nothing to do;
- a run file that did not complete: ``labctl.runs.runner`` resumes it (a simulated chip is
  rebuilt by replaying the record; a verified cell is never pulsed again);
- no run file: a fresh run.

While a die runs, its worker holds an exclusive lock on ``dies/ID.lock`` (``flock``: the
kernel releases it when the process dies, however it dies), so two workers can never drive
one die — one chip, one instrument — at the same time, even when a scheduler re-runs a task
it wrongly thought lost. A die that fails returns its failure; it never fails the others.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from labctl.core.errors import ConfigError, LabctlError

LOCK_WAIT_S = 600.0
"""How long a die waits for another process that still holds its lock."""


@dataclass(frozen=True)
class DieTask:
    """Everything a worker needs to run one die (picklable; paths absolute)."""

    die_id: str
    protocol: str
    station: str
    run_file: str
    seed: int | None
    """Run seed; ``None``: the station's own (a simulated die's station holds its seed)."""
    calibration_dir: str
    outcome_file: str
    log_file: str
    lock_file: str
    topic: str
    """Dask event topic the die reports its start on (progress: dies running)."""
    station_resource: str | None
    """Dask worker resource that marks the machine wired to this die's station
    (``labctl-station-<station file stem>``), for a campaign over real stations; ``None``
    for simulated dies. Used only when some worker offers it (see ``campaign._submit``)."""
    stop_file: str
    """While this file exists, dies abort at their next checkpoint and unstarted dies do not
    start (``labctl run`` creates it on Ctrl+C or SIGTERM; a user may ``touch`` it)."""


@dataclass
class DieOutcome:
    die_id: str
    status: str
    """completed | failed | aborted | paused | interrupted (a run's outcome), or stopped (the
    campaign stopped before the die started)"""
    message: str = ""
    attempt: str = ""
    """fresh | resumed | already-complete"""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """CPU time of the worker process during the die (all its threads)."""
    host: str = ""
    pid: int = 0
    peak_rss_MB: float = 0.0

    @classmethod
    def load(cls, path: Path) -> DieOutcome | None:
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None


def run_die(task: DieTask) -> DieOutcome:
    """Run (or finish) one die; never raises for a failure of the die itself."""
    t0, c0 = time.perf_counter(), time.process_time()
    _reset_peak_rss()
    out = DieOutcome(task.die_id, "failed", host=socket.gethostname(), pid=os.getpid())
    try:
        with _die_lock(Path(task.lock_file)):
            _report(task.topic, {"die": task.die_id, "event": "start", "pid": os.getpid(),
                                 "host": out.host})
            with _output_to(Path(task.log_file)):
                out.status, out.message, out.attempt = _run(task)
    except LabctlError as e:
        out.message = str(e)
    except Exception as e:  # a die's bug or fault is that die's failure, not the campaign's
        out.message = f"{type(e).__name__}: {e}"
    out.wall_s = time.perf_counter() - t0
    out.cpu_s = time.process_time() - c0
    out.peak_rss_MB = _peak_rss_MB()
    from labctl.runs.campaign_plan import write_atomic

    write_atomic(Path(task.outcome_file), json.dumps(asdict(out)))
    return out


def _run(task: DieTask) -> tuple[str, str, str]:
    from labctl.runs.runner import RunOptions, run
    from labctl.runs.store.reader import RunReader

    path = Path(task.run_file)
    stop = Path(task.stop_file)
    if stop.exists():
        return "stopped", "the campaign was stopped before this die started", "not-started"

    def stop_requested() -> str | None:
        return f"campaign stop ({stop.name} exists)" if stop.exists() else None

    common = {"calibration_dir": task.calibration_dir, "interactive": False, "progress": False,
              "stop_requested": stop_requested}
    if path.exists():
        try:
            with RunReader(path) as rd:
                complete = rd.complete
        except ConfigError:
            if _has_records(path):  # a real run that cannot be read now: never start afresh
                raise
            # Killed while the file was being created, before its record log existed: no
            # record, so no pulse. Keep the remains for a look and start afresh.
            path.rename(path.with_name(f"{path.name}.unreadable-{int(time.time())}"))
        else:
            if complete:
                return "completed", "", "already-complete"
            o = run(RunOptions(resume=str(path), **common))  # type: ignore[arg-type]
            return o.status, o.message, "resumed"
    o = run(RunOptions(protocol=task.protocol, station=task.station, out=str(path),
                       seed=task.seed, **common))  # type: ignore[arg-type]
    return o.status, o.message, "fresh"


def _has_records(path: Path) -> bool:
    """Whether ``path`` holds a run file's record log with at least one record (so pulses
    may have been applied), however unreadable it is otherwise."""
    from labctl.runs.store.h5open import open_for_reading

    try:  # SWMR read, bounded: the file is damaged
        with open_for_reading(path) as f:
            records = f.get("log/records")
            return records is not None and records.shape[0] > 0
    except (OSError, ValueError, KeyError):
        return False


@contextlib.contextmanager
def _die_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as f:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    f.seek(0)
                    raise ConfigError(str(path), "(lock)", f"the die is still held by "
                                      f"{f.read().strip() or 'another process'} after "
                                      f"{LOCK_WAIT_S:.0f} s; stop that process first") from None
                time.sleep(0.5)
        try:
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} host {socket.gethostname()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Routines print (the report step); on a worker that goes to the die's log file."""
    with path.open("a", encoding="utf-8") as f, contextlib.redirect_stdout(f), \
            contextlib.redirect_stderr(f):
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}", flush=True)
        yield


def _report(topic: str, msg: dict[str, Any]) -> None:
    try:
        from distributed import get_worker

        get_worker().log_event(topic, msg)
    except (ImportError, ValueError):  # not on a Dask worker (run in-process)
        pass


def _reset_peak_rss() -> None:
    """Start this process's peak-RSS count afresh, so the die's figure is the die's own
    (Linux ≥ 4.0: writing 5 to ``/proc/self/clear_refs`` resets ``VmHWM``; proc(5))."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def _peak_rss_MB() -> float:
    """Peak resident set since :func:`_reset_peak_rss`: ``VmHWM`` where Linux offers it.
    ``getrusage``'s ``ru_maxrss`` is the fallback only: Linux carries it across ``exec`` from
    the process a worker was forked from, so on a worker started by a large parent it reads
    the parent's size, not the die's."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024
