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
from abc import abstractmethod
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


def parse_idn(reply: str) -> dict[str, str | None]:
    """``*IDN?`` (IEEE 488.2 §10.14): manufacturer, model, serial, firmware."""
    parts: list[str | None] = [p.strip() for p in reply.split(",")]
    parts += [None] * 4
    return dict(zip(("vendor", "model", "serial", "firmware"), parts[:4]))


def fmt(x: float) -> str:
    """Shortest text that reads back as exactly the same float64 (Python's ``repr``), so a
    value sent as SCPI/TSP text reaches the instrument — and the simulator — bit-exact."""
    return repr(float(x))


def parse_float(reply: str, what: str) -> float:
    try:
        return float(reply.strip())
    except ValueError:
        raise CommunicationError(f"{what}: expected a number, got {reply!r}") from None


def verify_block(name: str, raw: bytes, n: int, compliance_A: float,
                 instrument_count: int, instrument_mean_A: float) -> np.ndarray:
    """The ``n`` float64 readings of a ``#0`` indefinite-length binary block, or an error.

    A ``#0`` block (IEEE 488.2 §8.7.10, indefinite length) carries no length and no
    checksum: it is read by its known size, 2 + 8n + 1 bytes, and is only a number when
    every verifiable property holds — the ``#0`` header, the terminating newline, the count
    the instrument reported for its buffer, finite values, currents the source's limit
    allows (an SMU cannot measure much above its compliance), and the mean of the
    readings equal to the mean the instrument computed itself and sent as text. The mean
    is what catches corrupted mantissa bytes that stay finite and in range.
    """
    if len(raw) != 2 + 8 * n + 1 or raw[:2] != b"#0" or raw[-1:] != b"\n":
        raise CommunicationError(f"{name}: malformed binary block ({len(raw)} bytes, starts "
                                 f"{raw[:4]!r}, ends {raw[-2:]!r}; expected #0 + {8 * n} "
                                 "bytes + newline)")
    if instrument_count != n:
        raise CommunicationError(f"{name}: the instrument holds {instrument_count} readings, "
                                 f"expected {n}")
    data = np.frombuffer(raw[2:-1], dtype="<f8").astype(np.float64)
    if not np.all(np.isfinite(data)) or float(np.max(np.abs(data), initial=0.0)) > (
            1.5 * compliance_A):
        k = int(np.argmax(~np.isfinite(data) | (np.abs(data) > 1.5 * compliance_A)))
        raise CommunicationError(
            f"{name}: implausible reading {float(data[k])!r} at point {k + 1} (limit "
            f"{compliance_A:g} A): garbled binary block or overrange")
    mean = float(np.mean(data)) if n else 0.0
    scale = float(np.max(np.abs(data), initial=0.0))
    if not abs(mean - instrument_mean_A) <= 1e-12 * scale + 1e-300:
        raise CommunicationError(f"{name}: binary block does not match the instrument's own "
                                 f"mean ({mean!r} vs {instrument_mean_A!r} A): garbled block")
    return data


def cached(param: Any) -> Any:
    """A parameter's cached value only while qcodes still trusts it, else ``None``:
    ``cache.get(get_if_invalid=False)`` would hand back an invalidated value."""
    return param.cache.get(get_if_invalid=False) if param.cache.valid else None


def ensure(param: Any, value: Any) -> None:
    """Send ``value`` unless the instrument is known (valid cache) to hold it already."""
    if cached(param) != value:
        param(value)


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
        self._link_dirty = False
        self.safe_off_errors: list[str] = []
        """Why safe-off attempts failed (diagnostics; the caller sees only True/False)."""
        self.restore_needed = False
        """Set by every communication fault: no cached setting is trusted, and the next
        output-on is preceded by a full re-configuration (:meth:`restore`)."""
        kwargs.setdefault("device_clear", False)
        self._visalib_arg: str | None = kwargs.get("visalib")
        self._address_arg = address
        super().__init__(name, address, **kwargs)

    @property
    def _dirty(self) -> bool:
        """The link is out of step (a fault or an interrupted exchange): the next exchange
        reconnects first. Setting it also withdraws trust from every cached setting at
        once — not only at that reconnect — so nothing between the fault and the next
        exchange can skip a set because the cache still agrees."""
        return self._link_dirty

    @_dirty.setter
    def _dirty(self, value: bool) -> None:
        self._link_dirty = value
        if value:
            self.restore_needed = True
            for p in getattr(self, "parameters", {}).values():
                p.cache.invalidate()

    safe_attempts = 5
    """Tries at the safe state: on a flaky link one lost reply must not leave an output on."""

    # ---- subclasses say how to check the error queue and how to switch off ----
    @abstractmethod
    def check_errors(self) -> None:
        """Each instrument's command set says how."""

    @abstractmethod
    def configure(self) -> None:
        """Put the instrument in the state the driver relies on; subclasses say how."""

    def restore(self) -> None:
        """After a communication fault: the instrument may have executed a command whose
        reply was lost, so every cached setting is forgotten and the fixed configuration is
        sent again; callers then re-send (and read back) what they need before output-on."""
        for p in self.parameters.values():
            p.cache.invalidate()
        self.configure()
        self.restore_needed = False

    @abstractmethod
    def _safe_off_once(self) -> None:
        """Each instrument's command set says how."""

    line_frequency_Hz = 50.0
    """Mains frequency for NPLC → seconds. 50 Hz is the conservative choice: at 60 Hz the
    real integration is shorter, so a FORM point's real on-time is *shorter* than planned,
    never longer. Pass ``line_frequency_Hz=60`` under ``init`` for an exact plan."""

    def safe_off(self) -> bool:
        """Outputs off (and sources to 0 V), reconnecting first if the link is suspect;
        retried, because this is the exchange that must not be lost. True when confirmed
        by a clean error check."""
        for _ in range(self.safe_attempts):
            try:
                self._safe_off_once()
                return True
            except Exception as e:  # any failure: reconnect and try again
                self._dirty = True
                self.safe_off_errors.append(f"{type(e).__name__}: {e}")
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
