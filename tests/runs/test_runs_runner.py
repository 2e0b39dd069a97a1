"""The runner in-process on the simulated chip: end to end, Ctrl+C pause/abort, errors,
resume, and the CLI's show / plot on the result."""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CHIP_SHAPE, KILL_PROTOCOL, REPO, write

from labctl.app.cli import main as cli_main
from labctl.core.errors import LabctlError
from labctl.core.routine import Checkpoint, RoutineSpec, StepContext
from labctl.runs.replay import CannotResume, plan_resume
from labctl.runs.runner import RunOptions, load_registry, run
from labctl.runs.store import CalibrationRecord, Kind, RunReader, RunWriter
from labctl.runs.store.summary import run_status
from sim_backend.backend import SimBackend

SMALL = """
name: small
steps:
  - routine: forming
    params: {region: {tile: 0, rows: [0, 8], cols: [0, 8]}, formed_threshold_S: 2.0e-6}
  - routine: verify_write
    params:
      region: {tile: 0, rows: [0, 8], cols: [0, 8]}
      target: {kind: checkerboard, low_S: 5.0e-6, high_S: 25.0e-6}
      max_pulses: 40
  - routine: read_map
    params: {region: {tile: 0, rows: [0, 8], cols: [0, 8]}}
  - routine: drift_monitor
    params: {region: {tile: 0, rows: [0, 8], cols: [0, 8]}, n_points: 4, t_last_s: 3600.0}
"""


def _counts(path: Path) -> np.ndarray:
    with RunReader(path) as rd:
        return rd.pulse_counts(CHIP_SHAPE)


def _with_sigint_after(reg: dict[str, RoutineSpec], routine: str, k: int,
                       in_call: int | None = None) -> dict[str, Any]:
    """A registry whose ``routine`` sends this process SIGINT after its k-th checkpoint (in
    its ``in_call``-th step only, when given)."""
    spec = reg[routine]
    calls = {"n": 0}

    def run_and_poke(ctx: StepContext) -> Iterator[Checkpoint]:
        calls["n"] += 1
        for i, ck in enumerate(spec.run(ctx)):
            if i == k and in_call in (None, calls["n"]):
                os.kill(os.getpid(), signal.SIGINT)
            yield ck

    return {**reg, routine: RoutineSpec(spec.name, spec.doc, spec.params, run_and_poke,
                                        spec.check)}


