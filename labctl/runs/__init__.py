"""Running protocols: protocol files, the runner, the run store (HDF5), resume, campaigns
over many dies (Dask), the routine registry and :func:`labctl.runs.backends.open_backend`,
the one composition root that knows every backend."""
