"""The SCPI error check the 2450 and the 33500B share, wired into qcodes' own seam.

Every message goes out as ``<message>;:SYST:ERR?`` — a compound message (IEEE 488.2
§7.1; SCPI-99 §6.2: units separated by ``;``, a leading ``:`` returns to the root) — so
the instrument's error queue is read in the same round trip as the command, and its reply
is ``[<response>;]<code>,"<message>"`` (response units joined by ``;``, IEEE 488.2
§8.4.1). Overriding :meth:`write_raw` / :meth:`ask_raw` (qcodes' documented hooks) lets
parameters be declared with plain command strings.
"""

from __future__ import annotations

import re

from drivers._link import LinkedVisaInstrument, parse_idn, parse_scpi_error
from labctl.core.errors import CommunicationError, InstrumentError

_COMPOUND = re.compile(r'^(?:(.*);)?([+-]?\d+,".*")\s*$', re.DOTALL)


class ScpiErrorCheck(LinkedVisaInstrument):
    """Mixin for SCPI instruments: each exchange checks ``:SYST:ERR?`` in the same message;
    a non-zero code is an :class:`~labctl.core.errors.InstrumentError` naming the command."""

    def write_raw(self, cmd: str) -> None:
        self._exchange(cmd, expect_value=False)

    def ask_raw(self, cmd: str) -> str:
        value = self._exchange(cmd, expect_value=True)
        assert value is not None
        return value

    def _exchange(self, cmd: str, *, expect_value: bool) -> str | None:
        reply = self.transact(lambda h: str(h.query(f"{cmd};:SYST:ERR?")), cmd)
        m = _COMPOUND.match(reply)
        if m is None:
            self._dirty = True
            raise CommunicationError(f"{self.name}: garbled reply to {cmd!r}: {reply!r}")
        code, message = parse_scpi_error(m.group(2))
        if code != 0:  # a failed query sends no response unit: the error is the news
            raise InstrumentError(f"{self.name}: error {code} \"{message}\" after {cmd!r}")
        if (m.group(1) is None) == expect_value:
            self._dirty = True
            raise CommunicationError(f"{self.name}: garbled reply to {cmd!r}: {reply!r}")
        return m.group(1)

    def check_errors(self) -> None:
        code, message = parse_scpi_error(
            self.transact(lambda h: str(h.query(":SYST:ERR?")), ":SYST:ERR?"))
        if code != 0:
            raise InstrumentError(f"{self.name}: error {code} \"{message}\"")

    def get_idn(self) -> dict[str, str | None]:
        return parse_idn(self.transact(lambda h: str(h.query("*IDN?")), "*IDN?"))