def test_program_end_to_end_show_plot(tmp_path: Path, cal_dir: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    proto = write(tmp_path / "small.yaml", SMALL)
    out = tmp_path / "run.h5"
    assert cli_main(["run", str(proto), "--out", str(out), "--seed", "5", "--no-progress"]) == 0
    with RunReader(out) as rd:
        assert rd.complete
        assert run_status(rd) == "completed"
        assert rd.attrs["seed"] == 5
        assert rd.attrs["chip_id"].startswith("sim-")
        results = {r.step: r.payload for r in rd.of_kind(Kind.RESULT)}
        vw = results[1]
        assert vw["converged"] + vw["gave_up"] + vw["stuck"] + vw["skipped"] == 64
        end = rd.all()[-1].payload
        assert end["safe_state_reached"] is True
        assert end["ledger"]["pulses"] == int(rd.pulse_counts(CHIP_SHAPE).sum())
    rec = CalibrationRecord.load(rd.attrs["chip_id"], CHIP_SHAPE)
    assert (rec.fault_map[0, :8, :8] >= 0).all()
    assert "verify_write" in rec.programming
    assert "baseline_g_S" in rec.drift
    capsys.readouterr()
    assert cli_main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "status     completed" in shown
    assert "converged" in shown
    assert cli_main(["plot", str(out), "--outdir", str(tmp_path / "fig")]) == 0
    names = {p.name for p in (tmp_path / "fig").glob("*.png")}
    assert {"step1_map_g_formed_S.png", "step2_convergence.png", "step2_spread.png",
            "step4_drift.png"} <= names
    # resuming a finished run does nothing; a run file is never overwritten
    assert cli_main(["run", "--resume", str(out)]) == 0
    capsys.readouterr()
    assert cli_main(["run", str(proto), "--out", str(out)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert _counts(out).sum() == end["ledger"]["pulses"]


def test_sigint_non_tty_aborts_at_checkpoint_then_resume_matches(
        tmp_path: Path, cal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    safe_calls: list[int] = []
    real = SimBackend._safe_state
    monkeypatch.setattr(SimBackend, "_safe_state",
                        lambda self: (safe_calls.append(1), real(self))[1])
    reg = load_registry()
    ref = run(RunOptions(protocol=str(KILL_PROTOCOL), out=str(tmp_path / "ref.h5"),
                         progress=False), registry=reg)
    assert ref.status == "completed"
    out = tmp_path / "int.h5"
    poked = _with_sigint_after(reg, "verify_write", 3)
    safe_calls.clear()
    o = run(RunOptions(protocol=str(KILL_PROTOCOL), out=str(out), interactive=False,
                       progress=False), registry=poked)
    assert o.status == "aborted"
    assert safe_calls
    with RunReader(out) as rd:
        end = rd.all()[-1]
        assert end.kind == Kind.RUN_END
        assert end.payload["status"] == "aborted"
        assert end.payload["safe_state_reached"] is True
        assert len(rd.of_kind(Kind.CHECKPOINT, step=1)) == 3  # stopped before the 4th batch
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    o2 = run(RunOptions(resume=str(out), progress=False), registry=reg)
    assert o2.status == "completed"
    np.testing.assert_array_equal(_counts(out), _counts(tmp_path / "ref.h5"))


@pytest.mark.parametrize(("answer", "status"), [("r\n", "completed"), ("a\n", "aborted")])
def test_sigint_on_tty_asks(tmp_path: Path, cal_dir: Path, monkeypatch: pytest.MonkeyPatch,
                            answer: str, status: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    reg = _with_sigint_after(load_registry(), "forming", 0)
    out = tmp_path / "tty.h5"
    o = run(RunOptions(protocol=str(KILL_PROTOCOL), out=str(out), interactive=True,
                       progress=False), registry=reg)
    assert o.status == status
    with RunReader(out) as rd:
        msgs = [r.payload["message"] for r in rd.of_kind(Kind.EVENT)]
        assert "paused at a checkpoint" in msgs


def test_error_mid_step_ends_in_safe_state(tmp_path: Path, cal_dir: Path) -> None:
    reg = load_registry()
    spec = reg["forming"]

    def boom(ctx: StepContext) -> Iterator[Checkpoint]:
        gen = spec.run(ctx)
        yield next(gen)
        raise RuntimeError("instrument on fire")

    bad = {**reg, "forming": RoutineSpec("forming", "", spec.params, boom, spec.check)}
    out = tmp_path / "err.h5"
    with pytest.raises(RuntimeError, match="on fire"):
        run(RunOptions(protocol=str(KILL_PROTOCOL), out=str(out), progress=False), registry=bad)
    with RunReader(out) as rd:
        end = rd.all()[-1].payload
        assert end["status"] == "failed"
        assert end["safe_state_reached"] is True
        assert "on fire" in end["message"]


def test_direct_pulse_after_checkpoint_resumes_by_reexecution(tmp_path: Path) -> None:
    """Pulses after the last checkpoint: the step is re-executed against its record, and a
    re-execution that asks for anything else stops before pulsing (ResumeDiverged)."""
    from labctl.core.cells import Cells
    from labctl.runs.fast_forward import FastForward, ResumeDiverged, recorded_ops
    from labctl.runs.recording import pulse_rows

    p = tmp_path / "d.h5"
    cells = Cells.block(0, range(1), range(2))
    rows = pulse_rows(cells, "SET", 1.0, 2.0, 1e-6, None)
    with RunWriter.create(p, {"chip_id": "c"}) as w:
        w.record(Kind.STEP_BEGIN, step=0)
        w.record(Kind.CHECKPOINT, step=0, arrays={"x": np.zeros(2)})
        w.record(Kind.PULSE, step=0, pulses=rows)
    with RunReader(p) as rd:
        plan = plan_resume(rd, 1)
        assert plan.first_step == 0 and plan.not_replayed == []
        ops = recorded_ops(rd, plan.reexecute)
    assert [op.kind for op in ops] == [Kind.PULSE]
    ff = FastForward(ops, live_chip=True)
    assert ff.pulse(rows.copy()) is False and not ff.active  # matched, not applied again
    other = pulse_rows(cells, "SET", 1.1, 2.0, 1e-6, None)
    with pytest.raises(ResumeDiverged, match="pulse cells twice"):
        FastForward(ops, live_chip=True).pulse(other)
    with pytest.raises(ResumeDiverged):
        FastForward(ops, live_chip=False).read(cells, None, None, 1)
    assert issubclass(ResumeDiverged, CannotResume)
    assert issubclass(CannotResume, LabctlError)


def test_resume_refuses_other_station_or_protocol(tmp_path: Path, cal_dir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.h5"
    reg = _with_sigint_after(load_registry(), "forming", 0)
    run(RunOptions(protocol=str(KILL_PROTOCOL), out=str(out), interactive=False,
                   progress=False), registry=reg)
    other = write(tmp_path / "other.yaml", "routine: forming\n"
                  "params: {region: {tile: 0, rows: [0, 2], cols: [0, 2]}}\n")
    capsys.readouterr()
    assert cli_main(["run", str(other), "--resume", str(out)]) == 2
    assert "differs from the protocol recorded" in capsys.readouterr().err
    assert cli_main(["run", "--resume", str(out), "--seed", "3"]) == 2


def test_verify_write_skips_cells_the_calibration_record_marks_faulty(
        tmp_path: Path, cal_dir: Path) -> None:
    """The per-chip record written by one run is loaded by chip id in the next one."""
    proto = write(tmp_path / "vw.yaml", "routine: verify_write\nparams:\n"
                  "  region: {tile: 0, rows: [0, 4], cols: [0, 4]}\n  max_pulses: 30\n")
    from labctl.runs.backends import open_backend

    with open_backend(None) as be:
        chip_id = be.chip.chip_id
    rec = CalibrationRecord.load(chip_id, CHIP_SHAPE)
    rec.mark_faults(np.array([0, 0]), np.array([1, 2]), np.array([1, 3]), "unformed")
    rec.save()
    out = tmp_path / "vw.h5"
    assert run(RunOptions(protocol=str(proto), out=str(out), progress=False)).status == \
        "completed"
    counts = _counts(out)
    assert counts[0, 1, 1] == 0
    assert counts[0, 2, 3] == 0
    with RunReader(out) as rd:
        assert rd.of_kind(Kind.RESULT)[-1].payload["skipped"] == 2


def test_hardware_style_resume_rereads_and_never_replays(
        tmp_path: Path, cal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a backend without a virtual clock the chip is the state: a resume replays nothing,
    re-reads the pending cells and re-plans, and every cell ends with the pulses of an
    uninterrupted run."""
    from conftest import FakeBackend

    import labctl.runs.backends as station

    proto = write(tmp_path / "fake.yaml", """
steps:
  - routine: forming
    params: {region: {tile: 0, rows: [0, 8], cols: [0, 8]}, formed_threshold_S: 2.0e-6}
  - routine: verify_write
    params:
      region: {tile: 0, rows: [0, 8], cols: [0, 8]}
      target: {kind: checkerboard, low_S: 5.0e-6, high_S: 25.0e-6}
""")
    chips: dict[str, np.ndarray] = {}  # chip name → its state, outliving every "process"
    current = ["ref"]
    made: list[FakeBackend] = []

    def open_fake(spec: Any = None) -> FakeBackend:
        made.append(FakeBackend(g=chips.setdefault(current[0], np.full((8, 8), 0.5e-6))))
        return made[-1]

    monkeypatch.setattr(station, "open_backend", open_fake)
    reg = load_registry()
    assert run(RunOptions(protocol=str(proto), out=str(tmp_path / "ref.h5"), progress=False),
               registry=reg).status == "completed"
    current[0] = "dut"
    out = tmp_path / "dut.h5"
    o = run(RunOptions(protocol=str(proto), out=str(out), interactive=False, progress=False),
            registry=_with_sigint_after(reg, "verify_write", 2))
    assert o.status == "aborted"
    assert made[-1].safe_states >= 1
    assert run(RunOptions(resume=str(out), progress=False), registry=reg).status == "completed"
    with RunReader(out) as rd, RunReader(tmp_path / "ref.h5") as ref:
        shape = (1, 8, 8)
        np.testing.assert_array_equal(rd.pulse_counts(shape), ref.pulse_counts(shape))
        resume = rd.of_kind(Kind.RESUME)[0].payload
        assert resume["replayed_pulses"] == 0
        assert resume["replayed_reads"] == 0
        assert rd.of_kind(Kind.RESULT)[-1].payload["converged"] == 64
    np.testing.assert_array_equal(chips["dut"], chips["ref"])


def test_sigint_in_a_step_without_checkpoints_stops_at_its_next_batch(
        tmp_path: Path, cal_dir: Path) -> None:
    """Ctrl+C inside a routine that yields no checkpoint before its reads: the stop comes at
    its next backend call (the recording backend checks), not at the end of the step."""
    reg = load_registry()
    spec = reg["read_map"]

    def poke_then_read(ctx: StepContext) -> Iterator[Checkpoint]:
        os.kill(os.getpid(), signal.SIGINT)
        yield from spec.run(ctx)

    poked = {**reg, "read_map": RoutineSpec("read_map", "", spec.params, poke_then_read,
                                            spec.check)}
    out = tmp_path / "b.h5"
    o = run(RunOptions(protocol=str(write(tmp_path / "s.yaml", SMALL)), out=str(out),
                       interactive=False, progress=False), registry=poked)
    assert o.status == "aborted"
    with RunReader(out) as rd:
        assert {r.step for r in rd.of_kind(Kind.STEP_END)} == {0, 1}
        assert rd.of_kind(Kind.STEP_BEGIN, step=2)
        assert not rd.of_kind(Kind.READ, step=2)  # stopped before its first read
    o2 = run(RunOptions(resume=str(out), progress=False), registry=reg)
    assert o2.status == "completed"
    with RunReader(out) as rd:
        assert {r.step for r in rd.of_kind(Kind.STEP_END)} == {0, 1, 2, 3}


def test_another_seed_is_another_simulated_chip() -> None:
    from labctl.runs.runner import _effective_station

    spec, seed = _effective_station(None, 5)
    assert seed == 5 and spec.station["chip_id"] == "sim-180nm-0001-seed5"
    spec, _ = _effective_station(None, None)
    assert spec.station["chip_id"] == "sim-180nm-0001"


def test_replay_only_when_the_chip_lives_in_this_process() -> None:
    from labctl.core.station_spec import chip_state_in_process, parse_station

    assert chip_state_in_process(parse_station({"station": {"backend": "sim"}}, "x"))
    board = {"board": {"type": "FpgaTestBoard"}}
    virtual = {"station": {"backend": "instruments", "virtual": True}, "instruments": board}
    assert chip_state_in_process(parse_station(virtual, "x"))
    live = {"station": {"backend": "instruments"},
            "instruments": {"board": {"type": "FpgaTestBoard", "address": "COM3"}}}
    assert not chip_state_in_process(parse_station(live, "x"))


@pytest.mark.parametrize(("routine", "k"), [("compensate", 0), ("refresh", 0), ("refresh", 1),
                                            ("characterize", 0)])
def test_resume_after_an_mvm_step_reproduces_its_figures(
        tmp_path: Path, routine: str, k: int) -> None:
    """MVMs are not recorded, so the simulator's MVM output-noise streams are not rebuilt by
    replay; checkpoints and step boundaries carry their positions instead. A run stopped
    inside an MVM-using step and resumed gives the uninterrupted run's figures to the last
    digit, MVM errors included; its report, read from the file for the steps finished before
    the resume, is the uninterrupted run's too."""
    reg = load_registry()
    protocol = str(REPO / "protocols" / "quickstart.yaml")
    ref = run(RunOptions(protocol=protocol, out=str(tmp_path / "ref.h5"), progress=False,
                         calibration_dir=str(tmp_path / "cal-ref")), registry=reg)
    assert ref.status == "completed"
    out = tmp_path / "int.h5"
    o = run(RunOptions(protocol=protocol, out=str(out), interactive=False, progress=False,
                       calibration_dir=str(tmp_path / "cal-int")),
            registry=_with_sigint_after(reg, routine, k))
    assert o.status == "aborted"
    assert run(RunOptions(resume=str(out), progress=False,
                          calibration_dir=str(tmp_path / "cal-int")),
               registry=reg).status == "completed"

    def results(path: Path) -> list[dict[str, Any]]:
        with RunReader(path) as rd:
            return [r.payload for r in rd.of_kind(Kind.RESULT) if r.step >= 2]

    assert results(out) == results(tmp_path / "ref.h5")
    np.testing.assert_array_equal(_counts(out), _counts(tmp_path / "ref.h5"))


TWO_COMPENSATIONS = """
name: comp
steps:
  - routine: forming
    params: {region: {tile: 0, rows: [0, 32], cols: [0, 32]}, formed_threshold_S: 2.0e-6}
  - routine: verify_write
    params:
      region: {tile: 0, rows: [0, 32], cols: [0, 32]}
      target: {kind: random_uniform, low_S: 1.0e-6, high_S: 40.0e-6}
      policy: {kind: gate}
      tolerance_S: 1.0e-6
  - routine: compensate
    params: &comp
      region: {tile: 0, rows: [0, 32], cols: [0, 32]}
      target: {kind: random_uniform, low_S: 1.0e-6, high_S: 40.0e-6}
      wait_s: 0.0
      baseline_age_s: 1.0e6
  - routine: compensate
    name: second
    params: *comp
"""


@pytest.mark.parametrize("stop_in_call", [1, 2])
def test_resume_sees_the_mvm_snapshot_the_uninterrupted_run_saw(
        tmp_path: Path, stop_in_call: int) -> None:
    """With no wait between MVMs, the uninterrupted run would hold one conductance snapshot
    across a checkpoint or a step boundary, which a resumed (rebuilt) chip does not have:
    those points retake it in both, so the figures agree (a stop at the first compensation's
    checkpoint, and at the start of the second)."""
    reg = load_registry()
    poked = _with_sigint_after(reg, "compensate", 0, in_call=stop_in_call)
    proto = write(tmp_path / "two.yaml", TWO_COMPENSATIONS)
    ref = run(RunOptions(protocol=str(proto), out=str(tmp_path / "ref.h5"), progress=False,
                         seed=3, calibration_dir=str(tmp_path / "c1")), registry=reg)
    assert ref.status == "completed"
    out = tmp_path / "int.h5"
    o = run(RunOptions(protocol=str(proto), out=str(out), progress=False, seed=3,
                       interactive=False, calibration_dir=str(tmp_path / "c2")), registry=poked)
    assert o.status == "aborted"
    assert run(RunOptions(resume=str(out), progress=False, calibration_dir=str(tmp_path / "c2")),
               registry=reg).status == "completed"

    def results(path: Path) -> dict[int, dict[str, Any]]:
        with RunReader(path) as rd:
            return {r.step: r.payload for r in rd.of_kind(Kind.RESULT)}

    assert results(out) == results(tmp_path / "ref.h5")
