"""What every VISA driver here shares: one transaction = command + error check, mapped
onto labctl's errors, never split by Ctrl+C, and a resynchronised link after any fault.

Why a reconnect after a timeout: on a raw socket (``TCPIP::host::port::SOCKET``) a reply
that arrives late stays in the receive buffer and would be read as the answer to the *next*
query. Reopening the resource drops that stale reply with the old connection; on GPIB the
equivalent is a device clear, which ``device_clear()`` issues on reopen.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pyvisa
import pyvisa.constants
from qcodes.instrument import VisaInstrument
from qcodes.utils import DelayedKeyboardInterrupt
from qcodes.validators import Validator

from labctl.core.errors import (
    CommunicationError,
    EnvelopeViolation,
    InstrumentFault,
    InstrumentTimeout,
    RequestRejected,
)

T = TypeVar("T")

_SCPI_ERR = re.compile(r'^\s*([+-]?\d+)\s*,\s*"(.*)"\s*$', re.DOTALL)


def parse_scpi_error(reply: str) -> tuple[int, str]:
    """``-222,"Data out of range"`` → (-222, 'Data out of range'). IEEE 488.2 / SCPI-99
    error-queue format, used by the 2450 (``:SYST:ERR?``) and the 33500B (``SYST:ERR?``)."""
    m = _SCPI_ERR.match(reply)
    if m is None:
        raise CommunicationError(f"unparseable error-queue reply {reply!r}")
    return int(m.group(1)), m.group(2)


def fmt(x: float) -> str:
    """Shortest text that reads back as exactly the same float64 (Python's ``repr``), so a
    value sent as SCPI/TSP text reaches the instrument — and the simulator — bit-exact."""
    return repr(float(x))


def parse_float(reply: str, what: str) -> float:
    try:
        return float(reply.strip())
    except ValueError:
        raise CommunicationError(f"{what}: expected a number, got {reply!r}") from None


def check_readings(name: str, data: np.ndarray, n: int, compliance_A: float) -> None:
    """Plausibility of a binary block of currents. SCPI/TSP binary blocks carry no checksum,
    so a corrupted byte can only be caught by what it does to the numbers: a wrong count, a
    non-finite value, or a current beyond what the source's limit allows (an SMU cannot
    measure much above its compliance). Corruption of low mantissa bytes stays undetected
    (and below the instrument's resolution)."""
    if data.size != n:
        raise CommunicationError(f"{name}: expected {n} readings, got {data.size}")
    if not np.all(np.isfinite(data)) or float(np.max(np.abs(data))) > 1.5 * compliance_A:
        k = int(np.argmax(~np.isfinite(data) | (np.abs(data) > 1.5 * compliance_A)))
        raise CommunicationError(
            f"{name}: implausible reading {float(data[k])!r} at point {k + 1} (limit "
            f"{compliance_A:g} A): garbled binary block or overrange")


def form_delay_s(name: str, width_s: float, integration_s: float, overhead_s: float,
                 max_on_s: float) -> float:
    """The source delay that makes one forming point's real on-time equal ``width_s``.

    An SMU sweep point holds its level for the source delay, then the integration
    (NPLC / line frequency), then the instrument's per-point overhead (stated by the
    driver), so on-time = ``(delay + integration) + overhead``. The delay is chosen so
    that this sum, evaluated in float64 in exactly that order, *is* ``width_s`` (the
    virtual instruments evaluate the same sum, so the simulated pulse gets the width the
    caller asked for, bit for bit). Refused before anything is sent: a width shorter
    than integration + overhead (the SMU cannot make it; the on-time would silently be
    longer) and a real on-time beyond the envelope's ``max_on_s``.
    """
    shortest = integration_s + overhead_s
    if not width_s >= shortest:
        raise RequestRejected(
            f"{name}: a forming point cannot be shorter than the SMU's integration "
            f"({integration_s:g} s) + overhead ({overhead_s:g} s) = {shortest:g} s; "
            f"width {width_s:g} s refused (use the board topology for shorter FORM pulses)")
    d = max(0.0, width_s - integration_s - overhead_s)
    for _ in range(64):  # walk the last bits until the instrument-side sum is exact
        on = (d + integration_s) + overhead_s
        if on == width_s:
            break
        d = float(np.nextafter(d, np.inf if on < width_s else -np.inf))
        d = max(d, 0.0)
    on = (d + integration_s) + overhead_s
    if on > max_on_s:
        raise EnvelopeViolation("FORM on-time", f"delay + integration + overhead ≤ "
                                f"{max_on_s:g} s (max_width_s)", f"{on:g} s")
    return d


class Limit(Validator[float]):
    """A numeric validator that stacks the chip's safety envelope on the instrument's own
    range. Out-of-range values raise :class:`~labctl.core.errors.EnvelopeViolation` (a
    ``ValueError``): rejected, never clipped."""

    def __init__(self, name: str, lo: float, hi: float, unit: str,
                 envelope_hi: float | None = None) -> None:
        self._name = name
        self._unit = unit
        hi_eff = hi if envelope_hi is None else min(hi, envelope_hi)
        lo_eff = lo if envelope_hi is None or lo >= 0 else max(lo, -envelope_hi)
        self._lo = lo_eff
        self._hi = hi_eff
        self._valid_values = (lo_eff, hi_eff)
        self.is_numeric = True

    @property
    def bounds(self) -> tuple[float, float]:
        return self._lo, self._hi

    def validate(self, value: float, context: str = "") -> None:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise EnvelopeViolation(self._name, "a number", repr(value)) from None
        if not np.isfinite(v) or v < self._lo or v > self._hi:
            raise EnvelopeViolation(
                self._name, f"{self._lo:g} {self._unit} ≤ {self._name} ≤ {self._hi:g} {self._unit}"
                " (instrument range ∩ safety envelope)", f"{v:g} {self._unit}")

    def __repr__(self) -> str:
        return f"<Limit {self._lo:g}..{self._hi:g} {self._unit}>"


class FormTiming:
    """Real on-time of a FORM point on an SMU: source delay + integration (NPLC / line
    frequency) + a stated overhead. Mixed into the SMU drivers, which set ``form_nplc`` and
    ``form_overhead_s``."""

    form_nplc: float
    form_overhead_s: float
    line_frequency_Hz: float

    def form_integration_s(self) -> float:
        return self.form_nplc / self.line_frequency_Hz

    def form_delay_s(self, width_s: float, max_on_s: float) -> float:
        """The source delay for a FORM point of ``width_s`` real on-time (see
        :func:`form_delay_s`); raises before anything is sent."""
        return form_delay_s(str(getattr(self, "name", type(self).__name__)), width_s,
                            self.form_integration_s(), self.form_overhead_s, max_on_s)


class LinkedVisaInstrument(VisaInstrument):
    """A VISA instrument whose every exchange goes through :meth:`transact`.

    Counts transactions (the bench reports them), converts pyvisa failures into
    :class:`InstrumentTimeout` / :class:`CommunicationError`, and reopens the connection
    before the next exchange after any fault.
    """

    default_terminator = "\n"
    default_timeout = 5.0

    def __init__(self, name: str, address: str, *, line_frequency_Hz: float = 50.0,
                 **kwargs: Any) -> None:
        if line_frequency_Hz not in (50.0, 60.0):
            raise ValueError(f"line_frequency_Hz must be 50 or 60, got {line_frequency_Hz!r}")
        self.line_frequency_Hz = float(line_frequency_Hz)
        self.transactions = 0
        self._dirty = False
        kwargs.setdefault("device_clear", False)
        self._visalib_arg: str | None = kwargs.get("visalib")
        self._address_arg = address
        super().__init__(name, address, **kwargs)

    safe_attempts = 3
    """Tries at the safe state: on a flaky link one lost reply must not leave an output on."""

    # ---- subclasses say how to check the error queue and how to switch off ----
    def check_errors(self) -> None:
        raise NotImplementedError

    def _safe_off_once(self) -> None:
        raise NotImplementedError

    line_frequency_Hz = 50.0
    """Mains frequency for NPLC → seconds. 50 Hz is the conservative choice: at 60 Hz the
    real integration is shorter, so a FORM point's real on-time is *shorter* than planned,
    never longer. Pass ``line_frequency_Hz=60`` under ``init`` for an exact plan."""

    def sweep_timeout_s(self, n: int, delay_s: float, n_average: int) -> float:
        """A VISA timeout long enough for an n-point sweep to finish before its *OPC? /
        waitcomplete() answers: each point takes the source delay plus ``n_average``
        integrations of NPLC/line-frequency, with a 2× margin for autozero and settling,
        on top of the ordinary timeout."""
        nplc = self.nplc.cache.get(get_if_invalid=False) or 1.0
        per_point = delay_s + n_average * float(nplc) / self.line_frequency_Hz
        return float(self.visa_handle.timeout) / 1000.0 + 2.0 * n * per_point

    def safe_off(self) -> bool:
        """Outputs off (and sources to 0 V), reconnecting first if the link is suspect;
        retried, because this is the exchange that must not be lost. True when confirmed
        by a clean error check."""
        for _ in range(self.safe_attempts):
            try:
                self._safe_off_once()
                return True
            except Exception:  # any failure: reconnect and try again
                self._dirty = True
        return False

    # ---- the one door to the wire ----
    def transact(self, fn: Callable[[Any], T], what: str) -> T:
        """Run ``fn(visa_handle)`` as one uninterruptible exchange."""
        with DelayedKeyboardInterrupt(context={"instrument": self.name, "reason": what}):
            if self._dirty:
                self.resync()
            self.transactions += 1
            try:
                return fn(self.visa_handle)
            except pyvisa.errors.VisaIOError as e:
                self._dirty = True
                if e.error_code == pyvisa.constants.StatusCode.error_timeout:
                    raise InstrumentTimeout(
                        f"{self.name}: no complete reply to {what!r} within "
                        f"{self.visa_handle.timeout / 1000:g} s") from None
                raise CommunicationError(f"{self.name}: {what!r}: {e}") from None
            except EnvelopeViolation:
                raise
            except (UnicodeDecodeError, ValueError, IndexError) as e:
                self._dirty = True
                raise CommunicationError(f"{self.name}: garbled reply to {what!r}: {e}") from None
            except (OSError, EOFError) as e:
                self._dirty = True
                raise CommunicationError(f"{self.name}: link failed during {what!r}: {e}") from None
            except InstrumentFault:
                self._dirty = True
                raise
            except BaseException:
                # KeyboardInterrupt (a second Ctrl+C forces one through
                # DelayedKeyboardInterrupt; signals other than SIGINT are not delayed at all),
                # SystemExit, GeneratorExit…: the reply to what was just written may still be
                # on its way, so the next exchange must resynchronise first.
                self._dirty = True
                raise

    def resync(self) -> None:
        """Drop whatever is in flight by reopening the resource."""
        timeout = self.visa_handle.timeout
        with contextlib.suppress(Exception):
            self.visa_handle.close()
        try:
            rm = (pyvisa.ResourceManager(self._visalib_arg) if self._visalib_arg
                  else pyvisa.ResourceManager())
            res = rm.open_resource(self._address_arg)
            if not isinstance(res, pyvisa.resources.MessageBasedResource):
                raise TypeError("not a message-based resource")
            self._visa_handle = res
        except Exception as e:
            raise CommunicationError(f"{self.name}: could not reconnect to "
                                     f"{self._address_arg}: {e}") from None
        if not self._address_arg.upper().endswith("::SOCKET"):
            # GPIB/USBTMC/VXI-11: a device clear also empties the instrument's output queue.
            with contextlib.suppress(Exception):
                self.visa_handle.clear()
        self.visa_handle.timeout = timeout
        self.visa_handle.read_termination = self.default_terminator
        self.visa_handle.write_termination = self.default_terminator
        self._dirty = False
