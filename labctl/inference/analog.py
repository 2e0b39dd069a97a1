"""Analog linear layers: matrix products as ``backend.mvm`` calls on programmed tiles.

Forward path of one layer (NeuRRAM's scheme, Wan et al. 2022; Le Gallo et al., Nat.
Electron. 2023 for the affine correction):

1. inputs scaled digitally to the DAC range, ``v = clip(x / x_scale, −1, 1)·V_max``;
2. per tile block and cell pair, one differential ``mvm`` with that pair's ADC range;
3. currents back to activations, ``y = I · scale / (Δg · V_max) · x_scale``, pairs summed
   with their scales (residual mapping) and row blocks summed digitally (tiling);
4. per-column digital affine correction ``y·gain + offset`` (drift compensation hook), then
   the digital bias.

A matrix larger than a tile is split into row blocks (≤ n_rows) and column blocks
(2·n_out·… ≤ n_cols) placed by a :class:`~labctl.inference.mapping.TileAllocator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from calibration.compensation import fit_column_affine
from labctl.core.backend import Backend
from labctl.inference.layers import MLP, Array, Layer, Linear
from labctl.inference.mapping import (
    DifferentialMapping,
    MappedPair,
    Mapping,
    ProgramFn,
    ResidualMapping,
    Tie,
    TileAllocator,
    pair_targets,
)

__all__ = ["AnalogLinear", "AnalogNetwork", "recalibrate", "refresh", "to_analog"]


@dataclass
class _Block:
    row_slice: slice
    col_slice: slice
    pairs: list[MappedPair]
    adc_range_A: list[list[float]]
    """ADC full scale per input pass, per pair."""


class AnalogLinear(Layer):
    """Inference-only linear layer whose ``x @ W`` runs on the chip."""

    def __init__(self, w: Array, b: Array | None, backend: Backend, allocator: TileAllocator,
                 program_fn: ProgramFn, mapping: Mapping | None = None, *,
                 max_cols_per_block: int | None = None, fault_threshold: float | None = 0.25,
                 repeats: int = 1, replicas: int | None = None, input_passes: int = 1,
                 interleave: bool = False, tie_copies: bool = False,
                 col_copies: int = 1) -> None:
        self.backend = backend
        self.mapping: Mapping = mapping if mapping is not None else DifferentialMapping()
        chip = backend.chip
        # column copies: every output on ``col_copies`` column pairs, averaged digitally —
        # each column's periphery noise (output-referred, ADC) is its own, so the average
        # has 1/√col_copies of it. Inside the layer every copy is an output of its own
        # (``n_out`` counts them, each has its own affine trim); :meth:`forward` averages.
        self.col_copies = max(1, int(col_copies))
        self.n_logical_out = int(w.shape[1])
        w = np.tile(np.asarray(w, dtype=np.float64), (1, self.col_copies))
        self.n_in, self.n_out = w.shape
        self.w_target = np.asarray(w, dtype=np.float64)
        # row replication: each input drives ``replicas`` rows holding the same weights, so
        # the signal adds coherently over the fixed periphery noise and the cells'
        # independent errors average down (None: as many copies as fill a tile's rows)
        self.replicas = (max(1, chip.n_rows // self.n_in) if replicas is None
                         else max(1, int(replicas)))
        self.n_phys = self.n_in * self.replicas
        # copies contiguous (input i on rows i·R … i·R+R−1) or interleaved (copy k of every
        # input on rows k·n_in …): interleaved, each input's copies spread over the whole
        # column, so the IR drop along it (largest far from the sense end) weighs every input
        # alike and is left as a per-column gain the affine trim absorbs
        self.interleave = bool(interleave)
        self._row_input = (np.arange(self.n_phys) % self.n_in if self.interleave
                           else np.arange(self.n_phys) // self.replicas)
        """Logical input of each physical row."""
        self.input_margin = 1.0
        self.input_percentile = 100.0
        self._x_cal: Array | None = None
        self.b = None if b is None else np.asarray(b, dtype=np.float64)
        self.dg = chip.g_max_S - chip.g_min_S
        self.v_max = chip.mvm_input_max_V
        self.x_scale = 1.0
        self.gain = np.ones(self.n_logical_out)
        self.offset = np.zeros(self.n_logical_out)
        n_pairs = self.mapping.n_pairs
        max_out = chip.n_cols // 2
        if max_cols_per_block is not None:
            max_out = min(max_out, max_cols_per_block // 2)
        self.blocks: list[_Block] = []
        w_phys = self._phys(self.w_target)
        for r0 in range(0, self.n_phys, chip.n_rows):
            rs = slice(r0, min(self.n_phys, r0 + chip.n_rows))
            for c0 in range(0, self.n_out, max_out):
                cs = slice(c0, min(self.n_out, c0 + max_out))
                nr, nc = rs.stop - rs.start, cs.stop - cs.start
                regions = [allocator.allocate(nr, 2 * nc) for _ in range(n_pairs)]
                if tie_copies and isinstance(self.mapping, ResidualMapping):
                    pairs = self.mapping.program(backend, program_fn, w_phys[rs, cs], regions,
                                                 tie=self._tie(rs))
                else:
                    pairs = self.mapping.program(backend, program_fn, w_phys[rs, cs], regions)
                adc = [[chip.adc_range_A] * n_pairs for _ in range(max(1, input_passes))]
                self.blocks.append(_Block(rs, cs, pairs, adc))
        self.repeats = int(repeats)
        self.input_passes = int(input_passes)
        self._dac_q = 2 ** (chip.dac_bits - 1) - 1
        self.fault_threshold = fault_threshold
        self.correction = self._fault_correction()

    def _tie(self, rs: slice) -> Tie:
        """Averages rows of block ``rs`` over the copies of each logical input in it."""
        idx = self._row_input[rs]
        counts = np.maximum(np.bincount(idx, minlength=self.n_in), 1)[:, None]

        def tie(r: Array) -> Array:
            sums = np.zeros((self.n_in, r.shape[1]))
            np.add.at(sums, idx, r)
            return np.asarray((sums / counts)[idx])
        return tie

    def _fault_correction(self, w_est: Array | None = None) -> sp.csr_matrix | None:
        """Sparse digital correction for weights the cells cannot hold.

        Stuck and unformable cells (0.2 % to >10 % of cells, docs/references.md) read back far
        from their targets and no pair can absorb a cell stuck above g_max. Weights whose
        read-back error exceeds ``fault_threshold`` × their column scale get the error
        added back digitally — the mixed-precision remedy of the Jiang et al. review (Nat.
        Mater. 2026). :attr:`digital_fraction` says how many weights that is."""
        if self.fault_threshold is None:
            return None
        err = self.w_target - (self.weight_estimate() if w_est is None else w_est)
        scale = np.zeros((self.n_phys, self.n_out))
        for blk in self.blocks:
            scale[blk.row_slice, blk.col_slice] = blk.pairs[0].scale
        scale = self._logical(scale)
        bad = np.abs(err) > self.fault_threshold * scale
        return sp.csr_matrix(np.where(bad, err, 0.0)) if bad.any() else None

    @property
    def digital_fraction(self) -> float:
        """Fraction of weights with a digital fault correction."""
        return 0.0 if self.correction is None else self.correction.nnz / self.w_target.size

    # ---- what was programmed ----
    def weight_estimate(self) -> Array:
        """The weight the read-back conductances represent (all pairs combined)."""
        w = np.zeros((self.n_phys, self.n_out))
        for blk in self.blocks:
            for p in blk.pairs:
                w[blk.row_slice, blk.col_slice] += p.weight_estimate(self.dg)
        return self._logical(w)

    def _phys(self, w: Array) -> Array:
        """Logical rows → physical rows (each present ``replicas`` times), along axis 0
        (weights) or 1 (inputs)."""
        return self._rows(w, 0)

    def _rows(self, a: Array, axis: int) -> Array:
        if self.replicas == 1:
            return a
        if self.interleave:
            reps = [1] * a.ndim
            reps[axis] = self.replicas
            return np.tile(a, reps)
        return np.repeat(a, self.replicas, axis=axis)

    def _logical(self, w_phys: Array) -> Array:
        """Physical rows → logical rows: the mean over each input's copies."""
        if self.interleave:
            return w_phys.reshape(self.replicas, self.n_in, -1).mean(axis=0)
        return w_phys.reshape(self.n_in, self.replicas, -1).mean(axis=1)

    def cells_used(self) -> int:
        return sum(p.region.n_rows * p.region.n_cols for blk in self.blocks for p in blk.pairs)

    def reprogram(self, w_new: Array, program_fn: ProgramFn, *, threshold_S: float = 0.5e-6,
                  headroom: float = 1.5, n_average: int = 2) -> npt.NDArray[np.int64]:
        """Write new weights in place (single-pair mappings): cells whose target moved by
        more than ``threshold_S`` are re-programmed; a column whose weights outgrow its
        scale gets ``headroom`` × its new max |W| and is rewritten. Returns a per-cell
        write count ``(n_in·replicas, 2·n_out)`` of this call (0 or 1)."""
        if self.mapping.n_pairs != 1 or self.col_copies != 1:
            raise ValueError("in-place reprogramming needs a single-pair mapping without "
                             "column copies")
        chip = self.backend.chip
        w_log = np.asarray(w_new, dtype=np.float64)
        w_new = self._phys(w_log)
        written = np.zeros((self.n_phys, 2 * self.n_out), dtype=np.int64)
        for blk in self.blocks:
            p = blk.pairs[0]
            wb = w_new[blk.row_slice, blk.col_slice]
            peak = np.max(np.abs(wb), axis=0)
            grow = peak > p.scale
            p.scale = np.where(grow, peak * headroom, p.scale)
            t = pair_targets(wb, p.scale, chip.g_min_S, chip.g_max_S)
            # against what each cell was last *written* to: small moves add up until the
            # cell is rewritten, instead of being dropped one update at a time
            changed = np.abs(t - p.targets) > threshold_S
            if changed.any():
                cells = p.region.cells().subset(changed.reshape(-1))
                program_fn(self.backend, cells, t[changed])
                p.g_read[changed] = self.backend.read(cells, n_average=n_average)
            p.targets = np.where(changed, t, p.targets)
            cs = slice(2 * blk.col_slice.start, 2 * blk.col_slice.stop)
            written[blk.row_slice, cs] = changed
        self.w_target = w_log.copy()
        self.correction = self._fault_correction()
        return written

    def refresh_readback(self, n_average: int = 8) -> None:
        """Re-read every programmed cell (``g_read``): the conductances as they are now,
        after the relaxation since programming, for :meth:`calibrate`'s ADC ranges."""
        for blk in self.blocks:
            for p in blk.pairs:
                cells = p.region.cells()
                p.g_read = np.asarray(self.backend.read(cells, n_average=n_average),
                                      dtype=np.float64).reshape(p.g_read.shape)

    # ---- measured through the array ----
    def probe_pair(self, k: int, n_probe: int = 64, seed: int = 0) -> Array:
        """The logical weight pair ``k`` adds, measured through the array: ``n_probe``
        random ±full-scale input patterns (every copy of an input driven alike), the column
        currents, least squares. Unlike the conductance read-back this sees what an MVM
        sees — IR drop along the lines, faulty cells, relaxation up to now."""
        rng = np.random.default_rng(seed)
        w = np.zeros((self.n_in, self.n_out))
        to_w = 1.0 / (self.dg * self.v_max * self.replicas)
        for blk in self.blocks:
            p = blk.pairs[k]
            idx = self._row_input[blk.row_slice]
            present = np.unique(idx)
            u = rng.choice([-1.0, 1.0], size=(max(n_probe, 2 * len(present)), self.n_in))
            v = u[:, idx] * self.v_max
            peak = float(np.max(np.abs(v @ (p.g_read[:, 0::2] - p.g_read[:, 1::2]))))
            r = p.region
            i = np.asarray(self.backend.mvm(r.tile, v, rows=r.rows, cols=r.cols,
                                            differential=True,
                                            adc_range_A=max(1.25 * peak, 1e-9)),
                           dtype=np.float64)
            a, *_ = np.linalg.lstsq(u[:, present], i, rcond=None)
            w[present, blk.col_slice] += a * p.scale * to_w
        return w

    def refresh(self, program_fn: ProgramFn, *, n_probe: int = 64, settle_s: float = 0.0,
                seed: int = 0) -> None:
        """Refresh before use: for each pair after the first in turn, measure what the
        pairs before it give now (:meth:`probe_pair`) and re-program it, on its cells, to
        the logical residual (the same on every copy of a weight). Residual mappings of two
        or more pairs only."""
        if not isinstance(self.mapping, ResidualMapping) or self.mapping.n_pairs < 2:
            raise ValueError("refresh re-targets the later pairs of a residual mapping")
        est = np.zeros((self.n_in, self.n_out))
        for k in range(1, self.mapping.n_pairs):
            est += self.probe_pair(k - 1, n_probe, seed + k - 1)
            r_log = self.w_target - est
            for blk in self.blocks:
                r = r_log[self._row_input[blk.row_slice]][:, blk.col_slice]
                blk.pairs[k] = self.mapping.retarget(self.backend, program_fn, blk.pairs, k, r,
                                                     settle_s)
        # what is still off after the refresh, as the array sees it, for the fault correction
        last = self.mapping.n_pairs - 1
        self.correction = self._fault_correction(est + self.probe_pair(last, n_probe, seed + last))
        if self._x_cal is not None:
            self.calibrate(self._x_cal)  # ADC ranges for the new pairs

    # ---- calibration ----
    def calibrate(self, x_cal: Array, *, input_percentile: float | None = None,
                  input_margin: float | None = None, adc_percentile: float = 99.95,
                  adc_margin: float = 1.1) -> None:
        """Input scale from the calibration activations (default their max: an input
        clipped by the DAC can throw an ODE trajectory off); each pair's ADC range from the
        currents its read-back conductances give on those inputs (the ``adc_percentile``-th
        |I| × ``adc_margin``: rare outliers clip rather than coarsen every conversion)."""
        if input_percentile is not None:
            self.input_percentile = float(input_percentile)
        if input_margin is not None:
            self.input_margin = float(input_margin)
        self._x_cal = np.asarray(x_cal, dtype=np.float64)
        a = np.abs(x_cal)
        xs = float(np.percentile(a, self.input_percentile)) * self.input_margin if a.size else 1.0
        self.x_scale = xs if xs > 0 else 1.0
        for n_pass, (v, _) in enumerate(self._passes(x_cal)):
            for blk in self.blocks:
                vb = v[:, blk.row_slice]
                for k, p in enumerate(blk.pairs):
                    i = vb @ (p.g_read[:, 0::2] - p.g_read[:, 1::2])
                    peak = float(np.percentile(np.abs(i), adc_percentile)) if i.size else 0.0
                    blk.adc_range_A[n_pass][k] = max(peak * adc_margin, 1e-9)

    def set_affine(self, gain: Array, offset: Array) -> None:
        """Per-column digital correction ``y·gain + offset`` (drift compensation hook), on
        the layer's outputs (column copies averaged first)."""
        n = self.n_logical_out
        self.gain = np.broadcast_to(np.asarray(gain, np.float64), (n,)).copy()
        self.offset = np.broadcast_to(np.asarray(offset, np.float64), (n,)).copy()

    def fit_affine(self, x_cal: Array, y_ref: Array | None = None, *, n_rep: int = 1) -> None:
        """Least-squares per-column gain and offset mapping chip outputs onto ``y_ref``
        (default: the target weights' float outputs ``x_cal @ W``), as HERMES does from
        calibration inputs (Le Gallo et al. 2023), with calibration's fit
        (:func:`calibration.compensation.fit_column_affine`). The chip outputs are the
        regressor, so their per-call noise biases the gain low by noise²/signal²; the fit
        runs on the column copies' average and on ``n_rep`` repeated conversions'."""
        y = sum((self._averaged(self._matmul(x_cal)) for _ in range(max(1, n_rep))),
                np.zeros((len(x_cal), self.n_logical_out))) / max(1, n_rep)
        ref = x_cal @ self.w_target[:, :self.n_logical_out] if y_ref is None else y_ref
        self.set_affine(*fit_column_affine(y, ref))

    # ---- forward ----
    def _passes(self, x: Array) -> list[tuple[Array, float]]:
        """Row voltages for every physical row (inputs repeated over their replicas), per
        input pass, with the pass's weight. Two passes slice each input: the DAC-quantized
        value, then its quantization residual magnified to full scale (bit-sliced inputs,
        docs/references.md "Periphery") — ~2·dac_bits of input resolution for two MVMs."""
        u = np.clip(np.asarray(x, dtype=np.float64) / self.x_scale, -1.0, 1.0)
        parts: list[tuple[Array, float]] = []
        if self.input_passes <= 1:
            parts.append((u, 1.0))
        else:
            q = float(self._dac_q)
            u1 = np.round(u * q) / q
            parts += [(u1, 1.0), (np.clip((u - u1) * 2.0 * q, -1.0, 1.0), 1.0 / (2.0 * q))]
        return [(self._rows(a, 1) * self.v_max, wgt) for a, wgt in parts]

    def _matmul(self, x: Array) -> Array:
        y = np.zeros((len(x), self.n_out))
        to_act = self.x_scale / (self.dg * self.v_max * self.replicas)
        for n_pass, (v, wgt) in enumerate(self._passes(x)):
            for blk in self.blocks:
                vb = v[:, blk.row_slice]
                for p, adc in zip(blk.pairs, blk.adc_range_A[n_pass]):
                    r = p.region
                    i = sum(np.asarray(self.backend.mvm(r.tile, vb, rows=r.rows, cols=r.cols,
                                                        differential=True, adc_range_A=adc),
                                       dtype=np.float64) for _ in range(self.repeats))
                    y[:, blk.col_slice] += i * (p.scale * to_act * wgt / self.repeats)
        if self.correction is not None:
            y += np.asarray(self.correction.T @ np.clip(x, -self.x_scale, self.x_scale).T).T
        return y

    def _averaged(self, y: Array) -> Array:
        """Physical outputs → the layer's outputs (mean over column copies)."""
        if self.col_copies == 1:
            return y
        return np.asarray(y.reshape(len(y), self.col_copies, self.n_logical_out).mean(axis=1))

    def forward(self, x: Array) -> Array:
        y = self._averaged(self._matmul(x)) * self.gain + self.offset
        return y if self.b is None else y + self.b

    def backward(self, grad_out: Array) -> Array:
        raise RuntimeError(
            "AnalogLinear is inference-only: train the float model (with hardware-aware "
            "noise), then map it to the chip"
        )


