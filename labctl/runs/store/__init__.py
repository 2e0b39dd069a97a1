"""The run store: crash-safe HDF5 run files."""
