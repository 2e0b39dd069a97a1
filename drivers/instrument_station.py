"""Build an :class:`InstrumentBackend` from a station document (``station.backend:
instruments``).

The ``instruments`` section follows QCoDeS' station-file convention — instrument name →
``type`` (driver class), ``address`` and driver keyword arguments under ``init`` — with the
instrument names fixed to the roles they play: ``board`` (always), ``smu`` and ``pulsegen``
(topology ``board+smu+pulsegen``). Every malformed key raises a ``ConfigError`` naming it.

With ``station.virtual: true`` the builder, once the station is validated, starts the
virtual instruments through the ``start_lab`` callable its caller hands in and points every
instrument at the addresses the lab reports. The drivers package never imports the
simulator (one layer, side by side with it): the composition root,
:func:`labctl.runs.backends.open_backend`, knows both and passes the starter. Only the wire
connects drivers to the lab.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import itertools
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from drivers.fpga_board import FpgaTestBoard
from drivers.instrument_backend import TOPOLOGIES, InstrumentBackend, chip_from_ident
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import CommunicationError, ConfigError, RequestRejected
from labctl.core.station_spec import StationSpec

STATION_KEYS = {"backend", "topology", "virtual", "preset", "seed",
                "chip_id", "envelope", "chip", "watchdog_s", "read_compliance_A"}
INSTRUMENT_KEYS = {"type", "address", "visalib", "timeout", "init"}
DRIVERS = {
    "FpgaTestBoard": ("drivers.fpga_board", "FpgaTestBoard"),
    "Keithley2450": ("drivers.keithley2450", "Keithley2450"),
    "Keithley2600B": ("drivers.keithley2600b", "Keithley2600B"),
    "Keysight33500B": ("drivers.keysight33500b", "Keysight33500B"),
}
VIRTUAL_PORTS = {"FpgaTestBoard": "board", "Keithley2450": "smu2450",
                 "Keithley2600B": "smu2600b", "Keysight33500B": "pulsegen"}
ROLES = {"board": ("FpgaTestBoard",), "smu": ("Keithley2450", "Keithley2600B"),
         "pulsegen": ("Keysight33500B",)}


_COUNTER = itertools.count(1)

SET_BY_BUILDER = {"name", "address", "url", "timeout", "timeout_s", "visalib",
                  "envelope_voltage_V", "envelope_compliance_A", "envelope_max_width_s"}
"""Driver arguments the builder sets itself (from ``address``, ``timeout``, ``visalib`` and
the envelope): not allowed under ``init``."""
QCODES_INIT_KEYS = {"terminator", "device_clear", "metadata", "label", "pyvisa_sim_file"}
"""Keyword arguments every QCoDeS ``VisaInstrument`` accepts through ``**kwargs``."""


IDN_MODELS = {"Keithley2450": ("2450",),
              "Keithley2600B": ("2601B", "2602B", "2604B", "2611B", "2612B", "2614B", "2634B",
                                "2635B", "2636B"),
              "Keysight33500B": ("3350", "3351", "3352")}
"""What the model field of ``*IDN?`` (IEEE 488.2 §10.14) contains for each driver."""


def check_identity(src: str, role: str, drv: str, address: str,
                   idn: dict[str, str | None]) -> None:
    """Refuse an instrument whose ``*IDN?`` is not a model the configured driver speaks
    to — before anything is configured on it — naming the station key to fix."""
    model = str(idn.get("model") or "")
    if not any(m in model.upper() for m in IDN_MODELS.get(drv, ("",))):
        raise ConfigError(src, f"instruments.{role}.type",
                          f"the instrument at {address!r} identifies as "
                          f"{idn.get('vendor')!r} {model!r}, which the {drv} driver does not "
                          f"drive; expected a model containing "
                          f"{' / '.join(IDN_MODELS[drv])}. Fix the type or the address")


def _driver_class(drv: str) -> Any:
    modname, clsname = DRIVERS[drv]
    return getattr(importlib.import_module(modname), clsname)


def allowed_init_keys(drv: str) -> set[str]:
    """Keyword arguments a station file may give a driver under ``init``: the driver's own
    (over its class hierarchy up to QCoDeS), minus what the builder sets itself."""
    keys: set[str] = set()
    cls = _driver_class(drv)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass.__module__.startswith(("qcodes", "builtins")):
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                keys.add(p.name)
    if drv != "FpgaTestBoard":
        keys |= QCODES_INIT_KEYS
    return keys - SET_BY_BUILDER - {"self"}


def _driver_name(src: str, role: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ConfigError(src, f"instruments.{role}.type", "must be a driver class name")
    name = raw.rsplit(".", 1)[-1]
    if name not in DRIVERS or (raw.count(".") and raw != ".".join(DRIVERS[name])):
        raise ConfigError(src, f"instruments.{role}.type",
                          f"unknown driver {raw!r}; known: {', '.join(DRIVERS)}")
    if name not in ROLES[role]:
        raise ConfigError(src, f"instruments.{role}.type",
                          f"{name} cannot act as {role}; use one of {', '.join(ROLES[role])}")
    return name


class VirtualLabHandle(Protocol):
    """What a started virtual lab offers the builder: where each instrument listens."""

    @property
    def addresses(self) -> Mapping[str, str]: ...

    def close(self) -> None: ...


StartLab = Callable[[StationSpec], VirtualLabHandle]
"""Starts the virtual instruments a ``virtual: true`` station describes."""


def _connect(src: str, role: str, name: str, address: str, cls: Any,
             kwargs: dict[str, Any]) -> Any:
    """Open one instrument; a failure to connect names the station key and the address."""
    try:
        return cls(name, address, **kwargs)
    except RequestRejected:
        raise
    except Exception as e:
        raise CommunicationError(f"{src}: instruments.{role}.address = {address!r}: could not "
                                 f"connect to the {role} ({cls.__name__}): "
                                 f"{type(e).__name__}: {e}") from e


def build_backend(spec: StationSpec, start_lab: StartLab | None = None) -> InstrumentBackend:
    """The :class:`InstrumentBackend` a station describes; ``start_lab`` starts the virtual
    instruments of a ``virtual: true`` station (the composition root supplies it)."""
    src, st = spec.source, spec.station
    for key in st:
        if key not in STATION_KEYS:
            raise ConfigError(src, f"station.{key}", "unknown key for an instrument station; "
                              f"allowed: {', '.join(sorted(STATION_KEYS))}")
    topology = st.get("topology", "board")
    if topology not in TOPOLOGIES:
        raise ConfigError(src, "station.topology", f"must be one of {', '.join(TOPOLOGIES)}")
    virtual = st.get("virtual", False)
    if not isinstance(virtual, bool):
        raise ConfigError(src, "station.virtual", "must be true or false")
    env_data = st.get("envelope", {}) or {}
    if not isinstance(env_data, Mapping):
        raise ConfigError(src, "station.envelope", "must be a mapping of limits")
    envelope = SafetyEnvelope.from_mapping(env_data, source=f"{src} (station.envelope)")
    if not virtual and "preset" in st:
        raise ConfigError(src, "station.preset", "a simulator preset only applies to a "
                          "virtual station (virtual: true); an instrument station drives a real "
                          "chip: remove it")
    chip_over = st.get("chip", {}) or {}
    if not isinstance(chip_over, Mapping):
        raise ConfigError(src, "station.chip", "must be a mapping of ChipInfo fields")
    chip_over = dict(chip_over)
    if "chip_id" in st:
        chip_id = st["chip_id"]
        if not isinstance(chip_id, str) or not chip_id.strip():
            raise ConfigError(src, "station.chip_id", "must be a non-empty string naming the "
                              "socketed die (its calibration record is keyed by it)")
        if "chip_id" in chip_over and chip_over["chip_id"] != chip_id:
            raise ConfigError(src, "station.chip_id", f"{chip_id!r} disagrees with "
                              f"station.chip.chip_id {chip_over['chip_id']!r}; give one")
        chip_over["chip_id"] = chip_id
    watchdog = st.get("watchdog_s", 0.0)
    if isinstance(watchdog, bool) or not isinstance(watchdog, int | float) or watchdog < 0:
        raise ConfigError(src, "station.watchdog_s", "must be a non-negative number of seconds")
    read_comp = st.get("read_compliance_A")
    if read_comp is not None and (isinstance(read_comp, bool)
                                  or not isinstance(read_comp, int | float)):
        raise ConfigError(src, "station.read_compliance_A", "must be a current in amperes")

    needed = ("board",) if topology == "board" else ("board", "smu", "pulsegen")
    instruments = spec.instruments
    for name in instruments:
        if name not in ROLES:
            raise ConfigError(src, f"instruments.{name}", "instrument names are roles: "
                              "board, smu, pulsegen")
    for role in needed:
        if role not in instruments:
            raise ConfigError(src, f"instruments.{role}", f"topology {topology} needs it")
    parsed: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for role in needed:
        cfg = instruments[role]
        if not isinstance(cfg, Mapping):
            raise ConfigError(src, f"instruments.{role}", "must be a mapping")
        for key in cfg:
            if key not in INSTRUMENT_KEYS:
                raise ConfigError(src, f"instruments.{role}.{key}",
                                  f"unknown key; allowed: {', '.join(sorted(INSTRUMENT_KEYS))}")
        if not virtual and "address" not in cfg:
            raise ConfigError(src, f"instruments.{role}.address", "missing (a VISA resource "
                              "string, or a pyserial URL for the board)")
        if not virtual and not isinstance(cfg["address"], str):
            raise ConfigError(src, f"instruments.{role}.address", "must be a string (a VISA "
                              "resource string, or a pyserial URL for the board), got "
                              f"{cfg['address']!r}; quote it in YAML")
        if virtual and "address" in cfg:
            raise ConfigError(src, f"instruments.{role}.address", "a virtual station's "
                              "addresses come from the virtual lab; remove it")
        t = cfg.get("timeout", 1.0)
        if isinstance(t, bool) or not isinstance(t, int | float) or not t > 0:
            raise ConfigError(src, f"instruments.{role}.timeout", "must be a positive number "
                              "of seconds")
        if "visalib" in cfg and (role == "board" or not isinstance(cfg["visalib"], str)):
            raise ConfigError(src, f"instruments.{role}.visalib", "a VISA library string such "
                              "as '@py' (VISA instruments only)")
        init = cfg.get("init", {}) or {}
        if not isinstance(init, Mapping):
            raise ConfigError(src, f"instruments.{role}.init", "must be a mapping of keyword "
                              "arguments")
        drv = _driver_name(src, role, cfg.get("type"))
        allowed = allowed_init_keys(drv)
        for key in init:
            if key not in allowed:
                raise ConfigError(src, f"instruments.{role}.init.{key}",
                                  f"not a keyword argument of {drv}; allowed: "
                                  f"{', '.join(sorted(allowed))}")
        lf = init.get("line_frequency_Hz", 50)
        if isinstance(lf, bool) or lf not in (50, 60):
            raise ConfigError(src, f"instruments.{role}.init.line_frequency_Hz",
                              f"must be 50 or 60 (Hz), got {lf!r}")
        parsed[role] = (drv, cfg)

    if virtual and start_lab is None:
        raise ConfigError(src, "station.virtual", "this program cannot start virtual "
                          "instruments; open the station with labctl.runs.backends.open_backend")
    lab = start_lab(spec) if virtual and start_lab is not None else None
    suffix = next(_COUNTER)  # QCoDeS instrument names are process-wide: keep them unique
    opened: list[Any] = []

    def cleanup() -> None:
        if lab is not None:
            lab.close()

    try:
        insts: dict[str, Any] = {}
        for role, (drv, cfg) in parsed.items():
            address = lab.addresses[VIRTUAL_PORTS[drv]] if lab is not None else cfg["address"]
            cls = _driver_class(drv)
            kwargs: dict[str, Any] = dict(cfg.get("init", {}) or {})
            if role == "board":
                if "timeout" in cfg:
                    kwargs["timeout_s"] = float(cfg["timeout"])
                inst = _connect(src, role, f"{role}_{suffix}", address, cls, kwargs)
                opened.append(inst)
            else:
                if "timeout" in cfg:
                    kwargs["timeout"] = float(cfg["timeout"])
                visalib = cfg.get("visalib", "@py" if lab is not None else None)
                if visalib is not None:
                    kwargs["visalib"] = visalib
                limit = (envelope.max_sourceline_V if role == "pulsegen" else 0.0)
                kwargs["envelope_voltage_V"] = max(envelope.max_bitline_V, limit)
                if role == "smu":
                    kwargs["envelope_compliance_A"] = envelope.max_compliance_A
                else:
                    kwargs["envelope_max_width_s"] = envelope.max_width_s
                inst = _connect(src, role, f"{role}_{suffix}", address, cls, kwargs)
                opened.append(inst)
                check_identity(src, role, drv, address, inst.idn_info)
                inst.configure()
            insts[role] = inst
        board: FpgaTestBoard = insts["board"]
        chip = chip_from_ident(board.ident, chip_over)
        return InstrumentBackend(
            chip, envelope, board, topology=topology, smu=insts.get("smu"),
            pulsegen=insts.get("pulsegen"), read_compliance_A=read_comp,
            watchdog_s=float(watchdog), on_close=cleanup)
    except BaseException:
        for inst in opened:
            with contextlib.suppress(Exception):
                inst.close()
        cleanup()
        raise
