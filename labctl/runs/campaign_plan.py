"""What a campaign is: its dies, where each one's files live, and the manifest that says so.

A campaign directory holds::

    DIR/campaign.json            the manifest: protocol, seed, wafer model, one entry per die
    DIR/dies/d007.station.yaml   a simulated die's station (its preset values and chip seed)
    DIR/dies/d007.h5             the die's run file (crash-safe, as any run)
    DIR/dies/d007.outcome.json   how the die's last attempt ended (also failures before a run
                                 file existed)
    DIR/dies/d007.log            what the die's routines printed
    DIR/calibration-records/     the dies' calibration records (one chip id per die)
    DIR/summary.nc               every scalar result of every step, by die (xarray, netCDF)

The manifest is written before any die starts, so a campaign killed at any moment can be
finished with ``labctl run --resume DIR``. Files are data: JSON and YAML, never code.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from labctl.core.errors import ConfigError
from labctl.core.station_spec import StationSpec, load_station

if TYPE_CHECKING:
    from sim_backend.wafer import Die, WaferModel

MANIFEST = "campaign.json"
SUMMARY = "summary.nc"
FORMAT = "labctl-campaign/1"


@dataclass(frozen=True)
class DieEntry:
    """One die of a campaign, as the manifest records it (paths relative to the campaign
    directory, except a real station's file, which stays where the user keeps it)."""

    index: int
    die_id: str
    x_mm: float
    y_mm: float
    seed: int
    station: str
    run_file: str
    chip_id: str

    def path(self, root: Path, name: str) -> Path:
        p = Path(getattr(self, name))
        return p if p.is_absolute() else root / p

    def file(self, root: Path, suffix: str) -> Path:
        """The die's other files: ``.outcome.json``, ``.log``, ``.lock``."""
        return root / "dies" / f"{self.die_id}{suffix}"


@dataclass(frozen=True)
class Manifest:
    campaign_id: str
    created_utc: str
    kind: str
    """``wafer`` (simulated dies) or ``stations`` (one real or virtual chip per station)."""
    protocol_path: str
    protocol_text: str
    seed: int
    wafer: dict[str, Any] | None
    dies: tuple[DieEntry, ...]

    def to_json(self) -> str:
        d = asdict(self)
        d["dies"] = [asdict(e) for e in self.dies]
        return json.dumps({"format": FORMAT, **d}, indent=1)

    @classmethod
    def load(cls, root: Path) -> Manifest:
        p = root / MANIFEST
        if not p.is_file():
            raise ConfigError(str(root), MANIFEST, "not a campaign directory (no manifest); "
                              "start one with labctl run PROTOCOL --dies N --out DIR")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            if d.pop("format", None) != FORMAT:
                raise ValueError(f"format is not {FORMAT}")
            dies = tuple(DieEntry(**e) for e in d.pop("dies"))
            return cls(**d, dies=dies)
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(str(p), "(file)", f"not a readable campaign manifest: {e}") from None

    def save(self, root: Path) -> None:
        write_atomic(root / MANIFEST, self.to_json())


def write_atomic(path: Path, text: str) -> None:
    """Write by rename, so a reader never sees half a file and a kill leaves the old one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _new(kind: str, protocol: Path, seed: int, wafer: dict[str, Any] | None,
         dies: list[DieEntry]) -> Manifest:
    return Manifest(uuid.uuid4().hex, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), kind,
                    str(protocol.resolve()), protocol.read_text(encoding="utf-8"), seed, wafer,
                    tuple(dies))


def plan_wafer(root: Path, protocol: Path, n_dies: int, seed: int,
               base_station: str | Path | None = None) -> Manifest:
    """Draw ``n_dies`` simulated dies around the base station's chip (the default simulated
    chip when ``None``) and write their station files."""
    model, dies = wafer_stations(n_dies, seed, base_station)
    entries = []
    (root / "dies").mkdir(parents=True, exist_ok=True)
    for die, die_id, station in dies:
        spath = Path("dies") / f"{die_id}.station.yaml"
        write_atomic(root / spath, f"# die {die_id} at ({die.x_mm:.1f}, {die.y_mm:.1f}) mm of a "
                     f"simulated wafer (labctl campaign, seed {seed})\n"
                     + yaml.safe_dump(station, sort_keys=False))
        entries.append(DieEntry(die.index, die_id, die.x_mm, die.y_mm, die.seed, str(spath),
                                str(Path("dies") / f"{die_id}.h5"),
                                str(station["station"]["chip_id"])))
    return _new("wafer", protocol, seed, model.to_dict(), entries)


def wafer_stations(n_dies: int, seed: int, base_station: str | Path | None = None
                   ) -> tuple[WaferModel, list[tuple[Die, str, dict[str, Any]]]]:
    """The wafer model and, per die, (die, die id, station document): ``n_dies`` simulated
    dies around the base station's chip, each a station a run or a die function opens."""
    from sim_backend.presets import load_preset
    from sim_backend.wafer import WaferModel, die_preset, wafer_dies

    base = load_station(base_station)
    if base.backend != "sim" or base.station.get("virtual"):
        raise ConfigError(base.source, "station.backend", "--dies simulates dies around a "
                          "simulated chip; for real chips give --stations FILE...")
    st = dict(base.station)
    preset_ref = str(st.get("preset", "default_180nm"))
    if base.path is not None and preset_ref.endswith((".yaml", ".yml")):
        candidate = base.path.parent / preset_ref
        preset_ref = str(candidate.resolve()) if candidate.is_file() else preset_ref
    preset = load_preset(preset_ref)
    base_over: Mapping[str, Any] = st.get("overrides") or {}
    if base_over:
        preset = preset.from_dict(_merge(preset.to_dict(), base_over), source=base.source)
    model = WaferModel()
    prefix = str(st.get("chip_id", "sim-180nm"))
    out = []
    for die in wafer_dies(preset, n_dies, seed, model):
        die_preset(preset, die)  # a die the model cannot build is an error now, not mid-run
        die_id = f"d{die.index:03d}"
        station = {"station": {
            "backend": "sim", "chip_id": f"{prefix}-wafer{seed}-{die_id}", "preset": preset_ref,
            "seed": die.seed,
            **({"envelope": dict(st["envelope"])} if st.get("envelope") else {}),
            "overrides": _merge(dict(base_over), die.overrides)}}
        out.append((die, die_id, station))
    return model, out


