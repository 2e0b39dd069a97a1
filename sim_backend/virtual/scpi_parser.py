"""A SCPI instrument core per IEEE 488.2 and SCPI-99, shared by the virtual 2450 and 33500B.

What it implements, with the clause it follows:

* Program messages of units separated by ``;`` (IEEE 488.2 §7.1); a unit whose header has
  no leading ``:`` continues the previous unit's path (SCPI-99 vol. 1 §6.2.4, e.g.
  ``:SOUR:VOLT 1;ILIM 1e-3``); common commands (``*…``) leave the path alone.
* Headers matched against SCPI command-tree patterns such as
  ``[:SOURce[1]]:VOLTage[:LEVel][:IMMediate][:AMPLitude]``: each mnemonic in its short
  (upper-case part) or long form, case-insensitive (SCPI-99 §6.2.1), optional nodes in
  brackets may be left out (§6.2.5), a numeric suffix on a mnemonic that takes one
  (``SOURce1:``; -114 "Header suffix out of range" otherwise, §6.2.5.2).
* Numeric parameters with ``MINimum`` / ``MAXimum`` / ``DEFault`` (SCPI-99 §7.2.1) and
  unit suffixes with SI multipliers (IEEE 488.2 §7.7.3; SCPI-99 §7.5: ``M`` is milli,
  ``MA`` mega, except ``MHZ`` and ``MOHM``); out-of-range values are -222, unknown
  enumerations -224, malformed numbers -104/-131, missing ones -109, extra ones -108.
* Response units joined by ``;``, the message ended by a newline (IEEE 488.2 §8.4.1).
* All IEEE 488.2 mandatory common commands (§10: ``*CLS *ESE *ESE? *ESR? *IDN? *OPC
  *OPC? *RST *SRE *SRE? *STB? *TST? *WAI``) with the standard event status register
  (bit 0 OPC, 2 query error, 3 device error, 4 execution error, 5 command error) and the
  status byte (bit 2 error queue not empty, SCPI-99 §9; bit 5 ESB; bit 6 MSS).
* An error queue of :data:`QUEUE_LENGTH` entries whose last entry becomes ``-350,"Queue
  overflow"`` when more errors arrive (SCPI-99 §21.8.2), read by ``SYSTem:ERRor[:NEXT]?``.
"""

from __future__ import annotations

import re
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sim_backend.virtual.transport import FaultInjector, serve_lines

QUEUE_LENGTH = 20
MAX_MESSAGE_BYTES = 1 << 20
"""Longest program message accepted (bytes); a longer one is discarded with -223."""


class ScpiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class _Node:
    short: str
    long: str
    optional: bool
    suffix: bool


def _compile(pattern: str) -> list[_Node]:
    """``[:SOURce[1]]:VOLTage[:LEVel]`` → nodes. ``[1]``/``<n>`` after a mnemonic: it takes
    a numeric suffix."""
    nodes = []
    for m in re.finditer(r"(\[)?:?([A-Za-z*]+)(\[1\]|<n>)?\]?", pattern):
        word = m.group(2)
        short = "".join(ch for ch in word if ch.isupper() or ch == "*")
        nodes.append(_Node(short.upper(), word.upper(), m.group(1) is not None,
                           m.group(3) is not None))
    return nodes


_TOKEN = re.compile(r"^([A-Za-z*]+?)(\d*)$")


def _match(nodes: list[_Node], tokens: list[str], suffixes: list[int],
           strict: bool = True) -> bool:
    """Does the header ``tokens`` spell the pattern ``nodes``? Numeric suffixes found are
    appended to ``suffixes``; with ``strict`` a suffix on a node that takes none is no match
    (the caller re-tries without ``strict`` to tell -114 from -113)."""
    if not nodes:
        return not tokens
    node, rest = nodes[0], nodes[1:]
    if tokens:
        m = _TOKEN.match(tokens[0])
        if m is not None and m.group(1).upper() in (node.short, node.long) and not (
                strict and m.group(2) and not node.suffix):
            suffixes.append(int(m.group(2)) if m.group(2) else 1)
            if _match(rest, tokens[1:], suffixes, strict):
                return True
            suffixes.pop()
    return node.optional and _match(rest, tokens, suffixes, strict)


