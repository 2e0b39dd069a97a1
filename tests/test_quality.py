"""Static checks run as tests, so the README's one test command runs all of them:
ruff (lint), mypy (types) and import-linter (the layer contracts of docs/design.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return found


@pytest.mark.parametrize("cmd", [["ruff", "check", "."], ["mypy"], ["lint-imports"]],
                         ids=["ruff", "mypy", "import-linter"])
def test_static_check(cmd: list[str]) -> None:
    r = subprocess.run([_tool(cmd[0]), *cmd[1:]], capture_output=True, text=True, cwd=ROOT,
                       timeout=900)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
