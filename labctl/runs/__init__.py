"""Protocol files, the runner, the run store, resume."""
