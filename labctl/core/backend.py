"""The one backend interface.

Calibration routines, protocols and inference are written once against :class:`Backend`.
It is assembled from small capability protocols (bluesky / ophyd-async style), so a routine
can ask for just what it uses. Three things implement it: ``sim_backend.SimBackend``
(in-process simulated macro), ``drivers.InstrumentBackend`` on real instruments, and the same
``InstrumentBackend`` on the virtual instruments served on loopback.

:class:`~labctl.core.backend_base.BackendBase` holds what every implementation must do
identically — bounds checks, the safety envelope, per-cell parameter broadcasting, and
ending every failure in ``safe_state()`` — so an implementation only writes the ``_pulse`` /
``_read`` / ``_mvm`` primitives and cannot forget a check.

Units are SI throughout: volts, amperes, siemens, seconds, joules.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from labctl.core.backend_base import MAX_AVERAGE, BackendBase, real_array
from labctl.core.cells import BoolArray, Cells, FloatArray
from labctl.core.chip import Capabilities, ChipInfo, PulseKind
from labctl.core.clock import Clock
from labctl.core.envelope import SafetyEnvelope
from labctl.core.ledger import Ledger

__all__ = [
    "MAX_AVERAGE",
    "Backend",
    "BackendBase",
    "BoolArray",
    "Capabilities",
    "Cells",
    "ChipInfo",
    "FloatArray",
    "PulseKind",
    "real_array",
]


@runtime_checkable
class DescribesChip(Protocol):
    @property
    def chip(self) -> ChipInfo: ...
    @property
    def envelope(self) -> SafetyEnvelope: ...
    @property
    def capabilities(self) -> Capabilities: ...


@runtime_checkable
class Pulses(Protocol):
    def pulse(
        self,
        cells: Cells,
        kind: PulseKind | str,
        amplitude_V: npt.ArrayLike,
        gate_V: npt.ArrayLike,
        width_s: npt.ArrayLike,
        compliance_A: npt.ArrayLike | None = None,
    ) -> None:
        """Apply one pulse of ``kind`` to every cell of the batch, per-cell parameters."""
        ...


@runtime_checkable
class Reads(Protocol):
    def read(
        self,
        cells: Cells,
        read_V: float | None = None,
        gate_V: float | None = None,
        n_average: int = 1,
    ) -> FloatArray:
        """Conductance of every cell of the batch, siemens (mean of ``n_average`` reads)."""
        ...


@runtime_checkable
class MultipliesVectors(Protocol):
    def mvm(
        self,
        tile: int,
        inputs_V: npt.ArrayLike,
        *,
        rows: slice = slice(None),
        cols: slice = slice(None),
        differential: bool = False,
        adc_range_A: float | None = None,
    ) -> npt.NDArray[np.floating[Any]]:
        """Analog matrix-vector products through DAC → array → ADC.

        ``inputs_V`` has shape (batch, n_rows_selected): row voltages. Returns column
        currents in amperes, shape (batch, n_cols_selected), or (batch, n_cols_selected/2)
        with ``differential``, where each pair of neighbouring columns (2k, 2k+1) is read as
        I(2k) − I(2k+1): G+ on the even column, G− on the odd one.
        """
        ...


@runtime_checkable
class HasClock(Protocol):
    @property
    def clock(self) -> Clock: ...


@runtime_checkable
class SafeStates(Protocol):
    def safe_state(self) -> None:
        """All terminals to 0 V and outputs off. Idempotent; safe to call at any time."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Backend(DescribesChip, Pulses, Reads, MultipliesVectors, HasClock, SafeStates, Protocol):
    """The whole interface a routine may rely on."""

    @property
    def ledger(self) -> Ledger: ...