def split_top(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside quotes and parentheses/braces."""
    out, cur, quote, depth = [], [], "", 0
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        elif ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return out


_PREFIX = {"": 1.0, "EX": 1e18, "PE": 1e15, "T": 1e12, "G": 1e9, "MA": 1e6, "K": 1e3,
           "M": 1e-3, "U": 1e-6, "N": 1e-9, "P": 1e-12, "F": 1e-15}
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*$")


def number(arg: str | None, *, lo: float, hi: float, default: float | None = None,
           unit: str = "", integer: bool = False) -> float:
    """One numeric parameter: a decimal number with an optional unit suffix, or MIN/MAX/
    DEF; outside [lo, hi] is -222 "Data out of range"."""
    if arg is None or not arg.strip():
        raise ScpiError(-109, "Missing parameter")
    a = arg.strip().upper()
    if a in ("MIN", "MINIMUM"):
        return lo
    if a in ("MAX", "MAXIMUM"):
        return hi
    if a in ("DEF", "DEFAULT"):
        if default is None:
            raise ScpiError(-224, "Illegal parameter value")
        return default
    m = _NUMBER.match(a)
    if m is None:
        raise ScpiError(-104, f"Data type error; {arg.strip()!r}")
    v = float(m.group(1))
    suffix = m.group(2)
    if suffix:
        u = unit.upper()
        if not u or not suffix.endswith(u):
            raise ScpiError(-131, f"Invalid suffix; {suffix}")
        pre = suffix[: len(suffix) - len(u)]
        if suffix in ("MHZ", "MOHM"):
            pre = "MA"
        if pre not in _PREFIX:
            raise ScpiError(-131, f"Invalid suffix; {suffix}")
        v *= _PREFIX[pre]
    if integer and v != int(v):
        raise ScpiError(-104, "Data type error; integer expected")
    if not lo <= v <= hi:
        raise ScpiError(-222, "Data out of range")
    return v


def choice(arg: str | None, options: dict[str, str]) -> str:
    """An enumerated parameter: keys are accepted spellings (upper case), values canonical."""
    if arg is None or not arg.strip():
        raise ScpiError(-109, "Missing parameter")
    a = arg.strip().strip('"').upper()
    if a not in options:
        raise ScpiError(-224, f"Illegal parameter value; {arg.strip()}")
    return options[a]


def boolean(arg: str | None) -> bool:
    return choice(arg, {"ON": "1", "1": "1", "OFF": "0", "0": "0"}) == "1"


def as_bool(arg: str | None) -> str:
    """A boolean parameter as the reply text ``1``/``0``."""
    return "1" if boolean(arg) else "0"


def as_number(lo: float, hi: float, default: float, unit: str = "",
              integer: bool = False) -> Callable[[str | None], str]:
    def parse(arg: str | None) -> str:
        v = number(arg, lo=lo, hi=hi, default=default, unit=unit, integer=integer)
        return str(int(v)) if integer else repr(v)

    return parse


def as_choice(options: dict[str, str]) -> Callable[[str | None], str]:
    return lambda arg: choice(arg, options)


def args_of(text: str) -> list[str]:
    return [a.strip() for a in split_top(text, ",")] if text.strip() else []


Handler = Callable[[list[str], list[int]], "str | bytes | None"]


class ScpiCore:
    """Dispatch, error queue, status registers and the common commands."""

    idn = "labctl,virtual,0,1.0"
    max_suffix = 1
    """Highest numeric suffix (channel) a header node takes on this instrument."""

    def __init__(self, faults: FaultInjector, name: str, lock: threading.RLock) -> None:
        self.faults = faults
        self.name = name
        self.lock = lock
        self.errors: deque[tuple[int, str]] = deque()
        self.store: dict[tuple[str, int], str] = {}
        self.esr = 0
        self.ese = 0
        self.sre = 0
        self._tree: list[tuple[list[_Node], bool, Handler]] = []
        c = self.command
        c("*CLS", lambda a, s: self._cls())
        c("*ESE", lambda a, s: setattr(self, "ese", int(number(self._one(a), lo=0, hi=255))))
        c("*ESE?", lambda a, s: str(self.ese))
        c("*ESR?", lambda a, s: self._read_esr())
        c("*IDN?", lambda a, s: self.idn)
        c("*OPC", lambda a, s: setattr(self, "esr", self.esr | 1))
        c("*OPC?", lambda a, s: "1")
        c("*RST", lambda a, s: self._rst())
        c("*SRE", lambda a, s: setattr(self, "sre", int(number(self._one(a), lo=0, hi=255))))
        c("*SRE?", lambda a, s: str(self.sre))
        c("*STB?", lambda a, s: str(self._stb()))
        c("*TST?", lambda a, s: "0")
        c("*WAI", lambda a, s: None)
        c(":SYSTem:ERRor[:NEXT]?", lambda a, s: self._next_error())
        c(":SYSTem:ERRor:COUNt?", lambda a, s: str(len(self.errors)))
        c(":STATus:QUEue[:NEXT]?", lambda a, s: self._next_error())
        c(":STATus:PRESet", lambda a, s: None)

    # ---- the tree ----
    def command(self, pattern: str, handler: Handler) -> None:
        query = pattern.endswith("?")
        self._tree.append((_compile(pattern.rstrip("?")), query, handler))

    @staticmethod
    def _one(a: list[str]) -> str | None:
        if len(a) > 1:
            raise ScpiError(-108, "Parameter not allowed")
        return a[0] if a else None

    def reset(self) -> None:
        """\\*RST: the instrument's power-on settings; subclasses extend."""

    def _rst(self) -> None:
        self.store.clear()
        self.reset()

    # ---- status ----
    def push_error(self, code: int, message: str) -> None:
        """Queue an error; the event status register records its class (IEEE 488.2 §11.5)."""
        for lo, bit in ((-199, 5), (-299, 4), (-399, 3), (-499, 2)):
            if lo <= code <= lo + 99:
                self.esr |= 1 << bit
        if code > 0:
            self.esr |= 1 << 3
        if len(self.errors) >= QUEUE_LENGTH:
            self.errors[-1] = (-350, "Queue overflow")
            return
        self.errors.append((code, message))

    def _next_error(self) -> str:
        code, msg = self.errors.popleft() if self.errors else (0, "No error")
        return f'{code:+d},"{msg}"'

    def _cls(self) -> None:
        self.errors.clear()
        self.esr = 0

    def _read_esr(self) -> str:
        v, self.esr = self.esr, 0
        return str(v)

    def _stb(self) -> int:
        stb = (4 if self.errors else 0) | (32 if self.esr & self.ese else 0)
        return stb | (64 if stb & self.sre else 0)

    # ---- messages ----
    def serve(self, conn: socket.socket, stop: threading.Event) -> None:
        serve_lines(conn, stop, self.execute, lambda b: self.faults.send(self.name, conn, b),
                    max_line=MAX_MESSAGE_BYTES,
                    on_overflow=lambda: self.push_error(-223, "Too much data"))

    def _dispatch(self, header: str, path: list[str]) -> tuple[Handler, list[int], list[str]]:
        query = header.endswith("?")
        h = header[:-1] if query else header
        if h.startswith("*"):
            tokens = [h.upper()]
            new_path = path
        else:
            rel = h.split(":")
            tokens = rel[1:] if h.startswith(":") else path + rel
            new_path = tokens[:-1]
        if any(not t for t in tokens):
            raise ScpiError(-102, "Syntax error")
        for nodes, is_query, handler in self._tree:
            suffixes: list[int] = []
            if is_query == query and _match(nodes, tokens, suffixes):
                if any(not 1 <= k <= self.max_suffix for k in suffixes):
                    raise ScpiError(-114, "Header suffix out of range")
                path[:] = new_path
                return handler, suffixes, tokens
        for nodes, is_query, _ in self._tree:
            if is_query == query and _match(nodes, tokens, [], strict=False):
                raise ScpiError(-114, "Header suffix out of range")
        raise ScpiError(-113, f"Undefined header; {header}")

    def stored(self, pattern: str, default: str, parse: Callable[[str | None], str]) -> None:
        """A setting the simulation does not act on, kept per channel (the first numeric
        suffix) so that a client reads back what it set; ``parse`` validates a value and
        returns its canonical reply text."""
        key = pattern

        def chan(s: list[int]) -> int:
            return s[0] if s else 1

        self.command(pattern, lambda a, s: self.store.__setitem__(
            (key, chan(s)), parse(self._one(a))))
        self.command(pattern + "?", lambda a, s: self.store.get((key, chan(s)), default))

    def execute(self, message: str) -> bytes | None:
        replies: list[bytes] = []
        path: list[str] = []
        for unit in split_top(message, ";"):
            unit = unit.strip()
            if not unit:
                continue
            m = re.match(r"^(\S+)\s*(.*)$", unit, re.DOTALL)
            assert m is not None
            header, arg = m.group(1), m.group(2)
            try:
                handler, suffixes, _ = self._dispatch(header, path)
                with self.lock:
                    r = handler(args_of(arg), suffixes)
            except ScpiError as e:
                self.push_error(e.code, str(e))
                continue  # the following units still run, so a trailing SYST:ERR? answers
            except Exception as e:  # a hook of the simulated world failed
                self.push_error(-200, f"Execution error; {e}")
                continue
            if r is not None:
                replies.append(r if isinstance(r, bytes) else r.encode("ascii"))
        if not replies:
            return None
        return b";".join(replies) + b"\n"
