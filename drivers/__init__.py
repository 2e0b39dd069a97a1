"""Instrument drivers (QCoDeS) and ``InstrumentBackend``: the backend interface on real
instruments — an FPGA test board, Keithley 2450/2600B SMUs, a Keysight 33500B pulse
generator — or on the virtual ones ``sim_backend.virtual`` serves on loopback.
See docs/instruments.md and docs/board-protocol.md."""

from drivers.instrument_backend import InstrumentBackend

__all__ = ["InstrumentBackend"]
