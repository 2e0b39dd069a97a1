"""Analog on-chip inference: numpy layers, weight mapping, analog layers and the seed
papers' workloads (neural fields, score-based diffusion, fast weights).

Core package: imports numpy and scipy only, and talks to a chip through the
:class:`labctl.backend.Backend` interface. See REFERENCE.md, "The seed papers' workloads".

Protocol seams: ``run_neural_field(backend, params)``, ``run_diffusion(backend, params)``,
``run_fast_weights(backend, params)`` — ``params`` a dict or the ``*Params`` dataclass,
``backend=None`` for the float side only, an optional ``program_fn(backend, cells,
targets_S)`` (default: :data:`default_program_fn`, a stand-in batched verify-write until
the calibration package's is wired in). Each returns a dict of figures and arrays.
"""

from labctl.inference.analog import AnalogLinear, AnalogNetwork, to_analog
from labctl.inference.diffusion_run import DiffParams, run_diffusion
from labctl.inference.fast_weights import FWParams, run_fast_weights
from labctl.inference.layers import (
    MLP,
    FourierFeatures,
    Layer,
    Linear,
    Param,
    ReLU,
    SiLU,
    Sine,
    Tanh,
    WeightNoise,
)
from labctl.inference.mapping import (
    DifferentialMapping,
    ProgramFn,
    Region,
    ResidualMapping,
    TileAllocator,
    device_noise,
)
from labctl.inference.neural_field import NFParams, run_neural_field
from labctl.inference.programming import VerifyWrite, default_program_fn
from labctl.inference.training import Adam, cross_entropy, mse

__all__ = [
    "MLP",
    "Adam",
    "AnalogLinear",
    "AnalogNetwork",
    "DiffParams",
    "DifferentialMapping",
    "FWParams",
    "FourierFeatures",
    "Layer",
    "Linear",
    "NFParams",
    "Param",
    "ProgramFn",
    "ReLU",
    "Region",
    "ResidualMapping",
    "SiLU",
    "Sine",
    "Tanh",
    "TileAllocator",
    "VerifyWrite",
    "WeightNoise",
    "cross_entropy",
    "default_program_fn",
    "device_noise",
    "mse",
    "run_diffusion",
    "run_fast_weights",
    "run_neural_field",
    "to_analog",
]
