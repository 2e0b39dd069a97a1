"""The labctl error hierarchy.

Every error a user can meaningfully react to derives from :class:`LabctlError`, and each
branch answers one question: *did anything reach the chip?*

- :class:`RequestRejected` and its children (:class:`EnvelopeViolation`,
  :class:`ConfigError`): the request was refused **before** any hardware action. Fix the
  input and retry; the chip is untouched.
- :class:`InstrumentError`, :class:`CommunicationError`, :class:`InstrumentTimeout`: something
  went wrong while talking to hardware. The backend has already tried to put the hardware in
  its safe state; :attr:`InstrumentFault.safe_state_reached` says whether that worked.
- :class:`RunInterrupted`: a run was paused or aborted at a checkpoint on request.
- :class:`StorageFault`: the run file could not be written (disk full, quota, I/O error);
  the run stopped at once in the safe state, and the file holds every record up to the last
  good flush.
"""

from __future__ import annotations


class LabctlError(Exception):
    """Base of every error labctl raises on purpose."""


class RequestRejected(LabctlError, ValueError):
    """A request was refused before anything was sent to a terminal."""


class EnvelopeViolation(RequestRejected):
    """An operation asked for something outside the chip's frozen safety envelope.

    Raised before the operation reaches the model or the wire; never clipped.
    """

    def __init__(
        self, parameter: str, limit: str, offending: str, n_values: int = 1, hint: str = ""
    ) -> None:
        self.parameter = parameter
        self.limit = limit
        self.offending = offending
        self.n_values = n_values
        count = f" ({n_values} value{'s' if n_values != 1 else ''})" if n_values else ""
        advice = hint or (
            "Lower the request or, if the chip's datasheet allows it, widen the envelope in "
            "the station file."
        )
        super().__init__(
            f"{parameter} = {offending}{count} is outside the allowed range ({limit}); "
            f"nothing was applied. {advice}"
        )


class ConfigError(RequestRejected):
    """A protocol, station or preset file is malformed: names the file, the key and the fix."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        self.problems = [(key, problem)]
        super().__init__(f"{source}: key '{key}': {problem}")


class ConfigErrors(ConfigError):
    """Several problems in one file, all found in one pass: ``problems`` holds every
    (dotted key, problem); ``key`` / ``problem`` are the first, for code that reads one."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(source, *problems[0])
        self.problems = list(problems)
        if len(self.problems) > 1:
            lines = "".join(f"\n  key '{k}': {p}" for k, p in self.problems)
            self.args = (f"{source}: {len(self.problems)} problems:{lines}",)


class AddressError(RequestRejected):
    """Cells were addressed outside the chip (tile, row or column out of range)."""


class InstrumentFault(LabctlError):
    """Base for faults that happen while talking to hardware."""

    safe_state_reached: bool | None = None


class InstrumentError(InstrumentFault):
    """The instrument reported an error (from its error queue or a status reply)."""


class CommunicationError(InstrumentFault):
    """A reply was garbled, truncated, out of sequence or failed its checksum."""


class InstrumentTimeout(InstrumentFault, TimeoutError):
    """An instrument did not answer in time."""


class SafetyInterlock(InstrumentFault):
    """The hardware refused or could not confirm a safety precondition (e.g. compliance)."""


class RunInterrupted(LabctlError):
    """A run stopped at a checkpoint because the user paused or aborted it."""

    def __init__(self, message: str, *, aborted: bool) -> None:
        self.aborted = aborted
        super().__init__(message)


class StorageFault(LabctlError):
    """Writing the run file failed (ENOSPC, EDQUOT, EIO, a file-size limit …).

    The run stops at once — no further pulse may be applied that the file cannot hold — and
    the file is left exactly as it was after the last good flush (readable, resumable once
    there is room again).
    """

    def __init__(self, path: str, cause: BaseException, committed: int, *,
                 run_path: str | None = None) -> None:
        self.path = path
        self.committed = committed
        run = run_path or path
        what = (f"the run file {path}" if run_path is None
                else f"{path} (the run file {run} is fine)")
        super().__init__(
            f"cannot write {what}: {_os_reason(cause)}. The run stopped at once, hardware in "
            f"its safe state; the run file holds the first {committed} records (up to the last "
            f"good flush). Free space (or fix the disk), then continue with "
            f"`labctl run --resume {run}`.")


def _os_reason(e: BaseException) -> str:
    import errno
    import os

    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
        if getattr(e, "errno", None) == code or f"errno = {code}," in str(e):
            return f"{os.strerror(code)} (errno {errno.errorcode[code]})"
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
