"""Campaigns: one protocol over many dies — a simulated wafer, or a lot of real chips — on
Dask.

The engine is dask.distributed (https://distributed.dask.org): a ``LocalCluster`` of
``workers`` single-threaded worker processes by default, or any running Dask scheduler by
address, so the same code runs on a laptop and on a cluster. Each die is one task
(:func:`labctl.runs.campaign_die.run_die`) that writes its own crash-safe run file through
the ordinary runner. Faults:

- a die that fails is recorded as failed; the others go on;
- a worker killed mid-die is replaced by its nanny and the scheduler re-runs the task
  (``distributed.scheduler.allowed-failures`` times), which resumes the die from its run
  file without re-pulsing a verified cell;
- a campaign killed as a whole (client, scheduler, every worker) is finished by
  :func:`resume_campaign` (``labctl run --resume DIR``), which skips completed dies.

Real chips: one die per station file, at most one worker per station (a station's die is one
task, guarded by a lock), and the local cluster gets one worker per station.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl.core.errors import ConfigError, RunInterrupted
from labctl.runs.campaign_die import DieOutcome, DieTask, run_die
from labctl.runs.campaign_plan import (
    MANIFEST,
    DieEntry,
    Manifest,
    plan_stations,
    plan_wafer,
)
from labctl.runs.campaign_progress import CampaignProgress

if TYPE_CHECKING:
    import xarray as xr
    from distributed import Client, Future
    from rich.console import Console

__all__ = ["CampaignResult", "resume_campaign", "run_campaign", "show_campaign"]

STATION_RESOURCE_PREFIX = "labctl-station-"
STOP_FILE = "stop"
"""``DIR/stop``: while it exists, the campaign's dies abort at their next checkpoint."""
STOP_WAIT_S = 120.0
"""After Ctrl+C, how long to wait for running dies to reach a checkpoint."""
ALLOWED_FAILURES = 3
"""Times a die's task may lose its worker before the die is recorded as failed."""
POLL_S = 0.2


class CampaignResult:
    """Outcome of one campaign execution: the die outcomes of this process and the summary."""

    def __init__(self, root: Path, outcomes: dict[str, DieOutcome], summary: xr.Dataset,
                 wall_s: float, startup_s: float) -> None:
        self.root = root
        self.outcomes = outcomes
        self.summary = summary
        self.wall_s = wall_s
        self.startup_s = startup_s

    @property
    def n_failed(self) -> int:
        return sum(1 for s in self.summary["status"].values if s != "completed")


def run_campaign(protocol: str | Path, out_dir: str | Path, *, n_dies: int | None = None,
                 stations: Sequence[str | Path] | None = None, workers: int | None = None,
                 scheduler: str | None = None, seed: int = 0,
                 progress: bool | None = None) -> xr.Dataset:
    """Run ``protocol`` over ``n_dies`` simulated dies of a wafer, or over one die per
    station file, and return the campaign summary (also written to ``out_dir/summary.nc``).

    Each die gets its own chip seed (drawn from ``seed``: the same seed gives the same
    wafer), its own run file under ``out_dir/dies/`` and its (x, y) position. A directory
    that already holds this same campaign (same protocol text, seed and dies) is finished
    rather than refused; any other existing campaign is refused. ``progress``: ``None`` a
    bar on a terminal and log lines otherwise (or ``$LABCTL_PROGRESS``), ``True`` a bar,
    ``False`` silent.
    """
    return start_campaign(protocol, out_dir, n_dies=n_dies, stations=stations,
                          workers=workers, scheduler=scheduler, seed=seed,
                          progress=progress).summary


def start_campaign(protocol: str | Path, out_dir: str | Path, *, n_dies: int | None = None,
                   stations: Sequence[str | Path] | None = None, workers: int | None = None,
                   scheduler: str | None = None, seed: int = 0,
                   progress: bool | str | None = None, base_station: str | Path | None = None,
                   client: Client | None = None) -> CampaignResult:
    """:func:`run_campaign` with what the CLI and the bench need besides: the simulated
    dies' base station (``--station``), an existing Dask client, the die outcomes."""
    from labctl.runs.protocol import load_protocol
    from labctl.runs.runner import load_registry

    root = Path(out_dir)
    if (n_dies is None) == (not stations):
        raise ConfigError("labctl run", "--dies", "give either --dies N (simulated dies) or "
                          "--stations FILE... (one die per station), not both and not neither")
    if stations and base_station is not None:
        raise ConfigError("labctl run", "--station", "with --stations each die has its own "
                          "station; do not give --station")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("labctl run", "--seed", f"must be a non-negative integer, got {seed!r}")
    proto = Path(protocol)
    load_protocol(proto, load_registry())  # every protocol error before any cluster starts
    if stations:
        if workers is not None and workers != len(stations):
            raise ConfigError("labctl run", "--workers", f"a campaign over stations runs one "
                              f"worker per station ({len(stations)}); do not give --workers")
        workers = len(stations) if scheduler is None else None
    _check_workers(workers, scheduler)
    if (root / MANIFEST).is_file():
        old = Manifest.load(root)
        new = _plan(root / ".replan", proto, n_dies, stations, seed, base_station)
        shutil.rmtree(root / ".replan", ignore_errors=True)
        if not _same_campaign(old, new):
            raise ConfigError(str(root), MANIFEST, "holds another campaign; a campaign "
                              "directory is never overwritten — choose another --out, or "
                              f"finish that one with: labctl run --resume {root}")
        return _execute(root, old, workers, scheduler, progress, client)
    if root.exists() and any(root.iterdir()):
        raise ConfigError(str(root), "--out", "exists and is not empty; a campaign needs a "
                          "new directory")
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    try:
        manifest = _plan(root, proto, n_dies, stations, seed, base_station)
    except BaseException:
        shutil.rmtree(root / "dies", ignore_errors=True)
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise
    manifest.save(root)
    from labctl.runs.campaign_summary import write_summary

    write_summary(root, manifest)  # every die "not started": `labctl show DIR` works at once
    return _execute(root, manifest, workers, scheduler, progress, client)


