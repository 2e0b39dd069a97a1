"""The workloads' weight programmer (calibration.weights): forming + verify-write on the
simulated chip, memory across calls, the calibration record, the envelope check."""

from __future__ import annotations

import numpy as np
import pytest

from calibration import forming
from calibration import programming as pg
from calibration.weights import WEIGHT_SETTINGS, make_program_fn
from labctl.core.backend import PulseKind
from labctl.core.calibration_record import FAULT_CODES, CalibrationRecord
from labctl.core.cells import Cells
from labctl.core.envelope import SafetyEnvelope
from labctl.core.routine_params import ParamError
from sim_backend import SimBackend


class _Counting(SimBackend):
    """The simulated chip, counting FORM pulses."""

    forms = 0

    def _pulse(self, cells, kind, amplitude_V, gate_V, width_s, compliance_A):  # type: ignore[no-untyped-def]
        if kind == PulseKind.FORM:
            self.forms += len(cells)
        return super()._pulse(cells, kind, amplitude_V, gate_V, width_s, compliance_A)


def _shape(be: SimBackend) -> tuple[int, int, int]:
    c = be.chip
    return (c.n_tiles, c.n_rows, c.n_cols)


def test_program_fn_forms_then_verify_writes_into_the_weight_band() -> None:
    """Read when programming ends, ≥ 80 % of usable cells are within twice the weight band
    (±1 µS): the clock runs, so cells accepted early in the loop have relaxed meanwhile, and
    the final read carries low-frequency read noise (docs/simulator.md)."""
    be = _Counting("default_180nm", seed=3)
    cells = Cells.block(0, range(0, 16), range(0, 32))
    t = np.random.default_rng(3).uniform(1e-6, 40e-6, len(cells))
    pf = make_program_fn()
    st = pf(be, cells, t)
    assert be.forms > 0
    g = be.read(cells, n_average=8)
    usable = (st["outcome"] != pg.STUCK) & (st["outcome"] != pg.SKIPPED)
    ok = np.abs(g - t) <= 2 * WEIGHT_SETTINGS.tolerance_S
    assert ok[usable].mean() > 0.8
    assert (st["outcome"] == pg.CONVERGED).mean() > 0.9
    # a second call on the same cells re-forms nothing
    forms = be.forms
    pf(be, cells, t[::-1].copy())
    assert be.forms == forms


def test_a_cell_stuck_one_way_is_reprogrammed_the_other_way() -> None:
    """A "stuck" verdict is one-directional: a healthy cell that cannot reach a high target
    still moves down. Asked for an unreachable 200 µS (the envelope never reaches it), every
    healthy cell sticks going up; asked for 10 µS next, they all converge."""
    be = SimBackend("default_180nm", seed=3)
    cells = Cells.block(0, range(0, 8), range(0, 8))
    pf = make_program_fn()
    st = pf(be, cells, np.full(len(cells), 200e-6))
    healthy = be._macro._faults(be._macro.index(cells))[0] == 0
    up = healthy & (st["outcome"] == pg.STUCK)
    assert up.mean() > 0.7  # the rest gave up on a pulse or alternation limit
    st2 = pf(be, cells, np.full(len(cells), 10e-6))
    assert (st2["outcome"][up] == pg.CONVERGED).mean() > 0.9
    # a target above the level it stuck at is aimed one band inside it (within the cell's
    # reach), others as asked
    level = 200e-6 - st["ref_err_S"]
    band = WEIGHT_SETTINGS.tolerance_S
    aims: list[np.ndarray] = []
    real = pg.program_direct

    def spy(be_, cells_, target_S, *args, **kw):  # type: ignore[no-untyped-def]
        aims.append(np.array(target_S))
        return real(be_, cells_, target_S, *args, **kw)

    t = np.where(np.arange(len(cells)) % 2 == 0, 200e-6, 5e-6)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pg, "program_direct", spy)
        pf(be, cells, t)
    want = np.where(up, np.minimum(t, level - band), t)
    assert np.allclose(aims[-1][healthy], want[healthy])


