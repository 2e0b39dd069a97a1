"""The three workload routines, for the protocol registry (``labctl.runs.registry``): each
routine object lives in the module named after it (:mod:`labctl.inference.neural_field`,
:mod:`labctl.inference.diffusion`, :mod:`labctl.inference.fast_weights`)."""

from __future__ import annotations

from labctl.core.routine import RoutineSpec
from labctl.inference.diffusion import DIFFUSION
from labctl.inference.fast_weights import FAST_WEIGHTS
from labctl.inference.neural_field import NEURAL_FIELD

__all__ = ["ROUTINES"]

ROUTINES: tuple[RoutineSpec, ...] = (NEURAL_FIELD, DIFFUSION, FAST_WEIGHTS)