def plan_stations(root: Path, protocol: Path, stations: Sequence[str | Path],
                  seed: int) -> Manifest:
    """One die per station file. Two stations that name one instrument address would put
    two workers on one instrument: refused."""
    import numpy as np

    if not stations:
        raise ConfigError("labctl run", "--stations", "give at least one station file")
    specs = [load_station(s) for s in stations]
    seen: dict[str, str] = {}
    for spec in specs:
        for addr in _addresses(spec):
            if addr in seen:
                raise ConfigError(spec.source, "instruments", f"address {addr} is also in "
                                  f"{seen[addr]}: one instrument cannot serve two dies at once")
            seen[addr] = spec.source
    paths = [str(Path(s).resolve()) for s in stations]
    if len(set(paths)) != len(paths):
        raise ConfigError("labctl run", "--stations", "a station file is given twice")
    seeds = [int(s.generate_state(1, np.uint32)[0])
             for s in np.random.SeedSequence(seed).spawn(len(specs))]
    (root / "dies").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (spec, path) in enumerate(zip(specs, paths)):
        die_id = f"d{i:03d}"
        chip = spec.station.get("chip")
        chip_id = str(chip.get("chip_id") if isinstance(chip, Mapping) and "chip_id" in chip
                      else spec.station.get("chip_id", Path(path).stem))
        entries.append(DieEntry(i, die_id, float("nan"), float("nan"), seeds[i], path,
                                str(Path("dies") / f"{die_id}.h5"), chip_id))
    return _new("stations", protocol, seed, None, entries)


def _addresses(spec: StationSpec) -> list[str]:
    out = []
    for inst in spec.instruments.values():
        if isinstance(inst, Mapping) and isinstance(inst.get("address"), str):
            out.append(inst["address"])
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = {**out[k], **v} if isinstance(out.get(k), dict) and isinstance(v, Mapping) \
            else v
    return out
