"""Helpers for the calibration tests: run a protocol in-process and read its results."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labctl.core.cells import Cells
from labctl.runs.runner import RunOptions, run
from labctl.runs.store import Kind, RunReader


@pytest.fixture
def cal_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cal"
    monkeypatch.setenv("LABCTL_CALIBRATION_DIR", str(d))
    return d


def run_protocol(tmp_path: Path, text: str, *, station: str | None = None, seed: int = 7,
                 name: str = "p") -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """Run ``text`` on the simulated chip; (step → results, step → arrays)."""
    proto = tmp_path / f"{name}.yaml"
    proto.write_text(text, encoding="utf-8")
    st = None
    if station is not None:
        st = str(tmp_path / f"{name}-station.yaml")
        Path(st).write_text(station, encoding="utf-8")
    out = tmp_path / f"{name}.h5"
    o = run(RunOptions(protocol=str(proto), station=st, out=str(out), seed=seed,
                       progress=False, interactive=False))
    assert o.status == "completed", o.message
    return read_run(out)


def read_run(path: Path) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    with RunReader(path) as rd:
        results = {r.step: r.payload for r in rd.of_kind(Kind.RESULT)}
        arrays: dict[int, dict[str, Any]] = {}
        for r in rd.of_kind(Kind.ARRAY):
            for n in r.array_names():
                arrays.setdefault(r.step, {})[n] = r.array(n)
    return results, arrays


def block(n_rows: int, n_cols: int, tile: int = 0, col0: int = 0) -> Cells:
    return Cells.block(tile, range(n_rows), range(col0, col0 + n_cols))


def uniform_targets(n: int, seed: int = 1, lo: float = 1e-6, hi: float = 40e-6) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, n)


def fields(d: Mapping[str, Any], *keys: str) -> list[Any]:
    return [d[k] for k in keys]
