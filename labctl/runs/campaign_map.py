"""A function over many simulated dies, on the campaign engine's wafer and Dask cluster,
without run files.

A campaign (:mod:`labctl.runs.campaign`) runs a *protocol* on every die and keeps each
die's crash-safe run file — every pulse write-ahead, so nothing is lost and a resume never
re-applies a pulse. A study that only needs each die's figures — the inference bench, a
sweep of a model over a wafer — pays for that record without using it: a fast-weight run
at 1,024 pairs records tens of millions of pulses and reads (its file passed 1.5 GB).
:func:`map_dies` gives such a study the same dies
(:func:`labctl.runs.campaign_plan.wafer_stations`: the wafer model's die-to-die spread, one
chip seed per die) and the same cluster
(:func:`labctl.runs.campaign.dask_client`: single-threaded worker processes, or a running
scheduler), calls ``fn(backend, seed)`` on each die's fresh chip in a worker and returns the
figures in die order. Nothing is recorded and nothing can be resumed; a die that raises
ends the map with that die named.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from labctl.core.backend import BackendBase

__all__ = ["DieFailed", "DieFn", "map_dies"]

DieFn = Callable[[BackendBase, int], Mapping[str, float]]
"""``fn(chip, seed) -> figures``: picklable (a module-level function or a partial of one)."""


class DieFailed(RuntimeError):
    """A die's function raised."""


def map_dies(fn: DieFn, n_dies: int, *, seed: int = 0, workers: int | None = None,
             scheduler: str | None = None, base_station: str | Path | None = None,
             progress: Callable[[int, int, str], None] | None = None
             ) -> list[dict[str, Any]]:
    """``fn(chip, die_seed)`` on each of ``n_dies`` dies of wafer ``seed``, one Dask task per
    die; per die, ``fn``'s figures plus ``die_id``, ``x_mm``, ``y_mm``, ``seed`` and
    ``wall_s``. ``progress(finished, total, text)`` after each die."""
    from distributed import as_completed

    from labctl.runs.campaign import dask_client
    from labctl.runs.campaign_plan import wafer_stations

    _, dies = wafer_stations(n_dies, seed, base_station)
    with dask_client(workers, scheduler) as client:
        futures = {client.submit(run_on_die, fn, station, die.seed, die_id, pure=False):
                   i for i, (die, die_id, station) in enumerate(dies)}
        results: list[dict[str, Any] | None] = [None] * len(dies)
        for n, fut in enumerate(as_completed(futures), start=1):
            i = futures[fut]
            die, die_id, _ = dies[i]
            try:
                figures, wall_s = fut.result()
            except Exception as e:
                for other in futures:
                    other.cancel()
                raise DieFailed(f"die {die_id} (wafer seed {seed}): "
                                f"{type(e).__name__}: {e}") from e
            results[i] = {**figures, "die_id": die_id, "x_mm": die.x_mm, "y_mm": die.y_mm,
                          "seed": die.seed, "wall_s": wall_s}
            if progress is not None:
                progress(n, len(dies), f"die {die_id} done")
    return [r for r in results if r is not None]


def run_on_die(fn: DieFn, station: Mapping[str, Any], seed: int,
               die_id: str) -> tuple[dict[str, float], float]:
    """In a worker: open the die's chip from its station document, run ``fn``, close it."""
    from labctl.core.station_spec import parse_station
    from labctl.runs.backends import open_backend

    t0 = time.perf_counter()
    backend = open_backend(parse_station(station, f"die {die_id}"))
    try:
        figures = {k: float(v) for k, v in fn(backend, seed).items()}
    finally:
        backend.close()
    return figures, time.perf_counter() - t0