def resume_campaign(out_dir: str | Path, *, workers: int | None = None,
                    scheduler: str | None = None, progress: bool | str | None = None,
                    client: Client | None = None) -> CampaignResult:
    """Finish an interrupted campaign: completed dies are skipped, interrupted ones resumed
    from their run files, failed ones tried again, unstarted ones started."""
    root = Path(out_dir)
    manifest = Manifest.load(root)
    proto = Path(manifest.protocol_path)
    if not proto.is_file() or proto.read_text(encoding="utf-8") != manifest.protocol_text:
        raise ConfigError(str(proto), "(file)", "the campaign's protocol file is missing or "
                          "changed since the campaign started; dies not yet started would run "
                          "another protocol — restore it, or start a new campaign")
    if manifest.kind == "stations":
        if workers is not None and workers != len(manifest.dies):
            raise ConfigError("labctl run", "--workers", "a campaign over stations runs one "
                              "worker per station; do not give --workers")
        workers = len(manifest.dies) if scheduler is None else None
    _check_workers(workers, scheduler)
    return _execute(root, manifest, workers, scheduler, progress, client)


def show_campaign(root: Path, console: Console) -> None:
    """``labctl show DIR``: the campaign's dies and every result's mean, spread and extreme
    dies (:func:`labctl.runs.campaign_summary.show_lines`)."""
    from labctl.runs.campaign_summary import show_lines

    for line in show_lines(Path(root)):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _plan(root: Path, proto: Path, n_dies: int | None, stations: Sequence[str | Path] | None,
          seed: int, base_station: str | Path | None) -> Manifest:
    if stations:
        return plan_stations(root, proto, stations, seed)
    assert n_dies is not None
    return plan_wafer(root, proto, n_dies, seed, base_station)


def _same_campaign(a: Manifest, b: Manifest) -> bool:
    """Same protocol text, seed, wafer model and dies (compared as JSON: NaN positions of
    chips not on a wafer compare equal)."""
    import json
    from dataclasses import asdict

    def key(m: Manifest) -> str:
        return json.dumps([m.kind, m.protocol_text, m.seed, m.wafer,
                           [asdict(e) for e in m.dies]])

    return key(a) == key(b)


