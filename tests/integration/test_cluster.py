"""The cluster profile in miniature (SCENELAKE_ENV=cluster-local, scenelake/cluster.py), for real: a
SeaweedFS object store, a Hive metastore that Spark and Trino share, a Spark standalone master with
two workers and a Trino server on S3, all on loopback ports of this test. The pipeline is submitted
to the master with spark-submit on a generated landing zone uploaded to the store's landing bucket;
the same files go through the embedded profile in the test session's Spark. The two lakes must hold
the same rows and the same metrics. Then faults (a worker lost, the store stopped mid-job), then one
cycle of the Dagster scheduler (orchestration/) over the same lake.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyspark
import pytest
from pyspark.sql import functions as F

import jobs.evaluate as evaluate_job
import jobs.ingest_annotations as annotations_job
import jobs.ingest_captures as captures_job
import jobs.ingest_predictions as predictions_job
from scenelake import delta_io, ingest, objectstore
from scenelake.cluster import LocalCluster
from scenelake.contracts import all_contracts
from scenelake.generator import generate
from scenelake.settings import PROJECT_ROOT, Settings, load_settings
from scenelake.spark import submit_args
from scenelake.trino_client import query
from tests.conftest import MEASURED, TEST_JVM_ARGS, free_port

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

# Three generated captures with a few damaged records: every job has something to publish and to quarantine.
CAPTURES, SEED, DEFECTS = 3, 5, 0.03
METRIC_COLUMNS = ("run_id", "category_id", "ap", "ap50", "ap75", "ar100", "num_ground_truth", "num_predictions")


def cluster_env(root: Path) -> dict[str, str]:
    """The cluster-local profile on this test's own ports, buckets and state folder (as SCENELAKE_*)."""
    return {"SCENELAKE_ENV": "cluster-local",
            "SCENELAKE_SPARK_MASTER": f"spark://127.0.0.1:{free_port()}",
            "SCENELAKE_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "SCENELAKE_METASTORE_URI": f"thrift://127.0.0.1:{free_port()}",
            "SCENELAKE_LAKE_ROOT": "s3a://scenelake-lake/test/lake",
            "SCENELAKE_LANDING_ROOT": "s3a://scenelake-landing/test/landing",
            "SCENELAKE_STATE_DIR": str(root / "state"),
            "SCENELAKE_TRINO_PORT": str(free_port()), "SCENELAKE_TRINO_HEAP": "1500M",
            "SCENELAKE_TRINO_QUERY_MAX_MEMORY_PER_NODE": "512MB",
            "SCENELAKE_TRINO_JVM_OPTIONS": "-XX:TieredStopAtLevel=1", "SCENELAKE_DATA_DOCS": "off"}


def settings_under(env: dict[str, str]) -> Settings:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, dict[str, str], LocalCluster]]:
    root = tmp_path_factory.mktemp("cluster")
    env = cluster_env(root)
    settings = settings_under(env)
    local = LocalCluster(settings)
    try:
        local.up(timeout=300, progress=lambda _m: None)
        yield settings, env, local
        peaks = local.peak_memory_mib()
        trino = local.trino().peak_memory_kib()
        MEASURED["cluster-local peak resident memory"] = ", ".join(
            [f"{part} {mib} MiB" for part, mib in peaks.items()] + ([f"trino {trino // 1024} MiB"] if trino else []))
    finally:
        local.down()


