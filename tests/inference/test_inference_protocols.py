"""The inference routines as protocols: validation, and the three workloads run unchanged on
the simulated chip and over the wire (virtual instruments, both topologies) with identical
recorded reads and pulses, identical result arrays (reconstructions, samples, recall curves
— the MVMs are bit-identical too) and identical figures apart from the ledger's cost
estimates, which only the simulator models (energy is NaN over the wire; device time there
is the instruments' own accounting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labctl.core.errors import ConfigError
from labctl.runs.protocol import load_protocol
from labctl.runs.replay import plan_resume
from labctl.runs.run_loop import RunOptions
from labctl.runs.runner import load_registry, run
from labctl.runs.store.reader import RunReader
from labctl.runs.store.schema import Kind
from labctl.runs.store.summary import summarize

ROOT = Path(__file__).resolve().parents[2]
SMALL = """\
name: inference-small
steps:
  - routine: neural_field
    params: {n: 12, n_angles: 6, width: 8, depth: 2, prior_steps: 20, finetune_steps: 5,
             mapping: differential, compare_mappings: false, settle_first_s: 60.0,
             age_at_use_s: 600.0}
  - routine: diffusion
    params: {width: 8, train_steps: 30, batch: 32, n_train: 128, n_samples: 32, n_cal: 8,
             n_steps: 3, reference_steps: 6, continuous_steps: 6, mapping: differential,
             replicas: 1, age_at_use_s: 600.0}
  - routine: fast_weights
    params: {vocab: 32, n_pairs: 16, d_model: 32, d_key: 16, hidden: 16, chunk: 8,
             curve_points: 1, age_at_use_s: 600.0}
