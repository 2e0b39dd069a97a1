"""Running protocols: protocol files, the runner, the run store (HDF5), resume, the routine
registry and :func:`labctl.runs.backends.open_backend`, the one composition root that knows
every backend."""