def submit_command(local: LocalCluster, env: dict[str, str], job: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """spark-submit of a job to the cluster's master, as a scheduler runs it: no activated
    virtualenv; SPARK_HOME, the profile and the store's keys (`scenelake cluster env`) in the environment."""
    venv_bin = Path(sys.executable).parent
    dropped = ("PYSPARK_SUBMIT_ARGS", *objectstore.CREDENTIAL_VARIABLES)
    run_env = {k: v for k, v in os.environ.items() if k not in dropped}
    run_env.update({**env, **local.credentials(), "SPARK_HOME": str(Path(pyspark.__file__).parent),
                    "PATH": os.environ.get("PATH", "").replace(f"{venv_bin}:", "")})
    executor_jit = ["--conf", "spark.executor.extraJavaOptions=-XX:TieredStopAtLevel=1"]
    command = [str(venv_bin / "spark-submit"), *submit_args(local.settings), *TEST_JVM_ARGS, *executor_jit,
               "--conf", "spark.driver.memory=1500m", str(PROJECT_ROOT / "jobs" / f"{job}.py"), *args]
    return command, run_env


def submit(local: LocalCluster, env: dict[str, str], job: str, *args: str) -> subprocess.CompletedProcess[str]:
    command, run_env = submit_command(local, env, job, *args)
    return subprocess.run(command, capture_output=True, text=True, env=run_env, timeout=900)


def submit_watched(local: LocalCluster, env: dict[str, str], job: str, args: list[str], when: str,
                   then: Callable[[], object]) -> tuple[int, str]:
    """Submit a job and call `then()` once its output has a line starting with `when` (mid-job);
    returns the exit code and the output (standard output and error, interleaved)."""
    command, run_env = submit_command(local, env, job, *args)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=run_env)
    assert process.stdout is not None
    out: list[str] = []
    fired = False
    for line in process.stdout:
        out.append(line)
        if not fired and line.startswith(when):
            then()
            fired = True
    code = process.wait(timeout=600)
    assert fired, f"never saw {when!r}: {''.join(out)[-3000:]}"
    return code, "".join(out)


def log_files(settings: Settings) -> list[str]:
    """Every Delta log file in the lake bucket: a rerun that commits nothing leaves the set unchanged."""
    return [k for k in objectstore.listing(settings, settings.lake_root) if "/_delta_log/" in k]


def gate_row(row: Sequence[object]) -> tuple[object, ...]:
    """A gate result with its observed number to 12 significant digits: a standard deviation summed
    over the executors' partitions differs from the one-process sum in the last bit (0.18418494055150741
    vs ...44), and nothing else may differ."""
    observed = row[3]
    with contextlib.suppress(ValueError):
        observed = f"{float(str(observed)):.12g}" if observed is not None else None
    return (*row[:3], observed, *row[4:])


def finished_executors(ui: str) -> list[str]:
    with urllib.request.urlopen(f"{ui}/json/", timeout=5) as resp:
        state = json.loads(resp.read())
    return [e["appid"] for e in state.get("finishedexecutors", []) + state.get("executors", [])]


