"""Protocol files: every malformed file is a clear ConfigError naming file, key and allowed
range — raised before any hardware action, and exit code 2 with no traceback from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import yaml
from conftest import REPO, write
from hypothesis import HealthCheck, given, settings

from labctl.app.cli import main as cli_main
from labctl.core.errors import ConfigError
from labctl.core.routine_params import Float, Int, ParamError, Section, describe, validate
from labctl.runs.protocol import load_protocol
from labctl.runs.runner import load_registry

REGISTRY = load_registry()
PROGRAM = REPO / "protocols" / "program.yaml"


def test_shipped_protocols_validate() -> None:
    for name in ("forming.yaml", "program.yaml"):
        proto = load_protocol(REPO / "protocols" / name, REGISTRY)
        assert proto.steps
    vw = load_protocol(PROGRAM, REGISTRY).steps[1].params
    assert vw["set"]["start_V"] == 1.2
    assert vw["target"]["kind"] == "checkerboard"


def test_param_specs() -> None:
    spec = {"a_S": Float("a", unit="S", min=0.0, max=1e-5, default=1e-6),
            "n": Int("n", min=1, max=3),
            "s": Section("s", {"x": Int("x", default=2)}, default={})}
    assert validate(spec, {"n": 2, "a_S": 1e-6}) == {"a_S": 1e-6, "n": 2, "s": {"x": 2}}
    with pytest.raises(ParamError, match=r"a_S: must be a number .*; got '1e-6'"):
        validate(spec, {"n": 2, "a_S": "1e-6"})  # a quoted number is a string, never converted
    with pytest.raises(ParamError, match=r"a_S: must be a number with 0 S ≤ value ≤ 1e-05 S"):
        validate(spec, {"n": 1, "a_S": 1})
    with pytest.raises(ParamError, match=r"^n: missing"):
        validate(spec, {})
    with pytest.raises(ParamError, match=r"s\.y: unknown key; allowed: x"):
        validate(spec, {"n": 1, "s": {"y": 1}})
    with pytest.raises(ParamError, match="integer"):
        validate(spec, {"n": True})
    assert any("a_S" in line for line in describe(spec))


@pytest.mark.parametrize(("text", "key", "fragment"), [
    ("routine: verify_write\nparams: {tolerance_S: 1.0}\n", "params.tolerance_S", "≤ 2e-05 S"),
    ("routine: verify_write\nparams: {tolerence_S: 1.0e-6}\n", "params.tolerence_S",
     "unknown key"),
    ("steps:\n  - routine: forming\n    params: {width_s: 0.1}\n", "steps[0].params.width_s",
     "≤ 0.01 s"),
    ("steps:\n  - routine: nope\n", "steps[0].routine", "must be one of"),
    ("routine: forming\nextra: 1\n", "extra", "unknown top-level key"),
    ("routine: forming\nparams: {region: {tile: 0, rows: [4, 2]}}\n", "params.region.rows",
     "stop must exceed start"),
    ("routine: verify_write\nparams: {target: {kind: stripes}}\n", "params.target.kind",
     "checkerboard"),
    ("routine: verify_write\nparams: {target: {kind: file, path: nothere.npy}}\n",
     "params.target.path", "file not found"),
    ("routine: forming\nparams: [1, 2]\n", "params", "mapping"),
    ("routine: [forming\n", "(syntax)", "not valid YAML"),
    ("- 1\n- 2\n", "(top level)", "mapping"),
])
def test_config_errors_name_file_key_and_range(tmp_path: Path, text: str, key: str,
                                               fragment: str) -> None:
    p = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError) as ei:
        load_protocol(p, REGISTRY)
    assert ei.value.source == str(p)
    found = dict(ei.value.problems)
    assert key in found, ei.value.problems
    assert fragment in found[key]


def _run_cli(tmp_path: Path, proto: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli_main(["run", str(proto), "--out", str(tmp_path / "x.h5"), "--no-progress"])
    return code, capsys.readouterr().err


def test_chip_dependent_errors_before_any_action(tmp_path: Path, opened: list[Any],
                                                 cal_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Region outside the chip, or a voltage over the safety envelope: ConfigError after the
    backend opens and before it does anything."""
    region = "region: {tile: 0, rows: [0, 4], cols: [0, 4]}"
    for text in ("routine: forming\nparams: {region: {tile: 0, rows: [0, 300], cols: [0, 4]}}\n",
                 f"routine: forming\nparams: {{{region}, bitline_V: 4.5}}\n",
                 f"routine: verify_write\nparams: {{{region}, reset: {{stop_V: 3.5}}}}\n",
                 f"routine: verify_write\nparams: {{{region}, target: {{kind: uniform, "
                 "g_S: 50.0e-6}}\n"):
        p = write(tmp_path / "bad.yaml", text)
        code, err = _run_cli(tmp_path, p, capsys)
        assert code == 2, err
        assert str(p) in err
        assert "Traceback" not in err
    assert opened
    assert all(be.ledger.pulses == 0 and be.ledger.reads == 0 for be in opened)
    assert not (tmp_path / "x.h5").exists()


# ---- fuzzing ----
BASE: dict[str, Any] = yaml.safe_load(PROGRAM.read_text())
leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                 st.lists(st.integers(-5, 500), max_size=3))


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """The shipped program.yaml with one key replaced, added or broken, or raw junk."""
    import copy

    doc = copy.deepcopy(BASE)
    how = draw(st.sampled_from(["replace", "add", "junk", "truncate"]))
    if how == "junk":
        return draw(st.text(max_size=80))
    text = yaml.safe_dump(doc)
    if how == "truncate":
        return text[:draw(st.integers(0, len(text)))] + draw(st.sampled_from(["", "{", ": ]"]))
    step = draw(st.integers(0, len(doc["steps"]) - 1))
    params = doc["steps"][step].setdefault("params", {})
    if how == "add":
        params[draw(st.text(min_size=1, max_size=10))] = draw(leaf)
    else:
        key = draw(st.sampled_from(sorted(params) or ["region"]))
        sub = params.get(key)
        if isinstance(sub, dict) and sub and draw(st.booleans()):
            params[key][draw(st.sampled_from(sorted(sub)))] = draw(leaf)
        else:
            params[key] = draw(leaf)
    return yaml.safe_dump(doc)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated())
def test_fuzzed_protocols_fail_cleanly(tmp_path: Path, text: str) -> None:
    p = write(tmp_path / "fuzz.yaml", text)
    error: ConfigError | None = None
    try:
        proto = load_protocol(p, REGISTRY)
    except ConfigError as e:
        error = e
    if error is None:
        assert proto.steps  # a mutation that happens to be valid is fine
        return
    assert error.source == str(p)
    assert error.key
    assert error.problem


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mutated())
def test_fuzzed_protocols_cli_exit_2_and_no_pulse(tmp_path: Path, text: str, opened: list[Any],
                                                 capsys: pytest.CaptureFixture[str],
                                                 cal_dir: Path) -> None:
    """Through the CLI: an invalid file gives exit code 2, a one-line error naming the file
    and no traceback; no backend opened by it applied any pulse or read."""
    p = write(tmp_path / "fuzz.yaml", text)
    try:
        load_protocol(p, REGISTRY)
    except ConfigError:
        opened.clear()
        code, err = _run_cli(tmp_path, p, capsys)
        assert code == 2
        assert "Traceback" not in err
        assert str(p) in err
        assert "error:" in err
        assert all(be.ledger.pulses == 0 and be.ledger.reads == 0 for be in opened)
