"""Campaigns over many dies on Dask: a small campaign, a worker killed mid-die, a campaign
killed as a whole and resumed. Nothing lost, nothing pulsed twice: every die's per-cell pulse
counts and verify outcomes equal those of the uninterrupted campaign."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import CHIP_SHAPE, KILL_PROTOCOL, labctl_cmd, subprocess_env

from labctl.app.cli import main as cli_main
from labctl.core.errors import ConfigError
from labctl.runs.campaign import run_campaign, start_campaign
from labctl.runs.campaign_plan import Manifest
from labctl.runs.store import Kind, RunReader

SEED = 5
N_DIES = 4
POLL_S = 0.02


def _die_record(path: Path) -> tuple[np.ndarray, dict[tuple[int, str], np.ndarray], int]:
    """(per-cell pulse counts, verify outcomes, resume count) of a die's run file."""
    with RunReader(path) as rd:
        counts = rd.pulse_counts(CHIP_SHAPE)
        outcomes = {(r.step, n): r.array(n) for r in rd.of_kind(Kind.ARRAY)
                    for n in r.array_names() if n in ("outcome", "n_pulses")}
        assert rd.complete, path
        return counts, outcomes, int(rd.attrs.get("resume_count", 0))


def _records(root: Path) -> dict[str, tuple[np.ndarray, dict, int]]:
    m = Manifest.load(root)
    return {e.die_id: _die_record(e.path(root, "run_file")) for e in m.dies}


def _committed(path: Path) -> int:
    try:
        with RunReader(path) as rd:
            return -1 if rd.complete else len(rd.records)
    except (ConfigError, OSError):
        return -1


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The uninterrupted 4-die campaign on 2 workers."""
    root = tmp_path_factory.mktemp("ref") / "campaign"
    ds = run_campaign(KILL_PROTOCOL, root, n_dies=N_DIES, workers=2, seed=SEED, progress=False)
    assert list(ds["status"].values) == ["completed"] * N_DIES
    return root, _records(root)


def test_small_campaign_writes_run_files_and_a_summary(reference: tuple[Path, dict],
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    root, recs = reference
    assert sorted(p.name for p in (root / "dies").glob("*.h5")) == \
        [f"d{i:03d}.h5" for i in range(N_DIES)]
    with xr.open_dataset(root / "summary.nc") as ds:  # netCDF4: xarray picks the engine
        assert ds.sizes["die"] == N_DIES
        assert np.all(np.isfinite(ds["x_mm"])) and np.all(np.isfinite(ds["y_mm"]))
        assert len(set(ds["seed"].values.tolist())) == N_DIES
        assert len(set(ds["chip_id"].values.tolist())) == N_DIES
        assert np.all(ds["forming.yield_fraction"] > 0.9)
        assert np.all(ds["verify_write.success_rate"] > 0.8)
        assert ds["verify_write.success_rate"].attrs["routine"] == "verify_write"
        # the summary's pulse totals are the run files'
        np.testing.assert_array_equal(
            ds["cell_pulses"].values, [recs[f"d{i:03d}"][0].sum() for i in range(N_DIES)])
    # dies differ (their own seeds and presets), and every die ran every cell of the region
    counts = [recs[f"d{i:03d}"][0] for i in range(N_DIES)]
    assert any(not np.array_equal(counts[0], c) for c in counts[1:])
    assert cli_main(["show", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"{N_DIES} completed" in out and "forming.yield_fraction" in out
    assert cli_main(["plot", str(root), "--result", "verify_write.success_rate"]) == 0
    assert (root / "plots" / "wafer_verify_write.success_rate.png").stat().st_size > 1000


def test_a_die_equals_the_same_chip_run_alone(reference: tuple[Path, dict],
                                              tmp_path: Path) -> None:
    """Running on a Dask worker changes nothing: die 1 run in-process from its station file
    gives the same pulses and outcomes."""
    from labctl.runs.runner import RunOptions, run

    root, recs = reference
    o = run(RunOptions(protocol=str(KILL_PROTOCOL), out=str(tmp_path / "alone.h5"),
                       station=str(root / "dies" / "d001.station.yaml"), progress=False,
                       calibration_dir=str(tmp_path / "cal")))
    assert o.status == "completed"
    counts, outcomes, _ = _die_record(tmp_path / "alone.h5")
    np.testing.assert_array_equal(counts, recs["d001"][0])
    for key, arr in recs["d001"][1].items():
        np.testing.assert_array_equal(outcomes[key], arr)


def _assert_same_as_reference(root: Path, recs: dict) -> int:
    """Every die complete with the reference's pulses; returns how many dies were resumed."""
    got = _records(root)
    for die, (counts, outcomes, _) in recs.items():
        diff = np.argwhere(got[die][0] != counts)
        assert diff.size == 0, f"{die}: pulse counts differ at {diff[:5].tolist()}"
        for key, arr in outcomes.items():
            np.testing.assert_array_equal(got[die][1][key], arr, err_msg=f"{die} {key}")
    return sum(1 for r in got.values() if r[2] > 0)


