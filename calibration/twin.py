"""Twin measurement: what the device model needs, measured on the chip itself.

One routine, in phases, over a region of one tile (the first half of its columns is formed
with the gate ramp, the second half with one FORM at a fixed, high gate):

1. **survey** — every cell of the tile read before forming: stuck-at-LRS cells conduct,
   stuck-at-HRS cells conduct like an HRS, pristine cells hardly at all (fault rates);
2. **forming** — the gate ramp (Stanford settings, 1.3 V + 0.05 V per pulse), recording the
   gate at which each cell formed (minimum forming current, through the transistor curve);
   the fixed-gate half gives the as-formed conductance where the gate does not cap it;
3. **HRS** — a full RESET and a read (HRS floor);
4. **gate curve** — one strong SET at a per-cell gate from 1.2 to 2.6 V (G_cap(V_g));
5. **transistor** — cells SET high, then read at low read gates, where the access
   transistor saturates: I = ½β(V_g − V_th)² (β and V_th directly);
6. **RESET / SET kinetics** — one RESET (then, after a full RESET, one SET) per cell at an
   amplitude from a ladder, read before and after (switched fraction against amplitude);
7. **levels over ages** — verify-write to ``n_levels`` targets, then averaged reads at
   ``ages_s`` after programming ends (seconds to a day: spread and mean relaxation);
8. **read-noise series** — single reads of the level cells at delays from ~0 to 1,000 s
   after a first one (white and low-frequency read noise, from how the difference grows).

Every read is kept with its chip time. The routine's result arrays form one long table
(one row per cell and measurement; ``calibration.twin_data`` documents the columns, which
are also the CSV import format) that ``labctl fit RUN.h5`` turns into a simulator preset.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from calibration import programming as pg
from calibration import region as reg
from calibration import twin_data as td
from calibration.policies import default_policy
from labctl.core.backend import Backend, ChipInfo, PulseKind
from labctl.core.cells import Cells
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine import Checkpoint, PulseBatch, RoutineSpec, StepContext
from labctl.core.routine_params import Float, Int, Param, ParamError

AGES_S = (1.0, 10.0, 100.0, 1e3, 1e4, 86400.0)
"""Read ages of the levels after programming ends: seconds to a day (the NeuRRAM-fitted
spread is tabulated at 1 s and 1 day)."""
NOISE_DELAYS_S = (0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1e3)
"""Read-noise series: delays of the later single reads after the first (one per decade of
the low-frequency noise's time scales; 0 = the next read)."""
TRANSISTOR_GATES_V = (0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.25)
"""Read gates at which a cell SET to the top of the window saturates the transistor."""

PARAMS: dict[str, Param] = {
    **reg.PARAMS,
    "form_bitline_V": Float("FORM bit-line amplitude", unit="V", min=0.5, max=5.0, default=3.3),
    "form_gate_start_V": Float("first gate of the forming ramp", unit="V", min=0.0, max=6.0,
                               default=1.3),
    "form_gate_step_V": Float("forming ramp step", unit="V", min=0.01, max=0.5, default=0.05),
    "form_gate_stop_V": Float("last gate of the forming ramp", unit="V", min=0.0, max=6.0,
                              default=2.5),
    "form_fixed_gate_V": Float("gate of the one-shot FORM (must not cap the as-formed G)",
                               unit="V", min=0.0, max=6.0, default=2.7),
    "form_width_s": Float("FORM pulse width", unit="s", min=1e-9, max=1e-2, default=1e-3),
    "formed_threshold_S": Float("a cell reading above this is formed", unit="S", min=1e-8,
                                max=1e-4, default=1.5e-6),
    "set_gate_low_V": Float("lowest gate of the gate curve", unit="V", min=0.0, max=6.0,
                            default=1.2),
    "set_gate_high_V": Float("highest gate of the gate curve", unit="V", min=0.0, max=6.0,
                             default=2.6),
    "strong_V": Float("amplitude of the strong SET / full RESET", unit="V", min=0.5, max=5.0,
                      default=2.5),
    "high_gate_V": Float("SET gate that takes cells to the top of the window", unit="V",
                         min=0.0, max=6.0, default=2.7),
    "reset_low_V": Float("RESET kinetics ladder, lowest amplitude", unit="V", min=0.0,
                         max=5.0, default=0.8),
    "reset_high_V": Float("RESET kinetics ladder, highest amplitude", unit="V", min=0.0,
                          max=5.0, default=1.8),
    "set_low_V": Float("SET kinetics ladder, lowest amplitude", unit="V", min=0.0, max=5.0,
                       default=1.0),
    "set_high_V": Float("SET kinetics ladder, highest amplitude", unit="V", min=0.0, max=5.0,
                        default=2.0),
    "kinetics_width_s": Float("width of the kinetics pulses", unit="s", min=1e-9, max=1e-3,
                              default=1e-6),
    "n_levels": Int("levels programmed across the window", min=2, max=64, default=8),
    "low_S": Float("lowest level", unit="S", min=0.0, max=1e-3, default=5e-6),
    "high_S": Float("highest level", unit="S", min=0.0, max=1e-3, default=40e-6),
    "n_average": Int("reads averaged (levels, curves)", min=1, max=64, default=8),
    "read_V": Float("read voltage", unit="V", min=0.05, max=0.3, default=0.2),
    "read_gate_V": Float("read gate voltage", unit="V", min=0.0, max=6.0, default=2.5),
}


def check(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    reg.check_region(params["region"], chip)
    for key in ("form_gate_stop_V", "form_fixed_gate_V", "high_gate_V", "read_gate_V",
                "set_gate_high_V"):
        if params[key] > env.max_gate_V:
            raise ParamError(key, f"must be ≤ {env.max_gate_V:g} V (the safety envelope)")
    if params["form_bitline_V"] > env.max_bitline_V:
        raise ParamError("form_bitline_V", f"must be ≤ {env.max_bitline_V:g} V")
    for key in ("strong_V", "set_high_V"):
        if params[key] > env.max_bitline_V:
            raise ParamError(key, f"must be ≤ {env.max_bitline_V:g} V (the safety envelope)")
    for key in ("strong_V", "reset_high_V"):
        if params[key] > env.max_sourceline_V:
            raise ParamError(key, f"must be ≤ {env.max_sourceline_V:g} V (the safety envelope)")
    for lo, hi in (("set_gate_low_V", "set_gate_high_V"), ("reset_low_V", "reset_high_V"),
                   ("set_low_V", "set_high_V")):
        if params[lo] >= params[hi]:
            raise ParamError(lo, f"must be below {hi}")
    if not chip.g_min_S <= params["low_S"] < params["high_S"] <= chip.g_max_S:
        raise ParamError("low_S", "levels must lie within the window, low_S < high_S")
    if params["read_V"] > env.max_read_V:
        raise ParamError("read_V", f"must be ≤ {env.max_read_V:g} V (the safety envelope)")


def _ladder(lo: float, hi: float, n: int, seed: int) -> np.ndarray:
    """Values evenly over [lo, hi], shuffled over the cells (a reproducible permutation)."""
    v = np.linspace(lo, hi, n)
    return v[np.random.default_rng(seed).permutation(n)]


class _Reads:
    """Reads of the routine, kept as rows of the long table (``twin_data.COLUMNS``)."""

    def __init__(self, be: Backend, cells: Cells, read_V: float, read_gate_V: float) -> None:
        self.be, self.cells, self.read_V, self.gate_V = be, cells, read_V, read_gate_V

    def g(self, sel: np.ndarray, n_average: int, gate_V: float | None = None
          ) -> tuple[np.ndarray, float]:
        """(conductance S of cells ``sel``, chip time of the read)."""
        t = self.be.clock.now()
        g = self.be.read(self.cells.subset(sel), self.read_V,
                         self.gate_V if gate_V is None else gate_V, n_average)
        return g, t


def run(ctx: StepContext) -> Iterator[Checkpoint]:
    p = ctx.params
    be = ctx.backend
    cells = reg.region_cells(p["region"])
    n = len(cells)
    half = (cells.col - p["region"]["cols"][0]) < (p["region"]["cols"][1]
                                                   - p["region"]["cols"][0]) // 2
    st: dict[str, np.ndarray] = (
        {k: np.array(v) for k, v in ctx.resume.state.items()} if ctx.resume is not None
        else {"phase": np.array(0), "ramp_k": np.array(0), "form_gate_V": np.full(n, np.nan),
              "chunk": np.array(0)})
    rd = _Reads(be, cells, p["read_V"], p["read_gate_V"])
    all_i = np.arange(n)
    navg = p["n_average"]

    def checkpoint(pulses: list[PulseBatch], done: int) -> Checkpoint:
        return Checkpoint(state=st, pulses=pulses, done=done, total=8)

    def save(chunk: td.Table) -> None:
        """Each measurement goes to the run file as soon as it is taken (a chunk of rows)."""
        k = int(st["chunk"])
        ctx.save_arrays(**{f"twin{k:03d}_{name}": v for name, v in chunk.arrays().items()})
        st["chunk"] = np.array(k + 1)
        counts[chunk.kind()] = counts.get(chunk.kind(), 0) + len(chunk)

    def add(kind: str, sel: np.ndarray, g: np.ndarray, t: float, **cols: Any) -> None:
        c = cells.subset(sel)
        save(td.Table.of(kind, c.tile, c.row, c.col, t, rd.read_V,
                              cols.pop("gate_V", rd.gate_V), g * rd.read_V, **cols))

    counts: dict[str, int] = {}

    def pulse(sel: np.ndarray, kind: PulseKind, amp: Any, gate: Any, width: float
              ) -> PulseBatch:
        k = sel.size
        return PulseBatch(cells.subset(sel), kind, np.broadcast_to(amp, (k,)).astype(float),
                          np.broadcast_to(gate, (k,)).astype(float), np.full(k, width))

    phase = int(st["phase"])
    if phase == 0:  # survey the tile before anything is formed; FORM the fixed-gate half
        tile = Cells.block(int(p["region"]["tile"]), range(be.chip.n_rows),
                           range(be.chip.n_cols))
        t = be.clock.now()
        g = be.read(tile, p["read_V"], p["read_gate_V"], 1)
        save(td.Table.of("survey", tile.tile, tile.row, tile.col, t, p["read_V"],
                              p["read_gate_V"], g * p["read_V"]))
        st["phase"] = np.array(phase := 1)
        yield checkpoint([pulse(np.flatnonzero(~half), PulseKind.FORM, p["form_bitline_V"],
                                p["form_fixed_gate_V"], p["form_width_s"])], 1)
    if phase == 1:  # as-formed reads; the forming ramp on the first half
        fixed = np.flatnonzero(~half)
        if int(st["ramp_k"]) == 0:
            g, t = rd.g(fixed, navg)
            add("as_formed", fixed, g, t, stimulus_V=np.full(fixed.size, p["form_fixed_gate_V"]),
                n_average=np.full(fixed.size, navg))
        gates = np.arange(p["form_gate_start_V"], p["form_gate_stop_V"] + 1e-9,
                          p["form_gate_step_V"])
        while True:
            k = int(st["ramp_k"])  # ramp pulses applied so far
            pending = np.flatnonzero(half & np.isnan(st["form_gate_V"]))
            if k > 0 and pending.size:
                g, _ = rd.g(pending, 1)
                done = g > p["formed_threshold_S"]
                st["form_gate_V"][pending[done]] = gates[k - 1]
                pending = pending[~done]
            if pending.size == 0 or k == gates.size:
                break
            st["ramp_k"] = np.array(k + 1)
            yield checkpoint([pulse(pending, PulseKind.FORM, p["form_bitline_V"], gates[k],
                                    p["form_width_s"])], 1)
        ramp = np.flatnonzero(half)
        g, t = rd.g(ramp, navg)
        add("form", ramp, g, t, stimulus_V=st["form_gate_V"][ramp],
            n_average=np.full(ramp.size, navg))
        st["phase"] = np.array(phase := 2)
    if phase == 2:  # full RESET, read the HRS floor
        st["phase"] = np.array(3)
        yield checkpoint([pulse(all_i, PulseKind.RESET, p["strong_V"], 5.0, 1e-5)], 2)
        phase = 3
    if phase == 3:
        g, t = rd.g(all_i, navg)
        add("hrs", all_i, g, t, n_average=np.full(n, navg))
        gate = _ladder(p["set_gate_low_V"], p["set_gate_high_V"], n, 1)
        st["set_gate"] = gate
        st["phase"] = np.array(phase := 4)
        yield checkpoint([pulse(all_i, PulseKind.SET, p["strong_V"], gate, 1e-6)], 3)
    if phase == 4:  # gate curve read; then SET every cell high for the transistor curve
        g, t = rd.g(all_i, navg)
        add("gate_curve", all_i, g, t, stimulus_V=st["set_gate"], n_average=np.full(n, navg))
        st["phase"] = np.array(phase := 5)
        yield checkpoint([pulse(all_i, PulseKind.SET, p["strong_V"], p["high_gate_V"], 1e-6)], 4)
    if phase == 5:
        for read_gate in TRANSISTOR_GATES_V:
            g, t = rd.g(all_i, 1, gate_V=read_gate)
            add("transistor", all_i, g, t, gate_V=np.full(n, read_gate))
        g0, t = rd.g(all_i, navg)
        st["before"] = g0
        amp = _ladder(p["reset_low_V"], p["reset_high_V"], n, 2)
        st["amp"] = amp
        st["phase"] = np.array(phase := 6)
        yield checkpoint([pulse(all_i, PulseKind.RESET, amp, 5.0, p["kinetics_width_s"])], 5)
    if phase == 6:  # RESET kinetics read; then a full RESET before the SET kinetics
        g, t = rd.g(all_i, navg)
        add("reset_kinetics", all_i, g, t, stimulus_V=st["amp"],
            before_A=st["before"] * rd.read_V, pulse_gate_V=np.full(n, 5.0),
            width_s=np.full(n, p["kinetics_width_s"]), n_average=np.full(n, navg))
        st["phase"] = np.array(phase := 7)
        yield checkpoint([pulse(all_i, PulseKind.RESET, p["strong_V"], 5.0, 1e-5)], 6)
    if phase == 7:
        g0, _ = rd.g(all_i, navg)
        st["before"] = g0
        amp = _ladder(p["set_low_V"], p["set_high_V"], n, 3)
        st["amp"] = amp
        st["phase"] = np.array(phase := 8)
        yield checkpoint([pulse(all_i, PulseKind.SET, amp, p["high_gate_V"],
                                p["kinetics_width_s"])], 7)
    if phase == 8:
        g, t = rd.g(all_i, navg)
        add("set_kinetics", all_i, g, t, stimulus_V=st["amp"],
            before_A=st["before"] * rd.read_V, pulse_gate_V=np.full(n, p["high_gate_V"]),
            width_s=np.full(n, p["kinetics_width_s"]), n_average=np.full(n, navg))
        st["phase"] = np.array(phase := 9)
    levels = np.linspace(p["low_S"], p["high_S"], p["n_levels"])
    target = levels[np.arange(n) % levels.size]
    policy = default_policy()
    settings = pg.Settings()
    if phase == 9:  # verify-write the levels (the fault survey's stuck cells are skipped)
        if "outcome" not in st:
            st.update(pg.new_state(n, policy))
            formed = np.isfinite(st["form_gate_V"]) | ~half
            st["outcome"][~formed] = pg.SKIPPED
        for planned in pg.iterate(be, cells, target, settings, policy, st):
            yield checkpoint([PulseBatch(cells.subset(q.idx), q.kind, q.amplitude_V, q.gate_V,
                                         q.width_s) for q in planned], 8)
        st["t_end"] = np.array(be.clock.now())
        st["age_k"] = np.array(0)
        st["phase"] = np.array(phase := 10)
    ok = np.flatnonzero(st["outcome"] == pg.CONVERGED) if "outcome" in st else all_i
    if phase == 10:  # levels over ages
        ages = list(AGES_S)
        while int(st["age_k"]) < len(ages):
            k = int(st["age_k"])
            be.clock.wait(max(float(st["t_end"]) + ages[k] - be.clock.now(), 0.0))
            g, t = rd.g(ok, navg)
            add("levels", ok, g, t, target_S=target[ok], n_average=np.full(ok.size, navg),
                age_s=np.full(ok.size, t - float(st["t_end"])))
            st["age_k"] = np.array(k + 1)
            yield checkpoint([], 8)
        st["phase"] = np.array(phase := 11)
    if phase == 11:  # read-noise series: delays after a first single read
        g, t0 = rd.g(ok, 1)
        add("noise", ok, g, t0, target_S=target[ok], delay_s=np.zeros(ok.size))
        for d in NOISE_DELAYS_S:
            be.clock.wait(max(t0 + d - be.clock.now(), 0.0))
            g, t = rd.g(ok, 1)
            add("noise", ok, g, t, target_S=target[ok], delay_s=np.full(ok.size, t - t0))
        st["phase"] = np.array(12)
    ctx.result(measurement_chunks=int(st["chunk"]), rows_this_session=counts,
               levels_converged=int(ok.size), n_cells=n)


ROUTINE = RoutineSpec("twin", __doc__ or "", PARAMS, run, check)
