"""A small batched forming + verify-write, the default ``program_fn`` of the workloads.

This is a stand-in seam: the calibration package's verify-write policies replace it (pass
``program_fn=`` to any workload). It follows the 1T1R practice in REFERENCE.md:

- forming: bit line 3.3 V, 1 ms pulses, gate ramped gently from 1.3 V in 0.1 V steps
  (Stanford NI-RRAM-Python: 1.3 → 4 V, 1 ms, 3.3 V);
- SET: bit line pulse with the gate as the compliance; each cell keeps its own gate
  estimate, started from a square-law guess and nudged by ``gate_step_V`` after every
  SET that under- or overshoots (NeuRRAM SET gate 2.5–3.0 V for the top of the window);
- RESET: source line from 1.2 V rising 0.1 V per consecutive RESET up to 2.5 V with the
  gate at 5 V (NeuRRAM, Wan et al. 2022);
- a cell is done when a read lands within ±``tol_S`` of its target (NeuRRAM accepts ±1 µS).

Every iteration is one read call and at most two pulse calls over the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labctl.backend import Backend, PulseKind
from labctl.cells import Cells
from labctl.inference.layers import Array

__all__ = ["VerifyWrite", "default_program_fn", "form_cells"]


def form_cells(backend: Backend, cells: Cells, *, bitline_V: float = 3.3,
               gate_start_V: float = 1.3, gate_stop_V: float = 3.0, gate_step_V: float = 0.1,
               width_s: float = 1e-3, formed_above_S: float = 0.5e-6) -> npt.NDArray[np.bool_]:
    """Form the cells that read below ``formed_above_S``; returns a formed mask."""
    g = backend.read(cells)
    todo = g < formed_above_S
    gate = gate_start_V
    while todo.any() and gate <= gate_stop_V + 1e-9:
        sub = cells.subset(todo)
        backend.pulse(sub, PulseKind.FORM, bitline_V, gate, width_s)
        g_sub = backend.read(sub)
        idx = np.flatnonzero(todo)
        todo[idx[g_sub >= formed_above_S]] = False
        gate += gate_step_V
    return ~todo


@dataclass(frozen=True)
class VerifyWrite:
    """Batched SET/RESET verify-write with per-cell gate feedback (see module docstring)."""

    tol_S: float = 0.5e-6
    max_iter: int = 40
    set_V: float = 2.0
    width_s: float = 1e-6
    gate_step_V: float = 0.04
    reset_start_V: float = 1.2
    reset_step_V: float = 0.1
    reset_max_V: float = 2.5
    reset_gate_V: float = 5.0
    n_average: int = 2
    v_th_V: float = 0.7
    """Square-law initial guess G ≈ k·(V_g − V_th)², refined per cell by feedback."""
    k_S_per_V2: float = 10e-6
    form: bool = True

    def gate_guess(self, g_S: Array) -> Array:
        return self.v_th_V + np.sqrt(np.maximum(g_S, 0.0) / self.k_S_per_V2)

    def __call__(self, backend: Backend, cells: Cells, targets_S: Array) -> Array:
        """Program ``cells`` to ``targets_S``; returns the final verify reads."""
        t = np.asarray(targets_S, dtype=np.float64).reshape(-1)
        if self.form:
            form_cells(backend, cells)
        gate = self.gate_guess(t)
        reset_V = np.full(t.shape, self.reset_start_V)
        last = np.zeros(t.shape, dtype=np.int8)  # +1 SET, −1 RESET last time
        active = np.ones(t.shape, dtype=bool)
        g = backend.read(cells, n_average=self.n_average)
        max_gate = backend.envelope.max_gate_V
        for _ in range(self.max_iter):
            err = g - t
            done = np.abs(err) <= self.tol_S
            active &= ~done
            if not active.any():
                break
            low = active & (err < 0)
            high = active & (err > 0)
            # feedback on the compliance: a SET that left the cell high lowers its gate, a
            # SET that left it low raises it
            gate = np.where(high & (last == 1), gate - self.gate_step_V, gate)
            gate = np.where(low & (last == 1), gate + self.gate_step_V, gate)
            gate = np.clip(gate, 0.0, max_gate)
            reset_V = np.where(high & (last == -1),
                               np.minimum(reset_V + self.reset_step_V, self.reset_max_V),
                               np.where(high, self.reset_start_V, reset_V))
            if low.any():
                backend.pulse(cells.subset(low), PulseKind.SET, self.set_V, gate[low],
                              self.width_s)
            if high.any():
                backend.pulse(cells.subset(high), PulseKind.RESET, reset_V[high],
                              self.reset_gate_V, self.width_s)
            last = np.where(low, 1, np.where(high, -1, last)).astype(np.int8)
            sub = cells.subset(active)
            g[active] = backend.read(sub, n_average=self.n_average)
        return g


default_program_fn = VerifyWrite()
