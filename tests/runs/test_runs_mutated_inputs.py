"""Hundreds of mutations of the shipped protocol and station files, through the loader, the
validation and the chip-dependent checks: each ends in a clear error naming the file (a
``ConfigError``) or in a valid protocol / station — never a traceback of another kind.

Mutations are textual (characters changed, lines dropped or duplicated, tokens YAML 1.1
would have read differently, anchors and aliases, hostile tags, huge numbers) and
structural (a value replaced by one of another type or range, a key added, dropped or
misspelt). Seeded and bounded (``derandomize``) for CI.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labctl.core import yamlio
from labctl.core.errors import ConfigError
from labctl.core.station_spec import parse_station
from labctl.runs.backends import open_backend
from labctl.runs.protocol import check_against_chip, parse_protocol_text
from labctl.runs.runner import load_registry

ROOT = Path(__file__).resolve().parents[2]
REG = load_registry()
PROTOCOLS = sorted((ROOT / "protocols").glob("*.yaml"))
STATIONS = sorted((ROOT / "protocols" / "stations").glob("*.yaml"))
TOKENS = ["yes", "no", "on", "1:40", "~", "null", ".nan", ".inf", "-.inf", "0x1F", "0o17",
          "1e-4", "'1e-4'", "\"1234\"", "12.5", "true", "9" * 400, "-1", "2026-01-01",
          "&a", "*a", "!!python/object/apply:os.system ['true']", "{", "[", "]", ":", "- ",
          "region", "virtual_provider: os:system", "\t", "'", "\"", "\x00", "\u00e9"]
leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                 st.integers(-(10**400), 10**400), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=12), st.lists(st.integers(-5, 600), max_size=3),
                 st.dictionaries(st.text(max_size=6), st.integers(), max_size=2))


@st.composite
def text_mutation(draw: st.DrawFn, files: list[Path]) -> tuple[Path, str]:
    f = draw(st.sampled_from(files))
    text = f.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["char", "token", "drop", "dup", "indent", "truncate"]))
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        if how == "char" and line:
            j = draw(st.integers(0, len(line) - 1))
            lines[i] = line[:j] + draw(st.characters(codec="utf-8")) + line[j + 1:]
        elif how == "token":
            j = draw(st.integers(0, len(line)))
            lines[i] = line[:j] + draw(st.sampled_from(TOKENS)) + line[j:]
        elif how == "drop":
            del lines[i]
        elif how == "dup":
            lines.insert(i, line)
        elif how == "indent":
            lines[i] = draw(st.sampled_from(["", " ", "  ", "    "])) + line.lstrip(" ")
        else:
            lines = lines[:i]
    return f, "".join(lines)


def _leaves(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _leaves(v, (*path, i))
    return out


@st.composite
def tree_mutation(draw: st.DrawFn, files: list[Path]) -> tuple[Path, str]:
    f = draw(st.sampled_from(files))
    doc = copy.deepcopy(yaml.safe_load(f.read_text(encoding="utf-8")))
    paths = [p for p in _leaves(doc) if p]
    path = draw(st.sampled_from(paths))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    how = draw(st.sampled_from(["replace", "add", "drop", "misspell"]))
    key = path[-1]
    if how == "replace":
        parent[key] = draw(leaf)
    elif how == "add" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=10))] = draw(leaf)
    elif how == "drop" and isinstance(parent, dict):
        del parent[key]
    elif how == "misspell" and isinstance(parent, dict) and isinstance(key, str) and key:
        j = draw(st.integers(0, len(key) - 1))
        parent[key[:j] + key[j + 1:] + draw(st.sampled_from("aeioux_"))] = parent.pop(key)
    return f, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


@pytest.fixture(scope="module")
def sim_chip() -> Any:
    with open_backend(None) as be:
        yield be


def _clear(e: ConfigError, source: str) -> None:
    assert str(e).startswith(source)
    assert e.key and e.problem
    assert len(str(e)) < 20_000


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.one_of(text_mutation(PROTOCOLS), tree_mutation(PROTOCOLS)))
def test_mutated_protocols_end_in_a_clear_error_or_a_valid_protocol(
        case: tuple[Path, str], sim_chip: Any) -> None:
    f, text = case
    source = f"mutated-{f.name}"
    try:
        proto = parse_protocol_text(text, source, REG, f.parent)
        check_against_chip(proto, REG, sim_chip.chip, sim_chip.envelope)
    except ConfigError as e:
        _clear(e, source)
    assert sim_chip.ledger.pulses == 0 and sim_chip.ledger.reads == 0


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=st.one_of(text_mutation(STATIONS), tree_mutation(STATIONS)))
def test_mutated_stations_end_in_a_clear_error_or_a_valid_station(
        case: tuple[Path, str]) -> None:
    f, text = case
    source = f"mutated-{f.name}"
    try:
        data = yamlio.load(text, source)
        if not isinstance(data, dict):
            return
        spec = parse_station(data, source, f)
        if spec.backend == "sim":
            open_backend(spec).close()  # the preset and its overrides are checked here
    except ConfigError as e:
        _clear(e, source)


@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "esc\x1b[31m"])
def test_names_with_control_characters_are_refused_before_any_file(
        bad: str, tmp_path: Path) -> None:
    """A NUL cannot be stored in an HDF5 string (it crashed the run file's creation); a
    newline or an escape would garble one-line reports. Refused where the name is read."""
    from labctl.runs.store import RunWriter

    protocol = yaml.safe_load((ROOT / "protocols" / "quickstart.yaml").read_text())
    protocol["name"] = bad
    with pytest.raises(ConfigError, match="control characters"):
        parse_protocol_text(yaml.safe_dump(protocol), "p.yaml", REG, ROOT / "protocols")
    protocol["name"] = "ok"
    protocol.setdefault("steps", [{}])[0]["name"] = bad
    with pytest.raises(ConfigError, match="control characters"):
        parse_protocol_text(yaml.safe_dump(protocol), "p.yaml", REG, ROOT / "protocols")
    with pytest.raises(ConfigError, match=r"chip_id.*control characters"):
        parse_station({"station": {"backend": "sim", "chip_id": bad}}, "s.yaml", tmp_path)
    if "\x00" in bad:  # the writer's own net, for any text attribute
        with pytest.raises(ConfigError, match="NUL"):
            RunWriter.create(tmp_path / "r.h5", {"chip_id": bad})
        assert not list(tmp_path.glob("*r.h5*"))


def test_a_file_name_that_is_not_utf8_is_refused_before_any_file(tmp_path: Path) -> None:
    """A protocol or run file named in another encoding reaches the run file's attributes
    as a surrogate-escaped string, which HDF5 cannot store (it crashed with a traceback)."""
    from labctl.runs.store import RunWriter

    with pytest.raises(ConfigError, match="not valid UTF-8"):
        RunWriter.create(tmp_path / "r.h5", {"protocol_source": "t\udcff.yaml"})
    assert not list(tmp_path.iterdir())


def test_a_chip_id_from_a_preset_name_is_plain_text_too(tmp_path: Path) -> None:
    """The simulator builds its chip id from the preset's name: a name with an escape
    sequence or a newline is refused there, whatever file it came from."""
    from sim_backend import SimBackend, load_preset

    preset = load_preset("default_180nm").with_changes(name="evil\x1b[31mRED\nline2")
    with pytest.raises(ConfigError, match="control characters"):
        SimBackend(preset, seed=1)
