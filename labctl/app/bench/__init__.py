"""``labctl bench``: performance and quality figures as ratios against a floor measured in
the same run. Each section is a module with ``run(quick: bool) -> dict[str, float]``;
sections are imported only when run. Results are a flat JSON object, metadata under "meta"
(date, machine, per-section and total wall time: what ``labctl.app.docs_gen`` prints beside
the figures in the docs).

Progress: every section is a task of the :class:`~labctl.runs.progress.ProgressSubscriber` given
to :func:`run_bench`. A section whose ``run`` also takes ``progress`` gets a function
``progress(done, total, what="")`` to report its own loops with (training steps, samples),
which gives a finer estimate of the time left than the section count.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from labctl.runs.progress import NoProgress, ProgressSubscriber, task

SECTIONS: dict[str, str] = {
    "sim": "labctl.app.bench.sim",
    "calibration": "labctl.app.bench.calibration",
    "wire": "labctl.app.bench.wire",
    "inference": "labctl.app.bench.inference",
    "runs": "labctl.app.bench.runs",
    "dies": "labctl.app.bench.dies",
}


def run_bench(only: list[str] | None = None, quick: bool = False,
              blas_threads: int | None = 1,
              progress: ProgressSubscriber | None = None,
              command: str | None = None) -> dict[str, Any]:
    """Run the named sections (all by default). ``blas_threads`` pins the BLAS thread pool
    for every section — floor and measured path alike — so ratios do not swing with the
    load on a small shared machine (``None``: leave the library default). Each section is
    reported to ``progress`` as a task; ``command`` (what the user typed) goes into the
    metadata the docs quote."""
    import contextlib

    from threadpoolctl import threadpool_info, threadpool_limits

    limit = (threadpool_limits(limits=blas_threads, user_api="blas") if blas_threads
             else contextlib.nullcontext())
    with limit:
        result = _run_sections(only, quick, progress or NoProgress(), command)
    result["meta"]["blas_threads"] = blas_threads or [
        p.get("num_threads") for p in threadpool_info() if p.get("user_api") == "blas"]
    return result


def machine_description() -> dict[str, Any]:
    """What a reader needs to compare timings: CPU model and count, OS, Python, and the
    1-minute load average when the run started (other work on a shared machine)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load: float | None = round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        load = None
    return {"cpu_model": cpu, "cpus": os.cpu_count(), "machine": platform.machine(),
            "os": platform.platform(terse=True), "python": platform.python_version(),
            "load_1min_at_start": load}


def _run_sections(only: list[str] | None, quick: bool, progress: ProgressSubscriber,
                  command: str | None) -> dict[str, Any]:
    names = only if only else list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown bench section(s) {unknown}; known: {', '.join(SECTIONS)}")
    from labctl import __version__

    result: dict[str, Any] = {}
    meta: dict[str, Any] = {
        "labctl_version": __version__,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **machine_description(),
        "command": command or "labctl.app.bench.run_bench()",
        "quick": quick,
        "sections": names,
        "section_seconds": {},
    }
    t_all = time.perf_counter()
    for k, name in enumerate(names):
        mod = importlib.import_module(SECTIONS[name])
        t0 = time.perf_counter()
        with task(progress, f"bench:{name}", f"[{k + 1}/{len(names)}] bench {name}") as report:
            if "progress" in inspect.signature(mod.run).parameters:
                figures: dict[str, float] = mod.run(quick=quick, progress=report)
            else:
                figures = mod.run(quick=quick)
        meta["section_seconds"][name] = round(time.perf_counter() - t0, 2)
        result.update(figures)
    meta["total_seconds"] = round(time.perf_counter() - t_all, 2)
    result["meta"] = meta
    return result


def write_json(result: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def median_time_s(fn: Any, *, repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    import numpy as np

    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def interleaved_ratio(
    fn: Any, floor: Any, *, repeats: int, warmup: int = 5
) -> tuple[float, float, float]:
    """(median fn time / median floor time, median fn s, median floor s), timing the two
    alternately call by call so that machine load falls on both alike."""
    import numpy as np

    for _ in range(warmup):
        fn()
        floor()
    t_fn, t_floor = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        floor()
        t1 = time.perf_counter()
        fn()
        t2 = time.perf_counter()
        t_floor.append(t1 - t0)
        t_fn.append(t2 - t1)
    f, c = float(np.median(t_fn)), float(np.median(t_floor))
    return f / c, f, c
