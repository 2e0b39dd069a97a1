"""The CSV import of ``labctl fit`` treats a lab's export as untrusted input: every bad file
or value is a ConfigError naming the file, line and column (exit 2, no traceback), never a
preset with NaN in it and never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calibration import twin_data as td
from labctl.app.cli import main as cli
from labctl.core.errors import ConfigError

HEADER = "measurement,tile,row,col,time_s,read_V,gate_V,current_A,n_average,width_s,target_S"
GOOD = "survey,0,0,0,0.0,0.2,2.0,2e-9,,,"


def _csv(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    p = tmp_path / "m.csv"
    p.write_text("\n".join((header, *rows)) + "\n", encoding="utf-8")
    return p


@pytest.mark.parametrize(("row", "column"), [
    ("survey,0,0,0,0.0,0.2,2.0,nan,,,", "current_A"),
    ("survey,0,0,0,0.0,0.2,2.0,inf,,,", "current_A"),
    ("survey,0,0,0,0.0,0.2,2.0,1e400,,,", "current_A"),
    ("survey,0,0,0,0.0,0.2,2.0,2.5,,,", "current_A"),  # µA written as A
    ("survey,0,0,0,0.0,0,2.0,2e-9,,,", "read_V"),
    ("survey,0,0,0,0.0,nan,2.0,2e-9,,,", "read_V"),
    ("survey,0,0,0,0.0,-inf,2.0,2e-9,,,", "read_V"),
    ("survey,0,0,0,0.0,0.2,1e300,2e-9,,,", "gate_V"),
    ("survey,0,0,0,0.0,0.2,2.0,2e-9,0,,", "n_average"),
    ("survey,0,0,0,0.0,0.2,2.0,2e-9,-3.5,,", "n_average"),
    ("survey,0,0,0,0.0,0.2,2.0,2e-9,2.5,,", "n_average"),
    ("survey,-1,0,0,0.0,0.2,2.0,2e-9,,,", "tile"),
    ("survey,0,-2,0,0.0,0.2,2.0,2e-9,,,", "row"),
    ("survey,0,0,99999999999999999999999,0.0,0.2,2.0,2e-9,,,", "col"),
    ("survey,0,0,1.5,0.0,0.2,2.0,2e-9,,,", "col"),
    ("survey,0,0,0,nan,0.2,2.0,2e-9,,,", "time_s"),
    ("survey,0,0,0,inf,0.2,2.0,2e-9,,,", "time_s"),
    ("survey,0,0,0,-1,0.2,2.0,2e-9,,,", "time_s"),
    ("set_kinetics,0,0,0,0.0,0.2,2.0,2e-9,,0,", "width_s"),
    ("levels,0,0,0,0.0,0.2,2.0,2e-9,,,0", "target_S"),
    ("levels,0,0,0,0.0,0.2,2.0,2e-9,,,nan", "target_S"),
])
def test_invalid_value_names_line_and_column(tmp_path: Path, row: str, column: str) -> None:
    p = _csv(tmp_path, GOOD, row)
    with pytest.raises(ConfigError, match=f"line 3: {column}") as e:
        td.load_csv(p)
    assert str(p) in str(e.value)
    assert "must be" in e.value.problem


def test_cli_refuses_nan_with_exit_2_and_writes_no_preset(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _csv(tmp_path, "survey,0,0,0,0.0,0.2,2.0,nan,,,")
    out = tmp_path / "o.yaml"
    assert cli(["fit", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "line 2: current_A" in err and "finite" in err and "Traceback" not in err
    assert not out.exists()


def test_a_fit_the_simulator_cannot_load_is_refused_and_not_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every row is valid (a negative current is read noise around a tiny one), but survey
    reads that average below zero fit a negative pristine conductance: refused by name."""
    p = _csv(tmp_path, "survey,0,0,0,0.0,0.2,2.0,-1e-9,,,", "survey,0,0,1,0.0,0.2,2.0,-2e-9,,,")
    out = tmp_path / "o.yaml"
    assert cli(["fit", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "switching.pristine_S" in err and "nothing was written" in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*o.yaml*"))


def test_accepted_values(tmp_path: Path) -> None:
    """Negative currents (read noise at low G; a negative read voltage), an integral
    n_average written as a float (write_csv does), blank rows, spaces in the header."""
    p = _csv(tmp_path, "survey,0,0,0,0.0,0.2,2.0,-3e-9,4.0,,", ",,,,,,,,,,",
             "survey,0,0,1,1.5,-0.2,2.0,-4e-9,,,", "",
             "levels,1,1048575,1048575,1e5,0.2,2.0,4e-6,1,1e-6,2e-5",
             header=HEADER.replace(",", ", "))
    t = td.load_csv(p)
    assert len(t) == 3
    assert t["n_average"].tolist() == [4.0, 1.0, 1.0]
    assert t.g_S[1] == pytest.approx(2e-8)


def test_header_only_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no measurement rows"):
        td.load_csv(_csv(tmp_path))
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    with pytest.raises(ConfigError, match="empty file"):
        td.load_csv(p)


def test_binary_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "binary.csv"
    p.write_bytes(b"\x00\xff\xfe\x01garbage")
    with pytest.raises(ConfigError, match="cannot read as UTF-8 text"):
        td.load_csv(p)


def test_excel_utf8_bom_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "excel.csv"
    p.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\r\n{GOOD}\r\n".encode())
    assert len(td.load_csv(p)) == 1


def test_missing_file_and_directory_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "o.yaml")
    (tmp_path / "dir.csv").mkdir()
    for name, message in (("nonexist.csv", "measurement file not found"),
                          ("nonexist.h5", "measurement file not found"),
                          ("dir.csv", "is a directory; give a CSV or a run file")):
        assert cli(["fit", str(tmp_path / name), "--out", out]) == 2, name
        assert message in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not found"):
        td.load_csv(tmp_path / "nonexist.csv")


def test_write_csv_round_trips(tmp_path: Path) -> None:
    t = td.Table.of("levels", 0, [0, 1], [2, 3], 1.0, 0.2, 2.5, [4e-6, -1e-9],
                    n_average=8, target_S=2e-5, age_s=1.0)
    back = td.load_csv(td.write_csv(t, tmp_path / "t.csv"))
    for c in td.COLUMNS:
        assert back[c].tolist() == pytest.approx(t[c].tolist(), nan_ok=True), c


_cell = st.one_of(st.sampled_from(["", "0", "1", "-1", "0.2", "nan", "inf", "-inf", "1e400",
                                   "1e-9", "2.5", "99999999999999999999999", "survey",
                                   "levels", "x", '"', "\x00", " "]),
                  st.text(max_size=8))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(_cell, min_size=0, max_size=12), max_size=4))
