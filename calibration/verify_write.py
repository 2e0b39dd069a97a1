"""Batched verify-write: amplitude-stepping SET / RESET until every cell is in its band.

Each iteration reads all pending cells in one call, decides per cell (vectorized), and
plans one SET batch and one RESET batch — never a Python loop over cells. Amplitudes ramp
per cell and polarity: SET bit line from 1.2 V up 0.1 V per pulse, RESET source line from
1.2 V up 0.1 V per pulse, restarting the ramp when a cell changes direction (NeuRRAM chip
test code, Wan et al., Nature 608, 504, 2022 — REFERENCE.md). A cell is *converged* after two
consecutive reads in the band with no pulse between (NeuRRAM's confirming read), *stuck* when
``stuck_pulses`` consecutive pulses at the top amplitude moved it by less than
``stuck_delta_S``, and *gave up* when it used ``max_pulses`` pulses. Cells the chip's
calibration record already marks unformed or stuck are *skipped* (never pulsed).

Resumable: the state is checkpointed before every pulse batch. A resumed run re-reads the
pending cells and re-plans them from the checkpointed state; cells that had finished are never
pulsed again and are re-read in the closing read of the region — the same read an
uninterrupted run makes, so on the simulator (whose noise is keyed per cell and per event) a
resumed run repeats the uninterrupted run exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from calibration import region as reg
from calibration.targets import TARGET, check_target, make_target
from labctl.backend import ChipInfo, PulseKind
from labctl.envelope import SafetyEnvelope
from labctl.params import Bool, Float, Int, Param, ParamError, Section
from labctl.routine import Checkpoint, PulseBatch, RoutineSpec, StepContext
from labctl.store.calibration import FAULT_CODES

PENDING, CONVERGED, GAVE_UP, STUCK, SKIPPED = 0, 1, 2, 3, 4
OUTCOMES = {"pending": PENDING, "converged": CONVERGED, "gave_up": GAVE_UP, "stuck": STUCK,
            "skipped": SKIPPED}
KNOWN_BAD = [FAULT_CODES[k] for k in ("unformed", "stuck_lrs", "stuck_hrs")]


def _ramp(doc: str, start: float, stop: float, gate: float, width: float) -> Param:
    return Section(doc, {
        "start_V": Float("first pulse amplitude", unit="V", min=0.1, max=5.0, default=start),
        "step_V": Float("amplitude increase per pulse", unit="V", min=0.0, max=1.0, default=0.1),
        "stop_V": Float("largest amplitude", unit="V", min=0.1, max=5.0, default=stop),
        "gate_V": Float("word-line (gate) voltage", unit="V", min=0.0, max=6.0, default=gate),
        "width_s": Float("pulse width", unit="s", min=1e-9, max=1e-3, default=width),
    }, default={})


PARAMS: dict[str, Param] = {
    **reg.PARAMS,
    "target": TARGET,
    "tolerance_S": Float("acceptance band half-width (NeuRRAM: ±1 µS)", unit="S",
                         min=1e-8, max=20e-6, default=1e-6),
    "read_V": Float("verify-read voltage across the cell", unit="V", min=0.05, max=0.3,
                    default=0.2),
    "n_average": Int("reads averaged per verify (NeuRRAM: 3–8)", min=1, max=64, default=3),
    "confirm": Bool("require a second read in the band before accepting", default=True),
    "skip_known_faults": Bool("leave cells the chip's calibration record marks unformed or "
                              "stuck unpulsed (outcome 'skipped')", default=True),
    "max_pulses": Int("pulses per cell before giving up", min=1, max=10000, default=100),
    "stuck_pulses": Int("top-amplitude pulses without response before calling a cell stuck",
                        min=1, max=1000, default=30),
    "stuck_delta_S": Float("response below which a top-amplitude pulse counts as none",
                           unit="S", min=0.0, max=1e-4, default=0.2e-6),
    "set": _ramp("SET pulses (bit line; the gate limits the current)", 1.2, 3.3, 2.5, 1e-6),
    "reset": _ramp("RESET pulses (source line, gate fully on)", 1.2, 2.5, 5.0, 1e-6),
}


def check(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    reg.check_region(params["region"], chip)
    check_target(params["target"], reg.region_shape(params["region"]), chip)
    for key, limit in (("set", env.max_bitline_V), ("reset", env.max_sourceline_V)):
        r = params[key]
        if r["stop_V"] > limit:
            raise ParamError(f"{key}.stop_V", f"must be ≤ {limit:g} V (the safety envelope); "
                             f"got {r['stop_V']:g}")
        if r["start_V"] > r["stop_V"]:
            raise ParamError(f"{key}.start_V", "must not exceed stop_V")
        if r["gate_V"] > env.max_gate_V:
            raise ParamError(f"{key}.gate_V", f"must be ≤ {env.max_gate_V:g} V (the safety "
                             f"envelope); got {r['gate_V']:g}")
        if not env.min_width_s <= r["width_s"] <= env.max_width_s:
            raise ParamError(f"{key}.width_s", f"must be within {env.min_width_s:g} s ≤ value ≤ "
                             f"{env.max_width_s:g} s (the safety envelope)")
    if params["read_V"] > env.max_read_V:
        raise ParamError("read_V", f"must be ≤ {env.max_read_V:g} V (the safety envelope)")


def run(ctx: StepContext) -> Iterator[Checkpoint]:
    p = ctx.params
    be = ctx.backend
    region = p["region"]
    shape = reg.region_shape(region)
    cells = reg.region_cells(region)
    n = len(cells)
    target = make_target(p["target"], shape, ctx.seed).reshape(-1)
    tol = p["tolerance_S"]
    s_ramp, r_ramp = p["set"], p["reset"]

    if ctx.resume is None:
        st: dict[str, np.ndarray] = {
            "outcome": np.zeros(n, np.int8), "n_pulses": np.zeros(n, np.int64),
            "set_level": np.zeros(n, np.int64), "reset_level": np.zeros(n, np.int64),
            "candidate": np.zeros(n, bool), "top_count": np.zeros(n, np.int64),
            "at_top": np.zeros(n, bool), "g_prev_S": np.full(n, np.nan)}
        if p["skip_known_faults"]:
            known = ctx.calibration.fault_map[cells.tile, cells.row, cells.col]
            st["outcome"][np.isin(known, KNOWN_BAD)] = SKIPPED
        iteration = 0
    else:
        st = {k: np.array(v) for k, v in ctx.resume.state.items()}
        iteration = int(ctx.resume.meta["iteration"])
        ctx.event("resumed from a checkpoint: pending cells are re-read and re-planned; "
                  "finished cells get no pulse and are re-read in the closing read",
                  iteration=iteration, converged=int((st["outcome"] == CONVERGED).sum()))

    while True:
        act = np.flatnonzero(st["outcome"] == PENDING)
        if act.size == 0:
            break
        g = be.read(cells.subset(act), p["read_V"], n_average=p["n_average"])
        err = g - target[act]
        in_band = np.abs(err) <= tol
        accept = in_band & (st["candidate"][act] | (not p["confirm"]))
        st["candidate"][act] = in_band & ~accept
        st["outcome"][act[accept]] = CONVERGED

        # response to the last pulse, for cells that were pulsed at the top amplitude
        moved = np.abs(g - st["g_prev_S"][act])
        dead = st["at_top"][act] & ~(moved >= p["stuck_delta_S"])
        st["top_count"][act] = np.where(dead, st["top_count"][act] + 1, 0)
        st["g_prev_S"][act] = g

        need = ~in_band
        stuck = need & (st["top_count"][act] >= p["stuck_pulses"])
        gave_up = need & ~stuck & (st["n_pulses"][act] >= p["max_pulses"])
        st["outcome"][act[stuck]] = STUCK
        st["outcome"][act[gave_up]] = GAVE_UP
        go = need & ~stuck & ~gave_up
        up, down = act[go & (err < 0)], act[go & (err > 0)]

        batches = []
        for idx, ramp, level, other, kind in (
                (up, s_ramp, "set_level", "reset_level", PulseKind.SET),
                (down, r_ramp, "reset_level", "set_level", PulseKind.RESET)):
            if idx.size == 0:
                continue
            amp = np.minimum(ramp["start_V"] + st[level][idx] * ramp["step_V"], ramp["stop_V"])
            st[level][idx] += 1
            st[other][idx] = 0          # a change of direction restarts the other ramp
            st["at_top"][idx] = amp >= ramp["stop_V"] - 1e-12
            batches.append(PulseBatch(cells.subset(idx), kind, amp, ramp["gate_V"],
                                      ramp["width_s"]))
        st["at_top"][act[~go]] = False
        for b_idx in (up, down):
            st["n_pulses"][b_idx] += 1
        iteration += 1
        yield Checkpoint(state=st, pulses=batches, meta={"iteration": iteration},
                         done=int((st["outcome"] != PENDING).sum()), total=n)

    g_final = be.read(cells, p["read_V"], n_average=p["n_average"])
    _report(ctx, st, target, g_final, shape, iteration)


def _report(ctx: StepContext, st: Mapping[str, np.ndarray], target: np.ndarray,
            g_final: np.ndarray, shape: tuple[int, int], iterations: int) -> None:
    out = st["outcome"]
    conv = out == CONVERGED
    err = g_final - target
    ctx.save_arrays(target_S=target.reshape(shape), g_final_S=g_final.reshape(shape),
                    outcome=out.reshape(shape), n_pulses=st["n_pulses"].reshape(shape))
    counts = {name: int((out == code).sum()) for name, code in OUTCOMES.items() if code}
    ctx.result(**counts, n_cells=int(out.size), iterations=iterations,
               success_rate=float(conv.sum() / max(int((out != SKIPPED).sum()), 1)),
               mean_pulses=float(st["n_pulses"].mean()) if out.size else 0.0,
               rms_error_converged_S=float(np.sqrt(np.mean(err[conv] ** 2))) if conv.any()
               else float("nan"),
               outcome_codes=OUTCOMES)
    region = ctx.params["region"]
    cells = reg.region_cells(region)
    stuck = out == STUCK
    if stuck.any():
        hi = stuck & (g_final > target)
        for mask, fault in ((hi, "stuck_lrs"), (stuck & ~hi, "stuck_hrs")):
            c = cells.subset(mask)
            ctx.calibration.mark_faults(c.tile, c.row, c.col, fault)
    if conv.any():
        ctx.calibration.programming["verify_write"] = {
            k: ctx.params[k] for k in ("tolerance_S", "read_V", "n_average", "set", "reset")
        } | {"success_rate": float(conv.mean())}
    ctx.touch_calibration()


ROUTINE = RoutineSpec("verify_write", __doc__ or "", PARAMS, run, check)
