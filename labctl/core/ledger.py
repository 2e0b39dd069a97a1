"""Operation ledger: counts, device time and energy of what a backend did.

Every backend keeps one. The simulator books an energy estimate for each operation from
its stated energy model (see ``sim_backend.energy``); instrument backends book counts and
device time they know, and leave energy as NaN where no instrument measures it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Ledger:
    """Running totals. Energies in joules, times in seconds of device (busy) time."""

    pulses: int = 0
    """Cell-pulses applied (one cell pulsed once counts one)."""
    pulse_calls: int = 0
    reads: int = 0
    """Cell-reads (a cell read with averaging n counts n)."""
    read_calls: int = 0
    mvm_calls: int = 0
    mvm_vectors: int = 0
    """Input vectors processed by MVMs (batch rows)."""
    energy_J: float = 0.0
    pulse_energy_J: float = 0.0
    read_energy_J: float = 0.0
    mvm_energy_J: float = 0.0
    device_time_s: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float | int | dict[str, int]]:
        d = asdict(self)
        d["by_kind"] = dict(self.by_kind)
        return d

    def since(self, before: dict[str, float | int | dict[str, int]]) -> dict[str, float]:
        """Numeric differences between now and an earlier :meth:`snapshot`."""
        now = self.snapshot()
        out: dict[str, float] = {}
        for k, v in now.items():
            b = before.get(k)
            if isinstance(v, int | float) and isinstance(b, int | float):
                out[k] = float(v) - float(b)
        return out
