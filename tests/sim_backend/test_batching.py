"""Counter-based randomness (docs/simulator.md, "Determinism"): a cell draws the same random
numbers however operations are batched or ordered. With the clock running, batching still
changes *when* each cell is touched; on a chip whose state does not depend on time
(relaxation and low-frequency read noise off) the results are bit-identical."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from labctl.core.cells import Cells
from sim_backend import SimBackend, load_preset

TIMELESS = load_preset("default_180nm").with_changes(relaxation_on=False,
                                                     read={"lf_relative_sigma": 0.0})

N = 12  # a 12 × 12 block of tile 0 and a 12 × 12 block of tile 3
ALL = Cells.concat([Cells.block(0, slice(0, N), slice(0, N)),
                    Cells.block(3, slice(5, 5 + N), slice(100, 100 + N))])

op = st.tuples(
    st.sampled_from(["FORM", "SET", "RESET", "READ", "WAIT"]),
    st.floats(0.9, 3.3),
    st.floats(1.2, 4.0),
    st.lists(st.booleans(), min_size=len(ALL), max_size=len(ALL)),
)


def _apply(be: SimBackend, ops: list, splits: list[int], rng: np.random.Generator) -> list:
    reads = []
    for (kind, amp, gate, mask), split in zip(ops, splits, strict=True):
        idx = np.flatnonzero(mask)
        if kind == "WAIT":
            be.clock.wait(amp * 100.0)
            continue
        if idx.size == 0:
            continue
        per_cell_amp = np.linspace(amp * 0.9, amp, len(ALL))
        # split this operation into `split` sub-batches in a random order
        parts = np.array_split(rng.permutation(idx), split)
        out = np.empty(len(ALL))
        for part in parts:
            if part.size == 0:
                continue
            cells = ALL.subset(part)
            if kind == "READ":
                out[part] = be.read(cells, n_average=2)
            else:
                be.pulse(cells, kind, per_cell_amp[part], gate, 1e-6 if kind != "FORM" else 1e-3)
        if kind == "READ":
            reads.append(out[idx])
    return reads


@given(st.lists(op, min_size=1, max_size=8), st.lists(st.integers(1, 4), min_size=8,
                                                      max_size=8), st.integers(0, 2**31))
def test_batching_and_order_do_not_change_results(ops: list, splits: list[int], seed: int) -> None:
    one = SimBackend(TIMELESS, seed=seed)
    many = SimBackend(TIMELESS, seed=seed)
    r1 = _apply(one, ops, [1] * len(ops), np.random.default_rng(0))
    r2 = _apply(many, ops, splits[: len(ops)], np.random.default_rng(seed))
    assert len(r1) == len(r2)
    for a, b in zip(r1, r2, strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(one.macro.conductance(ALL), many.macro.conductance(ALL))
    assert np.array_equal(one.macro.events, many.macro.events)


@given(st.lists(op, min_size=1, max_size=6), st.integers(0, 2**31))
def test_the_same_operations_give_the_same_results(ops: list, seed: int) -> None:
    """With every time-dependent effect on, the same sequence of operations (same batches,
    same order, same waits) from one seed gives bit-identical results."""
    a, b = SimBackend("default_180nm", seed=seed), SimBackend("default_180nm", seed=seed)
    ra = _apply(a, ops, [2] * len(ops), np.random.default_rng(1))
    rb = _apply(b, ops, [2] * len(ops), np.random.default_rng(1))
    for x, y in zip(ra, rb, strict=True):
        assert np.array_equal(x, y)
    assert a.clock.now() == b.clock.now()
    assert np.array_equal(a.macro.events, b.macro.events)


def test_mvm_noise_does_not_depend_on_how_vectors_are_batched() -> None:
    from sim_backend.preset import uS
    from tests.sim_backend.helpers import place

    def backend() -> SimBackend:
        be = SimBackend("default_180nm", seed=9)
        place(be.macro, Cells.block(0, slice(0, 32), slice(0, 16)),
              np.linspace(1, 40, 512) * uS)
        return be

    x = np.random.default_rng(0).uniform(-0.2, 0.2, (6, 32))
    one = backend().mvm(0, x, rows=slice(0, 32), cols=slice(0, 16))
    be = backend()
    split = np.vstack([be.mvm(0, x[:1], rows=slice(0, 32), cols=slice(0, 16)),
                       be.mvm(0, x[1:4], rows=slice(0, 32), cols=slice(0, 16)),
                       be.mvm(0, x[4:], rows=slice(0, 32), cols=slice(0, 16))])
    assert np.array_equal(one, split)


def test_a_pulse_that_switches_nothing_leaves_relaxation_alone() -> None:
    from sim_backend.preset import uS
    from tests.sim_backend.helpers import place

    c = Cells.block(0, slice(0, 64), slice(0, 64))
    results = []
    for pulses in (False, True):
        be = SimBackend("default_180nm", seed=4)
        place(be.macro, c, np.full(len(c), 20 * uS))
        be.clock.wait(86400.0)
        for _ in range(20):
            if pulses:  # far below every threshold: nothing switches
                be.pulse(c, "SET", 0.0, 0.0, 1e-9)
            be.clock.wait(1.0)
        results.append(be.macro.conductance(c))
    assert np.array_equal(results[0], results[1])


def test_cached_tile_after_a_pulse_equals_a_fresh_computation() -> None:
    """After a pulse the MVM snapshot is updated in place: the pulsed cells as a fresh
    snapshot now would see them, every other cell as the snapshot held it."""
    be = SimBackend("default_180nm", seed=12)
    c = Cells.block(0, slice(0, 256), slice(0, 512))
    be.pulse(c, "FORM", 3.3, 2.5, 1e-3)
    be.clock.wait(10.0)
    before = be.macro.tile_conductance(0).copy()
    few = Cells.block(0, slice(3, 5), slice(7, 11))
    be.pulse(few, "SET", 2.0, 2.5, 1e-6)
    cached = be.macro.tile_conductance(0).copy()
    pulsed = np.zeros((256, 512), dtype=bool)
    pulsed[3:5, 7:11] = True
    assert not np.array_equal(before[pulsed], cached[pulsed])
    assert np.array_equal(before[~pulsed], cached[~pulsed])
    be.macro._tile_cache.clear()
    assert np.array_equal(cached[pulsed], be.macro.tile_conductance(0)[pulsed])
