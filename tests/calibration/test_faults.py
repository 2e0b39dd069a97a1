"""Fault maps, column remapping and the calibration record that stores them."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from calibration.faults import ColumnRemap, classify, stuck_bounds
from labctl.runs.store import FAULT_CODES, CalibrationRecord

from .conftest import run_protocol

OK, UNF, LRS, HRS = (FAULT_CODES[k] for k in ("ok", "unformed", "stuck_lrs", "stuck_hrs"))


def test_classify() -> None:
    g = np.array([60e-6, 0.5e-6, 0.01e-6, 10e-6])
    t = np.array([20e-6, 20e-6, 5e-6, 10e-6])
    code = classify(np.array([False, False, True, False]), np.array([True, True, False, False]),
                    g, t)
    assert code.tolist() == [LRS, HRS, UNF, OK]


def test_a_stuck_verdict_is_a_fault_only_where_the_cell_never_switched() -> None:
    """One-way verdicts in a 1–40 µS window: stuck going up at 25 µS (it SET; its transistor
    caps it) is no fault (unknown), going up at 0.8 µS stuck at HRS; stuck going down at
    60 µS is stuck at LRS, going down at 1.5 µS (it RESET, slowly) unknown."""
    g = np.array([25e-6, 0.8e-6, 60e-6, 1.5e-6])
    t = np.array([38e-6, 20e-6, 5e-6, 1.0e-6])
    code = classify(np.zeros(4, bool), np.ones(4, bool), g, t,
                    went_up=np.array([True, True, False, False]), window_S=(1e-6, 40e-6))
    unknown = FAULT_CODES["unknown"]
    assert code.tolist() == [unknown, HRS, LRS, unknown]
    assert np.allclose(stuck_bounds(1e-6, 40e-6), (10.75e-6, 20.5e-6))


def test_column_remap_moves_faulty_columns_to_good_spares() -> None:
    fm = np.zeros((4, 10), np.int8)            # 6 logical columns, spares 6..9
    fm[1, 2] = LRS                              # logical column 2 faulty
    fm[3, 4] = UNF                              # logical column 4 faulty
    fm[0, 6] = HRS                              # first spare is itself faulty
    m = ColumnRemap.build(fm, 6, [6, 7, 8, 9])
    assert m.physical.tolist() == [0, 1, 7, 3, 8, 5]
    assert m.unrepaired == []
    y = np.arange(10.0)[None, :]
    assert m.gather(y).tolist() == [[0, 1, 7, 3, 8, 5]]
    pairs = ColumnRemap.build(fm, 6, [6, 8], pair=True)   # pairs (2,3), (4,5) faulty
    assert pairs.physical.tolist() == [0, 1, 8, 9, 4, 5]
    assert pairs.unrepaired == [4]                        # spare pair (6,7) is faulty
    assert ColumnRemap.from_dict(pairs.to_dict()).physical.tolist() == pairs.physical.tolist()
    fm[:, 9] = -1                                          # unknown spares are not used
    assert ColumnRemap.build(fm, 6, [9]).unrepaired == [2, 4]


def test_fault_map_routine_finds_simulated_faults(tmp_path: Path, cal_dir: Path) -> None:
    """On a chip with 2 % stuck-LRS, 1 % stuck-HRS and 1 % unformable cells, forming +
    verify-write + fault_map classify every one correctly (ground truth from the simulator)
    while flagging at most 3 of ~500 good cells (a slow cell can look stuck), and the remap
    moves faulty pairs to good spares."""
    station = """
station:
  backend: sim
  chip_id: faulty-chip
  seed: 3
  overrides:
    faults: {stuck_lrs_rate: 0.02, stuck_hrs_rate: 0.01, unformable_rate: 0.01}
"""
    region = "{tile: 0, rows: [0, 16], cols: [0, 32]}"
    res, arr = run_protocol(tmp_path, f"""
steps:
  - routine: forming
    params: {{region: {{tile: 0, rows: [0, 16], cols: [0, 128]}}, formed_threshold_S: 2.0e-6}}
  - routine: verify_write
    params: {{region: {region}, target: {{kind: random_uniform, low_S: 2.0e-6,
              high_S: 38.0e-6}}}}
  - routine: fault_map
    params: {{region: {region}, spare_cols: [32, 128], remap_name: layer0}}
""", station=station)
    from sim_backend import SimBackend, load_preset

    be = SimBackend(load_preset("default_180nm").with_changes(
        faults={"stuck_lrs_rate": 0.02, "stuck_hrs_rate": 0.01, "unformable_rate": 0.01}),
        seed=7)                                            # run_protocol's --seed
    truth = be.macro.fault_map(0)[:16, :32]               # sim: 1 LRS, 2 HRS, 3 unformable
    got = arr[2]["fault_map"][:, :32]
    want = np.select([truth == 1, truth == 2, truth == 3], [LRS, HRS, UNF], OK)
    faulty = want != OK
    np.testing.assert_array_equal(got[faulty], want[faulty])    # every true fault, right kind
    assert (got[~faulty] != OK).sum() <= 3                      # few good cells misflagged
    rec = CalibrationRecord.load("faulty-chip-seed7", (8, 256, 512))
    m = rec.remap["layer0"]
    assert res[2]["remapped"] > 0
    phys = np.array(m["physical"])
    moved = phys != np.arange(32)
    assert (phys[moved] >= 32).all()
    assert (rec.fault_map[0, :16][:, phys[moved]] == OK).all()


def test_calibration_record_schema_2_round_trip_and_reads_schema_1(tmp_path: Path) -> None:
    rec = CalibrationRecord.blank("c", (1, 4, 4))
    rec.remap["x"] = {"physical": [0, 3]}
    rec.drift["global_y0_mean_abs_A"] = np.array([1e-5])
    rec.save(tmp_path)
    back = CalibrationRecord.load("c", (1, 4, 4), tmp_path)
    assert back.remap == {"x": {"physical": [0, 3]}}
    with h5py.File(CalibrationRecord.path_for("c", tmp_path), "r") as f:
        assert int(f.attrs["schema_version"]) == 2
    with h5py.File(CalibrationRecord.path_for("c", tmp_path), "a") as f:   # make it schema 1
        f.attrs["schema_version"] = 1
        del f.attrs["remap"]
        assert json.loads(f.attrs["programming"]) == {}
    old = CalibrationRecord.load("c", (1, 4, 4), tmp_path)
    assert old.remap == {}
    assert old.drift["global_y0_mean_abs_A"][0] == 1e-5
