"""Open an InstrumentBackend on a virtual lab with chosen timeouts (tests only)."""

from __future__ import annotations

import itertools
from typing import Any

from drivers.fpga_board import FpgaTestBoard
from drivers.instrument_backend import InstrumentBackend, chip_from_ident
from drivers.keithley2450 import Keithley2450
from drivers.keithley2600b import Keithley2600B
from drivers.keysight33500b import Keysight33500B
from labctl.core.envelope import SafetyEnvelope
from sim_backend import Preset, SimBackend, load_preset
from sim_backend.virtual import FaultInjector, VirtualLab

_ids = itertools.count()


def open_wire(lab: VirtualLab, topology: str = "board", *, smu: str = "2450",
              timeout_s: float = 5.0, envelope: SafetyEnvelope | None = None,
              **kwargs: Any) -> InstrumentBackend:
    env = envelope or SafetyEnvelope()
    k = next(_ids)
    a = lab.addresses
    board = FpgaTestBoard(f"tboard{k}", a["board"], timeout_s=timeout_s)
    s = g = None
    if topology != "board":
        common = {"visalib": "@py", "timeout": timeout_s}
        if smu == "2450":
            s = Keithley2450(f"tsmu{k}", a["smu2450"], envelope_voltage_V=env.max_bitline_V,
                             envelope_compliance_A=env.max_compliance_A, **common)
        else:
            s = Keithley2600B(f"tsmu{k}", a["smu2600b"], envelope_voltage_V=env.max_bitline_V,
                              envelope_compliance_A=env.max_compliance_A, **common)
        s.configure()
        g = Keysight33500B(f"tgen{k}", a["pulsegen"], envelope_voltage_V=env.max_bitline_V,
                           **common)
        g.configure()
    return InstrumentBackend(chip_from_ident(board.ident), env, board, topology=topology,
                             smu=s, pulsegen=g, **kwargs)


def small_preset() -> Preset:
    """The default preset on a 2 × 32 × 32 array: same physics, quick to initialise."""
    d = load_preset("default_180nm").to_dict()
    d["array"] = {**d["array"], "n_tiles": 2, "n_rows": 32, "n_cols": 32}
    return Preset.from_dict(d, source="tests.drivers small preset")


def small_lab(seed: int, faults: FaultInjector | None = None) -> VirtualLab:
    return VirtualLab.start(macro=SimBackend(small_preset(), seed).macro, faults=faults)


def small_direct(seed: int) -> SimBackend:
    return SimBackend(small_preset(), seed)