class AnalogNetwork(MLP):
    """An :class:`MLP` whose linear layers are :class:`AnalogLinear`."""

    def analog_layers(self) -> list[AnalogLinear]:
        return [la for la in self.layers if isinstance(la, AnalogLinear)]


def to_analog(model: MLP, backend: Backend, program_fn: ProgramFn, x_cal: Array, *,
              mapping: Mapping | None = None, allocator: TileAllocator | None = None,
              affine: bool = True, skip_first: Sequence[int] = (),
              fault_threshold: float | None = 0.25, repeats: int = 1,
              replicas: int | None = None, input_percentile: float = 100.0,
              input_margin: float = 1.0, interleave: bool = False, tie_copies: bool = False,
              col_copies: Sequence[int] = (),
              first_input_passes: int = 1, progressive: bool = True) -> AnalogNetwork:
    """Program every :class:`Linear` of ``model`` onto the chip and calibrate it.

    Calibration runs ``x_cal`` through the *float* model layer by layer: each analog
    layer's input scale and ADC ranges come from its float inputs, and (with ``affine``)
    its per-column gain/offset is fitted so its outputs match the float layer's — with
    ``progressive``, from the inputs the chip layers before it actually produce. Linear
    layers whose index is in ``skip_first`` stay digital. ``col_copies[k]`` is linear
    layer *k*'s column copies (missing: 1); ``input_margin``, ``interleave`` and
    ``tie_copies`` are :class:`AnalogLinear`'s DAC headroom and row-copy options.
    """
    alloc = allocator if allocator is not None else TileAllocator(backend.chip)
    layers: list[Layer] = []
    h = np.asarray(x_cal, dtype=np.float64)
    h_chip = h
    k = 0
    was_training = [la.training for la in model.layers]
    model.train(False)
    try:
        for layer in model.layers:
            if isinstance(layer, Linear):
                if k in skip_first:
                    layers.append(layer)
                    h_chip = layer.forward(h_chip)
                else:
                    b = None if layer.b is None else layer.b.value
                    al = AnalogLinear(layer.W.value, b, backend, alloc, program_fn, mapping,
                                      fault_threshold=fault_threshold, repeats=repeats,
                                      replicas=replicas, interleave=interleave,
                                      tie_copies=tie_copies,
                                      col_copies=col_copies[k] if k < len(col_copies) else 1,
                                      input_passes=first_input_passes if k == 0 else 1)
                    al.calibrate(h, input_percentile=input_percentile, input_margin=input_margin)
                    if affine:
                        # progressive: map what this layer computes from the *chip's* inputs
                        # onto the float layer's outputs from float inputs, so each layer
                        # also absorbs the per-column part of the error upstream
                        al.fit_affine(h_chip if progressive else h, h @ layer.W.value)
                    layers.append(al)
                    h_chip = al.forward(h_chip)
                k += 1
            else:
                layers.append(layer)
                h_chip = layer.forward(h_chip)
            h = layer.forward(h)
    finally:
        for la, t in zip(model.layers, was_training):
            la.training = t
    return AnalogNetwork(layers)


