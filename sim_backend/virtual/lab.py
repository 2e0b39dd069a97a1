"""A virtual lab: the test board, a 2450, a 2600B and a 33500B on loopback, all wired to one
simulated macro, each on its own free port."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sim_backend.backend import SimBackend
from sim_backend.macro import Macro
from sim_backend.virtual.board import VirtualBoard
from sim_backend.virtual.hub import Hub
from sim_backend.virtual.keithley2450 import Virtual2450
from sim_backend.virtual.keithley2600b import Virtual2600B
from sim_backend.virtual.keysight33500b import Virtual33500B
from sim_backend.virtual.transport import FaultInjector, TcpServer

INSTRUMENT_NAMES = ("board", "smu2450", "smu2600b", "pulsegen")


@dataclass
class VirtualLab:
    """Start with :meth:`start`; ``addresses`` maps instrument name → how to reach it."""

    macro: Macro
    faults: FaultInjector = field(default_factory=FaultInjector)
    hub: Hub = field(init=False)
    board: VirtualBoard = field(init=False)
    servers: dict[str, TcpServer] = field(init=False, default_factory=dict)
    instruments: dict[str, Any] = field(init=False, default_factory=dict)
    """The virtual instruments by name, for tests that look inside them."""

    @classmethod
    def start(
        cls,
        preset: str = "default_180nm",
        seed: int = 0,
        *,
        macro: Macro | None = None,
        faults: FaultInjector | None = None,
        chip_id: str | None = None,
        ports: dict[str, int] | None = None,
    ) -> VirtualLab:
        """``ports`` binds instruments (``board``, ``smu2450``, ``smu2600b``, ``pulsegen``)
        to fixed loopback ports; the others get free ones."""
        if macro is None:
            macro = SimBackend(preset, seed, chip_id=chip_id).macro
        lab = cls(macro, faults or FaultInjector(seed))
        unknown = set(ports or {}) - set(INSTRUMENT_NAMES)
        if unknown:
            raise ValueError(f"unknown virtual instrument(s) {sorted(unknown)}; "
                             f"use {', '.join(INSTRUMENT_NAMES)}")
        lab._start(ports or {})
        return lab

    def _start(self, ports: dict[str, int]) -> None:
        self.hub = Hub(self.macro)
        self.board = VirtualBoard(self.hub, self.faults)
        smu = Virtual2450(self.hub, self.faults)
        smu_tsp = Virtual2600B(self.hub, self.faults)
        gen = Virtual33500B(self.hub, self.faults)
        self.instruments = {"smu2450": smu, "smu2600b": smu_tsp, "pulsegen": gen}
        self.servers = {
            "board": TcpServer("board", self.board.serve, ports.get("board", 0)),
            "smu2450": TcpServer("smu2450", smu.serve, ports.get("smu2450", 0)),
            "smu2600b": TcpServer("smu2600b", smu_tsp.serve, ports.get("smu2600b", 0)),
            "pulsegen": TcpServer("pulsegen", gen.serve, ports.get("pulsegen", 0)),
        }

    @property
    def addresses(self) -> dict[str, str]:
        """VISA resource strings for the SCPI/TSP instruments, a pyserial URL for the board."""
        out = {}
        for name, srv in self.servers.items():
            out[name] = (
                f"socket://127.0.0.1:{srv.port}"
                if name == "board"
                else f"TCPIP0::127.0.0.1::{srv.port}::SOCKET"
            )
        return out

    def close(self) -> None:
        self.board.close()
        for srv in self.servers.values():
            srv.close(join=False)
        for srv in self.servers.values():
            srv.join()

    def __enter__(self) -> VirtualLab:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
