"""The schema of station files, as pydantic models: types, physical ranges, allowed keys.

A station file has a ``station`` section — which backend, which chip, its safety envelope —
and, for instrument stations, an ``instruments`` section (role → driver, address, timeout,
driver keyword arguments). :func:`validate_station` checks a whole document against these
models and reports every problem at once (:class:`~labctl.core.errors.ConfigErrors`, dotted keys,
suggestions for misspelt keys); :func:`station_json_schema` is the JSON Schema editors use
(``labctl schema``).

Files are data, never code: no key names a module to import. ``virtual: true`` starts the
one virtual lab labctl ships (the simulated macro behind virtual instruments), chosen by the
composition root, not by the file.

What needs a package above the core is checked there, after this: a simulator preset's
fields (``station.overrides``) by ``sim_backend``, a driver's keyword arguments
(``instruments.<role>.init``) by ``drivers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from labctl.core.envelope import RATED_MAX, SafetyEnvelope
from labctl.core.errors import ConfigError, ConfigErrors
from labctl.core.validation import did_you_mean, key_error, no_control_characters, validate_model

BACKENDS = ("sim", "instruments")
TOPOLOGIES = ("board", "board+smu+pulsegen")
ROLES = ("board", "smu", "pulsegen")
SEED_MAX = 2**63 - 1
"""Seeds are stored as HDF5 int64 attributes and key a 64-bit counter-based generator."""

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

ChipId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"\S",
                              description="the socketed die's id (its calibration record "
                              "is keyed by it)"), AfterValidator(no_control_characters)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX, description="seed of the simulated chip")]
PresetRef = Annotated[str, Field(min_length=1, max_length=4096,
                                 description="a named simulator preset (default_180nm, ideal) "
                                 "or a preset YAML file, relative to the station file")]


def _limit(name: str, doc: str) -> Any:
    default = getattr(SafetyEnvelope(), name)
    return Field(default=default, gt=0, le=RATED_MAX[name],
                 description=f"{doc} (default {default:g}, at most {RATED_MAX[name]:g})")


class Envelope(BaseModel):
    """``station.envelope``: the chip's safety limits (:class:`SafetyEnvelope`), positive and
    within the plausibility bounds :data:`labctl.core.envelope.RATED_MAX`."""

    model_config = _STRICT
    max_bitline_V: float = _limit("max_bitline_V", "largest |V| on a bit line, V")
    max_sourceline_V: float = _limit("max_sourceline_V", "largest |V| on a source line, V")
    max_gate_V: float = _limit("max_gate_V", "largest word-line (gate) voltage, V")
    max_read_V: float = _limit("max_read_V", "largest read or MVM input voltage, V")
    max_width_s: float = _limit("max_width_s", "longest pulse, s")
    min_width_s: float = _limit("min_width_s", "shortest pulse, s")
    max_compliance_A: float = _limit("max_compliance_A", "largest compliance current, A")


class ChipOverrides(BaseModel):
    """What a test board cannot report about the chip (``station.chip``)."""

    model_config = _STRICT
    chip_id: ChipId | None = None
    n_tiles: Annotated[int, Field(ge=1, le=4096)] | None = None
    n_rows: Annotated[int, Field(ge=1, le=65536)] | None = None
    n_cols: Annotated[int, Field(ge=1, le=65536)] | None = None
    g_min_S: Annotated[float, Field(gt=0, le=1.0)] | None = None
    g_max_S: Annotated[float, Field(gt=0, le=1.0)] | None = None
    read_V: Annotated[float, Field(gt=0, le=RATED_MAX["max_read_V"])] | None = None
    read_gate_V: Annotated[float, Field(gt=0, le=RATED_MAX["max_gate_V"])] | None = None
    mvm_input_max_V: Annotated[float, Field(gt=0, le=RATED_MAX["max_read_V"])] | None = None
    dac_bits: Annotated[int, Field(ge=1, le=32)] | None = None
    adc_bits: Annotated[int, Field(ge=1, le=32)] | None = None
    adc_range_A: Annotated[float, Field(gt=0, le=RATED_MAX["max_compliance_A"])] | None = None
    preset: str | None = None


class SimStation(BaseModel):
    """``station`` of a simulated chip, in-process (``backend: sim``)."""

    model_config = _STRICT
    backend: Literal["sim"] = "sim"
    chip_id: ChipId | None = None
    preset: PresetRef = "default_180nm"
    seed: Seed = 0
    envelope: Envelope = Field(default_factory=Envelope)
    overrides: dict[str, Any] = Field(default_factory=dict, description="preset section → "
                                      "changed fields, e.g. {periphery: {ir_drop: true}}")


class InstrumentStation(BaseModel):
    """``station`` of instruments (``backend: instruments``), real or virtual."""

    model_config = _STRICT
    backend: Literal["instruments"]
    topology: Literal[TOPOLOGIES] = "board"  # type: ignore[valid-type]
    virtual: bool = Field(default=False, description="start labctl's virtual lab on "
                          "loopback ports and point every instrument at it")
    preset: PresetRef | None = None
    seed: Seed | None = None
    chip_id: ChipId | None = None
    envelope: Envelope = Field(default_factory=Envelope)
    chip: ChipOverrides = Field(default_factory=ChipOverrides)
    watchdog_s: float = Field(default=0.0, ge=0, le=3600, description="board watchdog, "
                              "seconds (0: off)")
    read_compliance_A: float | None = Field(default=None, gt=0,
                                            le=RATED_MAX["max_compliance_A"],
                                            description="SMU compliance during reads, A")

    @model_validator(mode="after")
    def _virtual_only(self) -> InstrumentStation:
        for key in ("preset", "seed"):
            if getattr(self, key) is not None and not self.virtual:
                raise key_error(key, f"a simulator {key} only applies to a virtual "
                                 "station (virtual: true); an instrument station drives a real "
                                 "chip: remove it")
        if (self.chip_id is not None and self.chip.chip_id is not None
                and self.chip.chip_id != self.chip_id):
            raise key_error("chip_id", f"{self.chip_id!r} disagrees with "
                             f"station.chip.chip_id {self.chip.chip_id!r}; give one")
        return self


class Instrument(BaseModel):
    """One instrument (QCoDeS station-file convention): driver, address, driver kwargs."""

    model_config = _STRICT
    type: str = Field(description="driver class, e.g. FpgaTestBoard, Keithley2450, "
                      "Keithley2600B, Keysight33500B, Keysight81150A")
    address: str | None = Field(default=None, min_length=1, description="VISA resource "
                                "string, or a pyserial URL for the board (quote it in YAML)")
    visalib: str | None = Field(default=None, description="VISA library, e.g. '@py'")
    timeout: float = Field(default=1.0, gt=0, le=600, description="seconds per exchange")
    init: dict[str, Any] = Field(default_factory=dict, description="driver keyword arguments")


class Instruments(BaseModel):
    """``instruments``: the roles an instrument station's topology needs."""

    model_config = _STRICT
    board: Instrument | None = None
    smu: Instrument | None = None
    pulsegen: Instrument | None = None


