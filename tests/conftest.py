"""One SparkSession and one Trino server for the whole run, on a lake under pytest's tmp dir.

The environment variables are set before anything reads settings, so jobs, the CLI run as a
subprocess and spark-submit all see the same test lake and the test Trino port.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scenelake.settings import Settings, load_settings

MEASURED: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Resource figures of the run (closing notes quote them)."""
    for what, value in MEASURED.items():
        terminalreporter.write_line(f"{what}: {value}")


# Modules that share a session-scoped lake run in the same test process, so each lake is built once.
SHARED_LAKES = {"test_conservation": "faulty_lake", "test_curated_views": "faulty_lake",
                "test_evaluation_slices": "faulty_lake", "test_consent": "faulty_lake",
                "test_evaluation_oracles": "oracle_lake", "test_oracle_import": "oracle_lake",
                "test_quality_gates": "clean_lake"}
# The work units that take longest (measured with --durations) start first, so that the two test
# processes finish together rather than one waiting for the other's last long module. Order only.
LONGEST_FIRST = ("clean_lake", "faulty_lake", "test_access_probe", "test_ingest_captures_pipeline",
                 "test_comparison", "test_compare", "test_coco_fidelity", "oracle_lake", "test_access_control")


def work_unit(nodeid: str) -> str:
    """The unit of work a test belongs to under `make test`: its module, or the shared lake's name."""
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    return SHARED_LAKES.get(module, module)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `pytest -n N --dist loadscope` (make test), a work unit goes whole to one process, so its
    module fixtures and shared lake are built once. (xdist's own `loadgroup` marks tests by rewriting
    their node ids, which pytest 9 no longer lets it do: it silently ran every module in pieces.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnitScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest work units first (with --no-loadscope-reorder, xdist keeps this order)."""
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Tables in tests hold tens to thousands of rows: Spark's fixed costs per query dominate, so the test
# session trims them. None of these changes what a query returns.
TEST_SPARK_CONF = {
    # One reduce task per shuffle, one task to rebuild a Delta snapshot.
    "spark.sql.shuffle.partitions": "1",
    "spark.databricks.delta.snapshotPartitions": "1",
    # conf/embedded.toml keeps Spark's status store small (spark.sql.ui.retainedExecutions): with
    # Spark's 1000 retained executions the quality gates' module alone made 43 full collections of
    # the 2 GiB heap (28.5 s), with 20 it makes 6 (3.8 s).
}
# Also for the jobs tests start as subprocesses (pyspark reads PYSPARK_SUBMIT_ARGS when it launches
# the JVM; conf/embedded.toml does not set these keys). Compiling generated Java for every plan costs
# more than interpreting a few rows, and a short-lived JVM gains from the JIT's quick tier only. That
# tier alone gets a 48 MiB code cache, which a test process fills within a minute (the JVM then logs
# "CodeCache is full. Compiler has been disabled" and interprets every method it meets later): 512 MiB
# keeps the compiler on for the whole run (the gates' clean lake: 94.5 s -> 80.2 s).
# Adaptive query execution re-plans every query at each stage boundary, which pays at scale and costs
# on a few rows; and the parallel collector does its work in the pauses, where G1 also runs concurrent
# threads that compete with the test's own on 2 cores. The faulty lake's four jobs (alone on the machine,
# three runs each): 86-88 s with both as Spark defaults, 78-81 s without AQE, 71-73 s without AQE on the
# parallel collector.
# The spark-submit tests (tests/integration/test_cluster.py) pass the same arguments.
TEST_JVM_ARGS = ["--conf", "spark.sql.codegen.wholeStage=false", "--conf", "spark.sql.codegen.factoryMode=NO_CODEGEN",
                 "--conf", "spark.sql.adaptive.enabled=false",
                 "--driver-java-options", "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=512m -XX:+UseParallelGC"]
TEST_SUBMIT_ARGS = shlex.join([*TEST_JVM_ARGS, "pyspark-shell"])


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
        # The quick JIT tier only, as for Spark below: the test server lives minutes and runs small
        # queries, so compiling for peak speed costs more than it gives (measured alone: start-up
        # 23 s of CPU -> 14 s, 20 small queries 6.3 s -> 4.6 s, idle 1.6 -> 0.7 s per 20 s).
        "SCENELAKE_TRINO_JVM_OPTIONS": "-XX:TieredStopAtLevel=1",
        # Rendering a gate's HTML report costs about half a second per gate (hundreds in the suite);
        # test_quality_gates turns it on for the test that checks the report.
        "SCENELAKE_DATA_DOCS": "off",
        "PYSPARK_SUBMIT_ARGS": os.environ.get("PYSPARK_SUBMIT_ARGS", TEST_SUBMIT_ARGS),
    })
    return load_settings()


@pytest.fixture(scope="session")
def spark(settings: Settings):  # type: ignore[no-untyped-def]
    from scenelake.spark import get_spark

    session = get_spark("scenelake-tests", settings, extra_conf={"spark.driver.memory": "2g", **TEST_SPARK_CONF})
    driver_pid = session.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    yield session
    beans = session.sparkContext._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    MEASURED["Spark driver garbage collection"] = ", ".join(
        f"{b.getName()} {b.getCollectionCount()}x {b.getCollectionTime() / 1000:.1f} s" for b in beans)
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


def run_cli(settings: Settings, *args: str) -> None:
    env = {**os.environ, "SCENELAKE_LANDING_ROOT": settings.landing_root}
    done = subprocess.run([sys.executable, "-m", "scenelake.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="session")
def oracle_lake(spark, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:  # type: ignore[no-untyped-def]
    """The COCO and MOT oracle data imported through `scenelake import` and ingested into silver."""
    import jobs.ingest_annotations as annotations_job
    import jobs.ingest_predictions as predictions_job
    from scenelake import ingest
    from tests.oracles import ORACLES, require_oracles

    require_oracles()
    root = tmp_path_factory.mktemp("oracle")
    lake = settings.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    coco = ORACLES / "coco-val2014-100"
    run_cli(lake, "import", "coco", "--annotations", str(coco / "ground_truth.json"),
              "--results", str(coco / "predictions_bbox.json"), "--dataset", "coco-val2014-100",
              "--run-id", "coco-fakebbox", "--model-name", "fakebbox", "--model-version", "1")
    for seq in ("TUD-Campus", "TUD-Stadtmitte"):
        run_cli(lake, "import", "mot", "--gt", str(ORACLES / "mot15-tud" / seq / "gt.txt"),
                  "--results", str(ORACLES / "mot15-tud" / seq / "test.txt"), "--sequence", seq,
                  "--run-id", "mot15-tracker")
    annotations_job.run(spark, lake, progress=ingest.silent)
    predictions_job.run(spark, lake, progress=ingest.silent)
    return lake


@pytest.fixture(scope="session")
def clean_lake(spark, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:  # type: ignore[no-untyped-def]
    """A clean generated landing zone (6 captures, seed 3, no faults) ingested into silver, not evaluated.
    Tests that change it work on a copy (`copy_lake`): the quality gates'."""
    import jobs.ingest_annotations as annotations_job
    import jobs.ingest_captures as captures_job
    import jobs.ingest_predictions as predictions_job
    from scenelake import ingest
    from scenelake.generator import generate

    root = tmp_path_factory.mktemp("clean")
    lake = settings.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    generate(Path(lake.landing_root), captures=6, seed=3, defect_rate=0.0)
    for job in (captures_job, annotations_job, predictions_job):
        job.run(spark, lake, progress=ingest.silent)
    return lake


def copy_lake(lake: Settings, root: Path) -> Settings:
    """A private copy of a lake and its landing zone under `root`."""
    import shutil

    copy = lake.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    shutil.copytree(lake.lake_root, copy.lake_root)
    shutil.copytree(lake.landing_root, copy.landing_root)
    return copy


@pytest.fixture(scope="session")
def faulty_lake(spark, settings: Settings, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A generated landing zone with planted faults (8 captures, seed 32, 5% of records damaged), ingested
    and evaluated; yields the lake's settings and the generator's ledger of faults.

    Shared by the conservation tests, the curated views' and slices' tests and (on a copy) the consent
    policy's, so the suite ingests and evaluates it once.
    Seed 32 because its tracked captures (gen-00003, gen-00005) have every subject's consent
    granted, so they are evaluated, while one capture is held out as pending and one as withdrawn.
    """
    import jobs.evaluate as evaluate_job
    import jobs.ingest_annotations as annotations_job
    import jobs.ingest_captures as captures_job
    import jobs.ingest_predictions as predictions_job
    from scenelake import ingest
    from scenelake.generator import generate

    root = tmp_path_factory.mktemp("generated")
    lake = settings.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    ledger = generate(Path(lake.landing_root), captures=8, seed=32, defect_rate=0.05)
    for job in (captures_job, annotations_job, predictions_job, evaluate_job):
        job.run(spark, lake, progress=ingest.silent)
    return lake, ledger.entries
