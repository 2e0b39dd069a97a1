"""Files are data, never code, and every field is validated with its type and a plausible
physical range; every problem of a file is reported at once, with its dotted key and a
suggestion for a misspelt key."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from labctl.core import yamlio
from labctl.core.envelope import RATED_MAX, SafetyEnvelope
from labctl.core.errors import ConfigError
from labctl.core.station_schema import (
    Envelope,
    station_json_schema,
    validate_station,
)
from labctl.core.station_spec import parse_station
from labctl.runs.protocol import load_protocol, protocol_json_schema
from labctl.runs.runner import load_registry

ROOT = Path(__file__).resolve().parents[2]
REG = load_registry()


def _bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "station:\n  backend: sim\ninstruments:\n" + "\n".join("  " + x for x in lines)


# ---- YAML ----
def test_alias_bomb_is_refused_before_it_expands() -> None:
    text = _bomb(8)  # 9**9 ≈ 387 million strings once expanded
    t0 = time.process_time()
    with pytest.raises(ConfigError, match="expands to more than"):
        yamlio.load(text, "bomb.yaml")
    # CPU seconds, generous: the point is "not 77 s and 3 GB", not a benchmark.
    assert time.process_time() - t0 < 5.0


@pytest.mark.parametrize(("text", "match"), [
    ("a: &a [*a]\n", "recursive"),
    ("x: " + "[" * 40 + "]" * 40 + "\n", "nested more than"),
    ("a: 1\na: 2\n", "appears twice"),
    ("s: " + "9" * 5000 + "\n", "thousands of digits"),
    ("a: !!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
    ("a: [1, 2\n", "not valid YAML at line"),
    ("x: 1\n" + "# pad\n" * 200_000, "larger than"),
])
def test_hostile_yaml_is_refused_with_a_clear_error(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        yamlio.load(text, "f.yaml")


def test_a_duplicate_mapping_key_is_named_without_placeholder_values() -> None:
    with pytest.raises(ConfigError) as e:
        yamlio.load("region:\n  tile: 0\nregion:\n  tile: 1\n", "f.yaml")
    assert 'duplicate key "region"' in str(e.value) and "{}" not in str(e.value)


def test_yaml_1_2_not_1_1() -> None:
    data = yamlio.load("t: 1:40\nb: yes\nf: 1e-4\nn: no\n")
    assert data == {"t": "1:40", "b": "yes", "f": 1e-4, "n": "no"}


def test_aliases_within_the_limits_still_work() -> None:
    data = yamlio.load("r: &r {tile: 0, rows: [0, 4], cols: [0, 4]}\ns: [*r, *r]\n")
    assert data["s"][0] == data["r"]


# ---- station files ----
def _station(**kw: Any) -> dict[str, Any]:
    return {"station": {"backend": "sim", **kw}}


@pytest.mark.parametrize("seed", ["1234", 12.5, True, -1, 10**400, 2**63, None, [1]])
def test_a_seed_is_an_integer(seed: Any) -> None:
    with pytest.raises(ConfigError) as e:
        parse_station(_station(seed=seed), "s.yaml")
    assert e.value.key == "station.seed"
    assert len(str(e.value)) < 300  # a 400-digit number is named, not printed


@pytest.mark.parametrize(("key", "value"), [("max_bitline_V", 400.0), ("max_width_s", 1e6),
                                            ("max_compliance_A", 5.0), ("max_gate_V", "5"),
                                            ("max_read_V", True), ("max_sourceline_V", 0.0),
                                            ("max_gate_V", float("inf"))])
def test_envelope_within_the_instruments_ratings(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as e:
        parse_station(_station(envelope={key: value}), "s.yaml")
    assert e.value.key == f"station.envelope.{key}"
    if isinstance(value, float) and 1 < value < float("inf"):
        with pytest.raises(ConfigError, match="rated"):
            SafetyEnvelope(**{key: value})


def test_envelope_schema_has_every_envelope_field() -> None:
    assert set(Envelope.model_fields) == set(SafetyEnvelope.__dataclass_fields__) == set(RATED_MAX)
    assert Envelope().model_dump() == SafetyEnvelope().to_dict()


def test_every_problem_at_once_with_suggestions() -> None:
    doc = {"station": {"backend": "instruments", "topolgy": "board", "virtual": "yes",
                       "seed": "7", "envelope": {"max_bitline_V": 400}},
           "instrumnets": {}}
    with pytest.raises(ConfigError) as e:
        validate_station(doc, "s.yaml")
    found = dict(e.value.problems)  # type: ignore[attr-defined]
    assert set(found) >= {"instrumnets", "station.topolgy", "station.virtual", "station.seed",
                          "station.envelope.max_bitline_V"}
    assert "did you mean 'instruments'" in found["instrumnets"]
    assert "did you mean 'topology'" in found["station.topolgy"]
    assert "5 problems" in str(e.value) or "6 problems" in str(e.value)


@pytest.mark.parametrize("key", ["virtual_provider", "provider", "module", "plugin"])
def test_no_station_key_names_code(key: str) -> None:
    doc = {"station": {"backend": "instruments", "virtual": True, key: "os:system"},
           "instruments": {"board": {"type": "FpgaTestBoard"}}}
    with pytest.raises(ConfigError, match="unknown key"):
        parse_station(doc, "s.yaml")


def test_resume_refuses_a_recorded_station_that_names_code(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run file is data too: a recorded station with ``virtual_provider`` (what older
    versions imported and called) is refused on --resume before anything is opened."""
    import h5py

    from labctl.app.cli import main

    proto = tmp_path / "p.yaml"
    proto.write_text("routine: read_map\nparams: {region: {tile: 0, rows: [0, 2], "
                     "cols: [0, 2]}}\n", encoding="utf-8")
    out = tmp_path / "r.h5"
    assert main(["run", str(proto), "--out", str(out), "--no-progress",
                 "--calibration-dir", str(tmp_path / "cal")]) == 0
    with h5py.File(out, "r+") as f:
        st = json.loads(f.attrs["station_effective"])
        st["station"].update(backend="instruments", virtual=True,
                             virtual_provider="os:system")
        f.attrs["station_effective"] = json.dumps(st)
    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "recorded station" in err and "virtual_provider" in err and "Traceback" not in err


