"""A run file in words: provenance, steps, outcomes, key figures — for ``labctl show``.

Works on any committed prefix, so it also describes the file a killed run left behind.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from labctl.core import yamlio
from labctl.core.errors import ConfigError
from labctl.core.quantity_text import NOT_MEASURED, display, quantity
from labctl.runs.store.reader import Record, RunReader
from labctl.runs.store.schema import READABLE_VERSIONS, Kind


def run_status(rd: RunReader) -> str:
    """completed / aborted / failed / interrupted (from RUN_END), or 'truncated' when the
    process died before writing one."""
    recs = rd.all()
    if recs and recs[-1].kind == Kind.RUN_END:
        return str(recs[-1].payload.get("status", "?"))
    if rd.damage:
        return "damaged: what can be read ends without a RUN_END record (see 'unreadable')"
    return "truncated (no RUN_END: the process was killed or is still running)"


def step_names(rd: RunReader) -> list[tuple[str, str]]:
    """(routine, name) of each protocol step, from the recorded protocol text."""
    try:  # a run file is data from elsewhere too: the same bounded YAML 1.2 reader
        data = yamlio.load(str(rd.attrs.get("protocol_text", "")), str(rd.path))
    except ConfigError:
        return []
    if not isinstance(data, dict):
        return []
    raw = data.get("steps") if "steps" in data else [data]
    out = []
    for s in raw if isinstance(raw, list) else []:
        if isinstance(s, dict):
            r = str(s.get("routine", "?"))
            out.append((r, str(s.get("name", r))))
    return out


@dataclass
class StepSummary:
    index: int
    name: str
    routine: str
    state: str
    results: list[tuple[str, str]]


@dataclass
class RunSummary:
    """What ``labctl show`` says about one run file, as data (rendered by the command)."""

    header: list[tuple[str, str]]
    steps: list[StepSummary]
    events: list[str]
    ending: list[tuple[str, str]]
    damage: list[str]


def describe(rd: RunReader) -> RunSummary:
    a = rd.attrs
    recs = rd.all()
    header = [
        ("run file", f"{rd.path}  (schema {a.get('schema_version')}, this labctl reads "
                     f"{', '.join(map(str, READABLE_VERSIONS))})"),
        ("status", run_status(rd)),
        ("records", f"{len(recs)} committed"
         + (f" ({rd.n_rows_on_disk - len(recs)} uncommitted tail rows ignored)"
            if rd.n_rows_on_disk > len(recs) and not rd.damage else "")),
        ("run id", f"{a.get('run_id', '?')}  created {a.get('created_utc', '?')}  "
                   f"labctl {a.get('labctl_version', '?')}  resumed {a.get('resume_count', 0)}×"),
        ("where", f"host {a.get('host', '?')}  user {a.get('user', '?')}"),
        ("protocol", f"{a.get('protocol_name', '?')}  ({a.get('protocol_source', '?')})"),
        ("station", f"{a.get('station_source', '?')}  backend {a.get('backend', '?')}  "
                    f"seed {a.get('seed', '?')}"),
        ("chip", str(a.get("chip_id", "?"))),
    ]
    if recs:
        t0, t1 = recs[0].t_wall_s, recs[-1].t_wall_s
        header.append(("time", f"{_utc(t0)} → {_utc(t1)} UTC: {t1 - t0:.1f} s of wall time"))
        header.append(("chip clock", _clock_text(rd, recs[0].t_chip_s, recs[-1].t_chip_s)))
    shape = _chip_shape(rd)
    if shape is not None:
        counts = rd.pulse_counts(shape)
        n_reads = int(sum(int(r.row["read_count"]) for r in recs if r.kind == Kind.READ))
        header.append(("operations", f"{int(counts.sum())} cell-pulses on "
                                     f"{int((counts > 0).sum())} cells (max {int(counts.max())} "
                                     f"on one cell), {n_reads} cell-read results"))
    steps = []
    for i, (routine, name) in enumerate(step_names(rd)):
        mine = [r for r in recs if r.step == i]
        results = [display(k, v) for res in [r for r in mine if r.kind == Kind.RESULT][-1:]
                   for k, v in res.payload.items() if k != "outcome_codes"]
        steps.append(StepSummary(i, name, routine, _step_state(mine), results))
    events = []
    for r in recs:
        if r.kind in (Kind.EVENT, Kind.RESUME):
            p = r.payload
            what = p.get("message") or (
                f"resumed (#{p.get('resume')}) at step {p.get('first_step', 0) + 1},"
                f" replayed {r.payload.get('replayed_pulses', 0)} cell-pulses onto the simulator")
            events.append(f"#{r.seq} {what}")
    ending: list[tuple[str, str]] = []
    if recs and recs[-1].kind == Kind.RUN_END:
        end = recs[-1].payload
        if end.get("message"):
            ending.append(("ended", str(end["message"])))
        led = end.get("ledger") or {}
        if led:
            ending.append(("ledger", _ledger_text(led)))
        ending.append(("safe state",
                       "reached" if end.get("safe_state_reached") else "NOT confirmed"))
    return RunSummary(header, steps, events, ending, list(rd.damage))


def summarize(rd: RunReader) -> list[str]:
    """The summary as plain text lines (``key       value``)."""
    s = describe(rd)
    lines = [f"{k:<10} {v}" for k, v in s.header]
    lines += [f"unreadable {d}" for d in s.damage]
    lines.append("steps")
    for st in s.steps:
        lines.append(f"  [{st.index + 1}] {st.name} ({st.routine}): {st.state}")
        lines += [f"        {k} = {v}" for k, v in st.results]
    lines += [f"event      {e}" for e in s.events]
    lines += [f"{k:<10} {v}" for k, v in s.ending]
    return lines


def _ledger_text(led: dict[str, Any]) -> str:
    """Counts, device busy time and energy in their display units; energy a backend cannot
    measure (NaN: real instruments keep no energy ledger) is said to be not measured."""
    energy = quantity(led.get("energy_J"), "J")
    if energy == NOT_MEASURED:
        energy += " (this backend keeps no energy ledger)"
    return (f"{led.get('pulses')} cell-pulses, {led.get('reads')} cell-reads; device busy "
            f"time {quantity(led.get('device_time_s'), 's')}; energy {energy} (this process)")


def _clock_text(rd: RunReader, t_first_s: float, t_last_s: float) -> str:
    """The backend's clock over the run, said for what it is: on a virtual clock (the
    simulator) it moves with waits and device time; on instruments it is the host's clock."""
    caps = rd.attr_json("capabilities")
    virtual = isinstance(caps, dict) and bool(caps.get("virtual_clock"))
    span = quantity(t_last_s - t_first_s, "s")
    if not virtual:
        kind = "the host's clock: the instruments run in real time"
    elif rd.attrs.get("backend") == "SimBackend":
        kind = "virtual: moved by waits and by the device time of every operation"
    else:
        kind = "virtual: moved by waits only; device busy time is in the ledger"
    return f"{span} from the first record to the last ({kind})"


def _step_state(mine: list[Record]) -> str:
    if not mine:
        return "not started"
    if any(r.kind == Kind.STEP_END for r in mine):
        return "completed"
    ck = [r for r in mine if r.kind == Kind.CHECKPOINT]
    last_ck = ck[-1].seq if ck else 0
    if any(r.kind == Kind.PULSE and r.seq > last_ck for r in mine):
        n = sum(len(r.pulses()) for r in mine if r.kind == Kind.PULSE and r.seq > last_ck)
        return (f"interrupted after {n} directly applied pulses; resumable (the step is "
                "re-executed against its record, nothing is pulsed twice)")
    if ck:
        p = ck[-1].payload
        return (f"interrupted after {len(ck)} checkpoints ({p.get('done')}/{p.get('total')} "
                "cells done); resumable")
    return "interrupted before its first checkpoint; resumable"


def _chip_shape(rd: RunReader) -> tuple[int, int, int] | None:
    chip = rd.attr_json("chip")
    if not isinstance(chip, dict):
        return None
    return int(chip["n_tiles"]), int(chip["n_rows"]), int(chip["n_cols"])


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