def test_killed_worker_is_replaced_and_its_die_resumed(reference: tuple[Path, dict],
                                                       tmp_path: Path) -> None:
    _, recs = reference
    root = tmp_path / "campaign"
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(start_campaign, KILL_PROTOCOL, root, n_dies=N_DIES, workers=2,
                          seed=SEED, progress=False)
        killed = None
        deadline = time.monotonic() + 300
        while killed is None and not fut.done() and time.monotonic() < deadline:
            for i in range(N_DIES):
                run_file = root / "dies" / f"d{i:03d}.h5"
                lock = root / "dies" / f"d{i:03d}.lock"
                if _committed(run_file) >= 40 and lock.is_file():
                    pid = int(lock.read_text().split()[1])
                    os.kill(pid, signal.SIGKILL)  # the worker process, mid-die
                    killed = f"d{i:03d}"
                    break
            time.sleep(POLL_S)
        result = fut.result(timeout=600)
    assert killed is not None, "no die was caught mid-run"
    assert result.n_failed == 0, result.summary["message"].values
    assert _assert_same_as_reference(root, recs) >= 1
    with RunReader(root / "dies" / f"{killed}.h5") as rd:
        assert rd.of_kind(Kind.RESUME), "the killed die was not resumed from its run file"
    assert json.loads((root / "dies" / f"{killed}.outcome.json").read_text())["attempt"] \
        == "resumed"


