"""Figures of run files (matplotlib, Agg backend: no display needed).

:func:`read_steps` turns a run file into one :class:`~labctl.app.figure_style.StepData` per
protocol step (routine, name, parameters, the latest saved arrays and key figures);
:func:`plot_run` draws each step's figures — the routine's own
(:data:`labctl.app.routine_figures.FIGURES`), else maps of its conductance arrays — plus the
inference routines' figures (:mod:`labctl.inference.plots`), whichever the step has data for.
:func:`plot_paths` does that for several run files or folders of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from labctl.app.figure_style import Figures, StepData
from labctl.runs.store.reader import RunReader
from labctl.runs.store.schema import Kind

__all__ = ["plot_paths", "plot_run", "read_steps", "run_files"]


def read_steps(rd: RunReader) -> list[StepData]:
    """Every step that began, with its latest arrays (by name) and latest key figures."""
    steps: dict[int, StepData] = {}
    for r in rd.of_kind(Kind.STEP_BEGIN):
        p = r.payload
        routine = str(p.get("routine", "?"))
        steps[r.step] = StepData(r.step, routine, str(p.get("name") or routine),
                                 dict(p.get("params") or {}))
    for r in rd.of_kind(Kind.ARRAY):
        st = steps.setdefault(r.step, StepData(r.step, "?", "?"))
        for name in r.array_names():
            st.arrays[name] = r.array(name)
    for r in rd.of_kind(Kind.RESULT):
        steps.setdefault(r.step, StepData(r.step, "?", "?")).results.update(r.payload)
    return [steps[k] for k in sorted(steps)]


def plot_run(rd: RunReader, outdir: Path) -> list[Path]:
    """Draw every figure the run file has data for into ``outdir``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from labctl.app.routine_figures import FIGURES, generic
    from labctl.inference.plots import plot_inference

    outdir.mkdir(parents=True, exist_ok=True)
    figs = Figures(plt, outdir, rd.path.name, str(rd.attrs.get("chip_id", "?")))
    for step in read_steps(rd):
        if not step.arrays and not step.results:
            continue  # interrupted before it saved anything (a killed or damaged run's file)
        FIGURES.get(step.routine, generic)(figs, step)

        def save(fig: Any, name: str, step: StepData = step) -> None:
            figs.save(fig, step, name.removeprefix(f"step{step.index + 1}_")
                      .removesuffix(".png"))

        plot_inference(plt, save, step.index, step.arrays, step.results)
    return figs.written


def run_files(paths: Iterable[Path]) -> list[Path]:
    """The run files named, a folder standing for the ``*.h5`` files in it (sorted)."""
    out: list[Path] = []
    for p in paths:
        out += sorted(p.glob("*.h5")) if p.is_dir() else [p]
    return out


def plot_paths(paths: Iterable[Path], outdir: Path | None = None) -> dict[Path, list[Path]]:
    """Figures of each run file: into ``RUN_plots/`` beside it, or with ``outdir`` into
    ``outdir/RUN/`` (``outdir`` itself when there is one file)."""
    files = run_files(paths)
    done: dict[Path, list[Path]] = {}
    for run in files:
        if outdir is None:
            where = run.with_name(run.stem + "_plots")
        else:
            where = outdir if len(files) == 1 else outdir / run.stem
        with RunReader(run) as rd:
            done[run] = plot_run(rd, where)
    return done
