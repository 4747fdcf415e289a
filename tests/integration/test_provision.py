"""Missing prerequisites are one-line errors that say what to do (provision/setup.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scenelake.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration
SETUP = [sys.executable, str(PROJECT_ROOT / "provision" / "setup.py")]


def setup(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SETUP, *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_missing_jdk25_is_one_actionable_line(tmp_path: Path) -> None:
    done = setup("--only", "check", SCENELAKE_TRINO_JAVA_HOME=str(tmp_path / "jdk-25"))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"scenelake setup: error: JDK 24+ for Trino not found at {tmp_path / 'jdk-25'}: install "
        "a Temurin 25 JDK there, or set SCENELAKE_TRINO_JAVA_HOME to a JDK 25 folder"]


def test_too_old_jdk_for_trino_is_one_actionable_line() -> None:
    jdk17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")
    done = setup("--only", "check", SCENELAKE_TRINO_JAVA_HOME=str(jdk17))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"scenelake setup: error: Trino 476 needs JDK 24+, {jdk17} is JDK 17: set "
        "SCENELAKE_TRINO_JAVA_HOME to a JDK 25 folder"]


def test_unreachable_maven_is_one_actionable_line(tmp_path: Path) -> None:
    """Offline Maven with an empty local repository behaves as Maven Central out of reach."""
    done = setup("--only", "jars", SCENELAKE_CACHE=str(tmp_path / "cache"),
                 SCENELAKE_MVN_ARGS=f"-o -Dmaven.repo.local={tmp_path / 'm2'}")
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("scenelake setup: error: resolving the Delta Lake jars failed (exit 1): "
                           "cannot reach Maven Central: check the network or ~/.m2/settings.xml")
    assert line.endswith(f"(log: {tmp_path / 'cache' / 'logs' / 'maven-delta.log'})")


def test_a_second_setup_downloads_nothing() -> None:
    done = setup()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"[setup] python environment up to date ({PROJECT_ROOT / '.venv'})",
        f"[setup] Delta Lake jars up to date ({PROJECT_ROOT / '.cache' / 'jars'})",
        f"[setup] Trino 476 up to date ({PROJECT_ROOT / '.cache' / 'trino-server-476'})",
        f"[setup] Trino CLI 476 up to date ({PROJECT_ROOT / '.cache' / 'trino-cli.jar'})",
        "[setup] ready"]
