"""``run_bench`` reports each section to a progress subscriber, and hands a section that
takes ``progress`` a function to report its own loops with."""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator

import pytest

from labctl.app import bench


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def begin(self, key: str, label: str) -> None:
        self.events.append(("begin", key, label))

    def update(self, key: str, done: float, total: float, what: str = "") -> None:
        self.events.append(("update", key, done, total, what))

    def end(self, key: str) -> None:
        self.events.append(("end", key))

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        yield

    def close(self) -> None:
        pass


def _section(name: str, *, reports: bool) -> types.ModuleType:
    mod = types.ModuleType(name)
    if reports:
        def run(quick: bool = False, progress: object = None) -> dict[str, float]:
            assert callable(progress)
            for k in range(3):
                progress(k + 1, 3, "training")
            return {f"{name}_figure": 1.0}
    else:
        def run(quick: bool = False) -> dict[str, float]:  # type: ignore[misc]
            return {f"{name}_figure": 2.0}
    mod.run = run  # type: ignore[attr-defined]
    return mod


def test_sections_are_progress_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, reports in (("fake_a", True), ("fake_b", False)):
        monkeypatch.setitem(sys.modules, f"tests_fake.{name}", _section(name, reports=reports))
    monkeypatch.setattr(bench, "SECTIONS", {"a": "tests_fake.fake_a", "b": "tests_fake.fake_b"})
    rec = Recorder()
    result = bench.run_bench(None, quick=True, blas_threads=None, progress=rec)
    assert result["fake_a_figure"] == 1.0 and result["fake_b_figure"] == 2.0
    assert rec.events == [
        ("begin", "bench:a", "[1/2] bench a"),
        ("update", "bench:a", 1, 3, "training"), ("update", "bench:a", 2, 3, "training"),
        ("update", "bench:a", 3, 3, "training"), ("end", "bench:a"),
        ("begin", "bench:b", "[2/2] bench b"), ("end", "bench:b")]
    meta = result["meta"]
    assert set(meta["section_seconds"]) == {"a", "b"}
    assert meta["total_seconds"] >= 0 and meta["date_utc"].endswith("Z")
