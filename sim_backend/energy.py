"""Energy and latency ledger of the simulated macro.

What each operation books (assumptions in ``params.EnergyParams``, each stated there):

- pulse: per cell, Joule energy V·I·width through the cell and charging its bit or source
  line (n_rows · C_cell · V²); per pulsed row, charging its word line once
  (n_cols · C_cell · V_gate²).
- read, per cell: V²·G·t_read per read plus one ADC conversion (Walden FOM · 2^bits) per
  read.
- MVM, per input vector: array energy Σ_i x_i² Σ_j G_ij · t_int, one DAC conversion per
  row, one ADC conversion per output.

Device time is the batch duration :mod:`sim_backend.timing` computed (the same figure the
running clock advances by).

These are order-of-magnitude estimates, not measurements; a run reports what they imply.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from labctl.core.backend import PulseKind
from labctl.core.cells import Cells
from labctl.core.ledger import Ledger
from sim_backend.preset import Preset
from sim_backend.timing import row_groups

F64 = npt.NDArray[np.float64]


class EnergyModel:
    def __init__(self, preset: Preset) -> None:
        self.e = preset.energy
        self.adc_conv_J = self.e.adc_fom_J_per_step * 2.0**preset.periphery.adc_bits

    def book_pulse(
        self,
        ledger: Ledger,
        cells: Cells,
        kind: PulseKind,
        amplitude_V: F64,
        gate_V: F64,
        width_s: F64,
        current_A: F64,
        n_rows: int,
        n_cols: int,
        device_time_s: float,
    ) -> None:
        c = self.e.line_cap_F_per_cell
        joule = float(np.sum(amplitude_V * current_A * width_s))
        order, starts = row_groups(cells, n_rows)
        # each pulsed cell's bit (or source) line is charged; each row's word line once
        bit_lines = float(np.sum(c * n_rows * amplitude_V**2))
        row_gate = np.maximum.reduceat(gate_V[order], starts)
        word_lines = float(np.sum(c * n_cols * row_gate**2))
        lines = bit_lines + word_lines
        e = joule + lines
        ledger.pulses += len(cells)
        ledger.pulse_calls += 1
        ledger.pulse_energy_J += e
        ledger.energy_J += e
        ledger.device_time_s += device_time_s
        ledger.by_kind[kind.value] = ledger.by_kind.get(kind.value, 0) + len(cells)

    def book_read(
        self,
        ledger: Ledger,
        cells: Cells,
        read_V: float,
        g_S: F64,
        n_average: int,
        n_rows: int,
        device_time_s: float,
    ) -> None:
        e = n_average * (
            read_V**2 * float(np.sum(np.abs(g_S))) * self.e.read_time_s
            + len(cells) * self.adc_conv_J
        )
        ledger.reads += len(cells) * n_average
        ledger.read_calls += 1
        ledger.read_energy_J += e
        ledger.energy_J += e
        ledger.device_time_s += device_time_s

    def book_mvm(
        self, ledger: Ledger, batch: int, n_rows: int, code2_S: float, lsb_V: float, n_outputs: int
    ) -> None:
        """``code2_S`` = Σ_batch Σ_i codes_i² · Σ_j G_ij (from the MVM kernel)."""
        array = code2_S * lsb_V**2 * self.e.mvm_integration_s
        e = array + batch * (n_rows * self.e.dac_energy_J + n_outputs * self.adc_conv_J)
        ledger.mvm_calls += 1
        ledger.mvm_vectors += batch
        ledger.mvm_energy_J += e
        ledger.energy_J += e
        ledger.device_time_s += batch * (self.e.mvm_integration_s + self.e.adc_conversion_s)
