"""Level characterization: program N levels across the window, watch them spread.

The region's cells are assigned to ``n_levels`` targets from ``low_S`` to ``high_S``
(interleaved, cell k → level k mod N, so every level spans the whole block), programmed with
verify-write, then read (averaged) right after programming, twice more with single reads at
that same instant (the difference is pure read noise: the relaxation walk is shared by reads
at one time, docs/simulator.md), and after ``t_short_s`` / ``t_mid_s`` / ``t_long_s``
(default 1 s, 1 h, 1 day: the times of the NeuRRAM-fitted spread figures, docs/references.md).

Reported per time: mean and σ of each level over its converged cells (the spread against
conductance), and the number of **distinguishable levels**, criterion: walking up from the
lowest level, a level counts when its mean is at least ``k_sigma``·(σ_a + σ_b) above the last
counted level a (k = 2: their ±2σ intervals do not overlap, ≈ 2 % of each level's cells on
the wrong side of the midpoint for normal spreads). Stuck cells found while programming are
marked in the chip's calibration record, converged ones as good. Optionally writes a
digital-twin preset fitted to the data (:mod:`calibration.fitting`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibration import programming as pg
from calibration import region as reg
from calibration.faults import classify
from calibration.policies import POLICY, check_policy, make_policy, ramp_section
from labctl.core.backend import ChipInfo
from labctl.core.calibration_record import FAULT_CODES
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine import Checkpoint, PulseBatch, RoutineSpec, StepContext
from labctl.core.routine_params import Float, Int, Param, ParamError

PARAMS: dict[str, Param] = {
    **reg.PULSE_PARAMS,
    "n_levels": Int("levels programmed across the window", min=2, max=256, default=8),
    "low_S": Float("lowest level", unit="S", min=0.0, max=1e-3, default=5e-6),
    "high_S": Float("highest level", unit="S", min=0.0, max=1e-3, default=40e-6),
    "policy": POLICY,
    "reset": ramp_section("RESET amplitude ramp (source line, gate fully on)", 1.2, 2.5, 5.0,
                          1e-6),
    "tolerance_S": Float("verify-write band half-width (NeuRRAM ±1 µS)", unit="S", min=1e-8,
                         max=20e-6, default=1e-6),
    "n_average": Int("reads averaged (NeuRRAM 3–8)", min=1, max=64, default=8),
    "t_short_s": Float("first read time after programming", unit="s", min=1e-3, max=1e8,
                       default=1.0),
    "t_mid_s": Float("second read time", unit="s", min=1e-3, max=1e8, default=3600.0),
    "t_long_s": Float("last read time", unit="s", min=1e-3, max=1e8, default=86400.0),
    "k_sigma": Float("distinguishable: means ≥ k·(σ_a + σ_b) apart", min=0.1, max=10.0,
                     default=2.0),
    "preset_out": Param("str", "write a fitted simulator preset YAML to this path, relative "
                        "to the current directory ('' = no)",
                        default=""),
}
TIME_KEYS = ("t_short_s", "t_mid_s", "t_long_s")


def check(params: Mapping[str, Any], chip: ChipInfo, env: SafetyEnvelope) -> None:
    reg.check_region(params["region"], chip)
    for key in ("low_S", "high_S"):
        if not chip.g_min_S <= params[key] <= chip.g_max_S:
            raise ParamError(key, f"must be within the chip's window {chip.g_min_S:g} S ≤ value "
                             f"≤ {chip.g_max_S:g} S; got {params[key]:g}")
    if params["low_S"] >= params["high_S"]:
        raise ParamError("low_S", "must be below high_S")
    t = [params[k] for k in TIME_KEYS]
    if not t[0] < t[1] < t[2]:
        raise ParamError("t_mid_s", "read times must increase: t_short_s < t_mid_s < t_long_s")
    if params["reset"]["stop_V"] > env.max_sourceline_V:
        raise ParamError("reset.stop_V", f"must be ≤ {env.max_sourceline_V:g} V (the safety "
                         "envelope)")
    check_policy(params["policy"], env, chip)


def level_targets(n_cells: int, levels_S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(level index, target S) per cell: cell k → level k mod N."""
    idx = np.arange(n_cells) % levels_S.size
    return idx, levels_S[idx]


@dataclass(frozen=True)
class LevelStats:
    levels_S: np.ndarray
    mean_S: np.ndarray
    std_S: np.ndarray


def level_stats(g_S: np.ndarray, level: np.ndarray, levels_S: np.ndarray,
                ok: np.ndarray) -> LevelStats:
    """Mean and σ of each level over the ``ok`` cells."""
    m = np.array([g_S[ok & (level == i)].mean() for i in range(levels_S.size)])
    s = np.array([g_S[ok & (level == i)].std(ddof=1) for i in range(levels_S.size)])
    return LevelStats(levels_S, m, s)


def distinguishable(mean_S: np.ndarray, std_S: np.ndarray, k_sigma: float) -> int:
    """Levels counted walking up: each ≥ k·(σ_a + σ_b) above the last counted one."""
    order = np.argsort(mean_S)
    count, last = 1, order[0]
    for i in order[1:]:
        if mean_S[i] - mean_S[last] >= k_sigma * (std_S[i] + std_S[last]):
            count, last = count + 1, i
    return count


