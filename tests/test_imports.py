"""Importing labctl stays cheap: no qcodes, no simulator, no drivers."""

from __future__ import annotations

import subprocess
import sys


def test_import_labctl_does_not_import_qcodes_or_backends() -> None:
    code = ("import sys, labctl, labctl.station, labctl.cli; "
            "bad = [m for m in ('qcodes', 'pyvisa', 'serial', 'sim_backend', 'drivers') "
            "if m in sys.modules]; print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
