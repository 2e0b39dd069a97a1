"""The docs generator: generated blocks rewritten from a bench JSON, nothing else touched,
missing figures and unknown blocks refused, quick runs refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labctl.app.docs_gen import (
    BENCH_ROWS,
    BLOCKS,
    Metric,
    MissingFigure,
    fmt_si,
    main,
    render_provenance,
    render_table,
    rewrite_blocks,
)

META = {"date_utc": "2026-11-29T19:00:00Z", "cpu_model": "Test CPU 9000", "cpus": 2,
        "os": "Linux-6", "python": "3.11.9", "blas_threads": 1, "load_1min_at_start": 1.5,
        "command": "labctl bench --json bench.json", "labctl_version": "0.1.0",
        "quick": False, "section_seconds": {"sim": 8.2, "wire": 121.0}, "total_seconds": 129.4}


def _full_bench() -> dict[str, object]:
    keys = {k for row in BENCH_ROWS for k in row.keys}
    return {**{k: 0.5 for k in sorted(keys)}, "meta": META}


DOC = """# Title
Hand-written text stays.
<!-- generated: bench-table (do not edit) -->
| old | table |
<!-- end generated: bench-table -->
Between blocks.
<!-- generated: quickstart-time -->
<!-- end generated: quickstart-time -->
<!-- generated: bench-provenance -->
<!-- end generated: bench-provenance -->
Tail.
"""


def test_rewrite_replaces_only_the_blocks() -> None:
    new, names = rewrite_blocks(DOC, BLOCKS, _full_bench())
    assert names == ["bench-table", "quickstart-time", "bench-provenance"]
    assert ("The quickstart took 0 s (wall time, after start-up) on 2 CPUs, load average 1.5 "
            "on 2026-11-29") in new
    assert "| old | table |" not in new
    assert new.startswith("# Title\nHand-written text stays.\n")
    assert "Between blocks.\n" in new and new.endswith("Tail.\n")
    assert "Measured on 2026-11-29T19:00:00Z on Test CPU 9000 (2 CPUs" in new
    assert "`labctl bench --json bench.json`" in new
    assert "2 min 09 s in all (sim 8 s, wire 2 min 01 s)" in new
    again, _ = rewrite_blocks(new, BLOCKS, _full_bench())
    assert again == new  # idempotent


def test_unknown_block_and_missing_figure_are_errors() -> None:
    with pytest.raises(KeyError, match="'bench-tabel' has no generator"):
        rewrite_blocks("<!-- generated: bench-tabel -->\n<!-- end generated: bench-tabel -->",
                       BLOCKS, _full_bench())
    bench = _full_bench()
    del bench["mvm_overhead_ratio"], bench["fw_recall_chip_n1024"]
    with pytest.raises(MissingFigure, match="mvm_overhead_ratio, fw_recall_chip_n1024"):
        render_table(bench, BENCH_ROWS)


def test_table_row_joins_keys_with_its_formatter() -> None:
    row = Metric("s", ("a", "b"), "`a` / `b`", "≤ 1", fmt_si("J"))
    out = render_table({"a": 3.3e-7, "b": 2e-3}, [row])
    assert "| s | `a` / `b` | 330 nJ / 2 mJ | ≤ 1 |" in out


@given(st.floats(1e-13, 1e11), st.sampled_from(["J", "s", "S"]))
def test_si_format_reads_back(v: float, unit: str) -> None:
    text = fmt_si(unit)(v)
    number, scaled_unit = text.split(" ")
    prefix = scaled_unit[: -len(unit)]
    scale = {"G": 1e9, "M": 1e6, "k": 1e3, "": 1.0, "m": 1e-3, "µ": 1e-6, "n": 1e-9,
             "p": 1e-12}[prefix]
    assert float(number) * scale == pytest.approx(v, rel=5e-3)
    assert scaled_unit.endswith(unit)


def test_provenance_without_load_average() -> None:
    meta = {k: v for k, v in META.items() if k != "load_1min_at_start"}
    assert "load" not in render_provenance({"meta": meta})


def test_command_rewrites_docs_and_refuses_quick_runs(tmp_path: Path) -> None:
    doc = tmp_path / "bench.md"
    doc.write_text(DOC, encoding="utf-8")
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(_full_bench()), encoding="utf-8")
    assert main([str(bench), str(doc)]) == 0
    assert "Test CPU 9000" in doc.read_text(encoding="utf-8")
    quick = tmp_path / "quick.json"
    quick.write_text(json.dumps({**_full_bench(), "meta": {**META, "quick": True}}),
                     encoding="utf-8")
    before = doc.read_text(encoding="utf-8")
    assert main([str(quick), str(doc)]) == 2
    assert doc.read_text(encoding="utf-8") == before


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="<"),
                max_size=200)


@given(before=_TEXT, between=_TEXT, after=_TEXT, old=_TEXT)
def test_text_outside_the_blocks_is_kept(before: str, between: str, after: str,
                                         old: str) -> None:
    doc = (f"{before}\n<!-- generated: bench-duration -->\n{old}\n"
           f"<!-- end generated: bench-duration -->{between}\n"
           f"<!-- generated: quickstart-time x -->\n<!-- end generated: quickstart-time -->"
           f"{after}")
    new, names = rewrite_blocks(doc, BLOCKS, _full_bench())
    assert names == ["bench-duration", "quickstart-time"]
    assert new.startswith(before + "\n<!-- generated: bench-duration -->\n")
    assert new.endswith("<!-- end generated: quickstart-time -->" + after)
    assert f"<!-- end generated: bench-duration -->{between}\n" in new
    assert rewrite_blocks(new, BLOCKS, _full_bench())[0] == new
