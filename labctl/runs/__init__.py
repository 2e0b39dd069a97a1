"""Protocols, the runner, run files and the routine registry (the layer above the workloads)."""
