"""One SparkSession and one Trino server for the whole run, on a lake under pytest's tmp dir.

The environment variables are set before anything reads settings, so jobs, the CLI run as a
subprocess and spark-submit all see the same test lake and the test Trino port.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from scenelake.settings import Settings, load_settings

MEASURED: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Resource figures of the run (closing notes quote them)."""
    for what, value in MEASURED.items():
        terminalreporter.write_line(f"{what}: {value}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("scenelake")
    os.environ.update({
        "SCENELAKE_ENV": "embedded",
        "SCENELAKE_LAKE_ROOT": str(root / "lake"),
        "SCENELAKE_LANDING_ROOT": str(root / "landing"),
        "SCENELAKE_STATE_DIR": str(root / "state"),
        "SCENELAKE_TRINO_PORT": os.environ.get("SCENELAKE_TEST_TRINO_PORT", str(free_port())),
        "SCENELAKE_TRINO_HEAP": "2G",
    })
    return load_settings()


@pytest.fixture(scope="session")
def spark(settings: Settings):  # type: ignore[no-untyped-def]
    from scenelake.spark import get_spark

    session = get_spark("scenelake-tests", settings, extra_conf={"spark.driver.memory": "2g"})
    driver_pid = session.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    yield session
    status = Path(f"/proc/{driver_pid}/status")
    if status.exists():
        peak = next(ln for ln in status.read_text().splitlines() if ln.startswith("VmHWM:"))
        MEASURED["Spark driver peak resident memory"] = f"{int(peak.split()[1]) / 1024:.0f} MiB"
    session.stop()


@pytest.fixture(scope="session")
def trino(settings: Settings) -> Iterator[Settings]:
    """The real Trino server, started once; yields the settings that reach it."""
    from scenelake.trino_server import TrinoServer

    server = TrinoServer(settings)
    server.up(timeout=240)
    yield settings
    peak = server.peak_memory_kib()
    if peak:
        MEASURED["Trino peak resident memory"] = f"{peak / 1024:.0f} MiB"
    server.down()


@pytest.fixture
def table_dir(tmp_path: Path) -> Path:
    return tmp_path
