"""Analog on-chip inference: numpy layers, weight mapping, analog layers and the seed
papers' workloads (neural fields, score-based diffusion, fast weights).

A layer above ``calibration``: talks to a chip through the :class:`labctl.core.backend.Backend`
interface and programs weights with ``calibration.weights`` (forming + verify-write).

Protocol seams: ``run_neural_field(backend, params)``, ``run_diffusion(backend, params)``,
``run_fast_weights(backend, params)`` — ``params`` a dict or the ``*Params`` dataclass,
``backend=None`` for the float side only, and a ``program_fn(backend, cells,
targets_S)`` for the chip side (the routines ``neural_field``, ``diffusion`` and
``fast_weights`` — :mod:`labctl.inference.workload_routines` — and ``labctl bench`` pass
``calibration.weights.make_program_fn()``; tests pass an ideal programmer). Each returns a
dict of figures and arrays.
"""

from labctl.inference.analog import AnalogLinear, AnalogNetwork, to_analog

# the routine objects last: they import calibration.weights, which imports nothing of this
# package (the inference layer sits above calibration)
from labctl.inference.diffusion import DIFFUSION
from labctl.inference.diffusion_run import DiffParams, run_diffusion
from labctl.inference.fast_weight_memory import FWParams, run_fast_weights
from labctl.inference.fast_weights import FAST_WEIGHTS
from labctl.inference.field_recon import NFParams, run_neural_field
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
from labctl.inference.neural_field import NEURAL_FIELD
from labctl.inference.training import Adam, cross_entropy, mse

__all__ = [
    "DIFFUSION",
    "FAST_WEIGHTS",
    "MLP",
    "NEURAL_FIELD",
    "ROUTINES",
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
