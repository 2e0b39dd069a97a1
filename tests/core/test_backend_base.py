"""Behaviour every backend shares through BackendBase: failures end in the safe state."""

from __future__ import annotations

import numpy as np
import pytest

from labctl import Cells, InstrumentTimeout, RequestRejected
from sim_backend import SimBackend


class FlakyBackend(SimBackend):
    def __init__(self) -> None:
        super().__init__("ideal", seed=0)
        self.safe_calls = 0
        self.fail_with: BaseException | None = None

    def _safe_state(self) -> None:
        self.safe_calls += 1

    def _read(self, cells, read_V, gate_V, n_average):  # type: ignore[no-untyped-def]
        if self.fail_with is not None:
            raise self.fail_with
        return super()._read(cells, read_V, gate_V, n_average)


@pytest.mark.parametrize("exc", [InstrumentTimeout("no reply"), KeyboardInterrupt(),
                                 RuntimeError("driver bug")])
def test_any_failure_during_an_operation_ends_in_safe_state(exc: BaseException) -> None:
    be = FlakyBackend()
    be.fail_with = exc
    with pytest.raises(type(exc)):
        be.read(Cells.block(0, slice(0, 2), slice(0, 2)))
    assert be.safe_calls == 1
    if isinstance(exc, InstrumentTimeout):
        assert exc.safe_state_reached is True


def test_rejected_requests_do_not_touch_hardware() -> None:
    be = FlakyBackend()
    with pytest.raises(RequestRejected):
        be.read(Cells.block(0, slice(0, 2), slice(0, 2)), n_average=0)
    assert be.safe_calls == 0 and be.ledger.reads == 0


def test_close_goes_to_safe_state_and_refuses_further_use() -> None:
    be = FlakyBackend()
    with be:
        be.read(Cells.block(0, slice(0, 1), slice(0, 1)))
    assert be.safe_calls == 1
    with pytest.raises(RequestRejected, match="closed"):
        be.read(Cells.block(0, slice(0, 1), slice(0, 1)))
    be.close()  # idempotent
    assert be.safe_calls == 1


def test_empty_batches_are_no_ops() -> None:
    be = SimBackend("ideal")
    empty = Cells.from_mask(0, np.zeros((4, 4), dtype=bool))
    be.pulse(empty, "SET", 1.0, 2.0, 1e-6)
    assert be.read(empty).shape == (0,)
    assert be.ledger.pulse_calls == 0


def test_backend_satisfies_the_protocol() -> None:
    from labctl.core.backend import Backend

    assert isinstance(SimBackend("ideal"), Backend)
