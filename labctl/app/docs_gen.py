"""Generated blocks of the docs, rewritten from one bench run so they cannot go stale.

A document marks each generated block with a pair of HTML comments (invisible when the
Markdown is rendered)::

    <!-- generated: bench-table (labctl docs BENCH.json; do not edit by hand) -->
    ...
    <!-- end generated: bench-table -->

``labctl docs bench.json`` (or ``python -m labctl.app.docs_gen bench.json``) rewrites every
marked block of the documents in ``docs/`` from :data:`BLOCKS`, each block rendered from the
bench JSON that ``labctl bench --json bench.json`` wrote, and says which blocks it rewrote.
A block names the date, the machine and the command of the run it comes from
(:func:`render_provenance`); a figure the run did not measure is an error naming the metric,
so a renamed metric cannot leave an old number standing.

To generate a section of another document (the inference figures, say): write its rows as
:class:`Metric` s, add ``"NAME": lambda bench: render_table(bench, ROWS)`` to
:data:`BLOCKS`, and put the two markers in the document.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.app.bench import inference_doc

__all__ = ["BLOCKS", "Metric", "fmt_si", "main", "render_provenance", "render_table",
           "rewrite_blocks"]

REPO = Path(__file__).resolve().parents[2]
"""The checkout labctl runs from (``pip install -e .``): where the docs live."""
Bench = Mapping[str, Any]
BlockFn = Callable[[Bench], str]
Formatter = Callable[[float], str]

_BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w.-]+)[^>]*-->\n)(?P<body>.*?)"
                    r"(<!-- end generated: (?P=name) -->)", re.S)
_PREFIXES = ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"),
             (1e-9, "n"), (1e-12, "p"))


class MissingFigure(KeyError):
    """The bench JSON lacks a figure a generated block shows."""


def fmt_si(unit: str, digits: int = 3) -> Formatter:
    """A formatter with an SI prefix: ``fmt_si("J")(3.3e-7)`` → ``330 nJ``; one unit per
    quantity, whatever its size."""

    def f(v: float) -> str:
        if v == 0 or not math.isfinite(v):
            return f"{v:g} {unit}".strip()
        for scale, prefix in _PREFIXES:
            if abs(v) >= scale * 0.9995:
                return f"{v / scale:.{digits}g} {prefix}{unit}".strip()
        return f"{v:.{digits}g} {unit}".strip()

    return f


def fmt_fixed(decimals: int) -> Formatter:
    return lambda v: f"{v:,.{decimals}f}"


def fmt_sig(digits: int = 3) -> Formatter:
    return lambda v: f"{v:.{digits}g}"


SIG3 = fmt_sig(3)


@dataclass(frozen=True)
class Metric:
    """One table row: ``keys`` of the bench JSON shown as ``a / b / c`` with ``fmt``."""

    section: str
    keys: tuple[str, ...]
    what: str
    target: str = "—"
    fmt: Formatter = SIG3

    def values(self, bench: Bench) -> str:
        missing = [k for k in self.keys if k not in bench]
        if missing:
            raise MissingFigure(", ".join(missing))
        return " / ".join(self.fmt(float(bench[k])) for k in self.keys)


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s} s" if s < 120 else f"{s // 60} min {s % 60:02d} s"


def render_provenance(bench: Bench) -> str:
    """One paragraph: when, on what, with which command, and how long each section took."""
    m = bench.get("meta", {})
    secs = m.get("section_seconds", {})
    total = m.get("total_seconds", sum(secs.values()))
    parts = ", ".join(f"{k} {_duration(v)}" for k, v in secs.items())
    load = m.get("load_1min_at_start")
    load_txt = f"; 1-minute load average {load:g} at the start" if load is not None else ""
    threads = m.get("blas_threads")
    return (f"Measured on {m.get('date_utc', '(date not recorded)')} on {m.get('cpu_model', '?')}"
            f" ({m.get('cpus', '?')} CPUs, {m.get('os', '?')}, Python {m.get('python', '?')}, "
            f"BLAS threads {threads}{load_txt}) with `{m.get('command', 'labctl bench')}` "
            f"(labctl {m.get('labctl_version', '?')}): {_duration(total)} in all ({parts}).\n")


def render_table(bench: Bench, rows: Sequence[Metric]) -> str:
    """A Markdown table of ``rows`` from the bench JSON; raises :class:`MissingFigure` for
    every metric the run did not measure."""
    missing: list[str] = []
    lines = ["| section | metric | value | target |", "|---|---|---|---|"]
    for r in rows:
        try:
            lines.append(f"| {r.section} | {r.what} | {r.values(bench)} | {r.target} |")
        except MissingFigure as e:
            missing.append(str(e.args[0]))
    if missing:
        raise MissingFigure(", ".join(missing))
    return "\n".join(lines) + "\n"


def rewrite_blocks(text: str, blocks: Mapping[str, BlockFn], bench: Bench,
                   source: str = "(text)") -> tuple[str, list[str]]:
    """``text`` with every marked block re-rendered; the names rewritten. An unknown block
    name is an error (a typo would otherwise leave a block stale for ever)."""
    done: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in blocks:
            raise KeyError(f"{source}: generated block {name!r} has no generator; known: "
                           f"{', '.join(sorted(blocks))}")
        body = blocks[name](bench)
        done.append(name)
        return m.group(1) + body + m.group(4)

    return _BLOCK.sub(sub, text), done


BENCH_ROWS: tuple[Metric, ...] = (
    Metric("sim", ("mvm_overhead_ratio",), "`mvm_overhead_ratio` (256 × 256 weights as "
           "differential pairs, batch 64, every non-ideality incl. IR drop, clock running, "
           "over a float32 matmul; median of 5 rounds)", "≤ 3 (aim 2)", fmt_fixed(2)),
    Metric("sim", ("mvm_overhead_ratio_min", "mvm_overhead_ratio_max"),
           "`mvm_overhead_ratio_min` / `_max` (lowest / highest round)", "—", fmt_fixed(2)),
    Metric("sim", ("mvm_overhead_ratio_no_irdrop",), "`mvm_overhead_ratio_no_irdrop`", "—",
           fmt_fixed(2)),
    Metric("sim", ("mvm_time_us", "mvm_floor_matmul_us"), "`mvm_time_us` / "
           "`mvm_floor_matmul_us` (one call, µs)", "—", fmt_sig(3)),
    Metric("sim", ("pulse_read_cells_per_s",), "`pulse_read_cells_per_s` (256 × 256 batches)",
           "—", fmt_si("cells/s")),
    Metric("calibration", ("verify_write_converged_fraction",),
           "`verify_write_converged_fraction` (256 × 256, random targets, ±1 µS)", "≥ 0.995",
           fmt_fixed(4)),
    Metric("calibration", ("verify_write_rms_error_at_1s_uS",),
           "`verify_write_rms_error_at_1s_uS` (µS, 1 s after programming ends)",
           "NeuRRAM-fitted σ at 1 s: 1.1–2.3", fmt_fixed(3)),
    Metric("calibration", ("verify_write_mean_pulses_per_cell",),
           "`verify_write_mean_pulses_per_cell`", "NeuRRAM: ≤ 30 per polarity", fmt_fixed(1)),
    Metric("calibration", ("verify_write_cells_per_s",), "`verify_write_cells_per_s`", "—",
           fmt_si("cells/s")),
    Metric("calibration", ("mvm_error_at_1s", "mvm_error_at_1s_compensated",
                           "mvm_error_1day_raw", "mvm_error_1day_compensated"),
           "`mvm_error_at_1s` / `_at_1s_compensated` / `_1day_raw` / `_1day_compensated` "
           "(ages after programming ends)", "compensated < raw", fmt_fixed(4)),
    Metric("calibration", ("mvm_error_refreshed_at_1s", "mvm_error_refreshed_1day"),
           "`mvm_error_refreshed_at_1s` / `_refreshed_1day` (ages after refresh ends, "
           "re-calibrated)", "at 1 s ≤ 1.2 × `_at_1s_compensated`", fmt_fixed(4)),
    Metric("calibration", ("drift_systematic_fraction",), "`drift_systematic_fraction`", "—",
           fmt_fixed(3)),
    Metric("wire", ("wire_vs_direct_ratio",), "`wire_vs_direct_ratio` (64 × 64, 20 × pulse + "
           "read, board topology)", "≤ 3", fmt_fixed(2)),
    Metric("wire", ("wire_round_trips_per_batch",), "`wire_round_trips_per_batch`", "≤ 2",
           fmt_sig(3)),
    Metric("wire", ("discrete_ops_per_cell",), "`discrete_ops_per_cell` (topology "
           "board+smu+pulsegen)", "—", fmt_fixed(2)),
    Metric("inference", ("nf_psnr_float_db", "nf_psnr_chip_db", "nf_psnr_prior_db"),
           "`nf_psnr_float_db` / `chip` / `prior` (dB; 128², 20 noisy views, mean of chips)",
           "—", fmt_fixed(2)),
    Metric("inference", ("nf_psnr_gap_db_mean", "nf_psnr_gap_db_worst"),
           "`nf_psnr_gap_db_mean` / `worst` (float − chip, dB)", "worst ≤ 0.5", fmt_fixed(2)),
    Metric("inference", ("diff_swd_ratio_mean", "diff_swd_ratio_worst"),
           "`diff_swd_ratio_mean` / `worst` (chip / float SWD, every layer analog)",
           "worst ≤ 1.25", fmt_fixed(3)),
    Metric("inference", ("diff_outlier_fraction_float", "diff_outlier_fraction_chip"),
           "`diff_outlier_fraction_float` / `chip`", "—", fmt_fixed(4)),
    Metric("inference", ("fw_recall_float_n1024", "fw_recall_chip_n1024"),
           "`fw_recall_float_n1024` / `chip_n1024`", "chip ≥ 0.9 × float (worst chip)",
           fmt_fixed(3)),
    Metric("inference", ("fw_write_pulses_per_token",), "`fw_write_pulses_per_token`", "—",
           fmt_fixed(0)),
    Metric("inference", ("diff_energy_J_per_sample_chip",), "`diff_energy_J_per_sample_chip`",
           "—", fmt_si("J")),
    Metric("inference", ("diff_device_time_s_per_sample_chip",),
           "`diff_device_time_s_per_sample_chip`", "—", fmt_si("s")),
    Metric("runs", ("quickstart_wall_s",), "`quickstart_wall_s` (`labctl run "
           "protocols/quickstart.yaml`, in-process)", "—", fmt_si("s")),
    Metric("runs", ("quickstart_run_file_MB",), "`quickstart_run_file_MB` (its run file, "
           "MB = 10⁶ bytes)", "—", fmt_sig(3)),
    Metric("dies", ("dies_per_s_1_worker", "dies_per_s_2_workers"),
           "`dies_per_s_1_worker` / `_2_workers` (8 simulated dies, forming + verify-write "
           "16 × 16, local Dask cluster)", "—", fmt_sig(3)),
    Metric("dies", ("dies_speedup_2_workers",), "`dies_speedup_2_workers`", "≥ 1.6",
           fmt_fixed(2)),
    Metric("dies", ("dies_cores_used_1_worker", "dies_cores_used_2_workers",
                    "dies_machine_speedup_2_processes"),
           "`dies_cores_used_1_worker` / `_2_workers` / `dies_machine_speedup_2_processes` "
           "(what the machine gave)", "—", fmt_fixed(2)),
    Metric("dies", ("dies_memory_per_die_MB",), "`dies_memory_per_die_MB`", "—",
           fmt_fixed(0)),
    Metric("dies", ("dies_cost_exponent",), "`dies_cost_exponent` (wall ∝ N^x, N = 4–16)",
           "≈ 1", fmt_fixed(2)),
)


def _bench_summary(bench: Bench) -> str:
    m = bench.get("meta", {})
    total = m.get("total_seconds", sum(m.get("section_seconds", {}).values()))
    return (f"A full run (all sections) took {_duration(total)} on the machine below "
            f"({m.get('cpus', '?')} CPUs).\n")


def _quickstart_time(bench: Bench) -> str:
    if "quickstart_wall_s" not in bench:
        raise MissingFigure("quickstart_wall_s")
    m = bench.get("meta", {})
    load = m.get("load_1min_at_start")
    busy = f", load average {load:g}" if load is not None else ""
    return (f"The quickstart took {_duration(float(bench['quickstart_wall_s']))} "
            f"(wall time, after start-up) on {m.get('cpus', '?')} CPUs{busy} on "
            f"{str(m.get('date_utc', '?'))[:10]} (`labctl bench`, section `runs`).\n")


BLOCKS: dict[str, BlockFn] = {
    "quickstart-time": _quickstart_time,
    "bench-provenance": render_provenance,
    "bench-duration": _bench_summary,
    "bench-table": lambda bench: render_table(bench, BENCH_ROWS),
    "inference": inference_doc.render_block,
}
"""Block name → generator. Add a document's own blocks here."""