def test_killed_campaign_resumes_skipping_completed_dies(reference: tuple[Path, dict],
                                                         tmp_path: Path) -> None:
    """SIGKILL the whole campaign (client, scheduler, workers) once a die is mid-run and
    another may have finished; ``labctl run --resume DIR`` finishes it."""
    _, recs = reference
    root = tmp_path / "campaign"
    proc = subprocess.Popen(
        [*labctl_cmd(), "run", str(KILL_PROTOCOL), "--dies", str(N_DIES), "--workers", "2",
         "--seed", str(SEED), "--out", str(root), "--no-progress"],
        env=subprocess_env(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            done = [(root / "dies" / f"d{i:03d}.outcome.json").is_file() for i in range(N_DIES)]
            mid = [_committed(root / "dies" / f"d{i:03d}.h5") >= 30 for i in range(N_DIES)]
            if any(mid) and (any(done) or sum(mid) >= 2):
                break
            time.sleep(POLL_S)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    finished_before = {i for i in range(N_DIES)
                       if (root / "dies" / f"d{i:03d}.outcome.json").is_file()}
    assert len(finished_before) < N_DIES
    assert cli_main(["run", "--resume", str(root), "--workers", "2", "--no-progress"]) == 0
    assert _assert_same_as_reference(root, recs) >= 1
    for i in finished_before:  # completed dies were not run again
        out = json.loads((root / "dies" / f"d{i:03d}.outcome.json").read_text())
        assert out["attempt"] == "fresh"
    with xr.open_dataset(root / "summary.nc", engine="h5netcdf") as ds:
        assert list(ds["status"].values) == ["completed"] * N_DIES


def test_campaign_directory_is_never_overwritten(reference: tuple[Path, dict]) -> None:
    root, _ = reference
    with pytest.raises(ConfigError, match="another campaign"):
        run_campaign(KILL_PROTOCOL, root, n_dies=N_DIES + 1, seed=SEED, progress=False)
    # the same campaign again: nothing to run, same summary
    ds = run_campaign(KILL_PROTOCOL, root, n_dies=N_DIES, seed=SEED, progress=False)
    assert list(ds["status"].values) == ["completed"] * N_DIES


def test_bad_requests_fail_before_any_cluster(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--dies"):
        run_campaign(KILL_PROTOCOL, tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="--workers"):
        run_campaign(KILL_PROTOCOL, tmp_path / "b", n_dies=2, workers=2, scheduler="tcp://x:1")
    with pytest.raises(ConfigError, match="--dies"):
        run_campaign(KILL_PROTOCOL, tmp_path / "c", n_dies=0)
    with pytest.raises(ConfigError, match="protocol file not found"):
        run_campaign(tmp_path / "missing.yaml", tmp_path / "d", n_dies=2)
    lab = tmp_path / "lab.yaml"
    lab.write_text("station: {backend: instruments}\n"  # a valid station: board topology
                   "instruments: {board: {type: FpgaTestBoard, address: 'socket://10.0.0.5:5000'}}"
                   "\n")
    lab2 = tmp_path / "lab2.yaml"
    lab2.write_text(lab.read_text())
    with pytest.raises(ConfigError, match="one instrument cannot serve two dies"):
        run_campaign(KILL_PROTOCOL, tmp_path / "e", stations=[lab, lab2])
    with pytest.raises(ConfigError, match="one worker per station"):
        run_campaign(KILL_PROTOCOL, tmp_path / "f", stations=[lab], workers=3)
    assert not any((tmp_path / n).exists() and any((tmp_path / n).iterdir())
                   for n in "abcdef")


def test_campaign_over_stations_one_die_each(tmp_path: Path) -> None:
    """Two stations (simulated here; real ones work the same), one worker each; chips not
    on a wafer have no (x, y) and are drawn as bars."""
    stations = []
    for i in range(2):
        s = tmp_path / f"bench{i}.yaml"
        s.write_text(f"station: {{backend: sim, chip_id: lot7-chip{i}, seed: {100 + i}}}\n")
        stations.append(s)
    root = tmp_path / "lot"
    ds = run_campaign(KILL_PROTOCOL, root, stations=stations, seed=1, progress=False)
    assert list(ds["status"].values) == ["completed", "completed"]
    assert np.all(np.isnan(ds["x_mm"]))
    assert [str(c).split("-seed")[0] for c in ds["chip_id"].values] == \
        ["lot7-chip0", "lot7-chip1"]
    assert cli_main(["plot", str(root), "--result", "forming.yield_fraction"]) == 0
    assert (root / "plots" / "wafer_forming.yield_fraction.png").is_file()
    # asked again, the same campaign is finished (nothing to do), not refused
    again = run_campaign(KILL_PROTOCOL, root, stations=stations, seed=1, progress=False)
    assert list(again["status"].values) == ["completed", "completed"]


def test_ctrl_c_stops_dies_at_a_checkpoint_then_resumes(reference: tuple[Path, dict],
                                                         tmp_path: Path) -> None:
    """Ctrl+C on a terminal reaches the whole process group: the campaign asks every die to
    abort at its next checkpoint (safe state, RUN_END written), exits 130, and a resume
    finishes it with the reference's pulses."""
    _, recs = reference
    root = tmp_path / "campaign"
    proc = subprocess.Popen(
        [*labctl_cmd(), "run", str(KILL_PROTOCOL), "--dies", str(N_DIES), "--workers", "2",
         "--seed", str(SEED), "--out", str(root), "--no-progress"],
        env=subprocess_env(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if any(_committed(root / "dies" / f"d{i:03d}.h5") >= 30 for i in range(N_DIES)):
                break
            time.sleep(POLL_S)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert "--resume" in err
    aborted = 0
    for i in range(N_DIES):
        run_file = root / "dies" / f"d{i:03d}.h5"
        if not run_file.is_file():
            continue
        with RunReader(run_file) as rd:
            end = rd.all()[-1]
            assert end.kind == Kind.RUN_END, f"d{i:03d} ended without RUN_END"
            assert end.payload["safe_state_reached"] is True
            aborted += end.payload["status"] == "aborted"
    assert aborted >= 1
    assert cli_main(["run", "--resume", str(root), "--no-progress"]) == 0
    assert _assert_same_as_reference(root, recs) >= 1


def test_existing_scheduler_and_a_failing_die(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``--scheduler ADDRESS`` runs on a cluster started elsewhere; a die that fails (here
    its chip is too small for the protocol's region) is recorded with its error and the
    other die completes; the command exits 1 and ``show`` names the failure."""
    from distributed import LocalCluster

    good = tmp_path / "good.yaml"
    good.write_text("station: {backend: sim, chip_id: good-chip, seed: 3}\n")
    small = tmp_path / "small.yaml"
    small.write_text("station: {backend: sim, chip_id: small-chip, seed: 4,\n"
                     "          overrides: {array: {n_tiles: 1, n_rows: 8, n_cols: 8}}}\n")
    root = tmp_path / "lot"
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        rc = cli_main(["run", str(KILL_PROTOCOL), "--stations", str(good), str(small),
                       "--scheduler", cluster.scheduler_address, "--out", str(root),
                       "--no-progress"])
    assert rc == 1
    with xr.open_dataset(root / "summary.nc", engine="h5netcdf") as ds:
        assert list(ds["status"].values) == ["completed", "failed"]
        assert "steps[0].params.region" in str(ds["message"].values[1])
        assert np.isfinite(ds["forming.yield_fraction"].values[0])
        assert np.isnan(ds["forming.yield_fraction"].values[1])
    capsys.readouterr()
    assert cli_main(["show", str(root)]) == 0
    out = capsys.readouterr().out
    assert "1 completed, 1 failed" in out and "d001 failed" in out


def test_wafer_plan_builds_each_die_around_the_base_station(tmp_path: Path) -> None:
    """No cluster: the plan alone. Each die's station keeps the base station's preset,
    envelope and overrides, adds its own die-level values and chip seed, and opens."""
    import yaml

    from labctl.runs.backends import open_backend
    from labctl.runs.campaign_plan import plan_wafer

    base = tmp_path / "base.yaml"
    base.write_text("station: {backend: sim, chip_id: lotA, seed: 9,\n"
                    "  envelope: {max_bitline_V: 3.6},\n"
                    "  overrides: {periphery: {ir_drop: true}, switching: {set_gain: 0.1}}}\n")
    m = plan_wafer(tmp_path / "c", KILL_PROTOCOL, 5, 2, base)
    assert [e.die_id for e in m.dies] == [f"d{i:03d}" for i in range(5)]
    assert len({e.seed for e in m.dies}) == 5
    for e in m.dies:
        st = yaml.safe_load((tmp_path / "c" / e.station).read_text())["station"]
        assert st["chip_id"] == e.chip_id == f"lotA-wafer2-{e.die_id}"
        assert st["seed"] == e.seed
        assert st["envelope"] == {"max_bitline_V": 3.6}
        assert st["overrides"]["periphery"] == {"ir_drop": True}
        assert st["overrides"]["switching"]["set_gain"] == 0.1
        assert "form_V_mean" in st["overrides"]["switching"]
        with open_backend(str(tmp_path / "c" / e.station)) as be:
            assert be.chip.chip_id == e.chip_id
    lab = tmp_path / "lab.yaml"
    lab.write_text("station: {backend: instruments}\n"
                   "instruments: {board: {type: FpgaTestBoard, address: COM3}}\n")
    with pytest.raises(ConfigError, match="--stations"):
        plan_wafer(tmp_path / "d", KILL_PROTOCOL, 2, 0, lab)


def test_station_dies_go_to_the_worker_that_offers_their_station() -> None:
    from labctl.runs.campaign import submit_constraints
    from labctl.runs.campaign_die import DieTask

    def task(resource: str | None) -> DieTask:
        return DieTask("d000", "p.yaml", "s.yaml", "r.h5", 1, "cal", "o.json", "d.log",
                       "d.lock", "topic", resource, "stop")

    offered = {"labctl-station-lab-a", "GPU"}
    assert submit_constraints(task("labctl-station-lab-a"), offered) == \
        {"resources": {"labctl-station-lab-a": 1}}
    assert submit_constraints(task("labctl-station-lab-b"), offered) == {}
    assert submit_constraints(task(None), offered) == {}
