"""The ``fast_weights`` routine (see :mod:`labctl.inference.routines`); one module per routine
because the registry (``calibration.ROUTINE_MODULES``) reads one ``ROUTINE`` per module."""

from labctl.inference.routines import FAST_WEIGHTS as ROUTINE

__all__ = ["ROUTINE"]