def refresh(net: AnalogNetwork, program_fn: ProgramFn, *, n_probe: int = 64,
            settle_s: float = 0.0) -> None:
    """:meth:`AnalogLinear.refresh` on every analog layer of ``net``."""
    for k, layer in enumerate(net.analog_layers()):
        layer.refresh(program_fn, n_probe=n_probe, settle_s=settle_s, seed=1000 * k)


def recalibrate(net: AnalogNetwork, model: MLP, x_cal: Array, *, reread: bool = False,
                n_average: int = 8, n_rep: int = 1) -> None:
    """Chip-in-the-loop recalibration right before use (HERMES-style per-column affine
    correction from calibration inputs, Le Gallo et al., Nat. Electron. 2023): run
    ``x_cal`` through the chip network and the float ``model`` side by side and refit each
    analog layer's per-column gain/offset, progressively (from the inputs the chip layers
    before it produce now). Relaxation keeps moving the cells after programming (in log
    time, docs/references.md), so an affine fitted at programming time goes stale while other
    layers are programmed and settle; this refits it against the cells as they are.
    With ``reread`` the cells are read again first and the ADC ranges re-derived; ``n_rep``
    repeats each layer's calibration conversions (:meth:`AnalogLinear.fit_affine`)."""
    h = np.asarray(x_cal, dtype=np.float64)
    h_chip = h
    for f_layer, c_layer in zip(model.layers, net.layers, strict=True):
        if isinstance(c_layer, AnalogLinear) and isinstance(f_layer, Linear):
            if reread:
                c_layer.refresh_readback(n_average)
                c_layer.calibrate(h)
            c_layer.fit_affine(h_chip, h @ f_layer.W.value, n_rep=n_rep)
        h_chip = c_layer.forward(h_chip)
        h = f_layer.forward(h)
