"""labctl: control and calibration of memristor (RRAM) crossbar test chips.

Importing labctl is cheap: it never imports qcodes, the drivers or the simulator. Backends
are built from station files by :func:`labctl.runs.backends.open_backend`.
"""

from labctl.core.backend import Backend, BackendBase, Capabilities, ChipInfo, PulseKind
from labctl.core.cells import Cells
from labctl.core.clock import Clock, VirtualClock, WallClock
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import (
    CommunicationError,
    ConfigError,
    EnvelopeViolation,
    InstrumentError,
    InstrumentFault,
    InstrumentTimeout,
    LabctlError,
    RequestRejected,
)
from labctl.core.ledger import Ledger

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