def test_the_pipeline_runs_on_the_cluster_and_equals_the_embedded_run(spark, settings, cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    lake, env, local = cluster
    landing = tmp_path / "landing"
    generate(landing, captures=CAPTURES, seed=SEED, defect_rate=DEFECTS)
    uploaded = objectstore.upload(lake, landing, lake.landing_root)
    assert uploaded == sum(1 for p in landing.rglob("*") if p.is_file())

    started = time.monotonic()
    done = submit(local, env, "pipeline")
    assert done.returncode == 0, done.stderr[-3000:]
    MEASURED["cluster-local pipeline (spark-submit, 3 captures)"] = f"{time.monotonic() - started:.1f} s"

    # The master ran the application with one executor on each of the two workers.
    state = local.master_state() or {}
    apps = [a for a in state.get("completedapps", []) if isinstance(a, dict)]  # type: ignore[union-attr]
    assert len(apps) == 1 and apps[0]["state"] == "FINISHED", apps
    for worker in local.alive_workers():
        assert apps[0]["id"] in finished_executors(str(worker["webuiaddress"])), worker

    # The same landing files through the embedded profile, in the test session's Spark.
    embedded = settings.with_overrides(lake_root=str(tmp_path / "lake"), landing_root=str(landing))
    started = time.monotonic()
    for job in (captures_job, annotations_job, predictions_job, evaluate_job):
        job.run(spark, embedded, progress=ingest.silent)
    MEASURED["embedded jobs on the same files (session Spark)"] = f"{time.monotonic() - started:.1f} s"

    # Every table the embedded run wrote is in the bucket and in Trino (on S3), with the same rows.
    written = [name for name in all_contracts() if delta_io.table_exists(spark, embedded, name)]
    assert {"silver.captures", "silver.predictions", "gold.detection_metrics", "ops.quarantine"} <= set(written)
    objects = objectstore.listing(lake, lake.lake_root)
    assert not [o for o in objects if o.startswith("_trino_metastore/")]  # no metastore of Trino's own
    for name in written:
        layer, table = name.split(".")
        assert f"{layer}/{table}/_delta_log/00000000000000000000.json" in objects, name
        if name == "ops.quality_results":
            continue  # the cluster's pipeline also ran compare and maintain: compared below
        # Spark registered it in the shared metastore (at its s3a:// location; Trino's register_table
        # would have named it s3://), and Trino reads it from there.
        ddl = query(lake, f"show create table delta.{layer}.{table}")[0][0]
        assert f"location = '{lake.table_path(layer, table)}'" in ddl, (name, ddl)
        counted = query(lake, f"select count(*) from delta.{layer}.{table}")[0][0]
        assert counted == delta_io.read_table(spark, embedded, name).count(), name
    # The gates of the four jobs both ran judged the same numbers the same way.
    gates = ["job", "table_name", "expectation", "observed_value", "unexpected_count", "outcome"]
    jobs = "('ingest_captures', 'ingest_annotations', 'ingest_predictions', 'evaluate')"
    on_cluster_gates = sorted((gate_row(r) for r in query(
        lake, f"select {', '.join(gates)} from delta.ops.quality_results where job in {jobs}")), key=repr)
    at_home_gates = sorted((gate_row(r) for r in delta_io.read_table(spark, embedded, "ops.quality_results")
                            .select(*gates).collect()), key=repr)
    assert on_cluster_gates == at_home_gates
    on_cluster = sorted((tuple(r) for r in query(
        lake, f"select {', '.join(METRIC_COLUMNS)} from delta.gold.detection_metrics")), key=repr)
    at_home = sorted((tuple(r) for r in delta_io.read_table(spark, embedded, "gold.detection_metrics")
                      .select(*METRIC_COLUMNS).collect()), key=repr)
    assert on_cluster == at_home and len(at_home) >= 2

    # The same access rules: an analyst reads subject ids masked only.
    subjects = query(lake, "select subject_id from delta.silver.subjects", user="analyst")
    assert subjects and all(str(r[0]).startswith("masked:") for r in subjects)

    # A rerun with nothing new commits nothing.
    before = log_files(lake)
    started = time.monotonic()
    again = submit(local, env, "pipeline")
    MEASURED["cluster-local pipeline rerun, nothing new"] = f"{time.monotonic() - started:.1f} s"
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[ingest_captures] nothing new" in again.stdout
    assert log_files(lake) == before



def metric_rows(lake: Settings, run_id: str) -> list[tuple[object, ...]]:
    sql = f"select {', '.join(METRIC_COLUMNS)} from delta.gold.detection_metrics where run_id = '{run_id}'"
    return sorted((tuple(r) for r in query(lake, sql)), key=repr)


def test_a_lost_worker_and_a_stopped_store_mid_job(cluster) -> None:  # type: ignore[no-untyped-def]
    """Runs after the pipeline test (the same module's cluster and lake). A worker killed while a job
    runs: Spark moves its tasks to the other worker and the job's numbers are the clean run's. The
    store stopped while a job runs: the job stops with a message naming the store, publishes nothing
    half-done, and a rerun once the store is back converges to the clean run's numbers."""
    lake, env, local = cluster
    clean = {run: metric_rows(lake, run) for run in ("person-v1", "person-v2")}
    assert all(clean.values()), "the pipeline test runs first and leaves the lake evaluated"

    code, out = submit_watched(local, env, "evaluate", ["--run", "person-v1"], "[evaluate] matching",
                               lambda: local.stop("worker1", timeout=0.0))
    assert code == 0, out[-3000:]
    assert len(local.alive_workers()) == 1
    assert metric_rows(lake, "person-v1") == clean["person-v1"]
    local.start("worker1")

    code, out = submit_watched(local, env, "evaluate", ["--run", "person-v2"], "[evaluate] matching",
                               lambda: local.stop("store"))
    assert code == 3, out[-3000:]
    assert f"[evaluate] error: the object store at {lake.s3_endpoint} cannot be reached" in out, out[-3000:]
    local.up(timeout=180, progress=lambda _m: None)
    again = submit(local, env, "evaluate", "--run", "person-v2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert metric_rows(lake, "person-v2") == clean["person-v2"]
    assert metric_rows(lake, "person-v1") == clean["person-v1"]


def test_the_scheduler_runs_the_pipeline_as_a_dag_and_a_second_tick_waits(cluster, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Runs after the pipeline's tests (the same module's cluster and lake, evaluated by them). A new
    manifest upload lands in the bucket; one cycle of the Dagster definitions (orchestration/), as its
    daemon runs them, in their own virtualenv: the sensor sees landing files it has not seen and runs
    the DAG, every step submitted to the master with spark-submit, every table an asset, every gate a
    passing check; the upload's captures reach Trino, only the captures step's tables commit (the
    other steps find nothing new) and the metrics stay. The next tick, with the same files, starts
    nothing."""
    from jobs import pipeline

    lake, env, local = cluster
    python = PROJECT_ROOT / ".venv-dagster" / "bin" / "python"
    assert python.exists(), "make setup-cluster installs the scheduler's virtualenv"
    venv_bin = Path(sys.executable).parent
    dropped = ("PYSPARK_SUBMIT_ARGS", *objectstore.CREDENTIAL_VARIABLES)
    run_env = {k: v for k, v in os.environ.items() if k not in dropped}
    faster = [*TEST_JVM_ARGS, "--conf", "spark.driver.memory=1500m",
              "--conf", "spark.executor.extraJavaOptions=-XX:TieredStopAtLevel=1"]
    run_env.update({**env, "DAGSTER_HOME": str(tmp_path), "SCENELAKE_SUBMIT_ARGS": shlex.join(faster),
                    "PATH": os.environ.get("PATH", "").replace(f"{venv_bin}:", "")})
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    def tick() -> dict[str, Any]:
        done = subprocess.run([str(python), "-m", "orchestration.tick", "sensor"], capture_output=True, text=True,
                              env=run_env, cwd=PROJECT_ROOT, timeout=1800)
        assert done.returncode == 0, done.stderr[-4000:]
        return dict(json.loads(done.stdout.splitlines()[-1]))

    kept = [f for f in log_files(lake) if f.startswith(("bronze/", "silver/"))]
    # One capture more, in an upload of its own (the sample manifest's first line, another capture id).
    sample = PROJECT_ROOT / "scenelake" / "sample" / "landing" / "manifests" / "captures-2026-11-01.jsonl"
    upload = tmp_path / "upload" / "manifests" / "scheduled.jsonl"
    upload.parent.mkdir(parents=True)
    line = {**json.loads(sample.read_text().splitlines()[0]), "capture_id": "cap-sched-1"}
    upload.write_text(json.dumps(line) + "\n")
    assert objectstore.upload(lake, tmp_path / "upload", lake.landing_root) == 1
    apps = len((local.master_state() or {}).get("completedapps", []))  # type: ignore[arg-type]
    metrics = {run: metric_rows(lake, run) for run in ("person-v1", "person-v2")}
    started = time.monotonic()
    first = tick()
    MEASURED["scheduler cycle on the cluster (7 steps, one new upload)"] = f"{time.monotonic() - started:.1f} s"
    [run] = first["runs"]
    assert run["success"]
    steps = pipeline.plan()
    shared = {"ops.quarantine", "ops.quality_results"}
    expected = {t.replace(".", "/") for s in steps for t in s["writes"] if t not in shared} | {
        f"pipeline/{s['job']}" for s in steps if not s["writes"]}
    assert set(run["materialized"]) == expected
    gated = {t.replace(".", "/") for s in steps for t in s["writes"] if t not in shared and not t.startswith("bronze.")}
    assert run["checks"] == {t: True for t in gated}
    assert len((local.master_state() or {}).get("completedapps", [])) - apps == len(steps)  # type: ignore[arg-type]
    added = {f.split("/_delta_log/")[0] for f in set(log_files(lake)) - set(kept)
             if f.startswith(("bronze/", "silver/"))}
    assert added == {"bronze/captures", "silver/captures", "silver/subjects"}
    assert query(lake, "select count(*) from delta.silver.captures where capture_id = 'cap-sched-1'") == [[1]]
    assert {run_id: metric_rows(lake, run_id) for run_id in metrics} == metrics

    second = tick()
    assert second == {"kind": "sensor", "skipped": "no new or changed landing files", "runs": []}


def test_a_backfill_by_date_runs_each_landing_day_in_order(spark, trino, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Backfill by date through the Dagster definitions, on the embedded profile (a local landing zone,
    whose files' modification times the test sets: an object store sets them on upload): a backfill of
    two landing days, as Dagster's daemon runs a single-run backfill, submits the captures step once per
    day with --landed-before the next midnight, so each day's manifest is a bronze batch of its own, in
    day order, and a file of a later day waits. The same day backfilled again commits nothing."""
    python = PROJECT_ROOT / ".venv-dagster" / "bin" / "python"
    assert python.exists(), "make setup-cluster installs the scheduler's virtualenv"
    lake = trino.with_overrides(lake_root=str(tmp_path / "lake"), landing_root=str(tmp_path / "landing"))
    folder = tmp_path / "landing" / "manifests"
    folder.mkdir(parents=True)
    sample = (PROJECT_ROOT / "scenelake" / "sample" / "landing" / "manifests" / "captures-2026-11-01.jsonl")
    lines = sample.read_text().splitlines()
    days = {"day-1.jsonl": (lines[:6], "2026-11-02T12:00:00+00:00"),
            "day-2.jsonl": (lines[6:12], "2026-11-03T08:00:00+00:00"),
            "later.jsonl": (lines[12:], "2026-11-05T09:00:00+00:00")}
    for name, (part, landed_at) in days.items():
        (folder / name).write_text("\n".join(part) + "\n")
        stamp = datetime.fromisoformat(landed_at).timestamp()
        os.utime(folder / name, (stamp, stamp))
    venv_bin = Path(sys.executable).parent
    run_env = {k: v for k, v in os.environ.items() if k != "PYSPARK_SUBMIT_ARGS"}
    run_env.update({"SCENELAKE_LAKE_ROOT": lake.lake_root, "SCENELAKE_LANDING_ROOT": lake.landing_root,
                    "DAGSTER_HOME": str(tmp_path), "SCENELAKE_BACKFILL_START": "2026-11-01",
                    "SCENELAKE_SUBMIT_ARGS": shlex.join([*TEST_JVM_ARGS, "--conf", "spark.driver.memory=1500m"]),
                    "PATH": os.environ.get("PATH", "").replace(f"{venv_bin}:", "")})
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    def backfill(first: str, last: str) -> dict[str, Any]:
        done = subprocess.run([str(python), "-m", "orchestration.tick", "backfill", first, last,
                               "--step", "ingest_captures"], capture_output=True, text=True, env=run_env,
                              cwd=PROJECT_ROOT, timeout=900)
        assert done.returncode == 0, done.stderr[-4000:]
        [run] = json.loads(done.stdout.splitlines()[-1])["runs"]
        return dict(run)

    started = time.monotonic()
    run = backfill("2026-11-02", "2026-11-04")
    MEASURED["backfill of 3 landing days, captures step (embedded)"] = f"{time.monotonic() - started:.1f} s"
    assert (run["success"], run["partitions"], set(run["materialized"])) == (
        True, "2026-11-02..2026-11-04", {"bronze/captures", "silver/captures", "silver/subjects"})
    assert run["checks"] == {"silver/captures": True, "silver/subjects": True}
    bronze = delta_io.read_table(spark, lake, "bronze.captures")
    batches = [sorted(r.files) for r in bronze.groupBy("batch_id").agg(
        F.collect_set("source_file").alias("files")).orderBy("batch_id").collect()]
    # 2026-11-04 had no file (its submission found nothing new); the file of 2026-11-05 waits for its day.
    assert batches == [["manifests/day-1.jsonl"], ["manifests/day-2.jsonl"]]
    version = (delta_io.table_version(spark, lake, "bronze.captures"),
               delta_io.table_version(spark, lake, "silver.captures"))

    again = backfill("2026-11-03", "2026-11-03")
    assert again["success"]
    assert (delta_io.table_version(spark, lake, "bronze.captures"),
            delta_io.table_version(spark, lake, "silver.captures")) == version
