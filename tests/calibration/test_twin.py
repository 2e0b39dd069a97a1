"""Digital twin recovery: a chip whose physics was moved is measured with protocols/twin.yaml
and fitted with ``labctl fit``; the fit reads only the run file (or its CSV export), never
the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labctl.app.cli import main as cli
from sim_backend import SimBackend, load_preset

uS = 1e-6
MOVED = {  # section.field: (default, moved value) — every one moved by 20–60 %
    "read.relative_sigma": (0.015, 0.021),
    "read.lf_relative_sigma": (0.0294, 0.020),
    "faults.stuck_lrs_rate": (0.002, 0.003),
    "faults.stuck_hrs_rate": (0.002, 0.0028),
    "relaxation.mean_shift_S_per_ln_t": (-0.089 * uS, -0.125 * uS),
    "transistor.beta_A_per_V2": (10.2e-6, 13.3e-6),
    "transistor.v_th_V": (0.7, 0.85),
    "switching.as_formed_mean_S": (14.25 * uS, 18.0 * uS),
    "switching.form_current_mean_A": (3e-6, 4e-6),
    "switching.hrs_mean_S": (0.5 * uS, 0.65 * uS),
}


def _station(tmp_path: Path) -> Path:
    overrides: dict[str, dict[str, float]] = {}
    for key, (_, moved) in MOVED.items():
        sec, name = key.split(".")
        overrides.setdefault(sec, {})[name] = moved
    st = tmp_path / "moved.yaml"
    st.write_text(yaml.safe_dump({"station": {"backend": "sim", "chip_id": "moved", "seed": 5,
                                              "overrides": overrides}}), encoding="utf-8")
    return st


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("twin")
    out = tmp / "twin.h5"
    assert cli(["run", "protocols/twin.yaml", "--station", str(_station(tmp)),
                "--out", str(out), "--no-progress", "--calibration-dir", str(tmp / "cal")]) == 0
    return out


def test_moved_chip_is_recovered_within_15_percent(twin_run: Path, tmp_path: Path) -> None:
    preset_path = tmp_path / "twin.yaml"
    assert cli(["fit", str(twin_run), "--out", str(preset_path)]) == 0
    doc = yaml.safe_load(preset_path.read_text(encoding="utf-8"))
    for key, (default, moved) in MOVED.items():
        sec, name = key.split(".")
        got = doc[sec][name]
        assert got == pytest.approx(moved, rel=0.15), (key, got, moved)
        assert abs(got - moved) < abs(default - moved), key  # closer to the truth than the default
        assert doc["fit"]["stderr"][key] > 0
    assert "switching.form_V_mean" in doc["fit"]["unidentified"]
    preset = load_preset(preset_path)  # the preset's own names: it loads as a station preset
    assert preset.transistor.beta_A_per_V2 == doc["transistor"]["beta_A_per_V2"]
    assert SimBackend(preset_path, seed=1).chip.g_max_S == 40e-6


def test_csv_export_fits_the_same(twin_run: Path, tmp_path: Path) -> None:
    """The documented CSV format carries everything the fit uses."""
    a, b, csv = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "data.csv"
    assert cli(["fit", str(twin_run), "--out", str(a), "--export-csv", str(csv)]) == 0
    assert cli(["fit", str(csv), "--out", str(b)]) == 0
    da, db = (yaml.safe_load(p.read_text(encoding="utf-8")) for p in (a, b))
    for key in MOVED:
        sec, name = key.split(".")
        assert db[sec][name] == pytest.approx(da[sec][name], rel=1e-9)


def test_bad_csv_names_line_and_column(tmp_path: Path) -> None:
    from calibration import twin_data as td
    from labctl.core.errors import ConfigError

    p = tmp_path / "bad.csv"
    p.write_text("measurement,tile,row,col,time_s,read_V,gate_V,current_A\n"
                 "survey,0,0,0,0.0,0.2,2.5,1e-9\nsurvey,0,0,1,0.0,0.2,2.5,lots\n",
                 encoding="utf-8")
    with pytest.raises(ConfigError, match="line 3: current_A"):
        td.load_csv(p)
    p.write_text("measurement,tile,row\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="missing column"):
        td.load_csv(p)
