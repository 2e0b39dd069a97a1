"""A backend wrapper that writes every read and pulse into the run file.

Routines see this instead of the real backend, so recording cannot be forgotten. Pulses
are written *before* they are applied (write-ahead: after a kill, the file names every
pulse that may have reached the chip); reads are written after they return, with their
results. MVMs are passed through unrecorded (the run store records programming, not
inference). Before every batch the runner's stop check runs, so Ctrl+C and SIGTERM stop any
routine — also a workload programming millions of cells through direct pulses — at the next
cell batch, in the safe state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.core.backend import BackendBase, Capabilities, ChipInfo, PulseKind
from labctl.core.cells import Cells, FloatArray, broadcast_param
from labctl.core.clock import Clock
from labctl.core.envelope import SafetyEnvelope
from labctl.core.ledger import Ledger
from labctl.core.routine import PulseBatch
from labctl.runs.fast_forward import FastForward
from labctl.runs.store.schema import PULSE_DTYPE, PULSE_KIND_CODES, READ_DTYPE, Kind
from labctl.runs.store.writer import RunWriter


def pulse_rows(cells: Cells, kind: PulseKind | str, amplitude_V: npt.ArrayLike,
               gate_V: npt.ArrayLike, width_s: npt.ArrayLike,
               compliance_A: npt.ArrayLike | None) -> np.ndarray:
    n = len(cells)
    rows = np.zeros(n, dtype=PULSE_DTYPE)
    rows["tile"], rows["row"], rows["col"] = cells.tile, cells.row, cells.col
    rows["kind"] = PULSE_KIND_CODES[PulseKind(kind).value]
    rows["amplitude_V"] = broadcast_param(amplitude_V, n, "amplitude_V")
    rows["gate_V"] = broadcast_param(gate_V, n, "gate_V")
    rows["width_s"] = broadcast_param(width_s, n, "width_s")
    rows["compliance_A"] = (np.nan if compliance_A is None
                            else broadcast_param(compliance_A, n, "compliance_A"))
    return rows


def read_rows(cells: Cells, g_S: npt.ArrayLike) -> np.ndarray:
    rows = np.zeros(len(cells), dtype=READ_DTYPE)
    rows["tile"], rows["row"], rows["col"] = cells.tile, cells.row, cells.col
    rows["g_S"] = np.asarray(g_S, dtype=np.float64).reshape(-1)
    return rows


def noise_streams(backend: BackendBase) -> dict[str, list[int]]:
    """``{"noise_streams": positions}`` for a record's payload, or nothing for a backend
    without such streams (see :meth:`BackendBase.noise_streams`)."""
    positions = backend.noise_streams()
    return {} if positions is None else {"noise_streams": positions}


def write_ahead(writer: RunWriter, backend: BackendBase, kind: Kind, step: int,
                batches: Sequence[PulseBatch], payload: Mapping[str, Any],
                arrays: Mapping[str, npt.ArrayLike] | None = None) -> None:
    """Record pulses *before* they are applied: the one write-ahead path for every pulse.

    A checkpoint's planned batches and a routine's direct ``pulse`` call both come through
    here, so a killed run's file names every pulse that may have reached the chip. Bounds and
    the envelope are checked first, so a rejected pulse is never recorded as possibly applied.
    """
    chip, env = backend.chip, backend.envelope
    parts, counts = [], []
    for b in batches:
        b.cells.check_bounds(chip.n_tiles, chip.n_rows, chip.n_cols)
        rows = pulse_rows(b.cells, b.kind, b.amplitude_V, b.gate_V, b.width_s, b.compliance_A)
        env.check_pulse(PulseKind(b.kind).terminal, rows["amplitude_V"], rows["gate_V"],
                        rows["width_s"], None if b.compliance_A is None else rows["compliance_A"])
        parts.append(rows)
        counts.append([PulseKind(b.kind).value, len(rows)])
    streams = noise_streams(backend) if kind == Kind.CHECKPOINT else {}
    writer.record(kind, step=step, t_chip_s=backend.clock.now(),
                  payload={**payload, "batches": counts, **streams}, arrays=arrays,
                  pulses=np.concatenate(parts) if parts else None)


class RecordingBackend:
    """Implements the :class:`~labctl.core.backend.Backend` interface over ``inner``."""

    def __init__(self, inner: BackendBase, writer: RunWriter,
                 stop_check: Callable[[], None] | None = None) -> None:
        self._inner = inner
        self._writer = writer
        self.step = -1
        self._stop_check = stop_check
        """Called before every pulse, read and MVM batch: raises to stop the run there (a
        Ctrl+C or SIGTERM is honoured at the next cell batch, whatever the routine)."""
        self.fast_forward: FastForward | None = None
        """While set and active, calls are answered from the run file (resume by
        re-execution, :mod:`labctl.runs.fast_forward`) and nothing is written."""

    @property
    def fast_forwarding(self) -> bool:
        return self.fast_forward is not None and self.fast_forward.active

    def _before_batch(self) -> None:
        if self._stop_check is not None:
            self._stop_check()

    @property
    def chip(self) -> ChipInfo:
        return self._inner.chip

    @property
    def envelope(self) -> SafetyEnvelope:
        return self._inner.envelope

    @property
    def capabilities(self) -> Capabilities:
        return self._inner.capabilities

    @property
    def clock(self) -> Clock:
        return self._inner.clock

    @property
    def ledger(self) -> Ledger:
        return self._inner.ledger

    def pulse(self, cells: Cells, kind: PulseKind | str, amplitude_V: npt.ArrayLike,
              gate_V: npt.ArrayLike, width_s: npt.ArrayLike,
              compliance_A: npt.ArrayLike | None = None) -> None:
        self._before_batch()
        if self.fast_forward is not None and self.fast_forward.active:
            kind = PulseKind(kind)
            rows = pulse_rows(cells, kind, amplitude_V, gate_V, width_s, compliance_A)
            self._inner.envelope.check_pulse(kind.terminal, rows["amplitude_V"],
                                             rows["gate_V"], rows["width_s"],
                                             None if compliance_A is None
                                             else rows["compliance_A"])
            if self.fast_forward.pulse(rows):
                self._inner.pulse(cells, kind, amplitude_V, gate_V, width_s, compliance_A)
            return
        batch = PulseBatch(cells, PulseKind(kind), amplitude_V, gate_V, width_s, compliance_A)
        write_ahead(self._writer, self._inner, Kind.PULSE, self.step, [batch], {})
        self._inner.pulse(cells, kind, amplitude_V, gate_V, width_s, compliance_A)

    def read(self, cells: Cells, read_V: float | None = None, gate_V: float | None = None,
             n_average: int = 1) -> FloatArray:
        self._before_batch()
        if self.fast_forward is not None and self.fast_forward.active:
            g_rec = self.fast_forward.read(cells, read_V, gate_V, n_average)
            if not self.fast_forward.live_chip:  # a rebuilt simulated chip: keep its history
                self._inner.read(cells, read_V, gate_V, n_average)
            return g_rec
        t_start = self.clock.now()  # the chip's clock runs during the read (replay needs start)
        g = self._inner.read(cells, read_V, gate_V, n_average)
        self._writer.record(Kind.READ, step=self.step, t_chip_s=t_start,
                            payload={"read_V": read_V, "gate_V": gate_V, "n_average": n_average},
                            reads=read_rows(cells, g))
        return g

    def mvm(self, tile: int, inputs_V: npt.ArrayLike, *, rows: slice = slice(None),
            cols: slice = slice(None), differential: bool = False,
            adc_range_A: float | None = None) -> npt.NDArray[np.floating[Any]]:
        self._before_batch()
        return self._inner.mvm(tile, inputs_V, rows=rows, cols=cols, differential=differential,
                               adc_range_A=adc_range_A)

    def safe_state(self) -> None:
        self._inner.safe_state()

    def close(self) -> None:
        """The runner owns the real backend; routines cannot close it."""
