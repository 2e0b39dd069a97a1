"""Protocol files, the runner, the run store, resume and campaigns."""
