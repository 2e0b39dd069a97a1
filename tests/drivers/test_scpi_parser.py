"""The virtual instruments' SCPI core against IEEE 488.2 / SCPI-99: header forms, optional
nodes, numeric suffixes, relative headers in compound messages, MIN/MAX/DEF and unit
suffixes, the mandatory common commands and the error queue's -350 overflow."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim_backend.virtual.scpi_parser import QUEUE_LENGTH, ScpiCore, ScpiError, number
from sim_backend.virtual.transport import FaultInjector


class Box(ScpiCore):
    """A one-setting instrument: ``[:SOURce[1]]:VOLTage[:LEVel]`` in volts, ±10 V."""

    def __init__(self) -> None:
        super().__init__(FaultInjector(), "box", threading.RLock())
        self.v = 0.0
        self.command("[:SOURce[1]]:VOLTage[:LEVel]", lambda a, s: setattr(
            self, "v", number(self._one(a), lo=-10, hi=10, default=1.0, unit="V")))
        self.command("[:SOURce[1]]:VOLTage[:LEVel]?", lambda a, s: repr(self.v))
        self.command("[:SOURce[1]]:VOLTage:ILIMit", lambda a, s: None)

    def ask(self, msg: str) -> str:
        r = self.execute(msg)
        return "" if r is None else r.decode().rstrip("\n")


@pytest.mark.parametrize("header", ["SOUR:VOLT", ":SOURCE:VOLTAGE:LEVEL", "volt", ":sour1:volt:lev",
                                    "VOLTage:LEVel", "SOURce:VOLT"])
def test_short_long_optional_and_suffixed_headers(header: str) -> None:
    b = Box()
    b.execute(f"{header} 2.5")
    assert b.v == 2.5
    assert b.ask(":SYST:ERR?") == '+0,"No error"'


def test_wrong_suffix_and_unknown_header_are_errors() -> None:
    b = Box()
    assert b.ask(":SOUR2:VOLT 1;:SYST:ERR?").startswith("-114")
    assert b.ask(":SOUR:VOLTS 1;:SYST:ERR?").startswith("-113")


def test_relative_header_continues_the_path() -> None:
    b = Box()
    assert b.ask(":SOUR:VOLT 1;VOLT 2;:SOUR:VOLT?;:SYST:ERR?") == '2.0;+0,"No error"'


@pytest.mark.parametrize(("arg", "value"), [("MIN", -10.0), ("max", 10.0), ("DEF", 1.0),
                                            ("500 mV", 0.5), ("2V", 2.0), ("1e3mV", 1.0)])
def test_min_max_def_and_units(arg: str, value: float) -> None:
    b = Box()
    b.execute(f"VOLT {arg}")
    assert b.v == value


@pytest.mark.parametrize(("arg", "code"), [("11", "-222"), ("FOO", "-104"), ("1 A", "-131"),
                                           ("", "-109"), ("1,2", "-108")])
def test_bad_parameters_are_2xx_or_1xx_errors(arg: str, code: str) -> None:
    b = Box()
    assert b.ask(f"VOLT {arg};:SYST:ERR?" if arg else "VOLT;:SYST:ERR?").startswith(code)
    assert b.v == 0.0


def test_mandatory_common_commands() -> None:
    b = Box()
    b.execute("*ESE 60;*SRE 32")
    assert b.ask("*ESE?;*SRE?") == "60;32"
    b.execute("VOLT 99")  # -222: execution error, ESR bit 4
    assert int(b.ask("*STB?")) & 4  # error queue not empty
    assert int(b.ask("*STB?")) & 32  # ESB: ESR & ESE
    assert int(b.ask("*ESR?")) & 16
    assert b.ask("*ESR?") == "0"  # read and cleared
    b.execute("*OPC")
    assert int(b.ask("*ESR?")) & 1
    assert b.ask("*TST?") == "0"
    assert b.ask("*OPC?") == "1"
    b.execute("*CLS")
    assert b.ask(":SYST:ERR:COUN?") == "0"
    b.execute("*WAI;*RST")
    assert b.ask("*IDN?").count(",") == 3


def test_error_queue_overflow_reports_350() -> None:
    b = Box()
    for _ in range(QUEUE_LENGTH + 5):
        b.execute("VOLT 99")
    errs = [b.ask("SYST:ERR?") for _ in range(QUEUE_LENGTH + 1)]
    assert errs[QUEUE_LENGTH - 1] == '-350,"Queue overflow"'
    assert errs[QUEUE_LENGTH] == '+0,"No error"'


@given(st.floats(-10, 10, allow_nan=False), st.sampled_from(["", "V", "mV", "uV", "kV"]))
def test_number_with_units_is_the_value_times_the_prefix(x: float, unit: str) -> None:
    scale = {"": 1.0, "V": 1.0, "mV": 1e-3, "uV": 1e-6, "kV": 1e3}[unit]
    if not -10 <= x * scale <= 10:
        with pytest.raises(ScpiError, match="out of range"):
            number(f"{x!r}{unit}", lo=-10, hi=10, unit="V")
        return
    assert number(f"{x!r}{unit}", lo=-10, hi=10, unit="V") == x * scale


@given(st.text(max_size=30))
def test_any_message_is_answered_or_queued_never_crashes(msg: str) -> None:
    b = Box()
    b.execute(msg.replace("\n", " "))
    assert len(b.errors) <= QUEUE_LENGTH
