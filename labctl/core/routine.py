"""The seam between the runner and calibration routines.

A routine is a :class:`RoutineSpec`: a name, a parameter spec (``labctl.core.routine_params``), an
optional chip-dependent check, and ``run(ctx)``, a generator that yields a
:class:`Checkpoint` at every cell-batch boundary. A checkpoint carries the routine's whole
resumable state **as it will be after** the checkpoint's pulses, plus those pulses. The
runner commits the checkpoint to the run file first and applies the pulses second, so:

- a pause or abort happens *before* a planned batch, never inside one;
- a killed run's file names every pulse that may have reached the chip;
- a resumed routine gets the last committed state back (``ctx.resume``), re-reads its cells
  and re-plans, and so never repeats a pulse.

Reads go through ``ctx.backend`` (the plain :class:`~labctl.core.backend.Backend` interface; the
runner records every call). Routines should not call ``ctx.backend.pulse`` directly: such
pulses are recorded, but a run interrupted after one cannot be resumed safely, and the
runner refuses to try.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from labctl.core.backend import Backend, ChipInfo, PulseKind
from labctl.core.calibration_record import CalibrationRecord
from labctl.core.cells import Cells
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine_params import Param


@dataclass(frozen=True)
class PulseBatch:
    """One ``backend.pulse`` call: one kind, per-cell parameters."""

    cells: Cells
    kind: PulseKind
    amplitude_V: npt.ArrayLike
    gate_V: npt.ArrayLike
    width_s: npt.ArrayLike
    compliance_A: npt.ArrayLike | None = None


@dataclass
class Checkpoint:
    """A resumable point: ``state`` (arrays) and ``meta`` (JSON) as they will be after
    ``pulses`` are applied. ``done`` / ``total`` go to the progress display
    (:mod:`labctl.runs.progress`)."""

    state: Mapping[str, npt.ArrayLike]
    pulses: list[PulseBatch] = field(default_factory=list)
    meta: Mapping[str, Any] = field(default_factory=dict)
    done: int = 0
    total: int = 0


@dataclass(frozen=True)
class ResumeState:
    """What a resumed routine gets back: its last committed checkpoint."""

    state: dict[str, np.ndarray]
    meta: dict[str, Any]
    checkpoint_seq: int


class StepSink(Protocol):
    """What the runner offers a routine besides the backend (implemented by the runner)."""

    def save_arrays(self, step: int, arrays: Mapping[str, npt.ArrayLike]) -> None: ...
    def save_result(self, step: int, figures: Mapping[str, Any]) -> None: ...
    def event(self, step: int, message: str, **data: Any) -> None: ...


@dataclass
class StepContext:
    """Everything a routine may use for one protocol step."""

    backend: Backend
    params: dict[str, Any]
    step: int
    seed: int
    calibration: CalibrationRecord
    sink: StepSink
    resume: ResumeState | None = None
    base_dir: Path = Path(".")
    calibration_changed: bool = False

    @property
    def chip(self) -> ChipInfo:
        return self.backend.chip

    def save_arrays(self, **arrays: npt.ArrayLike) -> None:
        """Store named result arrays of this step (e.g. the final conductance map)."""
        self.sink.save_arrays(self.step, arrays)

    def result(self, **figures: Any) -> None:
        """Store this step's key figures (JSON-able scalars, lists, dicts)."""
        self.sink.save_result(self.step, figures)

    def event(self, message: str, **data: Any) -> None:
        self.sink.event(self.step, message, **data)

    def progress(self, done: float, total: float, what: str = "") -> None:
        """Report progress of work between checkpoints (training epochs, sampler steps):
        ``done`` of ``total`` in the phase ``what``. Shown with an estimate of the time left
        (a bar on a terminal, log lines elsewhere); not recorded in the run file. A sink
        without a ``progress`` method ignores it."""
        report = getattr(self.sink, "progress", None)
        if report is not None:
            report(self.step, done, total, what)

    def earlier_results(self) -> dict[int, dict[str, Any]]:
        """Key figures earlier steps saved (step index → figures); after a resume, those of
        steps finished before it come from the run file."""
        return {k: dict(v) for k, v in getattr(self.sink, "step_results", {}).items()
                if k < self.step}

    def touch_calibration(self) -> None:
        """Say that this step changed ``calibration`` (saved at the end of the step)."""
        self.calibration_changed = True


CheckFn = Callable[[Mapping[str, Any], ChipInfo, SafetyEnvelope], None]
"""Chip-dependent validation of already type-checked params; raises ``ParamError``."""


@dataclass(frozen=True)
class RoutineSpec:
    name: str
    doc: str
    params: Mapping[str, Param]
    run: Callable[[StepContext], Iterator[Checkpoint]]
    check: CheckFn | None = None
