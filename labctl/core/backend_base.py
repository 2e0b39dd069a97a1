"""``BackendBase``: what every backend does identically.

Bounds checks, the safety envelope, per-cell parameter broadcasting and ending every failure
in ``safe_state()`` live here once, so an implementation only writes the ``_pulse`` /
``_read`` / ``_mvm`` / ``_safe_state`` primitives and cannot forget a check. Requests are
validated — rejected, never clipped or coerced — before any primitive runs.
"""

from __future__ import annotations

import abc
import contextlib
import operator
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.core.cells import Cells, FloatArray, broadcast_param
from labctl.core.chip import Capabilities, ChipInfo, PulseKind
from labctl.core.clock import Clock
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import AddressError, ConfigError, RequestRejected
from labctl.core.ledger import Ledger

MAX_AVERAGE = 10_000
"""Most reads one read request may average (a guard against typos booking days of reads)."""


def real_array(value: npt.ArrayLike, name: str) -> npt.NDArray[np.floating[Any]]:
    """``value`` as a real floating array, or :class:`RequestRejected` naming ``name``.

    float32 and float64 pass through unchanged (the MVM hot path keeps float32 inputs); any
    other dtype — integers, longdouble, float16 — becomes float64, so what is checked against
    the envelope is exactly what the primitive gets."""
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise RequestRejected(f"{name} must be a numeric array: {e}") from None
    if a.dtype.kind not in "iuf":
        raise RequestRejected(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.dtype in (np.float32, np.float64):
        return a
    return a.astype(np.float64)


def _tile_index(tile: object, n_tiles: int) -> int:
    if isinstance(tile, bool | np.bool_):
        raise AddressError(f"tile must be an integer, got {tile!r}")
    try:
        t = operator.index(tile)  # type: ignore[arg-type]
    except TypeError:
        raise AddressError(f"tile must be an integer, got {tile!r}") from None
    if not 0 <= t < n_tiles:
        raise AddressError(f"tile {t} outside 0..{n_tiles - 1}; nothing was applied")
    return int(t)


def _contiguous(sel: slice, n: int, name: str) -> range:
    """A slice as a range inside 0..n, rejecting (never clipping) anything outside."""
    if (type(sel) is slice and sel.step is None and type(sel.start) is int
            and type(sel.stop) is int and 0 <= sel.start < sel.stop <= n):
        return range(sel.start, sel.stop)  # the common case, checked in one go
    if not isinstance(sel, slice) or sel.step not in (None, 1):
        raise AddressError(f"{name} must be a contiguous slice with step 1, got {sel!r}")
    start = 0 if sel.start is None else sel.start
    stop = n if sel.stop is None else sel.stop
    for v in (start, stop):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise AddressError(f"{name} bounds must be integers, got {sel!r}")
    if not 0 <= start < stop <= n:
        raise AddressError(
            f"{name} {start}:{stop} is not a non-empty range inside 0:{n}; nothing was applied"
        )
    return range(int(start), int(stop))


def _real_scalar(value: object, name: str) -> float:
    a = real_array(value, name)  # type: ignore[arg-type]
    if a.ndim != 0:
        raise RequestRejected(f"{name} must be one number, got shape {a.shape}")
    return float(a)


def _positive(value: object, name: str) -> float:
    """A positive finite real number: ``"1e-4"``, ``True`` or an array is refused, never
    converted."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer
                                                              | np.floating):
        raise RequestRejected(f"{name} must be a positive number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:
        raise RequestRejected(f"{name} must be a positive, finite number") from None
    if not (v > 0 and np.isfinite(v)):
        raise RequestRejected(f"{name} must be a positive, finite number, got {value!r}")
    return v


class BackendBase(abc.ABC):
    """Shared behaviour of every backend: checks first, then the primitive, and on any
    failure the safe state. Subclasses implement ``_pulse``, ``_read``, ``_mvm``,
    ``_safe_state`` and ``_close``."""

    def __init__(
        self, chip: ChipInfo, envelope: SafetyEnvelope, clock: Clock, capabilities: Capabilities
    ) -> None:
        if not isinstance(envelope, SafetyEnvelope):
            raise ConfigError(
                "backend", "envelope", "a backend cannot be built without a SafetyEnvelope"
            )
        if chip.mvm_input_max_V > envelope.max_read_V:
            raise ConfigError(
                "backend",
                "mvm_input_max_V",
                f"DAC full scale {chip.mvm_input_max_V} V exceeds the envelope's "
                f"max_read_V {envelope.max_read_V} V: an MVM could drive a row above the read "
                "limit. Lower the DAC full scale to at most the read limit (a simulated "
                "station: overrides: {periphery: {mvm_input_max_V: ...}}; instruments: "
                "chip: {mvm_input_max_V: ...}) or, if the chip allows it, raise max_read_V",
            )
        self._chip = chip
        self._envelope = envelope
        self._clock = clock
        self._capabilities = capabilities
        self._ledger = Ledger()
        self._closed = False

    # ---- description ----
    @property
    def chip(self) -> ChipInfo:
        return self._chip

    @property
    def envelope(self) -> SafetyEnvelope:
        return self._envelope

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    # ---- operations ----
    def pulse(
        self,
        cells: Cells,
        kind: PulseKind | str,
        amplitude_V: npt.ArrayLike,
        gate_V: npt.ArrayLike,
        width_s: npt.ArrayLike,
        compliance_A: npt.ArrayLike | None = None,
    ) -> None:
        self._check_open()
        try:
            kind = PulseKind(kind)
        except ValueError:
            raise RequestRejected(f"unknown pulse kind {kind!r}; use SET, RESET or FORM") from None
        n = len(cells)
        self._check_cells(cells)
        amp = broadcast_param(amplitude_V, n, "amplitude_V")
        gate = broadcast_param(gate_V, n, "gate_V")
        width = broadcast_param(width_s, n, "width_s")
        comp = None if compliance_A is None else broadcast_param(compliance_A, n, "compliance_A")
        self._envelope.check_pulse(kind.terminal, amp, gate, width, comp)
        if n == 0:
            return
        self._precheck_pulse(kind, amp, gate, width, comp)
        with self._guard():
            self._pulse(cells, kind, amp, gate, width, comp)

    def read(
        self,
        cells: Cells,
        read_V: float | None = None,
        gate_V: float | None = None,
        n_average: int = 1,
    ) -> FloatArray:
        self._check_open()
        v = self._chip.read_V if read_V is None else _real_scalar(read_V, "read_V")
        g = self._chip.read_gate_V if gate_V is None else _real_scalar(gate_V, "gate_V")
        if (
            isinstance(n_average, bool)
            or not isinstance(n_average, int | np.integer)
            or not 1 <= n_average <= MAX_AVERAGE
        ):
            raise RequestRejected(
                f"n_average must be an integer from 1 to {MAX_AVERAGE}, got {n_average!r}"
            )
        if v == 0.0:
            raise RequestRejected("read voltage must be non-zero to measure a conductance")
        self._check_cells(cells)
        self._envelope.check_read(v, g)
        if len(cells) == 0:
            return np.zeros(0)
        with self._guard():
            return self._read(cells, v, g, int(n_average))

    def mvm(
        self,
        tile: int,
        inputs_V: npt.ArrayLike,
        *,
        rows: slice = slice(None),
        cols: slice = slice(None),
        differential: bool = False,
        adc_range_A: float | None = None,
    ) -> npt.NDArray[np.floating[Any]]:
        self._check_open()
        t = _tile_index(tile, self._chip.n_tiles)
        r = _contiguous(rows, self._chip.n_rows, "rows")
        c = _contiguous(cols, self._chip.n_cols, "cols")
        if differential and len(c) % 2:
            raise AddressError(f"differential mvm needs an even number of columns, got {len(c)}")
        x = real_array(inputs_V, "inputs_V")
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(r) or x.shape[0] == 0:
            raise RequestRejected(
                f"inputs_V must have shape (batch ≥ 1, {len(r)}) for {len(r)} selected rows, "
                f"got {x.shape}"
            )
        self._envelope.check_voltage(
            "MVM input",
            x,
            self._chip.mvm_input_max_V,
            allow_negative=True,
            limit_name="the DAC full scale (chip.mvm_input_max_V)",
        )
        adc = (
            self._chip.adc_range_A if adc_range_A is None else _positive(adc_range_A, "adc_range_A")
        )
        try:  # what _guard does, without a generator per call on the MVM hot path
            return self._mvm(
                t, x, slice(r.start, r.stop), slice(c.start, c.stop), differential, adc
            )
        except BaseException as exc:
            self._fail_safe(exc)
            raise

    def safe_state(self) -> None:
        self._safe_state()

    def noise_streams(self) -> list[int] | None:
        """Positions in random streams this backend draws from that no recorded operation
        rebuilds (the simulator's MVM output noise: MVMs are not recorded), or ``None``.
        Checkpoints and step boundaries store them, so that a simulated chip rebuilt by
        replay on resume continues exactly (:mod:`labctl.runs.replay`). Taking them may end
        state derived from unrecorded operations (the simulator retakes its MVM snapshots),
        so that the run and a resume from this point agree."""
        return None

    def restore_noise_streams(self, positions: Sequence[int]) -> None:
        """Set what :meth:`noise_streams` returned (a backend without streams has none)."""
        if len(positions):
            raise RequestRejected(f"{type(self).__name__} keeps no noise streams to restore")

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._safe_state()
        finally:
            self._closed = True
            self._close()

    def __enter__(self) -> BackendBase:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- helpers ----
    def _precheck_pulse(self, kind: PulseKind, amplitude_V: FloatArray, gate_V: FloatArray,
                        width_s: FloatArray, compliance_A: FloatArray | None) -> None:
        """Hook: refuse a validated request that this backend cannot execute as asked (for
        example a width an instrument cannot produce), before any exchange — a refusal here
        is a :class:`RequestRejected`, and no safe-state traffic follows it. Default: none."""
        return None

    def _check_open(self) -> None:
        if self._closed:
            raise RequestRejected("this backend is closed; open a new one")

    def _check_cells(self, cells: Cells) -> None:
        if not isinstance(cells, Cells):
            raise RequestRejected(f"cells must be a labctl.Cells, got {type(cells).__name__}")
        cells.check_bounds(self._chip.n_tiles, self._chip.n_rows, self._chip.n_cols)
        flat = cells.flat_index(self._chip.n_rows, self._chip.n_cols)
        # Batches usually come in address order (blocks and their subsets): strictly
        # increasing means no repeats, with no sort; anything else is sorted to check.
        if (
            flat.size > 1
            and not bool(np.all(flat[1:] > flat[:-1]))
            and np.unique(flat).size != flat.size
        ):
            raise AddressError(
                "a cell appears more than once in one batch; split repeated operations on a "
                "cell into separate calls (nothing was applied)"
            )

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Any exception (including Ctrl+C) during a hardware operation ends in safe_state."""
        try:
            yield
        except BaseException as exc:
            self._fail_safe(exc)
            raise

    def _fail_safe(self, exc: BaseException) -> None:
        """Reach the safe state after ``exc`` and note on it whether that worked."""
        reached = True
        try:
            self._safe_state()
        except Exception:
            reached = False
        if hasattr(exc, "safe_state_reached"):
            with contextlib.suppress(AttributeError):
                exc.safe_state_reached = reached

    # ---- primitives ----
    @abc.abstractmethod
    def _pulse(
        self,
        cells: Cells,
        kind: PulseKind,
        amplitude_V: FloatArray,
        gate_V: FloatArray,
        width_s: FloatArray,
        compliance_A: FloatArray | None,
    ) -> None: ...

    @abc.abstractmethod
    def _read(self, cells: Cells, read_V: float, gate_V: float, n_average: int) -> FloatArray: ...

    @abc.abstractmethod
    def _mvm(
        self,
        tile: int,
        inputs_V: npt.NDArray[np.floating[Any]],
        rows: slice,
        cols: slice,
        differential: bool,
        adc_range_A: float,
    ) -> npt.NDArray[np.floating[Any]]: ...

    @abc.abstractmethod
    def _safe_state(self) -> None: ...

    def _close(self) -> None:  # noqa: B027 - optional hook
        """Release resources after the safe state (override when there are any)."""
