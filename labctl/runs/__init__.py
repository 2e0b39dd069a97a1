"""Protocol runs: the runner, the run store, resume, and campaigns over many dies."""