@pytest.mark.parametrize("seed", ["-1", str(2**63), "9" * 400])
def test_seed_option_is_range_checked(seed: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from labctl.app.cli import main

    code = main(["run", str(ROOT / "protocols" / "forming.yaml"), "--seed", seed,
                 "--out", str(tmp_path / "r.h5"), "--calibration-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "--seed" in err and "Traceback" not in err and len(err) < 400
    assert not (tmp_path / "r.h5").exists()


# ---- protocol files ----
def test_protocol_problems_all_at_once(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("nmae: x\nsteps:\n"
                 "  - routine: formng\n"
                 "  - routine: verify_write\n"
                 "    params: {region: {tile: 0, rows: [0, 4], cols: [0, 4]}, tolerence_S: 1,"
                 " n_average: 2.5, read_V: '0.2'}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_protocol(p, REG)
    found = dict(e.value.problems)  # type: ignore[attr-defined]
    assert "did you mean 'name'" in found["nmae"]
    assert "did you mean 'forming'" in found["steps[0].routine"]
    assert "did you mean 'tolerance_S'" in found["steps[1].params.tolerence_S"]
    assert "integer" in found["steps[1].params.n_average"]
    assert "got '0.2'" in found["steps[1].params.read_V"]


@pytest.mark.parametrize("routine", ["forming", "verify_write", "characterize", "refresh"])
def test_a_routine_that_pulses_needs_an_explicit_region(tmp_path: Path, routine: str) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(f"routine: {routine}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_protocol(p, REG)
    assert "params.region" in dict(e.value.problems)  # type: ignore[attr-defined]
    p.write_text(f"routine: {routine}\nparams: {{region: {{rows: [0, 4], cols: [0, 4]}}}}\n",
                 encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_protocol(p, REG)
    assert "params.region.tile" in dict(e.value.problems)  # type: ignore[attr-defined]


# ---- JSON Schema for editors ----
def test_schemas_accept_shipped_files_and_reject_typos() -> None:
    proto_schema = protocol_json_schema(REG)
    station_schema = station_json_schema()
    jsonschema.Draft202012Validator.check_schema(proto_schema)
    jsonschema.Draft202012Validator.check_schema(station_schema)
    for f in sorted((ROOT / "protocols").glob("*.yaml")):
        jsonschema.validate(yamlio.load(f.read_text()), proto_schema)
    for f in sorted((ROOT / "protocols" / "stations").glob("*.yaml")):
        jsonschema.validate(yamlio.load(f.read_text()), station_schema)
    bad = yamlio.load((ROOT / "protocols" / "program.yaml").read_text())
    bad["steps"][1]["params"]["tolerence_S"] = 1e-6
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, proto_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"station": {"backend": "sim", "seed": "1"}}, station_schema)


def test_schema_command_writes_both(tmp_path: Path) -> None:
    from labctl.app.cli import main

    assert main(["schema", "--out", str(tmp_path / "s")]) == 0
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["protocol.schema.json", "station.schema.json"]
    assert json.loads((tmp_path / "s" / "station.schema.json").read_text())["title"]


# ---- output locations, before any operation ----
@pytest.mark.parametrize("option", ["--out", "--calibration-dir"])
def test_unwritable_outputs_refused_before_any_operation(
        tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]) -> None:
    from labctl.app.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proto = ROOT / "protocols" / "forming.yaml"
    args = {"--out": ["--out", str(blocker / "run.h5"),
                      "--calibration-dir", str(tmp_path / "cal")],
            "--calibration-dir": ["--out", str(tmp_path / "run.h5"),
                                  "--calibration-dir", str(blocker / "cal")]}[option]
    assert main(["run", str(proto), *args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err
    assert not (tmp_path / "run.h5").exists()


def test_unwritable_plot_outdir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from labctl.app.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proto = tmp_path / "p.yaml"
    proto.write_text("routine: read_map\nparams: {region: {tile: 0, rows: [0, 2], "
                     "cols: [0, 2]}}\n", encoding="utf-8")
    out = tmp_path / "r.h5"
    assert main(["run", str(proto), "--out", str(out), "--no-progress",
                 "--calibration-dir", str(tmp_path / "cal")]) == 0
    capsys.readouterr()
    assert main(["plot", str(out), "--outdir", str(blocker / "plots")]) == 2
    err = capsys.readouterr().err
    assert "--outdir" in err and "Traceback" not in err


def test_a_value_just_outside_the_envelope_is_shown_in_full() -> None:
    """%g would print 4.0000001 V as "4 V", which reads as inside "0 V ≤ … ≤ 4 V"."""
    from labctl.core.envelope import SafetyEnvelope
    from labctl.core.errors import EnvelopeViolation

    env = SafetyEnvelope()
    limit = env.terminal_limit_V("BL")
    with pytest.raises(EnvelopeViolation, match=r"= 4\.0000001 V") as e:
        env.check_pulse("BL", [limit + 1e-7], [1.0], [1e-6])
    assert e.value.offending != f"{limit:g} V"
    with pytest.raises(EnvelopeViolation, match=r"width = 0\.001000000001 s"):
        env.check_pulse("BL", [1.0], [1.0], [env.max_width_s * (1 + 1e-9)])
    with pytest.raises(EnvelopeViolation, match=r"= 5 V"):  # far outside: short form
        env.check_pulse("BL", [5.0], [1.0], [1e-6])


def test_a_limit_rounded_past_the_value_is_shown_in_full_too() -> None:
    from labctl.core.envelope import SafetyEnvelope
    from labctl.core.errors import EnvelopeViolation

    with pytest.raises(EnvelopeViolation) as e:
        SafetyEnvelope().check_voltage("gate (WL)", [2.5432061], 2.543206)
    assert "2.5432061 V" in str(e.value) and "≤ 2.543206 V" in str(e.value)


def test_a_dac_above_the_read_limit_says_how_to_fix_it() -> None:
    from labctl.core.envelope import SafetyEnvelope
    from sim_backend import SimBackend

    with pytest.raises(ConfigError, match=r"overrides: \{periphery: \{mvm_input_max_V"):
        SimBackend("default_180nm", seed=0, envelope=SafetyEnvelope(max_read_V=0.05))
