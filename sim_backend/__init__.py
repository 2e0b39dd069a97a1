"""The simulated 180 nm 1T1R macro: device, array and periphery models, ``SimBackend``, and
(in ``sim_backend.virtual``) virtual instruments that serve it on loopback."""

from sim_backend.backend import SimBackend
from sim_backend.macro import Macro
from sim_backend.preset import Preset
from sim_backend.presets import load_preset, save_preset

__all__ = ["Macro", "Preset", "SimBackend", "load_preset", "save_preset"]
