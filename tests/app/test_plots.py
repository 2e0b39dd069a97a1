"""``labctl plot`` on a real run of every calibration routine (and synthetic inference
arrays): each routine gets its figures, every axis is labelled with its unit, counts that
span decades are on log axes, titles say when the read was taken, and the command takes
several files and folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest

from labctl.app.cli import main as cli_main
from labctl.app.figure_style import Figures, StepData, age_text
from labctl.app.plots import plot_run, read_steps
from labctl.app.routine_figures import FIGURES
from labctl.core.routine import Checkpoint, RoutineSpec, StepContext
from labctl.runs.runner import RunOptions, load_registry, run
from labctl.runs.store import RunReader

matplotlib.use("Agg")

R = "{tile: 0, rows: [0, 8], cols: [0, 16]}"
EVERY_ROUTINE = f"""
name: every-routine
steps:
  - routine: forming
    params: {{region: {{tile: 0, rows: [0, 8], cols: [0, 24]}}, formed_threshold_S: 2.0e-6}}
  - routine: verify_write
    params: {{region: {R}, target: {{kind: random_uniform, low_S: 1.0e-6, high_S: 40.0e-6}},
             tolerance_S: 1.0e-6}}
  - routine: compensate
    params: {{region: {R}, target: {{kind: random_uniform, low_S: 1.0e-6, high_S: 40.0e-6}},
             wait_s: 86400.0}}
  - routine: refresh
    params: {{region: {R}, target: {{kind: random_uniform, low_S: 1.0e-6, high_S: 40.0e-6}},
             interval_s: 1.0, drift_tolerance_S: 0.5e-6, n_rounds: 2}}
  - routine: drift_monitor
    params: {{region: {R}, n_points: 4, t_last_s: 3600.0}}
  - routine: characterize
    params: {{region: {{tile: 0, rows: [0, 8], cols: [16, 24]}}, n_levels: 4}}
  - routine: fault_map
    params: {{region: {R}, spare_cols: [16, 24]}}
  - routine: read_map
    params: {{region: {R}}}
  - routine: inference_arrays
"""
EXPECTED = {
    "forming": {"map_g_formed_S", "forming"},
    "verify_write": {"map_g_final_S", "convergence", "accuracy", "spread"},
    "compensate": {"compensation"},
    "refresh": {"refresh"},
    "drift_monitor": {"drift"},
    "characterize": {"map_g_map_S", "convergence", "level_spread", "levels_by_age"},
    "fault_map": {"fault_map"},
    "read_map": {"map_g_map_S", "histogram"},
    "inference_arrays": {"samples", "writes_per_cell"},
}


def _inference_arrays(ctx: StepContext) -> Iterator[Checkpoint]:
    rng = np.random.default_rng(0)
    ctx.save_arrays(samples_true=rng.standard_normal((200, 2)),
                    samples_chip=rng.standard_normal((200, 2)),
                    writes_per_cell=rng.poisson(3, (8, 8)))
    ctx.result(swd_chip=0.05)
    yield from ()


@pytest.fixture(scope="module")
def every_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("plots")
    proto = tmp / "every.yaml"
    proto.write_text(EVERY_ROUTINE, encoding="utf-8")
    reg = {**load_registry(), "inference_arrays": RoutineSpec(
        "inference_arrays", "synthetic inference arrays", {}, _inference_arrays)}
    out = run(RunOptions(protocol=str(proto), out=str(tmp / "every.h5"), progress="off",
                         calibration_dir=str(tmp / "cal"), interactive=False), registry=reg)
    assert out.status == "completed"
    return tmp / "every.h5"


class Kept(Figures):
    """Keeps the figures open so the test can read their axes."""

    def __init__(self) -> None:
        import matplotlib.pyplot as plt

        super().__init__(plt, Path("."), "every.h5", "chip")
        self.kept: list[tuple[str, Any]] = []

    def save(self, fig: Any, step: StepData | None, name: str) -> None:
        self.kept.append((name, fig))


def test_every_routine_draws_its_figures(every_run: Path, tmp_path: Path) -> None:
    with RunReader(every_run) as rd:
        steps = read_steps(rd)
        written = plot_run(rd, tmp_path / "out")
    names = {p.name for p in written}
    for st in steps:
        for fig in EXPECTED[st.routine]:
            assert f"step{st.index + 1}_{fig}.png" in names, (st.routine, sorted(names))
    assert all(p.stat().st_size > 5000 for p in written)


def test_axes_have_units_log_counts_and_ages(every_run: Path) -> None:
    import matplotlib.pyplot as plt

    with RunReader(every_run) as rd:
        steps = read_steps(rd)
    figs = Kept()
    for st in steps:
        if st.routine in FIGURES:
            FIGURES[st.routine](figs, st)
    assert figs.kept
    for name, fig in figs.kept:
        for ax in fig.axes:
            if not ax.axison or ax.get_label() == "<colorbar>":
                continue
            x, y = ax.get_xlabel(), ax.get_ylabel()
            assert x or ax.get_shared_x_axes().get_siblings(ax) != [ax], (name, "x label")
            if "conductance" in x or "G − target" in x:
                assert "(µS)" in x, (name, x)
            if y.startswith("cells ("):
                assert ax.get_yscale() == "log", (name, y)
            assert " S)" not in x + y and "(S)" not in x + y, (name, "siemens shown raw")
        plt.close(fig)
    titles = " ".join(fig.axes[0].get_title() + (fig._suptitle.get_text() if fig._suptitle
                                                 else "") for _, fig in figs.kept)
    assert "read right after" in titles
    assert "read 1 day after programming" in titles  # characterize: its last read's age


@pytest.mark.parametrize(("seconds", "text"), [(0.0, "right after programming"), (1.0, "1 s"),
                                               (3600.0, "1 h"), (86400.0, "1 day"),
                                               (86399.9, "24 h"), (2 * 86400.0, "2 days")])
def test_age_text(seconds: float, text: str) -> None:
    assert age_text(seconds) == text


def test_plot_command_takes_files_and_folders(every_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "a.h5").write_bytes(every_run.read_bytes())
    (folder / "b.h5").write_bytes(every_run.read_bytes())
    assert cli_main(["plot", str(folder), "--outdir", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "a" / "step2_convergence.png").exists()
    assert (tmp_path / "figs" / "b" / "step2_convergence.png").exists()
    assert cli_main(["plot", str(tmp_path / "missing.h5")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["plot", str(empty)]) == 2
