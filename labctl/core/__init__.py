"""The floor every other layer stands on: the backend interface, chip types, the safety
envelope, cells, clocks, the ledger, errors, routine parameters, the routine seam, station
specs and the per-chip calibration record. Imports nothing of labctl above it."""
