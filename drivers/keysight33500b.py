"""Keysight 33500B-series waveform generator driver, used to fire SET/RESET pulses.

The generator makes a burst of ``n`` identical pulses on one bus trigger; the test board
steps its switch matrix to the next routed cell on each pulse (its sync output is wired to
the board's step input), so one burst programs one group of cells that share an amplitude
and a width.

Instrument behaviour relied on (Keysight 33500B Series Operating and Service Guide, SCPI
reference): ``FUNC PULS``; ``FUNC:PULS:WIDT``, ``FUNC:PULS:PER``,
``FUNC:PULS:TRAN:LEAD`` / ``:TRA``; ``VOLT:HIGH`` / ``VOLT:LOW`` set the levels, which are
the open-circuit levels when ``OUTP:LOAD INF`` (the instrument otherwise assumes a 50 Ω
load and the cell would see twice the programmed voltage); ``BURS:MODE TRIG``,
``BURS:NCYC``, ``BURS:STAT ON`` and ``TRIG:SOUR BUS`` make ``*TRG`` fire one burst;
``*OPC?`` answers after pending operations finish; ``SYST:ERR?`` pops the error queue as
``<code>,"<message>"`` (checked in the same message, :mod:`drivers.scpi_errors`).

After a communication fault nothing cached is trusted: the fixed configuration is sent
again and every pulse setting is re-sent and the level and width read back before the
output goes on (a lost reply once left a 3.0 V level where the cache said 2.0 V).

The 81150A pulse generator is not supported: its guide's pulse and burst commands were
not verified, so no driver pretends to drive it.
"""

from __future__ import annotations

from typing import Any

from drivers._link import Limit, cached, ensure
from drivers.scpi_errors import ScpiErrorCheck
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import SafetyInterlock


class Keysight33500B(ScpiErrorCheck):
    """33500B pulse generator. Levels are limited to the instrument's ±10 V (high-Z) and the
    chip envelope (the default envelope's when none is given); widths to the instrument's
    minimum and the envelope's maximum."""

    max_level_V = 10.0
    min_width_s = 16e-9
    max_width_s = 1e3
    min_edge_s = 8.4e-9

    def __init__(self, name: str, address: str, *, envelope_voltage_V: float | None = None,
                 envelope_max_width_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(name, address, **kwargs)
        default = SafetyEnvelope()
        v_env = (max(default.max_bitline_V, default.max_sourceline_V)
                 if envelope_voltage_V is None else envelope_voltage_V)
        w_env = default.max_width_s if envelope_max_width_s is None else envelope_max_width_s
        self.high_V = self.add_parameter(
            "high_V", unit="V", set_cmd="VOLT:HIGH {}", get_cmd="VOLT:HIGH?", get_parser=float,
            vals=Limit("pulse amplitude", 0.0, self.max_level_V, "V", v_env))
        self.width_s = self.add_parameter(
            "width_s", unit="s", set_cmd="FUNC:PULS:WIDT {}", get_cmd="FUNC:PULS:WIDT?",
            get_parser=float,
            vals=Limit("pulse width", self.min_width_s, min(self.max_width_s, w_env), "s"))
        self.edge_s = self.add_parameter(
            "edge_s", unit="s", set_cmd="FUNC:PULS:TRAN:LEAD {0};TRA {0}",
            vals=Limit("pulse edge", self.min_edge_s, 1e-3, "s"))
        self.period_s = self.add_parameter(
            "period_s", unit="s", set_cmd="FUNC:PULS:PER {}", get_cmd="FUNC:PULS:PER?",
            get_parser=float, vals=Limit("pulse period", 50e-9, 1e3, "s"))
        self.burst_count = self.add_parameter(
            "burst_count", set_cmd="BURS:NCYC {:d}", vals=Limit("burst count", 1, 1e8, "pulses"),
            set_parser=int)
        self.idn_info = self.get_idn()

    # ---- setup ----
    def configure(self) -> None:
        """Pulse function into high-Z, 0 V low level, bus-triggered bursts, output off.
        ``OUTP:LOAD INF`` comes before any level: changing the load setting rescales the
        programmed levels (33500B guide, ``OUTPut:LOAD``)."""
        self.write("*CLS;:OUTP OFF;:OUTP:LOAD INF;:FUNC PULS;:VOLT:LOW 0;:BURS:MODE TRIG;"
                   ":TRIG:SOUR BUS;:BURS:STAT ON")
        # A known timing state the width/period/edge constraints allow from any other:
        # shortest edges, a short width, a long period (sent in that order).
        edge, width, period = self.min_edge_s, 100e-9, 1e-3
        self.write(f":FUNC:PULS:TRAN:LEAD {edge};TRA {edge};:FUNC:PULS:WIDT {width};"
                   f":FUNC:PULS:PER {period}")
        for param, value in ((self.edge_s, edge), (self.width_s, width),
                             (self.period_s, period)):
            param.cache.set(value)

    def output_on(self) -> None:
        self.write("OUTP ON")

    def output_off(self) -> None:
        self.write("OUTP OFF")

    def _safe_off_once(self) -> None:
        self.write("OUTP OFF")

    def fire_burst(self, amplitude_V: float, width_s: float, n: int, *,
                   edge_s: float | None = None) -> None:
        """Program one burst of ``n`` pulses and fire it; output off again afterwards."""
        edge = max(self.min_edge_s, edge_s if edge_s is not None else self.min_edge_s)
        period = max(2.0 * width_s, width_s + 4.0 * edge + 50e-9)
        restoring = self.restore_needed
        if restoring:
            self.restore()
        # Period first when growing: a width longer than the current period is refused.
        # Settings are sent only when they change (a burst per group otherwise costs ~8
        # transactions) or when the cache is not trusted; output-on checks the error queue.
        order = ((self.period_s, period), (self.width_s, width_s)) if period >= (
            cached(self.period_s) or 0.0) else ((self.width_s, width_s), (self.period_s, period))
        for param, value in (*order, (self.edge_s, edge), (self.high_V, amplitude_V),
                             (self.burst_count, int(n))):
            ensure(param, value)
        if restoring:
            for param, value in ((self.high_V, amplitude_V), (self.width_s, width_s)):
                got = float(param.get())
                if got != value:
                    self.safe_off()
                    raise SafetyInterlock(f"{self.name}: {param.name} read back as {got!r} "
                                          f"after setting {value!r}; output left off")
        self.output_on()
        try:
            self.write("*TRG")
            # The burst lasts n periods; *OPC? answers only after it.
            with self.timeout.set_to(float(self.visa_handle.timeout) / 1000.0 + 2.0 * n * period):
                self.ask("*OPC?")
        except BaseException:
            self.safe_off()
            raise
        self.output_off()
