"""The ``diffusion`` routine (see :mod:`labctl.inference.routines`); one module per routine
because the registry (``calibration.ROUTINE_MODULES``) reads one ``ROUTINE`` per module."""

from labctl.inference.routines import DIFFUSION as ROUTINE

__all__ = ["ROUTINE"]