def _check_workers(workers: int | None, scheduler: str | None) -> None:
    if workers is not None and scheduler is not None:
        raise ConfigError("labctl run", "--workers", "give --workers (a local cluster) or "
                          "--scheduler (an existing one), not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError("labctl run", "--workers", f"must be a positive integer, got "
                          f"{workers!r}")


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler: str | None) -> Iterator[Client]:
    """A client of the given scheduler, or of a new local cluster of ``workers``
    single-threaded worker processes (each die is numpy work that holds the GIL)."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        if scheduler is not None:
            with Client(scheduler, timeout="30s") as client:
                yield client
            return
        n = workers or min(os.cpu_count() or 1, 4)
        with warnings.catch_warnings():
            # no dashboard; the scheduler's small HTTP server moves off a taken port 8787
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
        with cluster, Client(cluster) as client:
            client.run(_leave_ctrl_c_to_the_client)
            yield client


def _leave_ctrl_c_to_the_client() -> None:
    """On a terminal, Ctrl+C reaches every process of the group, local workers included; the
    client stops the dies at their next checkpoint, so the workers ignore it."""
    import signal

    with contextlib.suppress(ValueError):  # not the worker's main thread: nothing to do
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _execute(root: Path, manifest: Manifest, workers: int | None, scheduler: str | None,
             progress: bool | str | None, client: Client | None) -> CampaignResult:
    from labctl.runs.campaign_summary import write_summary

    t0 = time.perf_counter()
    (root / STOP_FILE).unlink(missing_ok=True)  # a new attempt: a former stop is over
    tasks = {e.die_id: _task(root, manifest, e) for e in manifest.dies}
    todo = [e for e in manifest.dies if not _complete(root, e)]
    bar = CampaignProgress(len(manifest.dies), mode=progress)
    bar.skipped(len(manifest.dies) - len(todo))
    outcomes: dict[str, DieOutcome] = {}
    startup = 0.0
    try:
        if todo:
            with contextlib.ExitStack() as stack:
                n = min(workers or min(os.cpu_count() or 1, 4), len(todo))
                c = client if client is not None else stack.enter_context(
                    dask_client(n, scheduler))
                startup = time.perf_counter() - t0
                futures = _submit(c, [tasks[e.die_id] for e in todo])
                try:
                    outcomes = _wait(c, futures, bar, len(manifest.dies) - len(todo))
                except KeyboardInterrupt:
                    _stop(root, futures)
    finally:
        bar.close()
    summary = write_summary(root, manifest)
    if (root / STOP_FILE).exists():
        raise RunInterrupted(f"campaign stopped: running dies aborted at a checkpoint, "
                             f"hardware in its safe state; finish it with: labctl run "
                             f"--resume {root}", aborted=True)
    return CampaignResult(root, outcomes, summary, time.perf_counter() - t0, startup)


def _submit(client: Client, tasks: list[DieTask]) -> dict[Future, DieTask]:
    offered = _offered_resources(client)
    return {client.submit(run_die, t, key=f"labctl-die-{t.die_id}-{uuid.uuid4().hex[:8]}",
                          pure=False, **submit_constraints(t, offered)): t for t in tasks}


def _offered_resources(client: Client) -> set[str]:
    with contextlib.suppress(Exception):
        workers = client.scheduler_info().get("workers", {})
        return {str(k) for w in workers.values() for k in (w.get("resources") or {})}
    return set()


def submit_constraints(task: DieTask, offered: set[str]) -> dict[str, Any]:
    """Where a die may run: a station's die on the worker that offers its station resource
    (``dask worker ... --resources labctl-station-NAME=1`` on the machine wired to it), so
    it reaches its instruments and, with one unit, runs alone there; anywhere otherwise."""
    if task.station_resource and task.station_resource in offered:
        return {"resources": {task.station_resource: 1}}
    return {}


def _stop(root: Path, futures: dict[Future, DieTask]) -> None:
    """Ctrl+C: ask every die to abort at its next checkpoint (safe state, resumable file)
    and wait for them; a second Ctrl+C stops waiting (the dies are then killed with the
    cluster, and their files are still resumable)."""
    import sys

    (root / STOP_FILE).touch()
    print(f"\nlabctl: stopping the campaign — running dies abort at their next checkpoint "
          f"(up to {STOP_WAIT_S:.0f} s; Ctrl+C again to stop now)", file=sys.stderr,
          flush=True)
    deadline = time.monotonic() + STOP_WAIT_S
    with contextlib.suppress(KeyboardInterrupt):
        while time.monotonic() < deadline and not all(f.done() for f in futures):
            time.sleep(POLL_S)


def _wait(client: Client, futures: dict[Future, DieTask], bar: CampaignProgress,
          n_skipped: int) -> dict[str, DieOutcome]:
    topic = next(iter(futures.values())).topic
    outcomes: dict[str, DieOutcome] = {}
    started: set[str] = set()
    pending = dict(futures)
    while pending:
        for fut in [f for f in pending if f.done()]:
            t = pending.pop(fut)
            try:
                outcomes[t.die_id] = fut.result()
            except Exception as e:  # KilledWorker: the die took down its worker every time
                outcomes[t.die_id] = DieOutcome(t.die_id, "failed", f"{type(e).__name__}: {e}")
                _save_outcome(t, outcomes[t.die_id])
        with contextlib.suppress(Exception):
            started = {str(msg.get("die")) for _, msg in client.get_events(topic)
                       if isinstance(msg, dict)}
        done = n_skipped + sum(o.status == "completed" for o in outcomes.values())
        failed = sum(o.status != "completed" for o in outcomes.values())
        bar.update(done, len(started & {t.die_id for t in pending.values()}), failed)
        if pending:
            time.sleep(POLL_S)
    return outcomes


def _save_outcome(task: DieTask, out: DieOutcome) -> None:
    import json
    from dataclasses import asdict

    from labctl.runs.campaign_plan import write_atomic

    write_atomic(Path(task.outcome_file), json.dumps(asdict(out)))


def _task(root: Path, manifest: Manifest, e: DieEntry) -> DieTask:
    r = root.resolve()
    return DieTask(
        die_id=e.die_id, protocol=manifest.protocol_path,
        station=str(e.path(r, "station")), run_file=str(e.path(r, "run_file")),
        seed=e.seed if manifest.kind == "stations" else None,
        calibration_dir=str(r / "calibration-records"),
        outcome_file=str(e.file(r, ".outcome.json")), log_file=str(e.file(r, ".log")),
        lock_file=str(e.file(r, ".lock")), topic=f"labctl-campaign-{manifest.campaign_id}",
        station_resource=(f"{STATION_RESOURCE_PREFIX}{Path(e.station).stem}"
                          if manifest.kind == "stations" else None),
        stop_file=str(r / STOP_FILE))


def _complete(root: Path, e: DieEntry) -> bool:
    from labctl.runs.store.reader import RunReader

    path = e.path(root, "run_file")
    if not path.is_file():
        return False
    try:
        with RunReader(path) as rd:
            return rd.complete
    except (ConfigError, OSError):
        return False

