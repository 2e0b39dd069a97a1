"""Analog on-chip inference: numpy layers, weight mapping, analog layers and the seed
papers' workloads (neural fields, score-based diffusion, fast weights).

Core package: imports numpy and scipy only, and talks to a chip through the
:class:`labctl.core.backend.Backend` interface. See docs/references.md, "The seed papers'
workloads".

Protocol seams: ``run_neural_field(backend, params)``, ``run_diffusion(backend, params)``,
``run_fast_weights(backend, params)`` — ``params`` a dict or the ``*Params`` dataclass,
``backend=None`` for the float side only, and a ``program_fn(backend, cells,
targets_S)`` for the chip side (the core ships none: the calibration package's forming +
verify-write is ``calibration.weights.make_program_fn()``, which the workload routines in
``calibration.workloads`` and ``labctl bench`` pass; tests pass an ideal programmer). Each
returns a dict of figures and arrays.
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
    require_program_fn,
)
from labctl.inference.neural_field import NFParams, run_neural_field
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
    "WeightNoise",
    "cross_entropy",
    "device_noise",
    "mse",
    "require_program_fn",
    "run_diffusion",
    "run_fast_weights",
    "run_neural_field",
    "to_analog",
]
