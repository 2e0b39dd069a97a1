"""labctl: control and calibration of memristor (RRAM) crossbar test chips.

Importing labctl is cheap: it never imports qcodes, the drivers or the simulator. Backends
are built from station files by :func:`labctl.station.open_backend`.
"""

from labctl.backend import Backend, BackendBase, Capabilities, ChipInfo, PulseKind
from labctl.cells import Cells
from labctl.clock import Clock, VirtualClock, WallClock
from labctl.envelope import SafetyEnvelope
from labctl.errors import (
    CommunicationError,
    ConfigError,
    EnvelopeViolation,
    InstrumentError,
    InstrumentFault,
    InstrumentTimeout,
    LabctlError,
    RequestRejected,
)
from labctl.ledger import Ledger

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendBase",
    "Capabilities",
    "Cells",
    "ChipInfo",
    "Clock",
    "CommunicationError",
    "ConfigError",
    "EnvelopeViolation",
    "InstrumentError",
    "InstrumentFault",
    "InstrumentTimeout",
    "LabctlError",
    "Ledger",
    "PulseKind",
    "RequestRejected",
    "SafetyEnvelope",
    "VirtualClock",
    "WallClock",
    "__version__",
]
