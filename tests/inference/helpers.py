"""A tiny in-test backend for the inference tests: conductances set directly by an "ideal
programmer" with optional Gaussian error, reads with relative noise, and an MVM with DAC
and ADC quantization. Independent of sim_backend so these tests run on their own."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.core.backend import BackendBase, Capabilities, ChipInfo, PulseKind
from labctl.core.cells import Cells, FloatArray
from labctl.core.clock import VirtualClock
from labctl.core.envelope import SafetyEnvelope


class FakeBackend(BackendBase):
    def __init__(self, n_tiles: int = 4, n_rows: int = 64, n_cols: int = 64, *,
                 prog_sigma_S: float = 0.0, read_noise_rel: float = 0.0, adc_bits: int = 9,
                 seed: int = 0) -> None:
        chip = ChipInfo("fake", n_tiles, n_rows, n_cols, 1e-6, 40e-6, adc_bits=adc_bits)
        super().__init__(chip, SafetyEnvelope(), VirtualClock(), Capabilities())
        self.g = np.full((n_tiles, n_rows, n_cols), chip.g_min_S)
        self.prog_sigma_S = prog_sigma_S
        self.read_noise_rel = read_noise_rel
        self.rng = np.random.default_rng(seed)
        self.writes = np.zeros(self.g.shape, dtype=np.int64)

    def program(self, cells: Cells, targets_S: FloatArray) -> None:
        t = np.asarray(targets_S, dtype=np.float64)
        t = t + self.rng.normal(0.0, self.prog_sigma_S, t.shape) if self.prog_sigma_S else t
        c = self.chip
        self.g[cells.tile, cells.row, cells.col] = np.clip(t, 0.0, c.g_max_S * 1.1)
        np.add.at(self.writes, (cells.tile, cells.row, cells.col), 1)
        self.ledger.pulses += len(cells)
        self.ledger.pulse_calls += 1
        self.ledger.pulse_energy_J += 1e-12 * len(cells)
        self.ledger.energy_J += 1e-12 * len(cells)
        self.ledger.device_time_s += 1e-6

    def _pulse(self, cells: Cells, kind: PulseKind, amplitude_V: FloatArray, gate_V: FloatArray,
               width_s: FloatArray, compliance_A: FloatArray | None) -> None:
        self.ledger.pulses += len(cells)

    def _read(self, cells: Cells, read_V: float, gate_V: float, n_average: int) -> FloatArray:
        g = self.g[cells.tile, cells.row, cells.col]
        noise = self.rng.normal(0.0, self.read_noise_rel / np.sqrt(n_average), g.shape)
        self.ledger.reads += len(cells) * n_average
        return g * (1.0 + noise)

    def _mvm(self, tile: int, inputs_V: npt.NDArray[np.floating[Any]], rows: slice, cols: slice,
             differential: bool, adc_range_A: float) -> npt.NDArray[np.floating[Any]]:
        c = self.chip
        lsb_v = c.mvm_input_max_V / (2 ** (c.dac_bits - 1) - 1)
        v = np.round(np.asarray(inputs_V, np.float64) / lsb_v) * lsb_v
        g = self.g[tile, rows, cols]
        if self.read_noise_rel:
            g = g * (1.0 + self.rng.normal(0.0, self.read_noise_rel, g.shape))
        i = v @ g
        if differential:
            i = i[:, 0::2] - i[:, 1::2]
        lsb = adc_range_A / 2 ** (c.adc_bits - 1)
        i = np.clip(np.round(i / lsb) * lsb, -adc_range_A, adc_range_A)
        self.ledger.mvm_calls += 1
        self.ledger.mvm_vectors += v.shape[0]
        self.ledger.mvm_energy_J += 1e-12 * v.shape[0] * g.size
        self.ledger.energy_J += 1e-12 * v.shape[0] * g.size
        self.ledger.device_time_s += 1e-7 * v.shape[0]
        return i

    def _safe_state(self) -> None:
        pass


def ideal_program(backend: Any, cells: Cells, targets_S: FloatArray) -> None:
    backend.program(cells, targets_S)