def load_bench(path: Path) -> dict[str, Any]:
    """The bench JSON, refusing a ``--quick`` or partial run: docs show full runs only."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    meta = data.get("meta")
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: no 'meta' object; write it with labctl bench --json")
    if meta.get("quick"):
        raise ValueError(f"{path}: a --quick run (smoke test); its figures are not the "
                         "targets' figures — run labctl bench --json without --quick")
    return data


def rewrite_docs(bench: Bench, docs: Sequence[Path],
                 blocks: Mapping[str, BlockFn] | None = None) -> dict[Path, list[str]]:
    """Rewrite the generated blocks of ``docs`` in place; path → block names rewritten."""
    gens = BLOCKS if blocks is None else blocks
    out: dict[Path, list[str]] = {}
    for p in docs:
        text = p.read_text(encoding="utf-8")
        new, names = rewrite_blocks(text, gens, bench, str(p))
        if names:
            if new != text:
                p.write_text(new, encoding="utf-8")
            out[p] = names
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bench_json", metavar="BENCH.json", help="written by labctl bench --json")
    p.add_argument("docs", nargs="*", metavar="DOC.md",
                   help="documents to rewrite (default: every docs/*.md and README.md of "
                   "the repository labctl runs from)")


def run(args: argparse.Namespace) -> int:
    try:
        bench = load_bench(Path(args.bench_json))
    except (OSError, ValueError) as e:
        print(f"labctl docs: error: {e}", file=sys.stderr)
        return 2
    docs = [Path(d) for d in args.docs] or [*sorted((REPO / "docs").glob("*.md")),
                                            REPO / "README.md"]
    try:
        done = rewrite_docs(bench, [d for d in docs if d.exists()])
    except MissingFigure as e:
        print(f"labctl docs: error: {args.bench_json} has no figure {e.args[0]}; run a full "
              "labctl bench, or fix the rows in labctl/app/docs_gen.py", file=sys.stderr)
        return 2
    except KeyError as e:
        print(f"labctl docs: error: {e.args[0]}", file=sys.stderr)
        return 2
    for path, names in done.items():
        print(f"{path}: {', '.join(names)}")
    if not done:
        print("labctl docs: no generated blocks found", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labctl.app.docs_gen", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
