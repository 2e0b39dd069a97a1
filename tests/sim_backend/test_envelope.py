"""The safety envelope: out-of-envelope requests are rejected before the model sees them,
never clipped — for any sequence of requests (property-based)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labctl import Cells, EnvelopeViolation, SafetyEnvelope
from labctl.core.errors import AddressError, ConfigError, RequestRejected
from sim_backend import SimBackend
from sim_backend.macro import Macro

ENV = SafetyEnvelope(max_bitline_V=3.5, max_sourceline_V=2.8, max_gate_V=4.5, max_read_V=0.25,
                     max_width_s=1e-4, min_width_s=1e-8, max_compliance_A=1e-4)


class SpyMacro(Macro):
    """Records every pulse and read the model actually receives."""

    seen: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]

    def pulse(self, cells, kind, amplitude_V, gate_V, width_s, compliance_A):  # type: ignore[no-untyped-def]
        self.seen.append((kind.value, amplitude_V.copy(), gate_V.copy(), width_s.copy(),
                          None if compliance_A is None else compliance_A.copy()))
        super().pulse(cells, kind, amplitude_V, gate_V, width_s, compliance_A)

    def read_current(self, cells, read_V, gate_V, n_average):  # type: ignore[no-untyped-def]
        self.seen.append(("READ", np.array([read_V]), np.array([gate_V]), np.zeros(1), None))
        return super().read_current(cells, read_V, gate_V, n_average)


def spy_backend() -> tuple[SimBackend, SpyMacro]:
    from sim_backend.presets import load_preset

    macro = SpyMacro(load_preset("default_180nm"), seed=1)
    macro.seen = []
    return SimBackend(macro.preset, envelope=ENV, macro=macro), macro


def in_envelope(rec: tuple) -> bool:
    kind, amp, gate, width, comp = rec
    if kind == "READ":
        return bool(abs(amp[0]) <= ENV.max_read_V and 0 <= gate[0] <= ENV.max_gate_V)
    limit = ENV.max_sourceline_V if kind == "RESET" else ENV.max_bitline_V
    ok = (np.all((amp >= 0) & (amp <= limit)) and np.all((gate >= 0) & (gate <= ENV.max_gate_V))
          and np.all((width >= ENV.min_width_s) & (width <= ENV.max_width_s)))
    if comp is not None:
        ok = ok and np.all((comp > 0) & (comp <= ENV.max_compliance_A))
    return bool(ok)


volts = st.one_of(st.floats(-1.0, 6.0), st.sampled_from([math.nan, math.inf, -math.inf]))
request = st.one_of(
    st.tuples(st.sampled_from(["SET", "RESET", "FORM"]), st.lists(volts, min_size=1, max_size=6),
              volts, st.one_of(st.floats(-1e-6, 1e-3), st.just(math.nan)),
              st.one_of(st.none(), st.floats(-1e-5, 3e-4))),
    st.tuples(st.just("READ"), st.floats(-0.5, 0.5), volts, st.just(0.0), st.none()),
)


@given(st.lists(request, min_size=1, max_size=12))
def test_nothing_outside_the_envelope_reaches_the_model(requests: list) -> None:
    be, macro = spy_backend()
    for kind, amp, gate, width, comp in requests:
        try:
            if kind == "READ":
                be.read(Cells.block(0, slice(0, 2), slice(0, 2)), read_V=amp, gate_V=gate)
            else:
                cells = Cells.block(0, slice(0, 1), slice(0, len(amp)))
                be.pulse(cells, kind, amp, gate, width, comp)
        except RequestRejected:
            pass
    assert all(in_envelope(rec) for rec in macro.seen)


@given(st.sampled_from(["SET", "RESET", "FORM"]), st.floats(0.0, 6.0), st.floats(0.0, 6.0),
       st.floats(1e-9, 2e-3))
def test_rejects_exactly_when_outside(kind: str, amp: float, gate: float, width: float) -> None:
    be, macro = spy_backend()
    limit = ENV.max_sourceline_V if kind == "RESET" else ENV.max_bitline_V
    inside = amp <= limit and gate <= ENV.max_gate_V and ENV.min_width_s <= width <= ENV.max_width_s
    c = Cells.block(0, slice(0, 1), slice(0, 3))
    if inside:
        be.pulse(c, kind, amp, gate, width)
        assert len(macro.seen) == 1
        assert macro.seen[0][1][0] == amp  # applied as asked: never clipped
    else:
        with pytest.raises(EnvelopeViolation):
            be.pulse(c, kind, amp, gate, width)
        assert macro.seen == []


def test_error_names_parameter_value_and_limit() -> None:
    be, _ = spy_backend()
    with pytest.raises(EnvelopeViolation) as e:
        be.pulse(Cells.block(0, slice(0, 2), slice(0, 2)), "SET", [1.0, 1.0, 3.9, 1.0], 2.0, 1e-6)
    msg = str(e.value)
    assert "BL amplitude" in msg and "3.9" in msg and "3.5" in msg and "1 value" in msg


def test_mvm_inputs_beyond_dac_range_are_rejected() -> None:
    be, _ = spy_backend()
    x = np.zeros((2, 8))
    x[1, 3] = 0.21  # DAC full scale is 0.2 V
    with pytest.raises(EnvelopeViolation):
        be.mvm(0, x, rows=slice(0, 8), cols=slice(0, 8))
    x[1, 3] = math.nan
    with pytest.raises(EnvelopeViolation):
        be.mvm(0, x, rows=slice(0, 8), cols=slice(0, 8))


def test_no_envelope_no_backend() -> None:
    with pytest.raises(ConfigError):
        SimBackend("ideal", envelope="loose")  # type: ignore[arg-type]


def test_envelope_is_frozen_and_validated() -> None:
    with pytest.raises(AttributeError):
        ENV.max_gate_V = 9.0  # type: ignore[misc]
    with pytest.raises(ConfigError, match="max_gate_V"):
        SafetyEnvelope(max_gate_V=-1.0)
    with pytest.raises(ConfigError, match="max_gait_V"):
        SafetyEnvelope.from_mapping({"max_gait_V": 3.0})


def test_addressing_errors() -> None:
    be, macro = spy_backend()
    with pytest.raises(AddressError, match="row 256"):
        be.pulse(Cells([0], [256], [0]), "SET", 1.0, 2.0, 1e-6)
    with pytest.raises(AddressError, match="more than once"):
        be.pulse(Cells([0, 0], [1, 1], [2, 2]), "SET", 1.0, 2.0, 1e-6)
    with pytest.raises(RequestRejected, match="values for"):
        be.pulse(Cells.block(0, slice(0, 2), slice(0, 2)), "SET", [1.0, 2.0], 2.0, 1e-6)
    assert macro.seen == []


@pytest.mark.parametrize(("call", "match"), [
    (lambda be: be.mvm(0, np.zeros((1, 8)), rows=slice(0, 1000), cols=slice(0, 8)), "rows 0:1000"),
    (lambda be: be.mvm(0, np.zeros((1, 12)), rows=slice(0, 12), cols=slice(500, 600)), "cols"),
    (lambda be: be.mvm(True, np.zeros((1, 8)), rows=slice(0, 8), cols=slice(0, 8)), "tile"),
    (lambda be: be.mvm(0.5, np.zeros((1, 8)), rows=slice(0, 8), cols=slice(0, 8)), "tile"),
    (lambda be: be.mvm(0, np.zeros((0, 8)), rows=slice(0, 8), cols=slice(0, 8)), "batch"),
    (lambda be: be.mvm(0, np.full((1, 8), 0.1 + 5j), rows=slice(0, 8), cols=slice(0, 8)), "real"),
    (lambda be: be.mvm(0, np.zeros((1, 8)), rows=slice(0, 8), cols=slice(0, 8),
                       adc_range_A="x"), "adc_range_A"),
    (lambda be: be.pulse(Cells([0], [1.7], [0]), "SET", 1.0, 2.0, 1e-6), "whole numbers"),
    (lambda be: be.pulse(Cells([0], [1], [0]), "SET", "1.0", 2.0, 1e-6), "real numbers"),
    (lambda be: be.pulse(Cells([0], [1], [0]), "SET", 1 + 1j, 2.0, 1e-6), "real numbers"),
    (lambda be: be.read(Cells([0], [1], [0]), n_average=True), "n_average"),
    (lambda be: be.read(Cells([0], [1], [0]), n_average=10**12), "n_average"),
    (lambda be: be.clock.wait(float("nan")), "finite"),
])
def test_malformed_requests_are_rejected_before_anything_happens(call, match) -> None:  # type: ignore[no-untyped-def]
    be, macro = spy_backend()
    with pytest.raises(RequestRejected, match=match):
        call(be)
    assert macro.seen == [] and be.ledger.mvm_calls == 0 and not macro.events.any()


def test_numpy_integer_tiles_work() -> None:
    be, _ = spy_backend()
    y = be.mvm(np.int64(1), np.zeros((1, 4)), rows=slice(0, 4), cols=slice(0, 4))
    assert y.shape == (1, 4)
