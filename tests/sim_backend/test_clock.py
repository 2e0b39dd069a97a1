"""The clock runs: operations advance it by their device time, each cell is touched at its
own instant within a batch, and relaxation and low-frequency read noise act meanwhile."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labctl.core.backend import PulseKind
from labctl.core.cells import Cells
from sim_backend import SimBackend, load_preset
from sim_backend.preset import uS
from sim_backend.timing import Schedule, rows_in_sequence
from tests.sim_backend.helpers import healthy, place


def test_rows_are_pulsed_in_sequence_and_relax_from_their_own_pulse() -> None:
    be = SimBackend("default_180nm", seed=3)
    c = Cells.block(0, slice(0, 8), slice(0, 4))
    be.pulse(c, "FORM", 3.3, 2.0, 1e-3)
    row_s = 1e-3 + be.preset.energy.pulse_overhead_s
    formed = be.macro.formed[be.macro.index(c)]
    t_prog = be.macro.t_prog_s[be.macro.index(c)]
    np.testing.assert_allclose(t_prog[formed], (c.row * row_s + 1e-3)[formed], rtol=1e-12)
    assert be.clock.now() == pytest.approx(8 * row_s)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 15)), min_size=1, max_size=40,
                unique=True),
       st.lists(st.floats(1e-7, 1e-3), min_size=40, max_size=40))
def test_row_schedule_is_rows_in_sequence(addr: list, widths: list) -> None:
    """Each (tile, row) gets one slot of its longest width + overhead, in ascending order;
    every cell starts at its row's slot; the batch lasts the sum of the slots."""
    tiles = np.array([a[0] for a in addr])
    rows = np.array([a[1] for a in addr])
    cells = Cells(tiles, rows, np.zeros(len(addr), dtype=np.int64))
    w = np.array(widths[: len(addr)])
    s = rows_in_sequence(cells, 16, w, 5e-8)
    keys = sorted(set(zip(tiles.tolist(), rows.tolist(), strict=True)))
    slot = {k: max(w[(tiles == k[0]) & (rows == k[1])]) + 5e-8 for k in keys}
    start, t = {}, 0.0
    for k in keys:
        start[k] = t
        t += slot[k]
    assert s.duration_s == pytest.approx(t)
    for i, k in enumerate(zip(tiles.tolist(), rows.tolist(), strict=True)):
        assert s.start_s[i] == pytest.approx(start[k], abs=1e-15)


def test_a_caller_can_say_how_its_hardware_executes_a_batch() -> None:
    """An SMU stepping a scan list pulses one cell after another (Schedule.sequential)."""
    be = SimBackend("default_180nm", seed=3)
    c = Cells.block(0, [0], range(4))
    on = np.full(4, 2e-3)
    be.macro.pulse(c, PulseKind.FORM, np.full(4, 3.3), np.full(4, 2.0), on, None,
                   schedule=Schedule.sequential(on))
    assert be.clock.now() == pytest.approx(8e-3)
    with pytest.raises(ValueError, match="within the batch"):
        Schedule(np.array([0.0, 2.0]), 1.0)


def test_verify_write_sees_relaxation_while_it_programs() -> None:
    """A cell placed at 20 µS relaxes while the rest of a long batch of reads goes on: the
    read of the last row happens later and sees more relaxation than the first."""
    be = SimBackend(load_preset("default_180nm").with_changes(read={"lf_relative_sigma": 0.0,
                                                                    "relative_sigma": 0.0,
                                                                    "floor_sigma_S": 0.0}),
                    seed=5)
    c = Cells.block(0, slice(0, 256), slice(0, 256))
    place(be.macro, c, np.full(len(c), 20 * uS))
    g = be.read(c, n_average=64)  # 256 rows × 64 µs ≈ 16 ms: rows read at different ages
    ok = healthy(be.macro, c)
    first, last = (c.row < 8) & ok, (c.row >= 248) & ok
    assert np.std(g[last]) > 1.5 * np.std(g[first])


def test_averaging_has_a_floor() -> None:
    """Single reads carry 3.3 % (1.5 % white, 2.9 % low-frequency at 20 µS); averaging
    1,024 reads removes the white part only, leaving ≈ 2.7 % (the decades slower than the
    1 ms window)."""
    preset = load_preset("default_180nm").with_changes(relaxation_on=False)
    be = SimBackend(preset, seed=8)
    c = Cells.block(0, slice(0, 64), slice(0, 256))
    place(be.macro, c, np.full(len(c), 20 * uS))
    ok = healthy(be.macro, c)
    one = be.read(c)[ok] / (20 * uS) - 1
    many = be.read(c, n_average=1024)[ok] / (20 * uS) - 1
    assert np.std(one) == pytest.approx(0.033, rel=0.08)
    assert np.std(many) == pytest.approx(0.0294 * np.sqrt(7.1 / 8), rel=0.08)
    assert np.std(many) > 20 * 0.015 / np.sqrt(1024)


def test_low_frequency_noise_is_shared_by_reads_close_in_time() -> None:
    """Two reads a few µs apart share the slow components; reads a day apart do not."""
    preset = load_preset("default_180nm").with_changes(relaxation_on=False,
                                                       read={"relative_sigma": 0.0})
    be = SimBackend(preset, seed=9)
    c = Cells.block(0, slice(0, 32), slice(0, 256))
    place(be.macro, c, np.full(len(c), 20 * uS))
    ok = healthy(be.macro, c)
    a, b = be.read(c)[ok], be.read(c)[ok]
    be.clock.wait(86400.0)
    later = be.read(c)[ok]
    assert np.corrcoef(a, b)[0, 1] > 0.8
    assert abs(np.corrcoef(a, later)[0, 1]) < 0.1


def test_mvm_advances_the_clock_and_uses_a_snapshot() -> None:
    be = SimBackend("default_180nm", seed=2)
    c = Cells.block(0, slice(0, 32), slice(0, 32))
    place(be.macro, c, np.full(len(c), 20 * uS))
    be.clock.wait(1.0)
    x = np.full((10, 32), 0.1)
    t = be.clock.now()
    be.mvm(0, x, rows=slice(0, 32), cols=slice(0, 32))
    e = be.preset.energy
    assert be.clock.now() - t == pytest.approx(10 * (e.mvm_integration_s + e.adc_conversion_s))
    snap = be.macro.tile_conductance(0).copy()
    be.mvm(0, x, rows=slice(0, 32), cols=slice(0, 32))
    assert np.array_equal(snap, be.macro.tile_conductance(0))  # 2 µs ≪ 3 % of 1 s
    be.clock.wait(1.0)
    assert not np.array_equal(snap, be.macro.tile_conductance(0))  # retaken a second later
