"""Planning a resume, and restoring a simulated chip by replaying a run's operations.

A real chip keeps its state when the host process dies; an in-process simulated chip does
not. So on a backend with a virtual clock (the simulator), resuming first replays the
committed operations of the run file onto the freshly built backend — same seed, same
calls, same virtual times — which reproduces the simulated chip exactly as it was (the
simulator's randomness is keyed per cell and per event, not by call order). On hardware
nothing is replayed: the chip is the state.

Which operations are replayed is decided by :func:`plan_resume`: everything up to the
interrupted step's last checkpoint (or its start), minus the reads that step made after it —
the resumed routine makes those reads again, and replaying them too would give the simulated
cells reads the uninterrupted run never made. A step that pulsed cells directly after its
last checkpoint (an inference workload programming its weights) is instead re-executed from
that checkpoint against the record of what it did since (:mod:`labctl.runs.fast_forward`):
nothing recorded is pulsed again on a live chip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labctl.core.backend import BackendBase
from labctl.core.cells import Cells
from labctl.core.errors import LabctlError
from labctl.core.routine import ResumeState
from labctl.runs.store.reader import Record, RunReader
from labctl.runs.store.schema import PULSE_KIND_NAMES, Kind


class CannotResume(LabctlError):
    """The run file does not allow a resume that is certain not to repeat a pulse."""


@dataclass
class ResumePlan:
    first_step: int
    """Index of the step to continue (``n_steps`` when every step had ended)."""
    resume_state: ResumeState | None
    step_begun: bool
    cut_seq: int
    """Replay records with seq ≤ cut_seq (minus ``skip``)."""
    skip: set[int] = field(default_factory=set)
    not_replayed: list[int] = field(default_factory=list)
    """Reads of the interrupted step after its last checkpoint (new in this resume)."""
    reexecute: list[int] = field(default_factory=list)
    """Pulses and reads of the interrupted step after its last checkpoint when it pulsed
    directly: the resumed step re-executes them against the record, in this order."""


def plan_resume(reader: RunReader, n_steps: int) -> ResumePlan:
    recs = reader.all()
    ended = {r.step for r in recs if r.kind == Kind.STEP_END}
    first = next((i for i in range(n_steps) if i not in ended), n_steps)
    skip: set[int] = set()
    for r in recs:
        if r.kind == Kind.RESUME:
            skip.update(int(s) for s in r.payload.get("not_replayed", []))
    mine = [r for r in recs if r.step == first]
    begin = [r for r in mine if r.kind == Kind.STEP_BEGIN]
    ckpts = [r for r in mine if r.kind == Kind.CHECKPOINT]
    state = None
    if ckpts:
        last = ckpts[-1]
        cut = last.seq
        state = ResumeState({n: last.array(n) for n in last.array_names()},
                            dict(last.payload.get("meta", {})), last.seq)
    elif begin:
        cut = begin[-1].seq
    else:
        cut = max((r.seq for r in recs if r.kind not in (Kind.READ, Kind.EVENT)), default=0)
    late_pulses = [r for r in mine if r.kind == Kind.PULSE and r.seq > cut]
    if late_pulses:
        # The step pulsed cells directly after its last checkpoint (a workload programming
        # its weights): it is resumed by re-executing it from that checkpoint against the
        # record of everything it did since (labctl.runs.fast_forward).
        tail = [r.seq for r in mine if r.kind in (Kind.PULSE, Kind.READ) and r.seq > cut
                and r.seq not in skip]
        return ResumePlan(first, state, bool(begin), cut, skip, [], tail)
    late_reads = [r.seq for r in mine if r.kind == Kind.READ and r.seq > cut]
    return ResumePlan(first, state, bool(begin), cut, skip | set(late_reads), late_reads)


def replay(reader: RunReader, backend: BackendBase, plan: ResumePlan) -> dict[str, Any]:
    """Apply the committed operations up to ``plan.cut_seq`` to ``backend`` (a simulator)."""
    n_pulses = n_reads = 0
    clock = backend.clock
    streams: list[int] | None = None
    for r in reader.all():
        if r.seq > plan.cut_seq:
            break
        if r.seq in plan.skip:
            continue
        if r.kind in (Kind.STEP_BEGIN, Kind.CHECKPOINT, Kind.STEP_END):
            streams = r.payload.get("noise_streams", streams)
        _advance(clock, r)
        if r.kind == Kind.READ:
            rows = r.reads()
            cells = Cells(rows["tile"], rows["row"], rows["col"])
            p = r.payload
            backend.read(cells, p.get("read_V"), p.get("gate_V"), int(p.get("n_average", 1)))
            n_reads += len(cells)
        elif r.kind in (Kind.PULSE, Kind.CHECKPOINT):
            n_pulses += _replay_pulses(backend, r)
    cut = next((r for r in reader.all() if r.seq == plan.cut_seq), None)
    if cut is not None:
        _advance(clock, cut)
    if streams is not None:  # MVMs are not recorded: their noise streams come back this way
        backend.restore_noise_streams(streams)
    return {"replayed_pulses": n_pulses, "replayed_reads": n_reads}


def _advance(clock: Any, r: Record) -> None:
    t = r.t_chip_s
    if np.isfinite(t) and t > clock.now():
        clock.wait(t - clock.now())


def _replay_pulses(backend: BackendBase, r: Record) -> int:
    rows = r.pulses()
    batches = r.payload.get("batches") or [[PULSE_KIND_NAMES[int(rows["kind"][0])], len(rows)]] \
        if len(rows) else []
    start = 0
    for kind, n in batches:
        sel = rows[start:start + int(n)]
        start += int(n)
        comp = sel["compliance_A"].astype(np.float64)
        backend.pulse(Cells(sel["tile"], sel["row"], sel["col"]), kind,
                      sel["amplitude_V"].astype(np.float64), sel["gate_V"].astype(np.float64),
                      sel["width_s"].astype(np.float64),
                      None if np.all(np.isnan(comp)) else comp)
    return len(rows)
