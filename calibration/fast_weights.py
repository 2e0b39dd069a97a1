"""The ``fast_weights`` workload routine (see :mod:`calibration.workloads`); one module per routine
because the registry (``calibration.ROUTINE_MODULES``) reads one ``ROUTINE`` per module."""

from calibration.workloads import FAST_WEIGHTS as ROUTINE

__all__ = ["ROUTINE"]