class StationFile(BaseModel):
    """A whole station file (for the JSON Schema; validation picks the backend's model)."""

    model_config = _STRICT
    station: SimStation | InstrumentStation
    instruments: Instruments = Field(default_factory=Instruments)


def validate_station(data: Mapping[str, Any], source: str) -> tuple[BaseModel, Instruments]:
    """Check a station document; every problem is reported at once. Returns the validated
    ``station`` section (a :class:`SimStation` or :class:`InstrumentStation`) and the
    ``instruments`` section."""
    problems: list[tuple[str, str]] = []
    for key in data:
        if key not in ("station", "instruments"):
            problems.append((str(key), "unknown top-level key"
                             f"{did_you_mean(key, ['station', 'instruments'])}; allowed: "
                             "station, instruments"))
    st = data.get("station")
    if not isinstance(st, Mapping):
        problems.append(("station", "missing, or not a mapping"))
        raise ConfigErrors(source, problems)
    backend = st.get("backend", "sim")
    model: type[BaseModel]
    if backend == "sim":
        model = SimStation
    elif backend == "instruments":
        model = InstrumentStation
    else:
        problems.append(("station.backend", f"must be one of {', '.join(BACKENDS)}"
                         f"{did_you_mean(backend, list(BACKENDS))}; got {backend!r}"))
        raise ConfigErrors(source, problems)
    station: BaseModel | None = None
    instruments = Instruments()
    try:
        station = validate_model(model, dict(st), source, prefix="station")
    except ConfigErrors as e:
        problems.extend(e.problems)
    raw_inst = data.get("instruments")
    if raw_inst is not None and raw_inst != {}:
        if backend == "sim":
            problems.append(("instruments", "a sim station has no instruments; remove it, or "
                             "use backend: instruments"))
        else:
            try:
                instruments = validate_model(Instruments, raw_inst, source,  # type: ignore[assignment]
                                             prefix="instruments")
            except ConfigErrors as e:
                problems.extend(e.problems)
    if problems or station is None:
        raise ConfigErrors(source, problems or [("station", "invalid")])
    if isinstance(station, InstrumentStation):
        _check_roles(station, instruments, source)
    return station, instruments


def _check_roles(st: InstrumentStation, inst: Instruments, source: str) -> None:
    needed = ("board",) if st.topology == "board" else ROLES
    problems: list[tuple[str, str]] = []
    for role in ROLES:
        cfg: Instrument | None = getattr(inst, role)
        if cfg is None:
            if role in needed:
                problems.append((f"instruments.{role}", f"topology {st.topology} needs it"))
            continue
        if not st.virtual and cfg.address is None:
            problems.append((f"instruments.{role}.address", "missing (a VISA resource string, "
                             "or a pyserial URL for the board)"))
        if st.virtual and cfg.address is not None:
            problems.append((f"instruments.{role}.address", "a virtual station's addresses "
                             "come from the virtual lab; remove it"))
        if cfg.visalib is not None and role == "board":
            problems.append((f"instruments.{role}.visalib", "a VISA library string such as "
                             "'@py' (VISA instruments only)"))
    if problems:
        raise ConfigErrors(source, problems)


def station_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a station file, for editors."""
    schema = StationFile.model_json_schema()
    schema["title"] = "labctl station file"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def seed_of(station: Mapping[str, Any], source: str) -> int:
    """The validated seed of a station section (0 when absent)."""
    seed = station.get("seed", 0)
    if seed is None:
        return 0
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(source, "station.seed", "must be an integer from 0 to 2**63 - 1")
    return seed
