"""Weight → conductance mapping strategies, and where on the chip a block goes.

- :class:`DifferentialMapping`: one differential pair per weight, W⁺ on the even column and
  W⁻ on the odd one, with a per-column scale taken from a high percentile of |W| and mapped
  to g_max − g_min (NeuRRAM, Wan et al., Nature 608, 504, 2022, uses the 95th percentile;
  docs/references.md "Weight mapping"). Weights beyond the scale clip.
- :class:`BinaryMultiCellMapping`: HAQ, ``n_cells`` binary pairs per weight of
  significance ratio⁻ᵏ, each sign chosen from the measured error of the cells before it.
- :class:`ResidualMapping`: further pairs hold the *measured* error of the pairs before
  them: program pair 1, read it back, program pair 2 to the residual with a larger scale
  gain, and so on; outputs are combined digitally, each pair weighted by its scale. This is
  the multi-cell / mixed-precision remedy of the Jiang et al. review (Nat. Mater. 2026) and
  the iterative residual programming used to reach high precision on RRAM (e.g. Song et
  al., Science 2024, "programming memristor arrays with arbitrarily high precision").

Programming itself goes through a ``program_fn(backend, cells, targets_S)`` seam (the
calibration package's verify-write, or an ideal programmer in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from labctl.core.backend import Backend, ChipInfo
from labctl.core.cells import Cells
from labctl.core.errors import AddressError
from labctl.inference.layers import Array, WeightNoise

__all__ = [
    "BinaryMultiCellMapping", "DifferentialMapping", "MappedPair", "ProgramFn", "Region",
    "ResidualMapping", "Tie", "TileAllocator", "device_noise", "make_mapping", "pair_targets",
    "require_program_fn",
]

ProgramFn = Callable[[Backend, Cells, Array], object]
"""``program_fn(backend, cells, targets_S)``: bring each cell to its target conductance."""

Tie = Callable[[Array], Array]
"""Rows → rows: each row replaced by the mean over the rows holding copies of its weight."""


def require_program_fn(program_fn: ProgramFn | None) -> ProgramFn:
    """The workloads' chip side needs a programmer; the core ships none (the calibration
    package's is ``calibration.weights.make_program_fn()``, which the routines and the bench
    pass)."""
    if program_fn is None:
        raise ValueError("a chip run needs program_fn(backend, cells, targets_S), e.g. "
                         "calibration.weights.make_program_fn()")
    return program_fn


@dataclass(frozen=True)
class Region:
    """A rectangle of one tile: rows ``row0 .. row0+n_rows``, cols ``col0 .. col0+n_cols``."""

    tile: int
    row0: int
    n_rows: int
    col0: int
    n_cols: int

    @property
    def rows(self) -> slice:
        return slice(self.row0, self.row0 + self.n_rows)

    @property
    def cols(self) -> slice:
        return slice(self.col0, self.col0 + self.n_cols)

    def cells(self) -> Cells:
        """Every cell of the region, row-major (matches a ``(n_rows, n_cols)`` array)."""
        return Cells.block(self.tile, range(self.row0, self.row0 + self.n_rows),
                           range(self.col0, self.col0 + self.n_cols))


@dataclass
class TileAllocator:
    """Column-shelf packing: blocks sit side by side from column 0, each from row 0, and
    take a new tile when the current one is full. Columns are allocated in even numbers so
    differential pairs never straddle a block boundary."""

    chip: ChipInfo
    tiles: list[int] = field(default_factory=list)
    _next_col: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tiles:
            self.tiles = list(range(self.chip.n_tiles))

    def allocate(self, n_rows: int, n_cols: int) -> Region:
        if n_rows > self.chip.n_rows or n_cols > self.chip.n_cols:
            raise AddressError(f"block {n_rows}×{n_cols} exceeds a tile "
                               f"({self.chip.n_rows}×{self.chip.n_cols}); tile the matrix first")
        n_cols += n_cols % 2
        for t in self.tiles:
            c0 = self._next_col.get(t, 0)
            if c0 + n_cols <= self.chip.n_cols:
                self._next_col[t] = c0 + n_cols
                return Region(t, 0, n_rows, c0, n_cols)
        raise AddressError(f"no room left on tiles {self.tiles} for a {n_rows}×{n_cols} block")

    def used_columns(self) -> dict[int, int]:
        return dict(self._next_col)


@dataclass
class MappedPair:
    """One differential pair layer of a block: effective weight ``(G⁺ − G⁻)·scale/Δg``."""

    region: Region
    scale: Array
    """Per logical column: the weight that maps to a full Δg = g_max − g_min."""
    g_read: Array
    """Conductances read back after programming, ``(n_rows, 2·n_out)``, siemens."""
    targets: Array
    """The conductances last asked of ``program_fn``, same shape."""

    def weight_estimate(self, dg: float) -> Array:
        return (self.g_read[:, 0::2] - self.g_read[:, 1::2]) * self.scale / dg


def _column_scale(w: Array, percentile: float) -> Array:
    s = np.percentile(np.abs(w), percentile, axis=0) if w.shape[0] > 1 else np.abs(w[0])
    s = np.asarray(s, dtype=np.float64)
    fallback = np.max(np.abs(w), axis=0)
    s = np.where(s > 0, s, fallback)
    return np.where(s > 0, s, 1.0)


def pair_targets(w: Array, scale: Array, g_min: float, g_max: float) -> Array:
    """Interleaved (n_in, 2·n_out) targets: W⁺ on even columns, W⁻ on odd ones."""
    u = np.clip(w / scale, -1.0, 1.0) * (g_max - g_min)
    t = np.empty((w.shape[0], 2 * w.shape[1]))
    t[:, 0::2] = g_min + np.maximum(u, 0.0)
    t[:, 1::2] = g_min + np.maximum(-u, 0.0)
    return t


def _program_pair(backend: Backend, program_fn: ProgramFn, region: Region, w: Array,
                  scale: Array, n_average: int, settle_s: float) -> MappedPair:
    chip = backend.chip
    targets = pair_targets(w, scale, chip.g_min_S, chip.g_max_S)
    cells = region.cells()
    program_fn(backend, cells, targets.reshape(-1))
    if settle_s > 0:
        backend.clock.wait(settle_s)  # let the fast part of the relaxation happen first
    g = backend.read(cells, n_average=n_average).reshape(targets.shape)
    return MappedPair(region, scale, g, targets)


@dataclass(frozen=True)
class DifferentialMapping:
    """One pair per weight, per-column scale from the ``percentile``-th |W| (NeuRRAM: 95)."""

    percentile: float = 95.0
    n_average: int = 4
    """Reads averaged when reading the programmed block back."""
    settle_s: float = 0.0
    """Wait between programming and reading back (relaxation is fast in the first
    seconds to minutes, docs/references.md), on ``backend.clock``."""

    @property
    def n_pairs(self) -> int:
        return 1

    def program(self, backend: Backend, program_fn: ProgramFn, w: Array,
                regions: list[Region]) -> list[MappedPair]:
        s = _column_scale(w, self.percentile)
        return [_program_pair(backend, program_fn, regions[0], w, s, self.n_average,
                              self.settle_s)]


@dataclass(frozen=True)
class ResidualMapping:
    """``n_pairs`` pairs per weight; pair *p* holds the measured residual of pairs < *p*,
    with a scale ``gain`` times finer (limited to what the residual needs)."""

    n_pairs: int = 2
    percentile: float = 95.0
    gain: float = 8.0
    """Largest scale ratio between consecutive pairs."""
    residual_percentile: float = 99.0
    n_average: int = 8
    settle_first_s: float = 0.0
    """Wait after programming the first pair before reading it back. Relaxation runs in
    log time (docs/references.md), so after a long first wait the first pair barely moves while
    the later pairs are written and settle: their residual then holds what it did move."""
    settle_mid_s: float = 0.0
    """Wait after programming each middle pair (neither first nor last)."""
    settle_s: float = 0.0
    """Wait after programming the last pair before reading it back (and using it)."""

    def program(self, backend: Backend, program_fn: ProgramFn, w: Array,
                regions: list[Region], tie: Tie | None = None) -> list[MappedPair]:
        """Program the pairs in turn. ``tie`` averages a residual over the rows that hold
        copies of one logical weight and gives every copy that mean: what the layer uses is
        the copies' mean, so a copy far off (a stuck cell) is compensated by all of them
        together instead of by its own residual cell, which the residual scale would clip."""
        dg = backend.chip.g_max_S - backend.chip.g_min_S
        s = _column_scale(w, self.percentile)
        pairs = [_program_pair(backend, program_fn, regions[0], w, s, self.n_average,
                               self.settle_first_s)]
        est = pairs[0].weight_estimate(dg)
        for p in range(1, self.n_pairs):
            r = w - est if tie is None else tie(w - est)
            s_prev = pairs[-1].scale
            s_r = _column_scale(r, self.residual_percentile)
            s = np.clip(s_r, s_prev / self.gain, s_prev)
            settle = self.settle_s if p == self.n_pairs - 1 else self.settle_mid_s
            pairs.append(_program_pair(backend, program_fn, regions[p], r, s, self.n_average,
                                       settle))
            est = est + pairs[-1].weight_estimate(dg)
        return pairs

    def retarget(self, backend: Backend, program_fn: ProgramFn, pairs: list[MappedPair],
                 k: int, residual: Array, settle_s: float) -> MappedPair:
        """Re-program pair ``k`` (≥ 1), on its own cells, to ``residual``: what the pairs
        before it miss as measured *now* (a refresh: they have relaxed since the residual
        was first taken). Scale as in :meth:`program`, from pair ``k − 1``."""
        s_prev = pairs[k - 1].scale
        s = np.clip(_column_scale(residual, self.residual_percentile), s_prev / self.gain, s_prev)
        return _program_pair(backend, program_fn, pairs[k].region, residual, s,
                             self.n_average, settle_s)


@dataclass(frozen=True)
class BinaryMultiCellMapping:
    """HAQ-style multi-cell binary mapping (Yu et al., Nature 2026, hardware-aware
    quantization; their code github.com/SuperFrankyy/Memristive_Neural_Field,
    ``CT/backend/haq.py``): each weight is ``n_cells`` binary cells (here differential pairs
    of one cell at g_max and one at g_min, ±1) of significance ``ratio``⁻ᵏ, programmed in
    order of significance; the sign of cell *k* is chosen from the *measured* error of the
    cells before it (program and compensate), so a ratio below 2 leaves the later cells room
    to absorb the earlier cells' programming error. Binary cells sit at the ends of the
    window, where a verify-write lands in one or two pulses; the price is ``n_cells`` pairs
    per weight."""

    n_cells: int = 12
    ratio: float = 1.5
    n_average: int = 4
    settle_s: float = 0.0
    """Wait after programming each cell before reading it back."""

    @property
    def n_pairs(self) -> int:
        return self.n_cells

    def program(self, backend: Backend, program_fn: ProgramFn, w: Array,
                regions: list[Region]) -> list[MappedPair]:
        chip = backend.chip
        dg = chip.g_max_S - chip.g_min_S
        m = np.max(np.abs(w), axis=0)
        m = np.where(m > 0, m, 1.0)
        est = np.zeros_like(w)
        pairs: list[MappedPair] = []
        for k in range(self.n_cells):
            scale = 0.5 * m * self.ratio ** (-k)  # HAQ: cell k is ±½·max|W|·ratio⁻ᵏ
            sign = np.where(w - est >= 0.0, 1.0, -1.0)
            pairs.append(_program_pair(backend, program_fn, regions[k], sign * scale, scale,
                                       self.n_average, self.settle_s))
            est = est + pairs[-1].weight_estimate(dg)
        return pairs


Mapping = DifferentialMapping | ResidualMapping | BinaryMultiCellMapping


def make_mapping(kind: str, percentile: float, settle_first_s: float = 0.0,
                 settle_s: float = 0.0, n_pairs: int = 2, n_cells: int = 12,
                 ratio: float = 1.5) -> Mapping:
    """``"differential"``, ``"residual"`` (``n_pairs`` pairs) with settle times: the first
    pair ``settle_first_s``, middle pairs ``settle_first_s / 6``, the last ``settle_s``; or
    ``"haq"`` (``n_cells`` binary cells of significance ratio ``ratio``)."""
    if kind == "haq":
        return BinaryMultiCellMapping(n_cells=n_cells, ratio=ratio, settle_s=settle_s)
    if kind == "differential":
        return DifferentialMapping(percentile=percentile, settle_s=settle_first_s)
    if kind == "residual":
        return ResidualMapping(n_pairs=n_pairs, percentile=percentile,
                               settle_first_s=settle_first_s, settle_mid_s=settle_first_s / 6,
                               settle_s=settle_s)
    raise ValueError(f"unknown mapping {kind!r}; use differential, residual or haq")


def device_noise(chip: ChipInfo, sigma_G_S: float, percentile_frac: float = 1.0) -> WeightNoise:
    """Training noise with the device model's spread instead of the paper's 10 %.

    A programmed weight's error is σ_G·√2 (two cells) in units where Δg is full scale, so
    relative to the largest weight it is ``√2·σ_G/Δg``. Pass the mid-window spread from
    AIHWKit's ``ReRamWan2022NoiseModel`` (≈ 2 µS at 1 s, docs/references.md) or a fitted preset.
    """
    dg = chip.g_max_S - chip.g_min_S
    return WeightNoise(sigma=0.0, clip=0.0,
                       additive_frac=float(np.sqrt(2.0) * sigma_G_S / dg * percentile_frac))
