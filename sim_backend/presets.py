"""Named presets and preset files.

- ``default_180nm``: the documented defaults (docs/simulator.md), 8 tiles of 256 × 512
  1T1R cells.
- ``ideal``: no variation, relaxation, read or output noise, faults or IR drop, and
  high-resolution converters — for testing algorithms against exact arithmetic.
- any YAML file written by :func:`save_preset` (e.g. a model fitted to a real chip).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from labctl.core import yamlio
from labctl.core.errors import ConfigError
from sim_backend.preset import FaultParams, PeripheryParams, Preset, ReadParams


def default_180nm() -> Preset:
    return Preset(
        name="default_180nm",
        description="Simulated 180 nm 1T1R macro with the documented defaults: 8 tiles of "
        "256 × 512 cells, 1–40 µS window, NeuRRAM-fitted relaxation, read noise 1.5 % white "
        "+ 2.9 % 1/f (3.3 % per read), IR drop, 0.6 % faulty cells, 8-bit DAC, 9-bit ADC.",
    )


def ideal() -> Preset:
    return Preset(
        name="ideal",
        description="Noise-free macro for testing algorithms: no variation, relaxation, read "
        "or output noise, no faults, no IR drop; 16-bit converters.",
        faults=FaultParams(stuck_lrs_rate=0.0, stuck_hrs_rate=0.0, unformable_rate=0.0),
        read=ReadParams(relative_sigma=0.0, floor_sigma_S=0.0, lf_relative_sigma=0.0),
        periphery=PeripheryParams(dac_bits=16, adc_bits=16, output_noise_rel=0.0, ir_drop=False),
        relaxation_on=False,
        variation_on=False,
    )


NAMED = {"default_180nm": default_180nm, "ideal": ideal}


def load_preset(name_or_path: str | Path) -> Preset:
    """A named preset, or a preset YAML file (validated; errors name the key)."""
    key = str(name_or_path)
    if key in NAMED:
        return NAMED[key]()
    path = Path(key)
    if not path.is_file():
        raise ConfigError(key, "preset", f"not a named preset ({', '.join(NAMED)}) nor a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), "(file)", f"cannot read it as UTF-8 text: {e}") from None
    data = yamlio.load(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(str(path), "(top level)", "a preset file must be a mapping")
    data = dict(data)
    data.pop("format", None)
    data.pop("fit", None)  # a fitted preset's standard errors and notes (labctl fit)
    return Preset.from_dict(data, source=str(path))


def save_preset(preset: Preset, path: str | Path) -> None:
    body = {"format": "labctl-preset/1", **preset.to_dict()}
    Path(path).write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