def run(ctx: StepContext) -> Iterator[Checkpoint]:
    p = ctx.params
    be = ctx.backend
    cells = reg.region_cells(p["region"])
    n = len(cells)
    levels = np.linspace(p["low_S"], p["high_S"], p["n_levels"])
    level, target = level_targets(n, levels)
    settings = pg.Settings(tolerance_S=p["tolerance_S"], n_average=3)
    policy = make_policy(p["policy"], {}, p["reset"])
    times = np.array([p[k] for k in TIME_KEYS])
    if ctx.resume is None:
        st = pg.new_state(n, policy)
        known = ctx.calibration.fault_map[cells.tile, cells.row, cells.col]
        st["outcome"][np.isin(known, [1, 2, 3])] = pg.SKIPPED
        st |= {"phase": np.array(0), "t0_s": np.array(np.nan), "k": np.array(0),
               "g_S": np.full((times.size + 1, n), np.nan), "g_pair_S": np.full((2, n), np.nan)}
    else:
        st = {k: np.array(v) for k, v in ctx.resume.state.items()}
    if int(st["phase"]) == 0:
        for planned in pg.iterate(be, cells, target, settings, policy, st):
            yield Checkpoint(state=st, pulses=[
                PulseBatch(cells.subset(q.idx), q.kind, q.amplitude_V, q.gate_V, q.width_s)
                for q in planned], done=int((st["outcome"] != pg.PENDING).sum()), total=n)
        st["t0_s"] = np.array(be.clock.now())
        st["g_S"][0] = be.read(cells, n_average=p["n_average"])
        st["g_pair_S"][0] = be.read(cells)
        st["g_pair_S"][1] = be.read(cells)
        st["phase"] = np.array(1)
        yield Checkpoint(state=st, done=n, total=n)
    while int(st["k"]) < times.size:
        k = int(st["k"])
        wait = float(st["t0_s"]) + times[k] - be.clock.now()
        if wait > 0:
            be.clock.wait(wait)
        st["g_S"][k + 1] = be.read(cells, n_average=p["n_average"])
        st["k"] = np.array(k + 1)
        yield Checkpoint(state=st, done=k + 1, total=int(times.size))
    _report(ctx, st, level, levels, target, times)


def _report(ctx: StepContext, st: Mapping[str, np.ndarray], level: np.ndarray,
            levels: np.ndarray, target: np.ndarray, times: np.ndarray) -> None:
    p = ctx.params
    ok = st["outcome"] == pg.CONVERGED
    g = st["g_S"]
    stats = [level_stats(g[i], level, levels, ok) for i in range(g.shape[0])]
    labels = ["t0", *(f"{t:g}s" for t in times)]
    shape = reg.region_shape(p["region"])
    ctx.save_arrays(target_S=target.reshape(shape), g_map_S=g[-1].reshape(shape),
                    outcome=st["outcome"].reshape(shape), n_pulses=st["n_pulses"].reshape(shape),
                    levels_S=levels, level_t_s=np.concatenate([[0.0], times]),
                    level_mean_S=np.array([s.mean_S for s in stats]),
                    level_std_S=np.array([s.std_S for s in stats]),
                    char_g_S=g, char_pair_S=st["g_pair_S"], char_level=level, char_ok=ok)
    ctx.result(
        levels_uS=[round(float(x) * 1e6, 3) for x in levels],
        converged=int(ok.sum()), n_cells=int(ok.size),
        criterion=f"adjacent levels ≥ {p['k_sigma']:g}·(σ_a + σ_b) apart",
        **{f"distinguishable_{lab}": distinguishable(s.mean_S, s.std_S, p["k_sigma"])
           for lab, s in zip(labels, stats, strict=True)},
        **{f"sigma_{lab}_uS": [round(float(x) * 1e6, 3) for x in s.std_S]
           for lab, s in zip(labels, stats, strict=True)},
        **{f"mean_shift_{lab}_uS": [round(float(x) * 1e6, 3) for x in s.mean_S - levels]
           for lab, s in zip(labels, stats, strict=True)})
    cells = reg.region_cells(p["region"])
    stuck = st["outcome"] == pg.STUCK
    code = classify(np.zeros(stuck.shape, bool), stuck, g[0], target,
                    went_up=st["last_dir"] > 0,
                    window_S=(ctx.chip.g_min_S, ctx.chip.g_max_S))
    for mask, fault in ((stuck & (code == FAULT_CODES["stuck_lrs"]), "stuck_lrs"),
                        (stuck & (code == FAULT_CODES["stuck_hrs"]), "stuck_hrs"), (ok, "ok")):
        c = cells.subset(mask)
        ctx.calibration.mark_faults(c.tile, c.row, c.col, fault)
    ctx.touch_calibration()
    if p["preset_out"]:
        from calibration import fitting

        data = fitting.CharacterizationData(levels_S=levels, level=level, ok=ok, t_s=times,
                                            g_S=g, g_pair_S=st["g_pair_S"],
                                            n_average=p["n_average"])
        fit = fitting.fit_relaxation(data) | {"read": fitting.fit_read_noise(data)}
        path = fitting.write_preset(fit, Path(p["preset_out"]), name="fitted",
                                    description=f"fitted to chip {ctx.chip.chip_id}")
        ctx.event("fitted preset written", path=str(path))
        ctx.calibration.programming["device_model"] = fit


ROUTINE = RoutineSpec("characterize", __doc__ or "", PARAMS, run, check)
