"""Envelope and request checks run in float64 on validated types, whatever dtype arrives.

A float32 comparison rounds the limit (0.2 V → 0.200000003 V) and lets values a few nV above
a DAC's full scale through; a longdouble one compares values the primitive never gets. Here
every MVM input, pulse parameter and index that reaches a primitive is checked against what
the primitive receives: either the request is refused, or every value the primitive gets is
inside the limit in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.core.backend_base import BackendBase
from labctl.core.cells import Cells
from labctl.core.chip import Capabilities, ChipInfo, PulseKind
from labctl.core.clock import VirtualClock
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import AddressError, RequestRejected

FULL_SCALE_V = 0.2
ENV = SafetyEnvelope()
DTYPES = [np.float16, np.float32, np.float64, np.longdouble, np.int8, np.int64]


class Spy(BackendBase):
    """A backend whose primitives only remember what reached them."""

    def __init__(self) -> None:
        chip = ChipInfo("spy", 1, 8, 8, 1e-6, 40e-6, mvm_input_max_V=FULL_SCALE_V)
        super().__init__(chip, ENV, VirtualClock(), Capabilities())
        self.mvm_inputs: list[np.ndarray] = []
        self.pulses: list[tuple[np.ndarray, ...]] = []

    def _pulse(self, cells: Cells, kind: PulseKind, amplitude_V: Any, gate_V: Any,
               width_s: Any, compliance_A: Any) -> None:
        self.pulses.append((amplitude_V, gate_V, width_s))

    def _read(self, cells: Cells, read_V: float, gate_V: float, n_average: int) -> Any:
        return np.zeros(len(cells))

    def _mvm(self, tile: int, inputs_V: Any, rows: slice, cols: slice, differential: bool,
             adc_range_A: float) -> Any:
        self.mvm_inputs.append(np.array(inputs_V))
        return np.zeros((inputs_V.shape[0], cols.stop - cols.start))

    def _safe_state(self) -> None:
        pass


near = st.one_of(
    st.floats(-0.25, 0.25),
    st.integers(-3, 3).map(lambda k: float(np.nextafter(FULL_SCALE_V, 1.0)) + k * 1e-9),
    st.integers(-3, 3).map(lambda k: -FULL_SCALE_V + k * 1e-9),
    st.sampled_from([FULL_SCALE_V, -FULL_SCALE_V, 0.2000000001, 0.20000001, 0.2000001]),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(values=st.lists(near, min_size=8, max_size=8), dtype=st.sampled_from(DTYPES))
def test_mvm_input_reaching_the_dac_is_within_full_scale_in_float64(
        values: list[float], dtype: Any) -> None:
    be = Spy()
    x = np.asarray(values, dtype=np.float64).astype(dtype)
    try:
        be.mvm(0, x, rows=slice(0, 8), cols=slice(0, 8))
    except RequestRejected:
        assert np.max(np.abs(x.astype(np.float64))) > FULL_SCALE_V
        return
    (got,) = be.mvm_inputs
    assert got.dtype in (np.float32, np.float64)
    assert np.max(np.abs(got.astype(np.float64))) <= FULL_SCALE_V


def test_float32_a_few_nanovolts_above_full_scale_is_refused() -> None:
    above = np.float32(FULL_SCALE_V)
    assert float(above) - FULL_SCALE_V == pytest.approx(3e-9, rel=0.01)  # float32(0.2) is 3 nV up
    with pytest.raises(RequestRejected, match="MVM input"):
        Spy().mvm(0, np.full(8, above, dtype=np.float32), rows=slice(0, 8), cols=slice(0, 8))
    ld = np.longdouble(FULL_SCALE_V) * (1 + np.longdouble(2) ** -40)
    with pytest.raises(RequestRejected, match="MVM input"):
        Spy().mvm(0, np.full(8, ld), rows=slice(0, 8), cols=slice(0, 8))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(amp=st.floats(3.9, 4.1), dtype=st.sampled_from([np.float32, np.float64,
                                                         np.longdouble]))
def test_pulse_amplitude_checked_in_float64(amp: float, dtype: Any) -> None:
    be = Spy()
    a = np.full(2, amp).astype(dtype)
    try:
        be.pulse(Cells([0, 0], [0, 1], [0, 0]), "SET", a, 2.0, 1e-6)
    except RequestRejected:
        assert np.max(a.astype(np.float64)) > ENV.max_bitline_V
        return
    (got, _, _) = be.pulses[0]
    assert got.dtype == np.float64 and np.max(got) <= ENV.max_bitline_V


@pytest.mark.parametrize("bad", ["1e-4", True, np.bool_(True), np.array([1e-4]), [1e-4],
                                 float("nan"), -1e-4, pytest.param(10**400, id="huge-int")])
def test_adc_range_must_be_a_positive_number(bad: Any) -> None:
    with pytest.raises(RequestRejected, match="adc_range_A"):
        Spy().mvm(0, np.zeros(8), rows=slice(0, 8), cols=slice(0, 8), adc_range_A=bad)


@pytest.mark.parametrize("rows", [[0.5, 1], np.array([1.5]), [True, False], ["1"]])
def test_fractional_or_non_integer_indices_are_refused_not_truncated(rows: Any) -> None:
    with pytest.raises(AddressError):
        Cells.block(0, rows, [0])


def test_whole_number_float_indices_are_accepted() -> None:
    c = Cells.block(0, np.array([1.0, 2.0]), [0])
    assert c.row.tolist() == [1, 2] and c.row.dtype == np.int64