def _fault_cells(be: SimBackend, code: int, n: int) -> Cells:
    m = be._macro
    fault = m._faults(np.arange(m.n_rows * m.n_cols, dtype=np.int64))[0]
    flat = np.flatnonzero(fault == code)[:n]
    return Cells(np.zeros(len(flat), np.int64), flat // m.n_cols, flat % m.n_cols)


def test_stuck_cells_are_left_alone_after_one_verdict_where_they_sit() -> None:
    """A stuck-LRS cell (≥ 30 µS, above the window's upper half) asked to go down, and a
    stuck-HRS cell asked to go up, are written off after that one verdict: the next call
    gives them no pulse, whatever the target — only lower targets for the LRS cells."""
    be = SimBackend("default_180nm", seed=3)
    pf = make_program_fn()
    lrs, hrs = _fault_cells(be, 1, 3), _fault_cells(be, 2, 3)
    pf(be, lrs, np.full(len(lrs), 5e-6))
    pf(be, hrs, np.full(len(hrs), 30e-6))
    for cells, t in ((lrs, 3e-6), (lrs, 10e-6), (hrs, 20e-6)):
        st = pf(be, cells, np.full(len(cells), t))
        assert np.all(st["outcome"] == pg.SKIPPED) and not st["n_pulses"].any()


def test_a_floor_holds_a_low_target_inside_it_and_close_bounds_write_a_cell_off() -> None:
    """A target below a cell's floor is aimed one band above the floor; a cell whose ceiling
    and floor lie within four bands of each other (stuck both ways at one level) is written
    off; one whose bounds are far apart stays writable."""
    be = SimBackend("default_180nm", seed=3)
    cells = Cells.block(0, range(0, 2), range(0, 2))
    pf = make_program_fn()
    pf(be, cells, np.full(4, 10e-6))
    at = (cells.tile, cells.row, cells.col)
    band = WEIGHT_SETTINGS.tolerance_S
    pf._floor_S[at] = 8e-6  # as if the cells had stuck going down at 8 µS
    pf._ceiling_S[at] = 30e-6
    st = pf(be, cells, np.full(4, 2e-6))
    g = be.read(cells, n_average=8)
    conv = st["outcome"] == pg.CONVERGED
    assert conv.mean() > 0.7 and np.all(np.abs(g[conv] - (8e-6 + band)) < 2 * band)
    assert not pf._bad[at].any()
    pf._ceiling_S[at] = 8e-6 + 3 * band  # both ways within four bands of one level
    pf(be, cells, np.full(4, 2e-6))
    assert pf._bad[at].all()
    st = pf(be, cells, np.full(4, 20e-6))
    assert np.all(st["outcome"] == pg.SKIPPED) and not st["n_pulses"].any()


def test_program_fn_skips_cells_the_record_marks_faulty() -> None:
    be = _Counting("default_180nm", seed=4)
    rec = CalibrationRecord.blank("sim", _shape(be))
    cells = Cells.block(0, range(0, 8), range(0, 8))
    rec.mark_faults(cells.tile, cells.row, cells.col, "ok")
    bad = cells.subset(np.arange(len(cells)) < 4)
    rec.mark_faults(bad.tile, bad.row, bad.col, "unformed")
    st = make_program_fn(rec)(be, cells, np.full(len(cells), 10e-6))
    assert be.forms == 0  # the record says formed (or unformed): no forming read/pulse
    assert np.all(st["outcome"][:4] == pg.SKIPPED)
    assert rec.fault_map[0, 0, 0] == FAULT_CODES["unformed"]


def test_fitted_gate_relation_from_the_record() -> None:
    rec = CalibrationRecord.blank("sim", (1, 4, 4))
    rec.programming["device_model"] = {"transistor": {"v_th_V": 0.6, "beta_A_per_V2": 12e-6}}
    pf = make_program_fn(rec)
    assert pf.policy_spec["vth_V"] == 0.6
    assert pf.policy_spec["beta_A_per_V2"] == 12e-6
    assert make_program_fn(rec, policy={"kind": "gate", "vth_V": 0.8}).policy_spec["vth_V"] == 0.8


def test_form_direct_matches_the_routine_ramp() -> None:
    be = SimBackend("default_180nm", seed=5)
    cells = Cells.block(1, range(0, 8), range(0, 16))
    st = forming.form_direct(be, cells)
    formed = st["outcome"] == forming.FORMED
    assert formed.mean() > 0.9
    g = be.read(cells)
    # the ramp takes ~0.2 s on the running clock: a few cells capped near 5 µS relax below
    half = forming.default_params()["formed_threshold_S"] * 0.5
    assert np.mean(g[formed] > half) > 0.95
    assert np.all(st["outcome"] != forming.PENDING)


def test_envelope_check() -> None:
    be = SimBackend("default_180nm", seed=0)
    pf = make_program_fn()
    pf.check(be.chip, SafetyEnvelope())
    with pytest.raises(ParamError, match="forming"):
        pf.check(be.chip, SafetyEnvelope(max_gate_V=3.0))
