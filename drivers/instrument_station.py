"""Build an :class:`InstrumentBackend` from a station document (``station.backend:
instruments``).

The ``instruments`` section follows QCoDeS' station-file convention — instrument name →
``type`` (driver class), ``address`` and driver keyword arguments under ``init`` — with the
instrument names fixed to the roles they play: ``board`` (always), ``smu`` and ``pulsegen``
(topology ``board+smu+pulsegen``). Types, ranges and allowed keys are checked by the station
schema (:mod:`labctl.core.station_schema`, every problem at once); this module adds what only
the drivers know: driver class names, the roles they can play and each driver's keyword
arguments under ``init``.

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
from drivers.instrument_backend import InstrumentBackend, chip_from_ident
from labctl.core.envelope import SafetyEnvelope
from labctl.core.errors import CommunicationError, ConfigError, ConfigErrors, RequestRejected
from labctl.core.station_schema import InstrumentStation, validate_station
from labctl.core.station_spec import StationSpec
from labctl.core.validation import did_you_mean

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
    src = spec.source
    station, inst = validate_station({"station": spec.station,
                                      "instruments": spec.instruments or None}, src)
    assert isinstance(station, InstrumentStation)
    virtual = station.virtual
    envelope = SafetyEnvelope.from_mapping(station.envelope.model_dump(),
                                           source=f"{src} (station.envelope)")
    chip_over = {k: v for k, v in station.chip.model_dump().items() if v is not None}
    if station.chip_id is not None:
        chip_over["chip_id"] = station.chip_id
    topology = station.topology
    needed = ("board",) if topology == "board" else ("board", "smu", "pulsegen")
    problems: list[tuple[str, str]] = []
    parsed: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for role in needed:
        cfg = getattr(inst, role)
        try:
            drv = _driver_name(src, role, cfg.type)
        except ConfigError as e:
            problems.append((e.key, e.problem))
            continue
        allowed = allowed_init_keys(drv)
        for key in cfg.init:
            if key not in allowed:
                problems.append((f"instruments.{role}.init.{key}",
                                 f"not a keyword argument of {drv}"
                                 f"{did_you_mean(key, sorted(allowed))}; allowed: "
                                 f"{', '.join(sorted(allowed))}"))
        lf = cfg.init.get("line_frequency_Hz", 50)
        if isinstance(lf, bool) or lf not in (50, 60):
            problems.append((f"instruments.{role}.init.line_frequency_Hz",
                             f"must be 50 or 60 (Hz), got {lf!r}"))
        parsed[role] = (drv, cfg.model_dump(exclude_unset=True))
    if problems:
        raise ConfigErrors(src, problems)
    watchdog = station.watchdog_s
    read_comp = station.read_compliance_A
    if virtual and start_lab is None:
        raise ConfigError(src, "station.virtual", "a virtual station is opened through "
                          "labctl's open_backend, which starts the virtual lab")
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
