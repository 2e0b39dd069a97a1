"""Shipped protocols: they validate, the quickstart runs end to end through the CLI (show and
plot read its file), and the new routines resume after an abort exactly like an uninterrupted
run. Also the bench section's figures (quick mode) and their relations."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labctl.app.cli import main as cli_main
from labctl.core.routine import Checkpoint, RoutineSpec, StepContext
from labctl.runs.protocol import load_protocol
from labctl.runs.runner import RunOptions, load_registry, run
from labctl.runs.store import RunReader

from .conftest import read_run

REPO = Path(__file__).resolve().parents[2]
SHAPE = (8, 256, 512)


def test_shipped_protocols_validate() -> None:
    reg = load_registry()
    for name in ("quickstart", "characterize", "drift", "refresh", "program", "forming"):
        assert load_protocol(REPO / "protocols" / f"{name}.yaml", reg).steps


def test_quickstart_cli_show_plot(tmp_path: Path, cal_dir: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "qs.h5"
    assert cli_main(["run", str(REPO / "protocols" / "quickstart.yaml"), "--out", str(out),
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "=== labctl report" in printed
    for key in ("success_rate", "mvm_error_compensated", "distinguishable_86400s",
                "rms_after "):
        assert key in printed
    assert "_S " not in printed and " S\n" not in printed  # conductance shown in µS only
    res, _ = read_run(out)
    assert res[1]["success_rate"] >= 0.99
    # read when programming ends: relaxation during the loop and low-frequency read noise
    # are in it (docs/simulator.md); the ±1 µS band is what the accepting reads saw
    assert res[1]["rms_error_usable_S"] <= 1.0e-6
    # a day's drift is mostly random, cell by cell (test_drift.py, bench
    # drift_systematic_fraction ≈ 0): compensation must not make it worse beyond noise
    assert res[2]["mvm_error_compensated"] < 1.05 * res[2]["mvm_error_raw"]
    assert res[2]["baseline_age_s"] == pytest.approx(1.0, abs=0.01)  # default baseline age
    assert res[2]["measurement_age_s"] == pytest.approx(86401.0, abs=0.1)
    assert res[3]["rms_after_uS"][0] < 1.0  # read when refresh ends (relaxation, 1/f noise)
    assert res[3]["mvm_error_after"][0] <= 1.2 * res[2]["mvm_error_baseline"]
    assert cli_main(["show", str(out)]) == 0
    assert "status     completed" in capsys.readouterr().out
    assert cli_main(["plot", str(out), "--outdir", str(tmp_path / "fig")]) == 0
    assert len(list((tmp_path / "fig").glob("*.png"))) >= 5


def _sigint_after(reg: dict[str, RoutineSpec], routine: str, k: int) -> dict[str, Any]:
    spec = reg[routine]

    def poke(ctx: StepContext) -> Iterator[Checkpoint]:
        for i, ck in enumerate(spec.run(ctx)):
            if i == k:
                os.kill(os.getpid(), signal.SIGINT)
            yield ck

    return {**reg, routine: RoutineSpec(spec.name, spec.doc, spec.params, poke, spec.check)}


RESUMABLE = """
steps:
  - routine: forming
    params: {region: {tile: 0, rows: [0, 16], cols: [0, 32]}, formed_threshold_S: 2.0e-6}
  - routine: verify_write
    params: {region: {tile: 0, rows: [0, 16], cols: [0, 16]}, target: {kind: random_uniform}}
  - routine: refresh
    params: {region: {tile: 0, rows: [0, 16], cols: [0, 16]}, target: {kind: random_uniform},
             interval_s: 3600.0, n_rounds: 2}
  - routine: characterize
    params: {region: {tile: 0, rows: [0, 16], cols: [16, 32]}, n_levels: 4}
"""


@pytest.mark.parametrize(("routine", "k"), [("refresh", 3), ("refresh", 12),
                                            ("characterize", 4), ("characterize", 30)])
def test_new_routines_resume_like_uninterrupted(tmp_path: Path, cal_dir: Path, routine: str,
                                                k: int) -> None:
    proto = tmp_path / "p.yaml"
    proto.write_text(RESUMABLE, encoding="utf-8")
    reg = load_registry()
    ref = tmp_path / "ref.h5"
    assert run(RunOptions(protocol=str(proto), out=str(ref), progress=False),
               registry=reg).status == "completed"
    out = tmp_path / "cut.h5"
    o = run(RunOptions(protocol=str(proto), out=str(out), progress=False, interactive=False),
            registry=_sigint_after(reg, routine, k))
    assert o.status == "aborted"
    assert run(RunOptions(resume=str(out), progress=False), registry=reg).status == "completed"
    with RunReader(out) as a, RunReader(ref) as b:
        np.testing.assert_array_equal(a.pulse_counts(SHAPE), b.pulse_counts(SHAPE))
    ra, aa = read_run(out)
    rb, ab = read_run(ref)
    step = 2 if routine == "refresh" else 3
    assert ra[step] == rb[step]
    np.testing.assert_array_equal(aa[step].get("outcome", 0), ab[step].get("outcome", 0))


def test_bench_section_quick() -> None:
    from labctl.app.bench import SECTIONS
    from labctl.app.bench.calibration import run as bench

    assert SECTIONS["calibration"] == "labctl.app.bench.calibration"
    f = bench(quick=True)
    assert f["verify_write_converged_fraction"] >= 0.995
    # 1 s after programming ends the NeuRRAM-fitted spread is 1.1–2.3 µS (docs/simulator.md)
    assert f["verify_write_rms_error_at_1s_uS"] <= 2.3
    assert f["mvm_error_1day_compensated"] < f["mvm_error_1day_raw"]
    assert f["mvm_error_at_1s"] < f["mvm_error_1day_raw"]
    # refresh, judged 1 s after it ends (re-calibrated), is back near the compensated error
    # 1 s after programming
    assert f["mvm_error_refreshed_at_1s"] <= 1.2 * f["mvm_error_at_1s_compensated"]
    assert f["mvm_error_at_1s_compensated"] < f["mvm_error_at_1s"]
    assert f["drift_systematic_fraction"] <= 1.0
