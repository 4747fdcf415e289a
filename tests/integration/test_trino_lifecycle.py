"""`scenelake trino up|down|status` behave as promised: one server, clear errors, exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scenelake.settings import Settings
from scenelake.trino_server import TrinoServer, TrinoServerError
from tests.conftest import free_port

pytestmark = pytest.mark.integration
SCENELAKE = [sys.executable, "-m", "scenelake.cli"]


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SCENELAKE, *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_status_of_a_stopped_server_says_so_and_exits_nonzero(tmp_path: Path) -> None:
    done = cli("trino", "status", SCENELAKE_STATE_DIR=str(tmp_path),
               SCENELAKE_TRINO_PORT=str(free_port()))
    assert done.returncode == 1
    assert done.stdout.startswith("Trino is not running")


def test_up_twice_keeps_one_server(trino: Settings) -> None:
    server = TrinoServer(trino)
    first = server.status()
    assert first.ready
    done = cli("trino", "up")
    assert done.returncode == 0, done.stderr
    assert f"pid {first.pid}" in done.stdout
    assert server.status().pid == first.pid
    assert cli("trino", "status").returncode == 0


def test_a_taken_port_is_a_one_line_error(settings: Settings, tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        done = cli("trino", "up", SCENELAKE_STATE_DIR=str(tmp_path), SCENELAKE_TRINO_PORT=str(port))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"scenelake: error: port {port} is in use by another process: stop it, or set "
        "SCENELAKE_TRINO_PORT to a free port"]


def test_a_missing_jdk_is_a_one_line_error(settings: Settings, tmp_path: Path) -> None:
    server = TrinoServer(settings.with_overrides(state_dir=tmp_path, trino_port=free_port()))
    os.environ["SCENELAKE_TRINO_JAVA_HOME"] = str(tmp_path / "no-jdk")
    try:
        with pytest.raises(TrinoServerError, match="JDK 25 for Trino not found at .*no-jdk: "
                           "install Temurin 25 there or set SCENELAKE_TRINO_JAVA_HOME"):
            server.up(timeout=5)
    finally:
        del os.environ["SCENELAKE_TRINO_JAVA_HOME"]


def test_a_server_that_dies_points_at_its_log(settings: Settings, tmp_path: Path) -> None:
    """A heap too small to start: the error names server.log and the reason in it."""
    server = TrinoServer(settings.with_overrides(state_dir=tmp_path, trino_port=free_port(),
                                                 trino_query_max_memory_per_node="bogus"))
    with pytest.raises(TrinoServerError, match=r"Trino exited while starting: read .*server\.log") as info:
        server.up(timeout=120)
    assert "Invalid value 'bogus'" in str(info.value) and "query.max-memory" in str(info.value), info.value
    assert not server.status().running