"""
COST_KEYS = ("energy", "device_time", "power", "host_time", "speedup", "latency")
"""Result keys from the backend's ledger (a simulator cost model, not measured over the wire)
or timed on the host (differ run to run)."""


def _is_cost(key: str) -> bool:
    return any(c in key for c in COST_KEYS)


def _run(tmp: Path, station: str, name: str, seed: int | None) -> Path:
    out = tmp / f"{name}.h5"
    outcome = run(RunOptions(protocol=str(tmp / "p.yaml"), station=str(ROOT / station),
                             out=str(out), seed=seed, calibration_dir=str(tmp / f"cal-{name}"),
                             interactive=False, progress=False))
    assert outcome.status == "completed", outcome.message
    return out


def _contents(path: Path) -> dict[str, Any]:
    with RunReader(path) as rd:
        arrays = {(r.step, n): r.array(n) for r in rd.of_kind(Kind.ARRAY)
                  for n in r.array_names()}
        results = {r.step: r.payload for r in rd.of_kind(Kind.RESULT)}
        return {"reads": rd.raw("reads"), "pulses": rd.raw("pulses"), "arrays": arrays,
                "results": results, "summary": "\n".join(summarize(rd))}


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("infer-sim")
    (tmp / "p.yaml").write_text(SMALL, encoding="utf-8")
    path = _run(tmp, "protocols/stations/sim.yaml", "sim", seed=0)
    return path, _contents(path)


def test_shipped_protocols_validate() -> None:
    reg = load_registry()
    for name in ("neural_field", "diffusion", "fast_weights"):
        proto = load_protocol(str(ROOT / "protocols" / f"{name}.yaml"), reg)
        assert [s.routine for s in proto.steps] == [name]


def test_parameters_are_range_checked(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("routine: diffusion\nparams: {width: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"width.*4 ≤ value ≤ 256"):
        load_protocol(str(p), load_registry())
    p.write_text("routine: fast_weights\nparams: {mapping: residual}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key"):
        load_protocol(str(p), load_registry())


def test_results_arrays_show_and_plot(sim_run: tuple[Path, dict[str, Any]],
                                     tmp_path: Path) -> None:
    from labctl.app.plots import plot_run

    path, c = sim_run
    nf, df, fw = (c["results"][i] for i in range(3))
    assert {"psnr_prior_db", "psnr_fbp_db", "psnr_float_db", "psnr_chip_db"} <= set(nf)
    assert {"swd_float", "swd_chip", "swd_floor", "swd_ratio", "outlier_fraction_chip",
            "cfg_accuracy_chip", "analog_layers_fraction", "energy_J_per_sample_chip",
            "device_time_s_per_sample_chip"} <= set(df)
    assert {"recall_float", "recall_chip", "recall_chance", "write_pulses_per_token",
            "onetime_pulses", "writes_per_cell_max"} <= set(fw)
    names = {n for _, n in c["arrays"]}
    assert {"recon_chip", "samples_chip", "samples_true", "recall_by_chunk_chip",
            "curve_recall_chip"} <= names
    assert c["pulses"].size > 0  # programming through program_fn is recorded
    assert "psnr_chip = " in c["summary"]  # the unit moves to the value: "23.5 dB"
    assert "recall_chip" in c["summary"]
    with RunReader(path) as rd:
        names = {p.name for p in plot_run(rd, tmp_path / "figs")}
    assert {"step1_reconstruction.png", "step2_samples.png", "step2_samples_guided.png",
            "step3_recall.png", "step3_writes_per_cell.png"} <= names


def test_wire_path_equals_simulator(tmp_path: Path,
                                    sim_run: tuple[Path, dict[str, Any]]) -> None:
    """Over the board topology the workloads give bit-identical files. (Board + SMU + pulse
    generator executes a batch as many instrument operations, each taking its own device
    time on the running clock, so it agrees only statistically: tests/drivers/.)"""
    station = "protocols/stations/virtual-lab.yaml"
    (tmp_path / "p.yaml").write_text(SMALL, encoding="utf-8")
    _, sim = sim_run
    wire = _contents(_run(tmp_path, station, "wire", seed=None))  # the station's seed is 0
    if "discrete" in station:
        # Discrete instruments execute batches cell by cell; with the simulated clock
        # running, cells see other ages, so results agree statistically, not bit for bit
        # (docs/simulator.md, Determinism): the same steps, arrays and result keys.
        assert sim["arrays"].keys() == wire["arrays"].keys()
        assert all(sim["results"][k].keys() == wire["results"][k].keys()
                   for k in sim["results"])
        return
    assert np.array_equal(sim["reads"], wire["reads"])
    for f in sim["pulses"].dtype.names or ():
        assert np.array_equal(sim["pulses"][f], wire["pulses"][f],
                              equal_nan=sim["pulses"][f].dtype.kind == "f"), f
    assert sim["arrays"].keys() == wire["arrays"].keys()
    for k, a in sim["arrays"].items():
        assert np.array_equal(a, wire["arrays"][k]), k
    for step, res in sim["results"].items():
        same = {k: v for k, v in res.items() if not _is_cost(k)}
        assert same == {k: v for k, v in wire["results"][step].items() if not _is_cost(k)}


def test_killed_run_is_readable_and_resumes_without_repeating_a_pulse(
        sim_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """A copy of the run cut just after the 3rd direct pulse batch of the neural-field step
    stands for a process killed mid-programming: show still reads it, and the resume
    re-executes the step against its record, then goes on: the finished file holds exactly
    the pulses and reads of the uninterrupted run."""
    import shutil

    import h5py

    src, ref = sim_run
    cut = tmp_path / "killed.h5"
    with RunReader(src) as rd:
        third_pulse = [r.seq for r in rd.all() if r.kind == Kind.PULSE][2]
    shutil.copy(src, cut)
    with h5py.File(cut, "r+") as f:  # drop every record after it: the committed prefix
        rec = f["log/records"]
        rec.resize((third_pulse,))
    with RunReader(cut) as rd:
        text = "\n".join(summarize(rd))
        assert "truncated" in text
        assert "re-executed against its record" in text
        plan = plan_resume(rd, 3)
        assert plan.first_step == 0 and len(plan.reexecute) >= 3
    outcome = run(RunOptions(resume=str(cut), calibration_dir=str(tmp_path / "cal"),
                             interactive=False, progress=False))
    assert outcome.status == "completed", outcome.message
    resumed = _contents(cut)
    assert resumed["pulses"].tobytes() == ref["pulses"].tobytes()  # NaN compliance: bytes
    assert resumed["reads"].tobytes() == ref["reads"].tobytes()
    for step, res in ref["results"].items():  # the ledger's cost figures count this process
        same = {k: v for k, v in res.items() if not _is_cost(k)}
        assert same == {k: v for k, v in resumed["results"][step].items() if not _is_cost(k)}
