"""Verify-write policies on the simulated chip (direct engine and through the runner)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration import policies as pol
from calibration import programming as pg
from calibration.faults import form_block
from labctl.core.routine_params import validate
from sim_backend import SimBackend

from .conftest import block, run_protocol, uniform_targets


def _policy(kind: str) -> pol.Policy:
    p = validate({"policy": pol.POLICY, "set": pol.ramp_section("", 1.2, 3.3, 2.8, 1e-6),
                  "reset": pol.ramp_section("", 1.2, 2.5, 5.0, 1e-6)},
                 {"policy": {"kind": kind}})
    return pol.make_policy(p["policy"], p["set"], p["reset"])


@pytest.mark.parametrize("kind", ["gate", "amplitude", "pulse_width"])
@pytest.mark.parametrize("preset", ["default_180nm", "ideal"])
def test_policies_converge(kind: str, preset: str) -> None:
    """Every policy programs 48 × 48 random targets over the window into a ±1 µS band.
    Thresholds: gate and pulse width ≥ 0.99 of the cells not stuck, amplitude (NeuRRAM
    ping-pong, the baseline) ≥ 0.97, and ≥ 0.9 on ``ideal``: there every cell is identical
    and noise-free, and the first RESET at 1.2 V removes ~15 % of G (5 µS at 35 µS, more than
    the 2 µS band), so some high targets ping-pong deterministically until the alternation
    limit. RMS error of converged cells, read when programming ends: ≤ 0.6 µS on ``ideal``;
    ≤ 1.0 µS on the default chip, where the clock runs, so cells accepted early in the loop
    have relaxed by the end of it, and the final read carries its own low-frequency read
    noise (2–4 % of G, docs/simulator.md)."""
    be = SimBackend(preset, seed=3)
    cells = block(48, 48)
    unformed = form_block(be, cells)
    target = uniform_targets(len(cells))
    st = pg.program_direct(be, cells, target, pg.Settings(), _policy(kind), skip=unformed)
    g = be.read(cells, n_average=8)
    s = pg.summary(st, g, target)
    floor = 0.99 if kind != "amplitude" else 0.97 if preset != "ideal" else 0.9
    assert s["success_rate"] >= floor, s
    assert s["rms_error_converged_S"] <= (0.6e-6 if preset == "ideal" else 1.0e-6), s
    assert (st["n_pulses"] <= pg.Settings().max_pulses).all()
    if preset == "ideal":
        assert s["stuck"] == 0 and s["skipped"] == 0


def test_gate_policy_raises_gate_in_small_steps() -> None:
    """The gate ladder starts below the target's implied cap and rises by one cap step per
    SET pulse; the gate for a cap inverts ½β(V_g − V_th)²/V_hold."""
    p = _policy("gate")
    assert isinstance(p, pol.GateStepping)
    st = p.new_state(2)
    idx, g, target = np.array([0, 1]), np.array([1e-6, 1e-6]), np.array([20e-6, 20e-6])
    _, gate1, _ = p.set_pulses(st, idx, g, target, np.array([True, True]))
    _, gate2, _ = p.set_pulses(st, idx, g, target, np.array([False, False]))
    cap1 = 0.5 * 10.2e-6 * (gate1 - 0.7) ** 2 / 0.5
    np.testing.assert_allclose(cap1, 18e-6, rtol=1e-9)
    assert ((gate2 - gate1) > 0).all() and ((gate2 - gate1) < 0.02).all()


def test_limits_and_stuck_outcomes() -> None:
    """Per-cell limits: a tiny pulse budget gives 'gave_up' with the limit named; stuck-at
    cells of a faulty chip are flagged 'stuck', not 'gave_up'."""
    from sim_backend import load_preset

    preset = load_preset("default_180nm").with_changes(
        faults={"stuck_lrs_rate": 0.03, "stuck_hrs_rate": 0.0, "unformable_rate": 0.0})
    be = SimBackend(preset, seed=5)
    cells = block(32, 32)
    form_block(be, cells)
    target = uniform_targets(len(cells), seed=2)
    st = pg.program_direct(be, cells, target, pg.Settings(), _policy("gate"))
    truth = be.macro.fault_map(0)[:32, :32].ravel() == 1
    stuck = st["outcome"] == pg.STUCK
    assert truth.sum() > 10
    assert stuck[truth].all()
    assert (stuck & ~truth).sum() <= 2
    be2 = SimBackend("default_180nm", seed=5)
    form_block(be2, cells)
    st2 = pg.program_direct(be2, cells, target, pg.Settings(max_pulses=2), _policy("gate"))
    gave = st2["outcome"] == pg.GAVE_UP
    assert gave.sum() > 100
    assert (st2["limit"][gave] == pg.LIMIT_PULSES).all()


def test_policy_selected_in_protocol(tmp_path: Path, cal_dir: Path) -> None:
    res, arr = run_protocol(tmp_path, """
steps:
  - routine: forming
    params: {region: {tile: 0, rows: [0, 16], cols: [0, 16]}, formed_threshold_S: 2.0e-6}
  - routine: verify_write
    params:
      region: {tile: 0, rows: [0, 16], cols: [0, 16]}
      target: {kind: random_uniform, low_S: 2.0e-6, high_S: 38.0e-6}
      policy: {kind: pulse_width, width_start_s: 2.0e-8}
""")
    assert res[1]["policy"] == "pulse_width"
    assert res[1]["success_rate"] >= 0.97
    assert arr[1]["outcome"].shape == (16, 16)


def test_gate_policy_uses_its_own_set_width_and_refuses_an_unused_set_section() -> None:
    from calibration import verify_write
    from labctl.core.envelope import SafetyEnvelope
    from labctl.core.routine_params import ParamError, validate
    from sim_backend import SimBackend

    chip = SimBackend("ideal").chip
    base = {"region": {"tile": 0, "rows": [0, 4], "cols": [0, 4]},
            "target": {"kind": "uniform", "g_S": 10e-6}}
    p = validate(verify_write.PARAMS, {**base, "policy": {"kind": "gate", "set_width_s": 2e-7}})
    policy = verify_write.make_policy(p["policy"], p["set"], p["reset"])
    st = policy.new_state(3)
    _, _, width = policy.set_pulses(st, np.arange(3), np.full(3, 1e-6), np.full(3, 10e-6),
                                    np.ones(3, bool))
    assert np.all(width == 2e-7)
    p = validate(verify_write.PARAMS, {**base, "set": {"width_s": 5e-7}})
    with pytest.raises(ParamError, match="only by policy kind 'amplitude'"):
        verify_write.check(p, chip, SafetyEnvelope())
