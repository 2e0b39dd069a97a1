"""Analog on-chip inference: numpy layers, weight mapping, analog layers and the seed
papers' workloads (neural fields, score-based diffusion, fast weights).

Core package: imports numpy and scipy only, and talks to a chip through the
:class:`labctl.backend.Backend` interface. See REFERENCE.md, "The seed papers' workloads".
"""

from labctl.inference.analog import AnalogLinear, AnalogNetwork, to_analog
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
from labctl.inference.training import Adam, cross_entropy, mse

__all__ = [
    "MLP", "Adam", "AnalogLinear", "AnalogNetwork", "DifferentialMapping", "FourierFeatures",
    "Layer", "Linear", "Param", "ProgramFn", "ReLU", "Region", "ResidualMapping", "SiLU",
    "Sine", "Tanh", "TileAllocator", "WeightNoise", "cross_entropy", "device_noise", "mse",
    "to_analog",
]
