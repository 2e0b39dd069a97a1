"""What every figure of ``labctl plot`` shares: one unit per quantity, the read's age in
words, log-scaled counts, and a footer naming the run, the step and the command.

Units: conductance in µS, current in µA, voltage in V, time in s (log axes for relaxation),
counts in cells. Counts that span decades (a handful of "gave up" or "stuck" cells beside
thousands that converged) go on log axes, where a single cell is still visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OUTCOME_STYLE", "Figures", "StepData", "age_text", "count_hist", "uS"]

OUTCOME_STYLE: dict[str, str] = {
    "converged": "tab:blue", "gave up": "tab:orange", "stuck": "tab:red",
    "skipped": "tab:gray", "formed": "tab:blue", "unformable": "tab:red",
}
"""One colour per outcome in every figure."""

DPI = 110


def uS(g_S: Any) -> np.ndarray:
    """Siemens to microsiemens, the one unit conductance is shown in."""
    return np.asarray(g_S, dtype=float) * 1e6


def age_text(seconds: float) -> str:
    """``right after programming``, ``1 s``, ``1 h``, ``1 day``, ``2.5 days``: the age of a
    read, as a title says it."""
    if seconds <= 0:
        return "right after programming"
    for unit_s, name in ((86400.0, "day"), (3600.0, "h"), (60.0, "min")):
        if seconds >= unit_s:
            n = float(f"{seconds / unit_s:.3g}")
            plural = "s" if name == "day" and n != 1 else ""
            return f"{n:g} {name}{plural}"
    return f"{float(f'{seconds:.3g}'):g} s"


@dataclass
class StepData:
    """One protocol step of a run file: what ``labctl plot`` draws from."""

    index: int
    routine: str
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        named = f" {self.name}" if self.name != self.routine else ""
        return f"step {self.index + 1}{named} ({self.routine})"


class Figures:
    """Writes figures to ``outdir`` as PNG, each with a footer naming the run file, the
    chip, the step and the command that drew it; collects the paths written."""

    def __init__(self, plt: Any, outdir: Path, run_name: str, chip_id: str) -> None:
        self.plt = plt
        self.outdir = outdir
        self.run_name = run_name
        self.chip_id = chip_id
        self.written: list[Path] = []

    def new(self, ncols: int = 1, *, width_in: float = 5.4, height_in: float = 3.8,
            **kw: Any) -> tuple[Any, Any]:
        return self.plt.subplots(1, ncols, figsize=(width_in * ncols, height_in),
                                 layout="constrained", **kw)

    def save(self, fig: Any, step: StepData | None, name: str) -> None:
        where = f" · {step.label}" if step is not None else ""
        fig.text(0.005, 0.005, f"{self.run_name} · chip {self.chip_id}{where} · "
                 f"labctl plot {self.run_name}", fontsize=6, color="0.45", ha="left",
                 va="bottom")
        if fig.get_layout_engine() is None:
            fig.set_layout_engine("constrained")
        fig.get_layout_engine().set(rect=(0, 0.035, 1, 0.965))  # room for the footer
        path = self.outdir / (f"step{step.index + 1}_{name}.png" if step else f"{name}.png")
        fig.savefig(path, dpi=DPI)
        self.plt.close(fig)
        self.written.append(path)


def count_hist(ax: Any, groups: list[tuple[str, np.ndarray]], bins: Any, *,
               xlabel: str) -> None:
    """Step histograms of several groups on a log count axis, each labelled with its size,
    so a group of 2 cells shows beside one of 4,000."""
    for label, values in groups:
        if values.size:
            ax.hist(values, bins=bins, histtype="step", linewidth=1.6,
                    color=OUTCOME_STYLE.get(label), label=f"{label} ({values.size:,} cells)")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.7)
    ax.set(xlabel=xlabel, ylabel="cells (log scale)")
    if any(v.size for _, v in groups):
        ax.legend(fontsize=8)
