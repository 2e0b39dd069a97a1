"""Resuming a step that pulsed cells directly, by re-executing it against its own record.

Routines that yield checkpoints (verify-write, forming, …) resume from their last committed
state. The inference workloads program their weights through ``program_fn`` — forming and
verify-write applied as direct ``backend.pulse`` calls inside a step — so an interrupted
workload step has pulses after its last checkpoint. Resuming it re-runs the step from that
checkpoint (its host-side work — training, weight mapping — is seeded and deterministic) while
:class:`FastForward` answers every backend call the interrupted run already made from the
run file, in order:

- a **pulse** must match the recorded one (same cells, kind and parameters) and is never
  applied to a live chip again; an in-process simulated chip, which died with the process
  and was rebuilt by replay up to the checkpoint, gets it applied so that its state follows;
- a **read** must address the recorded cells and returns the recorded conductances (a live
  chip is not read again; a simulated one is, to keep its read history);
- MVMs are not recorded and go to the chip.

When the record is used up, the step goes on live and is recorded as usual. If the
re-executed step asks for anything other than what the record holds, it has diverged: the
resume stops in the safe state (:class:`ResumeDiverged`) before anything is pulsed twice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from labctl.core.cells import Cells
from labctl.runs.replay import CannotResume
from labctl.runs.store.reader import RunReader
from labctl.runs.store.schema import Kind

PARAM_RTOL = 1e-9
"""Relative tolerance on recorded pulse parameters (they are stored as float64)."""


class ResumeDiverged(CannotResume):
    """The re-executed step asked for another operation than the one its record holds."""


@dataclass(frozen=True)
class RecordedOp:
    """A PULSE or READ record, copied out of the run file."""

    seq: int
    kind: Kind
    rows: np.ndarray
    payload: dict[str, Any]


def recorded_ops(reader: RunReader, seqs: list[int]) -> list[RecordedOp]:
    wanted = set(seqs)
    out = []
    for r in reader.all():
        if r.seq in wanted:
            rows = r.pulses() if r.kind == Kind.PULSE else r.reads()
            out.append(RecordedOp(r.seq, r.kind, np.array(rows), dict(r.payload)))
    return out


class FastForward:
    """The recorded operations a re-executed step must repeat, consumed in order."""

    def __init__(self, ops: list[RecordedOp], *, live_chip: bool) -> None:
        self._ops = deque(ops)
        self.live_chip = live_chip
        """True when the chip kept its state (hardware, or a lab another process serves):
        recorded pulses are then skipped, never applied again."""
        self.n_pulses = 0
        self.n_reads = 0

    @property
    def active(self) -> bool:
        return bool(self._ops)

    def pulse(self, rows: np.ndarray) -> bool:
        """Match a pulse batch; True when it must be applied to the (rebuilt, simulated)
        chip, False when the chip already has it."""
        op = self._next(Kind.PULSE, f"a pulse batch of {len(rows)} cells")
        rec = op.rows
        same = (len(rec) == len(rows)
                and all(np.array_equal(rec[k], rows[k]) for k in ("tile", "row", "col", "kind"))
                and all(_close(rec[k], rows[k]) for k in ("amplitude_V", "gate_V", "width_s",
                                                          "compliance_A")))
        if not same:
            raise self._diverged(op, f"a pulse batch of {len(rows)} cells with other cells or "
                                 "parameters")
        self.n_pulses += len(rows)
        return not self.live_chip

    def read(self, cells: Cells, read_V: float | None, gate_V: float | None,
             n_average: int) -> np.ndarray:
        """Match a read; the recorded conductances, siemens."""
        op = self._next(Kind.READ, f"a read of {len(cells)} cells")
        rec = op.rows
        p = op.payload
        same = (len(rec) == len(cells) and np.array_equal(rec["tile"], cells.tile)
                and np.array_equal(rec["row"], cells.row)
                and np.array_equal(rec["col"], cells.col)
                and p.get("read_V") == read_V and p.get("gate_V") == gate_V
                and int(p.get("n_average", 1)) == int(n_average))
        if not same:
            raise self._diverged(op, f"a read of {len(cells)} other cells or settings")
        self.n_reads += len(cells)
        return np.asarray(rec["g_S"], dtype=np.float64).copy()

    def _next(self, kind: Kind, what: str) -> RecordedOp:
        if not self._ops:  # callers check ``active`` first
            raise ResumeDiverged(f"re-execution asked for {what} past the end of the record")
        op = self._ops.popleft()
        if op.kind != kind:
            self._ops.clear()
            raise self._diverged(op, what)
        return op

    def _diverged(self, op: RecordedOp, what: str) -> ResumeDiverged:
        self._ops.clear()
        return ResumeDiverged(
            f"resuming re-executed the interrupted step, which asked for {what} where the run "
            f"file records a {op.kind.name.lower()} (record {op.seq}): the step does not repeat "
            "itself exactly, so continuing could pulse cells twice. Stopped in the safe state "
            "before any new pulse; the file stays readable — start a new run of the protocol.")


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.all(both_nan | np.isclose(a, b, rtol=PARAM_RTOL, atol=0.0)))
