"""Bench section ``runs``: what a user waits for and keeps when running the quickstart.

- ``quickstart_wall_s``: wall time of ``labctl run protocols/quickstart.yaml`` on the
  simulated chip, in this process (interpreter start-up and imports excluded), with progress
  off and the run file and calibration record in a temporary folder;
- ``quickstart_run_file_MB``: the size of the run file it wrote (MB = 10⁶ bytes).

These are the run time the docs quote for the quickstart (``labctl docs``). ``quick`` does
not shorten the protocol: the quickstart is the quickstart. The section reports the
protocol's steps as they finish, through a progress subscriber of the runner.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from pathlib import Path

from labctl.runs.progress import NoProgress, ProgressFn
from labctl.runs.protocol import load_protocol
from labctl.runs.runner import RunOptions, load_registry
from labctl.runs.runner import run as run_protocol

QUICKSTART = Path(__file__).resolve().parents[3] / "protocols" / "quickstart.yaml"


class _StepsDone(NoProgress):
    """Turns the runner's step tasks into the section's ``progress(done, total)``."""

    def __init__(self, progress: ProgressFn, n_steps: int) -> None:
        self.report, self.n_steps, self.done = progress, n_steps, 0

    def end(self, key: str) -> None:
        self.done += 1
        self.report(self.done, self.n_steps, "quickstart steps")


def run(quick: bool = False, progress: ProgressFn | None = None) -> dict[str, float]:
    if not QUICKSTART.is_file():
        raise FileNotFoundError(f"{QUICKSTART} not found: the runs section times the "
                                "repository's quickstart protocol; run labctl bench from a "
                                "checkout of the repository")
    n_steps = len(load_protocol(QUICKSTART, load_registry()).steps)
    steps = (_StepsDone(progress, n_steps),) if progress is not None else ()
    with tempfile.TemporaryDirectory(prefix="labctl-bench-runs-") as tmp:
        out = Path(tmp) / "quickstart.h5"
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the report step's table
            outcome = run_protocol(RunOptions(protocol=str(QUICKSTART), out=str(out),
                                              calibration_dir=str(Path(tmp) / "cal"),
                                              progress="off", interactive=False,
                                              subscribers=steps))
        wall_s = time.perf_counter() - t0
        if outcome.status != "completed":
            raise RuntimeError(f"quickstart ended {outcome.status}: {outcome.message}")
        size_MB = out.stat().st_size / 1e6
    return {"quickstart_wall_s": wall_s, "quickstart_run_file_MB": size_MB}
