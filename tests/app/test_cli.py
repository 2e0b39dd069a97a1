"""The CLI as a user runs it: a subprocess, exit codes, output, and the bench JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def labctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labctl", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)


def test_help_lists_commands() -> None:
    r = labctl("--help")
    assert r.returncode == 0
    for cmd in ("info", "bench", "demo"):
        assert cmd in r.stdout


def test_info_describes_the_simulated_chip() -> None:
    r = labctl("info")
    assert r.returncode == 0, r.stderr
    assert "8 tiles × 256 rows × 512 cols" in r.stdout and "1 – 40 µS" in r.stdout
    r = labctl("info", "--json", "--station", "protocols/stations/sim.yaml")
    info = json.loads(r.stdout)
    assert info["chip"]["chip_id"] == "sim-180nm-0001"
    assert info["envelope"]["max_gate_V"] == 5.0


def test_demo_runs_and_prints_a_summary() -> None:
    r = labctl("demo", "--size", "32")
    assert r.returncode == 0, r.stderr
    assert "formed" in r.stdout and "median G" in r.stdout and "ledger" in r.stdout


def test_bench_writes_flat_json(tmp_path: Path) -> None:
    """Every section except inference (tests/inference has its own quick run) in one call:
    a flat JSON of metric → number, metadata under "meta"."""
    out = tmp_path / "bench.json"
    r = labctl("bench", "--only", "sim", "--only", "calibration", "--only", "wire", "--quick",
               "--json", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    for key in ("mvm_overhead_ratio", "mvm_overhead_ratio_no_irdrop", "pulse_read_cells_per_s",
                "verify_write_converged_fraction", "mvm_error_at_1s",
                "mvm_error_refreshed_at_1s",
                "wire_vs_direct_ratio", "wire_round_trips_per_batch", "discrete_ops_per_cell"):
        assert isinstance(data[key], float | int) and data[key] > 0, key
    assert all(isinstance(v, float | int) for k, v in data.items() if k != "meta")
    assert data["meta"]["sections"] == ["sim", "calibration", "wire"]
    assert data["meta"]["blas_threads"] == 1
    for key in ("date_utc", "cpu_model", "os", "command", "total_seconds"):
        assert data["meta"][key], key  # what the docs print beside the figures
    assert data["meta"]["command"] == ("labctl bench --only sim --only calibration --only wire "
                                       f"--quick --json {out}")
    assert "[1/3] bench sim: started" in r.stderr  # not a terminal: progress as log lines
    assert "[3/3] bench wire: finished in" in r.stderr


def test_bad_station_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("station: {backend: sim, seed: many}\n")
    r = labctl("info", "--station", str(bad))
    assert r.returncode == 2
    assert "station.seed" in r.stderr and "Traceback" not in r.stderr
