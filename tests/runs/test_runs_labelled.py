"""Run files as labelled data: typed, delta-coded arrays that round-trip exactly, the
``/data`` view with units and dimension scales, ``labctl export`` to netCDF that xarray opens
as one group per step, schema-1 files still readable, and the exit a signal during the
final rewrite gets."""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import HERE, labctl_cmd, subprocess_env, write
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from labctl.app.cli import main as cli_main
from labctl.core.errors import ConfigError
from labctl.runs.runner import RunOptions, run
from labctl.runs.store import Kind, RunReader, RunWriter
from labctl.runs.store.schema import KEYFRAME_EVERY

xr = pytest.importorskip("xarray")

V1_FILE = HERE / "data" / "run-schema1.h5"

PROTOCOL = """
name: labelled
steps:
  - routine: forming
    params:
      region: {tile: 0, rows: [2, 10], cols: [4, 16]}
      formed_threshold_S: 2.0e-6
  - routine: verify_write
    name: program
    params:
      region: {tile: 0, rows: [2, 10], cols: [4, 12]}
      target: {kind: random_uniform, low_S: 2.0e-6, high_S: 35.0e-6}
      tolerance_S: 1.0e-6
      max_pulses: 30
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("labelled")
    os.environ.setdefault("LABCTL_CALIBRATION_DIR", str(tmp / "cal"))
    o = run(RunOptions(protocol=str(write(tmp / "p.yaml", PROTOCOL)), out=str(tmp / "r.h5"),
                       progress=False))
    assert o.status == "completed"
    return tmp / "r.h5"


DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.int8, np.uint16,
                          np.bool_])


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_checkpoint_arrays_round_trip_exactly(tmp_path_factory: pytest.TempPathFactory,
                                              data: st.DataObject) -> None:
    """Whatever sequence of checkpoint states a routine yields — dtypes, shapes that change,
    runs longer than a keyframe interval — every state reads back bit for bit."""
    dtype = data.draw(DTYPES)
    shapes = st.sampled_from([(5,), (2, 3), (), (7,)])
    n = data.draw(st.integers(1, KEYFRAME_EVERY * 2 + 3))
    states = []
    for _ in range(n):
        shape = data.draw(shapes)
        a = data.draw(hnp.arrays(dtype, shape))
        b = data.draw(hnp.arrays(np.float64, (4,), elements=st.floats(allow_nan=True)))
        states.append({"a": a, "b": b})
    p = tmp_path_factory.mktemp("rt") / "r.h5"
    with RunWriter.create(p, {"chip_id": "c"}) as w:
        for i, s in enumerate(states):
            w.record(Kind.CHECKPOINT, step=0, payload={"i": i}, arrays=s)
    with RunReader(p) as rd:
        recs = rd.of_kind(Kind.CHECKPOINT)
        assert len(recs) == n
        for r, s in zip(recs, states, strict=True):
            for k, v in s.items():
                got = r.array(k)
                assert got.dtype == v.dtype and got.shape == v.shape
                assert got.tobytes() == np.ascontiguousarray(v).tobytes()


def test_data_view_has_units_dims_and_region_coordinates(finished: Path) -> None:
    with h5py.File(finished, "r") as f:
        g = f["data/step2_program"]
        assert g.attrs["routine"] == "verify_write"
        for name in ("g_final_S", "target_S", "outcome", "n_pulses"):
            ds = g[name]
            assert ds.shape == (8, 8)
            assert [d.label for d in ds.dims] == ["row", "col"]
            assert [list(d.keys()) for d in ds.dims] == [["row"], ["col"]]  # the scales
            assert ds.attrs["units"] == ("S" if name.endswith("_S") else "1")
        np.testing.assert_array_equal(g["row"][...], np.arange(2, 10))
        np.testing.assert_array_equal(g["col"][...], np.arange(4, 12))
        assert f["data/step1_forming/g_formed_S"].compression == "gzip"  # > 64 values
        assert f["data/step1_forming/g_formed_S"].shape == (8, 12)
    with xr.open_dataset(finished, group="data/step2_program", engine="h5netcdf") as ds:
        assert ds["g_final_S"].dims == ("row", "col")
        assert ds["g_final_S"].attrs["units"] == "S"
        assert int(ds["row"][0]) == 2


def test_export_into_a_directory_or_an_unwritable_place(
        finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A directory as --out gets RUN.nc in it; an unwritable place is a clear error (exit 2)
    naming the option, before anything is read or written."""
    target = tmp_path / "exports"
    target.mkdir()
    assert cli_main(["export", str(finished), "--out", str(target)]) == 0
    assert (target / finished.with_suffix(".nc").name).is_file()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli_main(["export", str(finished), "--out", str(blocker / "r.nc")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file" in err and "Traceback" not in err
    assert not list(tmp_path.glob("**/.*.partial"))


def test_export_two_lines_to_xarray_and_pandas(finished: Path, tmp_path: Path) -> None:
    """`labctl export RUN.h5` then `xr.open_datatree(RUN.nc)`: one group per step, units,
    named dims, the region as coordinates, pulses and reads as tables; scalars as CSV."""
    nc = tmp_path / "r.nc"
    assert cli_main(["export", str(finished), "--out", str(nc)]) == 0
    tree = xr.open_datatree(nc)
    assert set(tree.children) == {"step1_forming", "step2_program"}
    prog = tree["step2_program"].to_dataset()
    assert prog["g_final_S"].attrs["units"] == "S"
    assert list(prog["col"].values) == list(range(4, 12))
    df = prog[["g_final_S", "target_S"]].to_dataframe()
    assert df.index.names == ["row", "col"] and len(df) == 64
    with RunReader(finished) as rd:
        n_pulses = int(rd.pulse_counts((8, 256, 512)).sum())
        step2 = [r for r in rd.of_kind(Kind.ARRAY, step=1)][-1]
        np.testing.assert_array_equal(prog["g_final_S"].values, step2.array("g_final_S"))
    total = sum(tree[g].to_dataset().sizes.get("pulse", 0) for g in tree.children)
    assert total == n_pulses
    assert set(prog["pulse_kind"].values) <= {1, 2, 3}
    assert prog["pulse_amplitude_V"].attrs["units"] == "V"
    with open(tmp_path / "r_scalars.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {"step", "step_name", "routine", "name", "value", "units"} <= set(rows[0])
    assert any(r["name"] == "success_rate" and r["step"] == "2" for r in rows)


def test_schema1_file_is_still_readable(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A file written by labctl before schema 2 (float64 ``arrays``, no ``/data``)."""
    with RunReader(V1_FILE) as rd:
        assert rd.schema_version == 1 and rd.complete and not rd.damage
        assert int(rd.pulse_counts((8, 256, 512)).sum()) == 1178
        arrays = {(r.step, n): r.array(n) for r in rd.of_kind(Kind.ARRAY)
                  for n in r.array_names()}
        assert arrays[(1, "n_pulses")].dtype == np.int64
        assert int(arrays[(1, "n_pulses")].sum()) == 845
        assert arrays[(0, "outcome")].dtype == np.int8
        assert float(arrays[(1, "g_final_S")].sum()) == pytest.approx(0.0012731222151542085)
        last = rd.of_kind(Kind.CHECKPOINT)[-1]
        assert last.array_names()
    assert cli_main(["show", str(V1_FILE)]) == 0
    assert "status     completed" in capsys.readouterr().out
    nc = tmp_path / "v1.nc"
    assert cli_main(["export", str(V1_FILE), "--out", str(nc)]) == 0
    tree = xr.open_datatree(nc)
    assert tree["step2_verify_write"].to_dataset()["g_final_S"].dims == ("row", "col")


def test_show_several_files_and_a_directory(finished: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    d = tmp_path / "runs"
    d.mkdir()
    for name in ("quickstart-1.h5", "quickstart-2.h5"):
        shutil.copy(finished, d / name)
    shutil.copy(V1_FILE, d / "old.h5")
    assert cli_main(["show", *map(str, sorted(d.glob("quickstart-*.h5")))]) == 0
    out = capsys.readouterr().out
    assert "2 run files" in out and out.count("completed") >= 2
    assert cli_main(["show", str(d), "--full"]) == 0
    out = capsys.readouterr().out
    assert "3 run files" in out and "v1-fixture" in out and "status     completed" in out


def test_signal_during_final_rewrite_reports_what_the_file_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl+C (or SIGTERM) while the finished run's file is being rewritten: the rewrite
    completes, no temporary file is left, and the run is reported completed — as its file
    says — instead of "interrupted"."""
    real = RunWriter.close_and_compact

    def interrupted_rewrite(self: RunWriter) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        real(self)

    monkeypatch.setattr(RunWriter, "close_and_compact", interrupted_rewrite)
    monkeypatch.setenv("LABCTL_CALIBRATION_DIR", str(tmp_path / "cal"))
    out = tmp_path / "r.h5"
    code = cli_main(["run", str(write(tmp_path / "p.yaml", PROTOCOL)), "--out", str(out),
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "while finishing the run file" in err
    with RunReader(out) as rd:
        assert rd.complete
    with h5py.File(out, "r") as f:
        assert "data" in f  # the rewrite did finish
    assert sorted(p.name for p in tmp_path.glob(".r.h5*")) == []


def test_export_of_a_killed_run(tmp_path: Path) -> None:
    """A file without RUN_END (and so without ``/data``) exports what it committed."""
    import subprocess
    import time

    out = tmp_path / "k.h5"
    proc = subprocess.Popen([*labctl_cmd(), "run", str(write(tmp_path / "p.yaml", PROTOCOL)),
                             "--out", str(out), "--no-progress"], env=subprocess_env(tmp_path),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while proc.poll() is None and not _has_step_end(out):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    nc = tmp_path / "k.nc"
    assert cli_main(["export", str(out), "--out", str(nc)]) == 0
    tree = xr.open_datatree(nc)
    assert "step1_forming" in tree.children
    assert tree["step1_forming"].to_dataset()["g_formed_S"].attrs["units"] == "S"


def _has_step_end(path: Path) -> bool:
    try:
        with RunReader(path) as rd:
            return bool(rd.of_kind(Kind.STEP_END))
    except (ConfigError, OSError):
        return False


def test_export_never_overwrites_a_run_file(finished: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.h5"
    other.write_bytes(finished.read_bytes())
    before = other.read_bytes()
    assert cli_main(["export", str(finished), "--out", str(other)]) == 2
    assert "labctl run file" in capsys.readouterr().err
    assert other.read_bytes() == before
    assert cli_main(["export", str(finished), "--out", str(tmp_path / "new") + "/"]) == 0
    assert (tmp_path / "new" / finished.with_suffix(".nc").name).is_file()
