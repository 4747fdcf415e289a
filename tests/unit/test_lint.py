"""ruff and mypy stay clean: run by `make test`, so style cannot rot between `make lint` runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scenelake.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("command", [["ruff", "check", "."], ["mypy"]])
def test_tool_is_clean(command: list[str]) -> None:
    done = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
