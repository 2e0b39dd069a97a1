"""``SimBackend``: the simulated macro behind the one backend interface."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.core.backend import BackendBase, Capabilities, PulseKind
from labctl.core.cells import Cells, FloatArray
from labctl.core.clock import VirtualClock
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import RequestRejected
from sim_backend.macro import Macro
from sim_backend.preset import Preset
from sim_backend.presets import load_preset


class SimBackend(BackendBase):
    """In-process simulated 1T1R macro. Fast; the default backend.

    >>> be = SimBackend("ideal", seed=1)
    >>> be.chip.n_tiles, be.chip.n_rows, be.chip.n_cols
    (8, 256, 512)
    """

    def __init__(
        self,
        preset: str | Path | Preset = "default_180nm",
        seed: int = 0,
        *,
        envelope: SafetyEnvelope | None = None,
        chip_id: str | None = None,
        macro: Macro | None = None,
    ) -> None:
        p = preset if isinstance(preset, Preset) else load_preset(preset)
        self._macro = macro if macro is not None else Macro(p, seed, VirtualClock(), chip_id)
        super().__init__(
            self._macro.chip,
            envelope if envelope is not None else SafetyEnvelope(),
            self._macro.clock,
            Capabilities(
                batched_pulse=True,
                batched_read=True,
                mvm=True,
                device_side_verify=False,
                virtual_clock=True,
                energy_model=True,
                round_trips_per_batch=0,
                notes="in-process simulation; energies are model estimates",
            ),
        )
        self._ledger = self._macro.ledger

    @property
    def macro(self) -> Macro:
        """The simulated chip (the virtual instruments share one)."""
        return self._macro

    @property
    def preset(self) -> Preset:
        return self._macro.preset

    def describe(self) -> dict[str, Any]:
        p = self._macro.preset
        return {
            "preset": f"{p.name}: {p.description}",
            "seed": self._macro.seed,
            "clock": f"virtual, now {self.clock.now():g} s",
        }

    def _pulse(
        self,
        cells: Cells,
        kind: PulseKind,
        amplitude_V: FloatArray,
        gate_V: FloatArray,
        width_s: FloatArray,
        compliance_A: FloatArray | None,
    ) -> None:
        self._macro.pulse(cells, kind, amplitude_V, gate_V, width_s, compliance_A)

    def _read(self, cells: Cells, read_V: float, gate_V: float, n_average: int) -> FloatArray:
        current = self._macro.read_current(cells, read_V, gate_V, n_average)
        return current / read_V

    def _mvm(
        self,
        tile: int,
        inputs_V: npt.NDArray[np.floating[Any]],
        rows: slice,
        cols: slice,
        differential: bool,
        adc_range_A: float,
    ) -> npt.NDArray[np.floating[Any]]:
        return self._macro.mvm_current(tile, inputs_V, rows, cols, differential, adc_range_A)

    def noise_streams(self) -> list[int]:
        """Each tile's position in its MVM output-noise stream (values drawn so far).

        Taking them also ends the tiles' MVM snapshots (the next MVM retakes its tile's):
        snapshots are not recorded either, so a run resumed from this point — whose rebuilt
        chip has none — and the uninterrupted run see the same conductances."""
        self._macro.drop_mvm_snapshots()
        return list(self._macro.mvm_stream_positions)

    def restore_noise_streams(self, positions: Sequence[int]) -> None:
        pos = [int(p) for p in positions]
        if len(pos) != self._chip.n_tiles or min(pos, default=0) < 0:
            raise RequestRejected(f"noise stream positions must be {self._chip.n_tiles} "
                                  f"non-negative integers, got {positions!r}")
        self._macro.mvm_stream_positions[:] = pos

    def _safe_state(self) -> None:
        """Nothing is driven between operations in the simulator: already safe."""
