"""The simulated 1T1R macro: persistent per-cell state and the three primitives.

``Macro`` holds the state of every cell (conductance at its last programming event, when
that was, whether it is formed, how many events it has seen) and applies pulses, reads and
MVMs to arrays of cells. It does **no** envelope or address checking — ``SimBackend`` and
the virtual instruments sit in front of it and check first.

Time: the clock runs. Every operation advances ``clock`` by its device time as the
periphery executes the batch (:mod:`sim_backend.timing`), and each cell is pulsed or read
at its own instant within the batch, so relaxation and low-frequency read noise act during
and between operations as on a chip. Randomness stays keyed by (seed, cell, that cell's
event count): re-batching never changes which random numbers a cell draws, only when it is
touched (docs/simulator.md, "Determinism").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labctl.core.backend import ChipInfo, PulseKind
from labctl.core.cells import Cells
from labctl.core.clock import VirtualClock
from labctl.core.ledger import Ledger
from sim_backend import rng
from sim_backend.device import (
    Fault,
    StaticCells,
    apply_bitline_pulse,
    apply_sourceline_pulse,
    draw_static,
    saturation_current_A,
)
from sim_backend.energy import EnergyModel
from sim_backend.periphery import MvmKernel, ir_drop_matrix
from sim_backend.preset import Preset
from sim_backend.read_noise import LowFrequencyNoise
from sim_backend.relaxation import RelaxationModel
from sim_backend.timing import Schedule, rows_in_sequence

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
_POOL_WORD = 0x504F4F4C  # "POOL"
_MVM_STREAM = 50


@dataclass
class _TileCache:
    version: int
    valid_until_s: float
    G_S: F64


class Macro:
    """State and physics of the whole simulated macro."""

    def __init__(
        self,
        preset: Preset,
        seed: int = 0,
        clock: VirtualClock | None = None,
        chip_id: str | None = None,
    ) -> None:
        self.preset = preset
        self.seed = int(seed)
        self.clock = clock if clock is not None else VirtualClock()
        a, per = preset.array, preset.periphery
        self.n_tiles, self.n_rows, self.n_cols = a.n_tiles, a.n_rows, a.n_cols
        self.cells_per_tile = a.n_rows * a.n_cols
        n = a.n_tiles * self.cells_per_tile
        self.chip = ChipInfo(
            chip_id=chip_id or f"sim-{preset.name}-seed{self.seed}",
            n_tiles=a.n_tiles,
            n_rows=a.n_rows,
            n_cols=a.n_cols,
            g_min_S=a.g_min_S,
            g_max_S=a.g_max_S,
            read_V=a.read_V,
            read_gate_V=a.read_gate_V,
            mvm_input_max_V=per.mvm_input_max_V,
            dac_bits=per.dac_bits,
            adc_bits=per.adc_bits,
            adc_range_A=per.adc_range_A,
            preset=preset.name,
        )
        sw = preset.switching
        self.g_prog_S = np.full(n, sw.pristine_S)
        self.t_prog_s = np.zeros(n)
        self.events = np.zeros(n, dtype=np.int64)
        self.prog_event = np.zeros(n, dtype=np.int64)
        self.formed = np.zeros(n, dtype=bool)
        self.broken = np.zeros(n, dtype=bool)
        """Hard-broken by over-compliance forming: stuck at LRS from then on."""
        self.pulse_count = np.zeros(n, dtype=np.int32)
        self.relax_rate_S2 = np.zeros(n)
        self.relax_t0_s = np.ones(n)
        self._walk_k = np.full(n, -1, dtype=np.int64)
        """Grid index at which ``_walk_w`` was computed (−1: none, or a new walk)."""
        self._walk_w = np.zeros(n)
        self._static: StaticCells | None = None
        self._static_ready = np.zeros(a.n_tiles, dtype=bool)
        self.lf = LowFrequencyNoise(preset.read, self.seed)
        self.relax = RelaxationModel(
            preset.relaxation,
            self.seed,
            self.lf.variance_S2(np.asarray(preset.relaxation.table_G_S, dtype=np.float64)),
        )
        self.energy = EnergyModel(preset)
        self.ledger = Ledger()
        self._tile_version = [0] * a.n_tiles
        self._tile_cache: dict[int, _TileCache] = {}
        self._kernels: dict[tuple[int, int, int, int, int, bool], tuple[MvmKernel, int, float]] = {}
        self.mvm_stream_positions = [0] * a.n_tiles
        """Position in each tile's MVM output-noise stream (values drawn so far)."""
        self._g_floor = preset.relaxation.floor_S
        self._pool: F32 | None = None
        self._lap_offsets: dict[tuple[int, int], int] = {}

    # ---- static (device-to-device) parameters, drawn per tile on first use ----
    def static(self, idx: I64) -> StaticCells:
        self._draw_tiles(idx)
        assert self._static is not None
        return self._static.take(idx)

    def _faults(self, idx: I64) -> tuple[npt.NDArray[np.int8], F64]:
        """(fault code, stuck conductance S) of each cell: the two static fields the
        conductance needs (a read gathers these, not all of :class:`StaticCells`)."""
        self._draw_tiles(idx)
        assert self._static is not None
        return self._static.fault[idx], self._static.stuck_S[idx]

    def _draw_tiles(self, idx: I64) -> None:
        if not idx.size:
            return
        cpt = self.cells_per_tile
        if not self._static_ready[int(idx.min()) // cpt : int(idx.max()) // cpt + 1].all():
            # (Once the tiles in range are drawn — the usual case — no sort of the indices.)
            tiles = np.unique(idx // self.cells_per_tile)
            for t in tiles[~self._static_ready[tiles]]:
                self._init_tile(int(t))

    def _init_tile(self, tile: int) -> None:
        n = self.n_tiles * self.cells_per_tile
        if self._static is None:
            self._static = StaticCells.zeros(n)
        lo = tile * self.cells_per_tile
        cells = np.arange(lo, lo + self.cells_per_tile, dtype=np.int64)
        st = draw_static(self.preset, self.seed, cells)
        for name in StaticCells.__dataclass_fields__:
            getattr(self._static, name)[lo : lo + self.cells_per_tile] = getattr(st, name)
        self._static_ready[tile] = True

    def index(self, cells: Cells) -> I64:
        return cells.flat_index(self.n_rows, self.n_cols)

    # ---- conductance now ----
    def _conductance(
        self, idx: I64, faults: tuple[npt.NDArray[np.int8], F64], t_s: float | F64
    ) -> tuple[F64, F64]:
        """(conductance S, time of the cell's next change s) at time ``t_s`` (one time, or
        one per cell); ``faults`` from :meth:`_faults`."""
        fault, stuck_S = faults
        g = self.g_prog_S[idx].copy()
        next_change = np.full(idx.shape, np.inf)
        relaxing = self.formed[idx] & ~self.broken[idx] & (fault == Fault.NONE)
        if self.preset.relaxation_on and relaxing.any():
            ii = idx[relaxing]
            t0 = self.relax_t0_s[ii]
            t_here = t_s[relaxing] if isinstance(t_s, np.ndarray) else t_s
            dt = t_here - self.t_prog_s[ii]
            k = self.relax.grid_index(dt, t0)
            dev = self.relax.deviation(
                ii,
                self.prog_event[ii],
                k,
                t0,
                self.relax_rate_S2[ii],
                self.g_prog_S[ii],
                self._walk_at(ii, k),
            )
            g[relaxing] = np.maximum(g[relaxing] + dev, self._g_floor)
            next_change[relaxing] = self.t_prog_s[ii] + self.relax.next_change_s(k, t0)
        stuck = (fault == Fault.STUCK_LRS) | (fault == Fault.STUCK_HRS)
        g[stuck] = stuck_S[stuck]
        g[self.broken[idx]] = np.maximum(
            stuck_S[self.broken[idx]], self.preset.faults.stuck_lrs_mean_S
        )
        return g, next_change

    def _walk_at(self, ii: I64, k: I64) -> F64:
        """W at grid index ``k`` of each cell's current walk, from the per-cell cache where
        the index has not moved since it was last computed (a pure function of the key, so
        caching changes no result)."""
        w = self._walk_w[ii]
        miss = (self._walk_k[ii] != k) & (k > 0)
        if miss.any():
            im = ii[miss]
            w[miss] = self.relax.walk(im, self.prog_event[im], k[miss])
            self._walk_w[im] = w[miss]
            self._walk_k[im] = k[miss]
        return w

    def conductance(self, cells: Cells) -> F64:
        """Noise-free conductance now, S (the simulator's ground truth, for tests)."""
        idx = self.index(cells)
        return self._conductance(idx, self._faults(idx), self.clock.now())[0]

    def fault_map(self, tile: int) -> npt.NDArray[np.int8]:
        """Ground-truth fault code per cell of a tile (``device.Fault``), for tests."""
        idx = np.arange(tile * self.cells_per_tile, (tile + 1) * self.cells_per_tile)
        f = self.static(idx).fault.copy()
        f[self.broken[idx]] = Fault.STUCK_LRS
        return f.reshape(self.n_rows, self.n_cols)

    # ---- primitives ----
    def pulse(
        self,
        cells: Cells,
        kind: PulseKind,
        amplitude_V: F64,
        gate_V: F64,
        width_s: F64,
        compliance_A: F64 | None,
        schedule: Schedule | None = None,
    ) -> None:
        """Apply one batch of pulses. Each cell is pulsed at its instant of ``schedule``
        (default: rows in sequence, :func:`timing.rows_in_sequence`), its relaxation
        restarts at the end of its pulse, and the clock advances by the batch's duration."""
        idx = self.index(cells)
        st = self.static(idx)
        t_start = self.clock.now()
        if schedule is None:
            schedule = rows_in_sequence(
                cells, self.n_rows, width_s, self.preset.energy.pulse_overhead_s
            )
        t_cell = t_start + schedule.start_s
        g, _ = self._conductance(idx, (st.fault, st.stuck_S), t_cell)
        ev = self.events[idx]
        formed = self.formed[idx]
        if kind is PulseKind.RESET:
            out = apply_sourceline_pulse(
                self.preset, self.seed, idx, ev, st, g, formed, amplitude_V, gate_V, width_s
            )
        else:
            out = apply_bitline_pulse(
                self.preset,
                self.seed,
                idx,
                ev,
                st,
                g,
                formed,
                amplitude_V,
                gate_V,
                width_s,
                compliance_A,
            )
        # Only a pulse that switched the cell restarts its relaxation: a pulse below
        # threshold, or a SET on a cell already at its cap, leaves the filament (and its
        # relaxation walk) as it was.
        threshold = self.preset.switching.switch_threshold_rel
        switched = out.formed_now | (
            np.abs(out.g_new_S - g) > threshold * np.maximum(g, self._g_floor)
        )
        self.formed[idx] = formed | out.formed_now
        self.broken[idx] |= out.broken_now
        sw = idx[switched]
        self.g_prog_S[sw] = out.g_new_S[switched]
        self.t_prog_s[sw] = (t_cell + width_s)[switched]
        self.prog_event[sw] = ev[switched]
        rate, t0 = self.relax.params_for(out.g_new_S[switched])
        self.relax_rate_S2[sw] = rate
        self.relax_t0_s[sw] = t0
        self._walk_k[sw] = -1
        self.events[idx] = ev + 1
        self.pulse_count[idx] += 1
        self.clock.wait(schedule.duration_s)
        if sw.size:
            self._refresh_cached_tiles(sw, self.clock.now())
        self.energy.book_pulse(
            self.ledger,
            cells,
            kind,
            amplitude_V,
            gate_V,
            width_s,
            out.current_A,
            self.n_rows,
            self.n_cols,
            schedule.duration_s,
        )

    def read_current(
        self,
        cells: Cells,
        read_V: float,
        gate_V: float,
        n_average: int,
        schedule: Schedule | None = None,
    ) -> F64:
        """Current through each cell at ``read_V`` (A), averaged over n reads.

        Each cell is read at its instant of ``schedule`` (default: rows in sequence, a row
        taking n · ``read_time_s``). The white read noise of n averaged reads is drawn as one
        normal with σ/√n (statistically the same); the relaxation state and the
        low-frequency noise (:mod:`sim_backend.read_noise`, averaged over the read window)
        are shared by reads close in time.
        """
        idx = self.index(cells)
        faults = self._faults(idx)
        window_s = n_average * self.preset.energy.read_time_s
        if schedule is None:
            schedule = rows_in_sequence(cells, self.n_rows, np.zeros(len(cells)), window_s)
        t_cell = self.clock.now() + schedule.start_s
        g, _ = self._conductance(idx, faults, t_cell)
        ev = self.events[idx]
        r = self.preset.read
        if self.lf.on:
            g = g + self.lf.sigma_S(g) * self.lf.standard(idx, t_cell, window_s)
        sigma = np.sqrt((r.relative_sigma * g) ** 2 + r.floor_sigma_S**2) / np.sqrt(n_average)
        if r.relative_sigma > 0 or r.floor_sigma_S > 0:
            g = g + sigma * rng.normal(self.seed, idx, ev, rng.Stream.READ)
        self.events[idx] = ev + 1
        current = read_V * g
        i_sat = float(saturation_current_A(self.preset, np.array([gate_V]))[0])
        current = np.clip(current, -i_sat, i_sat)
        self.clock.wait(schedule.duration_s)
        self.energy.book_read(
            self.ledger, cells, read_V, g, n_average, self.n_rows, schedule.duration_s
        )
        return current

    def mvm_current(
        self,
        tile: int,
        inputs_V: npt.NDArray[np.floating],
        rows: slice,
        cols: slice,
        differential: bool,
        adc_range_A: float,
    ) -> F32:
        kernel = self._kernel(tile, rows, cols, differential)
        batch, n_in = inputs_V.shape
        noise = self._noise(tile, batch, kernel.n_out) if kernel.noisy else None
        y, energy_code2_S = kernel.run(inputs_V, noise, adc_range_A)
        e = self.preset.energy
        self.clock.wait(batch * (e.mvm_integration_s + e.adc_conversion_s))
        self.energy.book_mvm(
            self.ledger,
            batch,
            n_in,
            energy_code2_S,
            kernel.lsb_in_V,
            n_outputs=y.shape[1],
        )
        return y

    # ---- MVM caches ----
    def _array_state(self, idx: I64, t_s: float) -> tuple[F64, float]:
        """(conductance as an MVM sees it at ``t_s`` — relaxation plus the low-frequency
        read noise at that instant — S, time until which this snapshot holds s)."""
        g, nxt = self._conductance(idx, self._faults(idx), t_s)
        if self.lf.on:
            g = g + self.lf.sigma_S(g) * self.lf.standard(idx, np.full(idx.shape, t_s), 0.0)
        relaxing = np.isfinite(nxt)
        hold_until = float(nxt.min()) if nxt.size else np.inf
        if relaxing.any():
            youngest = float(np.min(t_s - self.t_prog_s[idx[relaxing]]))
            rel = self.preset.periphery.mvm_snapshot_rel
            hold_until = max(hold_until, t_s + rel * max(youngest, 0.0))
        return g, hold_until

    def tile_conductance(self, tile: int) -> F64:
        """The conductance matrix a tile's MVMs use now, S: a snapshot retaken after pulses
        and as relaxation goes on (``PeripheryParams.mvm_snapshot_rel``)."""
        t = self.clock.now()
        c = self._tile_cache.get(tile)
        if c is None or c.version != self._tile_version[tile] or t >= c.valid_until_s:
            lo = tile * self.cells_per_tile
            idx = np.arange(lo, lo + self.cells_per_tile, dtype=np.int64)
            g, hold = self._array_state(idx, t)
            c = _TileCache(self._tile_version[tile], hold, g.reshape(self.n_rows, self.n_cols))
            self._tile_cache[tile] = c
        return c.G_S

    def drop_mvm_snapshots(self) -> None:
        """Forget every tile's MVM snapshot and kernels; the next MVM retakes them."""
        for tile in self._tile_cache:
            self._tile_version[tile] += 1
        self._tile_cache.clear()
        self._kernels.clear()

    def _refresh_cached_tiles(self, idx: I64, t_s: float) -> None:
        """After a pulse, update cached tile matrices in place (only the switched cells)
        instead of recomputing every cell of the tile on the next MVM."""
        tiles = idx // self.cells_per_tile
        for tile in np.unique(tiles):
            tile = int(tile)
            c = self._tile_cache.get(tile)
            stale = c is None or c.version != self._tile_version[tile] or t_s >= c.valid_until_s
            self._tile_version[tile] += 1
            if stale or c is None:
                continue
            ii = idx[tiles == tile]
            g, hold = self._array_state(ii, t_s)
            c.G_S.reshape(-1)[ii - tile * self.cells_per_tile] = g
            c.version = self._tile_version[tile]
            c.valid_until_s = min(c.valid_until_s, hold)

    def _kernel(self, tile: int, rows: slice, cols: slice, differential: bool) -> MvmKernel:
        key = (tile, int(rows.start), int(rows.stop), int(cols.start), int(cols.stop), differential)
        G = self.tile_conductance(tile)
        cache = self._tile_cache[tile]
        hit = self._kernels.get(key)
        if hit is not None and hit[1] == cache.version and hit[2] == cache.valid_until_s:
            return hit[0]
        block = G[rows, cols]
        per = self.preset.periphery
        # IR drop depends on every cell on the lines, selected or not (unselected rows are
        # held at 0 V, every column at virtual ground), so it is computed on the whole tile.
        M = ir_drop_matrix(G, per.wire_ohm_per_cell)[rows, cols] if per.ir_drop else block
        if differential:
            M_eff = M[:, 0::2] - M[:, 1::2]
            M_var = M[:, 0::2] ** 2 + M[:, 1::2] ** 2
        else:
            M_eff, M_var = M, M**2
        out_sigma = per.output_noise_rel * self.chip.g_max_S * per.mvm_input_max_V
        kernel = MvmKernel(
            M_eff,
            M_var,
            dac_bits=per.dac_bits,
            input_max_V=per.mvm_input_max_V,
            read_sigma_rel=self.preset.read.relative_sigma,
            output_sigma_A=out_sigma,
            row_sum_S=block.sum(axis=1),
            adc_bits=per.adc_bits,
        )
        self._kernels[key] = (kernel, cache.version, cache.valid_until_s)
        return kernel

    def _noise(self, tile: int, batch: int, n_out: int) -> F32:
        """Standard normals for ``batch`` input vectors × ``n_out`` outputs.

        Each tile draws its MVM output noise from a stream consumed vector by vector: so
        one call with 4 vectors draws exactly what four calls with 1 vector draw, and the
        direct and wire paths agree. Stream position q maps into the seeded pool by laps of
        half the pool, each lap at its own offset keyed by (seed, tile, lap), so a batch is
        one contiguous slice (two at a lap boundary) and the noise never repeats in step.
        """
        n = batch * n_out
        q0 = self.mvm_stream_positions[tile]
        self.mvm_stream_positions[tile] += n
        size = self.preset.periphery.noise_pool_size
        if self._pool is None:
            self._pool = rng.generator(self.seed, _POOL_WORD).standard_normal(
                size, dtype=np.float32
            )
        lap_len = size // 2
        lap, r = divmod(q0, lap_len)
        if r + n <= lap_len and (tile, lap) in self._lap_offsets:  # one slice (the usual case)
            off = self._lap_offsets[(tile, lap)]
            return self._pool[off + r : off + r + n].reshape(batch, n_out)
        parts = []
        q = q0
        while q < q0 + n:
            lap, r = divmod(q, lap_len)
            take = min(lap_len - r, q0 + n - q)
            if (tile, lap) not in self._lap_offsets:  # a pure function of the key: cached
                self._lap_offsets[(tile, lap)] = rng.hash_scalar(
                    self.seed, tile, lap, _MVM_STREAM) % (size - lap_len + 1)
            off = self._lap_offsets[(tile, lap)]
            parts.append(self._pool[off + r : off + r + take])
            q += take
        flat = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return flat.reshape(batch, n_out)
