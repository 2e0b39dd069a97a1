"""The SMU family base: what the Keithley 2450 (SCPI) and 2600B (TSP) drivers share.

Both run a sweep in the instrument's trigger model with one point per cell the board
routes, fetch the readings in one ``#0`` binary block and refuse to turn an output on
before the current limit has been set *and read back*. The subclasses say only how
their command set spells each step (the ``_…`` hooks below).

Safety invariants kept here, once:

* levels are checked against instrument range ∩ envelope before any message
  (:class:`~drivers._link.Limit`); a driver built without an envelope gets the default
  :class:`~labctl.core.envelope.SafetyEnvelope`'s limits, never the instrument's full range;
* a FORM width is turned into a source delay by :mod:`labctl.wire.smu_timing` — the same
  model the virtual SMUs apply — and refused before any message if the SMU cannot make it
  inside the envelope;
* after a communication fault no cached setting is trusted: :meth:`restore` re-configures
  and the next operation re-sends and reads back what it needs before output-on;
* a binary block is a number only when it verifies (:func:`~drivers._link.verify_block`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from drivers._link import Limit, LinkedVisaInstrument, ensure, verify_block
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import CommunicationError, SafetyInterlock
from labctl.wire import smu_timing
from labctl.wire.smu_timing import SmuTiming

F64 = npt.NDArray[np.float64]


class SmuBase(LinkedVisaInstrument):
    """An SMU sourcing volts and measuring amps on one channel."""

    timing: ClassVar[SmuTiming]
    max_voltage_V: float = 210.0
    max_current_A: float = 1.05
    min_current_A: float = 1e-9
    readback_rtol: ClassVar[float] = 1e-12
    """The current limit must read back as the float sent (to the 16 digits both SMUs
    print with their ASCII precision set to 16); anything else is a refusal."""

    def __init__(self, name: str, address: str, *, envelope_voltage_V: float | None = None,
                 envelope_compliance_A: float | None = None, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        default = SafetyEnvelope()
        v_env = default.max_bitline_V if envelope_voltage_V is None else envelope_voltage_V
        i_env = (default.max_compliance_A if envelope_compliance_A is None
                 else envelope_compliance_A)
        self._v_limit = Limit("SMU voltage", -self.max_voltage_V, self.max_voltage_V, "V",
                              v_env)
        self._i_limit = Limit("SMU compliance", self.min_current_A, self.max_current_A, "A",
                              i_env)
        self._declare_parameters()
        self.idn_info = self.get_idn()

    # ---- what each command set spells ----
    @abstractmethod
    def _declare_parameters(self) -> None:
        """``source_voltage_V``, ``compliance_A``, ``nplc``, ``filter_count``, ``current_A``."""

    @abstractmethod
    def _limit_readbacks(self) -> list[float]:
        """Every current limit that will be in force during the sweep, read back."""

    @abstractmethod
    def _load_sweep(self, v: F64, delay_s: float, range_V: float) -> None:
        """Each instrument's command set says how."""

    @abstractmethod
    def _run_sweep(self, n: int) -> tuple[int, float]:
        """Run the loaded sweep; return (readings in the buffer, their mean) as the
        instrument reports them in text."""

    @abstractmethod
    def _form_points(self, v: F64, delay_s: float, range_V: float) -> tuple[int, float]:
        """Run FORM points (output off at 0 V before and after); (count, mean) as above."""

    @abstractmethod
    def _fetch_block(self, n: int) -> bytes:
        """The ``#0`` block of the buffer's first ``n`` readings, read by its length."""

    @abstractmethod
    def output_on(self) -> None:
        """Each instrument's command set says how."""

    @abstractmethod
    def output_off(self) -> None:
        """Each instrument's command set says how."""

    # ---- shared ----
    def form_delay_s(self, width_s: float, max_on_s: float) -> float:
        """The source delay for a FORM point of ``width_s`` real on-time; raises before
        anything is sent (:func:`labctl.wire.smu_timing.form_delay_s`)."""
        return smu_timing.form_delay_s(self.timing, width_s, self.line_frequency_Hz, max_on_s,
                                       self.name)

    def sweep_timeout_s(self, n: int, per_point_s: float) -> float:
        """A VISA timeout long enough for ``n`` points of ``per_point_s`` each (2× margin)
        on top of the ordinary timeout."""
        return float(self.visa_handle.timeout) / 1000.0 + 2.0 * n * per_point_s

    def arm(self, compliance_A: float) -> None:
        """Set the current limit and read back every limit in force; on any mismatch the
        output is switched off and :class:`SafetyInterlock` raised."""
        ensure(self.compliance_A, compliance_A)
        for got in self._limit_readbacks():
            if not abs(got - compliance_A) <= self.readback_rtol * abs(compliance_A):
                self.output_off()
                raise SafetyInterlock(
                    f"{self.name}: current limit read back as {got!r} A after setting "
                    f"{compliance_A!r} A; output left off")

    def _levels(self, voltages_V: npt.ArrayLike) -> F64:
        v = np.asarray(voltages_V, dtype=np.float64).reshape(-1)
        if v.size:
            for x in (float(v.min()), float(v.max())):
                self._v_limit.validate(x)
        return v

    def _prepare(self, n_average: int, compliance_A: float) -> None:
        """Everything before a sweep is loaded: full re-configuration after a fault, the
        filter, 0 V at the source, the limit set and read back."""
        if self.restore_needed:
            self.restore()
        ensure(self.filter_count, int(n_average))
        self.source_voltage_V(0.0)
        self.arm(compliance_A)

    def _verified(self, n: int, count: int, mean_A: float, compliance_A: float) -> F64:
        try:
            return verify_block(self.name, self.transact(lambda h: self._fetch_block(n),
                                                         "binary buffer"),
                                n, compliance_A, count, mean_A)
        except CommunicationError:
            self._dirty = True
            raise

    def sweep(self, voltages_V: npt.ArrayLike, *, delay_s: float, compliance_A: float,
              n_average: int = 1) -> F64:
        """One instrument-run sweep, one current per point; output off afterwards."""
        v = self._levels(voltages_V)
        n = v.size
        if n == 0:
            return np.zeros(0)
        self._prepare(n_average, compliance_A)
        self._load_sweep(v, delay_s, float(np.max(np.abs(v))))
        nplc = float(self.nplc.cache.get(get_if_invalid=False) or 1.0)
        per_point = delay_s + 3.0 * n_average * nplc / self.line_frequency_Hz
        self.output_on()
        try:
            with self.timeout.set_to(self.sweep_timeout_s(n, per_point)):
                count, mean = self._run_sweep(n)
            data = self._verified(n, count, mean, compliance_A)
        except BaseException:
            self.safe_off()
            raise
        self.output_off()
        return data

    def form_sweep(self, voltages_V: npt.ArrayLike, *, width_s: float, compliance_A: float,
                   max_on_s: float) -> F64:
        """FORM: each point on its cell for exactly ``width_s`` (source delay from the
        on-time model, minimal NPLC, autozero and auto-delay off, explicit source range),
        the source back at 0 V before the board steps to the next cell."""
        delay = self.form_delay_s(width_s, max_on_s)
        v = self._levels(voltages_V)
        n = v.size
        if n == 0:
            return np.zeros(0)
        self._prepare(1, compliance_A)
        try:
            with self.timeout.set_to(self.sweep_timeout_s(n, width_s)):
                count, mean = self._form_points(v, delay, float(np.max(np.abs(v))))
            data = self._verified(n, count, mean, compliance_A)
        except BaseException:
            self.safe_off()
            raise
        return data
