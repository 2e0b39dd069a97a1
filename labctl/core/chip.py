"""What a chip is and what a backend can do: the data types of the backend interface."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class PulseKind(enum.StrEnum):
    """What a programming pulse does, and so which terminal it drives."""

    SET = "SET"
    """Bit line pulsed, gate at a limited voltage: the transistor caps the current."""
    RESET = "RESET"
    """Source line pulsed with the gate fully on."""
    FORM = "FORM"
    """First SET of a pristine cell: bit line pulsed while the gate ramps gently."""

    @property
    def terminal(self) -> str:
        return "SL" if self is PulseKind.RESET else "BL"


@dataclass(frozen=True)
class ChipInfo:
    """What a chip is: geometry, conductance window, terminals and read defaults."""

    chip_id: str
    n_tiles: int
    n_rows: int
    n_cols: int
    g_min_S: float
    """Bottom of the programmable window, siemens."""
    g_max_S: float
    """Top of the programmable window, siemens."""
    read_V: float = 0.2
    """Default verify-read voltage across the cell (NeuRRAM: 0.1–0.2 V)."""
    read_gate_V: float = 2.5
    """Default gate voltage during reads (Stanford NI-RRAM-Python: 2.5 V)."""
    mvm_input_max_V: float = 0.2
    """Full-scale DAC output on a row during an MVM, volts."""
    dac_bits: int = 8
    adc_bits: int = 9
    adc_range_A: float = 100e-6
    """Default full-scale ADC input current (±), amperes; calibration may set another."""
    preset: str = ""
    terminals: Mapping[str, str] = field(
        default_factory=lambda: {
            "BL": "bit line: SET, FORM and read voltage (top electrode)",
            "SL": "source line: RESET voltage",
            "WL": "word line: access-transistor gate (compliance)",
        }
    )

    def __post_init__(self) -> None:
        """A chip id names files and run records and appears in one-line reports; whatever
        built it (a station, a preset's name, a board's ident string), it is plain text."""
        from labctl.core.errors import ConfigError
        from labctl.core.validation import control_characters

        problem = control_characters(self.chip_id)
        if problem is not None:
            raise ConfigError(f"chip {self.chip_id!r}", "chip_id", f"{problem} (it comes from "
                              "the station's chip_id, the preset's name or the board's ident)")

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["terminals"] = dict(self.terminals)
        return d


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do natively, so routines can choose the fast path."""

    batched_pulse: bool = True
    """One call pulses many cells with per-cell parameters in one round trip."""
    batched_read: bool = True
    mvm: bool = True
    device_side_verify: bool = False
    """A verify-write program runs on the device (one round trip per batch)."""
    virtual_clock: bool = False
    energy_model: bool = False
    """The ledger's energies are estimates from a stated model (simulator)."""
    round_trips_per_batch: int = 0
    """Host round trips a batched pulse or read costs (0: in-process)."""
    notes: str = ""