def test_arbitrary_rows_give_a_table_or_a_config_error(tmp_path: Path,
                                                       rows: list[list[str]]) -> None:
    text = HEADER + "\n" + "\n".join(",".join(r) for r in rows)
    p = tmp_path / "h.csv"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    _table_or_config_error(p)


_number = st.one_of(st.floats().map(repr), st.integers().map(str), _cell)
_row = st.tuples(st.sampled_from(td.MEASUREMENTS), st.lists(_number, min_size=10, max_size=10))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, min_size=1, max_size=5))
def test_arbitrary_numbers_give_a_table_or_a_config_error(
        tmp_path: Path, rows: list[tuple[str, list[str]]]) -> None:
    """Rows with a valid measurement and number-like cells: reach the range checks."""
    text = HEADER + "\n" + "\n".join(",".join([m, *cells]) for m, cells in rows)
    p = tmp_path / "n.csv"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    _table_or_config_error(p)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_give_a_table_or_a_config_error(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "b.csv"
    p.write_bytes(HEADER.encode() + b"\n" + data if data[:1] == b"s" else data)
    _table_or_config_error(p)


def _table_or_config_error(p: Path) -> None:
    """Loading gives a Table whose numbers are all finite (NaN only in empty optional
    cells), or the project's own input error: never another exception."""
    try:
        t = td.load_csv(p)
    except ConfigError:
        return
    assert len(t) > 0
    for c in td.REQUIRED:
        assert bool((abs(t[c].astype(float)) < float("inf")).all()), c


def test_fit_out_may_be_a_directory_and_a_refused_fit_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _csv(tmp_path, "survey,0,0,0,0.0,0.2,2.0,-1e-9,,,")
    target = tmp_path / "presets"
    target.mkdir()
    assert cli(["fit", str(bad), "--out", str(target),
                "--export-csv", str(tmp_path / "m-out.csv")]) == 2
    assert not list(target.iterdir()) and not (tmp_path / "m-out.csv").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli(["fit", str(bad), "--out", str(blocker / "p.yaml")]) == 2
    assert "--out" in capsys.readouterr().err
