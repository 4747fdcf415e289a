"""The pipeline as a Dagster DAG: one multi-asset per step of jobs/pipeline.py (its tables are the
assets), an asset check per gated table (the latest quality gate on it, from ops.quality_results),
a schedule, a sensor on new landing files, retries with exponential backoff, and backfill by date.

Backfill by date: the assets are partitioned by landing day (UTC). A run for days D1..Dn (one run,
Dagster's single-run backfill policy) runs each step that lands files (writes a bronze table) once
per day, in order, with `--landed-before` the next day's midnight, so each day's files become a
batch of their own as they would have on that day; the other steps run once after them. A day
that is run again finds nothing new and commits nothing. The schedule and the sensor ask for
today's partition, whose window holds everything landed so far.

Why Dagster (and not Airflow): the lake is a set of tables, and Dagster's unit is the asset (a
table) with checks attached, which is what the gates are; it runs in one process for a test or
with its daemon for schedules and sensors, with no database server to stand up. Airflow would
need its scheduler, API server and metadata database on this 2-core machine for the same DAG.

Runs in its own virtualenv (.venv-dagster, orchestration/requirements.txt). Each step is submitted
with spark-submit from the pipeline's virtualenv with `scenelake submit-args`, in the environment
this process has (SCENELAKE_ENV and SCENELAKE_* overrides), exactly as a person would submit it.
Every step processes only what is new (see each job), so a retried or repeated run converges and a
run with nothing new commits nothing.

    .venv-dagster/bin/dagster dev -f orchestration/definitions.py      # the UI, schedule and sensor
    .venv-dagster/bin/python -m orchestration.tick sensor                # one cycle, as the daemon runs it
    .venv-dagster/bin/python -m orchestration.tick backfill 2026-11-01 2026-11-07   # days in order, one run
"""

import hashlib
import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

PROJECT = Path(__file__).resolve().parents[1]
PIPELINE_BIN = Path(os.environ.get("SCENELAKE_VENV", PROJECT / ".venv")) / "bin"
# Written by several steps (each appends its own rows): recorded in each step's log, not an asset.
SHARED = {"ops.quarantine", "ops.quality_results"}
# A step that fails for a passing reason (the store restarting, a lost executor beyond Spark's own
# retries) runs again after 30 s, then 60 s. A stopped quality gate is not retried: it needs a fix.
RETRY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL)
# scenelake.job.job_main's exit code when a gate stopped a batch (it then prints "[job] error: ...";
# an uncaught error exits with 1 too, without that line, and is retried).
GATE_STOPPED = 1
# Landing days (UTC) from SCENELAKE_BACKFILL_START (the first day a backfill can name) to today:
# end_offset=1 makes today a partition, so the hourly schedule and the sensor run today's.
DAYS = dg.DailyPartitionsDefinition(start_date=os.environ.get("SCENELAKE_BACKFILL_START", "2026-01-01"),
                                    end_offset=1, timezone="UTC")


def scenelake(*args: str) -> str:
    done = subprocess.run([str(PIPELINE_BIN / "scenelake"), *args], capture_output=True, text=True, cwd=PROJECT)
    if done.returncode != 0:
        raise dg.Failure(f"scenelake {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def submit_env(env: str) -> dict[str, str]:
    """This process's environment, plus the pipeline's virtualenv for spark-submit (and, on the local
    cluster, the object store's keys, which spark-submit's JVM needs before any of our code runs)."""
    python = PIPELINE_BIN / "python"
    spark_home = subprocess.run([str(python), "-c", "import os, pyspark; print(os.path.dirname(pyspark.__file__))"],
                                capture_output=True, text=True, check=True).stdout.strip()
    run_env = {**os.environ, "SPARK_HOME": spark_home, "PYSPARK_PYTHON": str(python)}
    if env == "cluster-local":
        for line in scenelake("cluster", "env").splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            run_env[name] = value.strip("'\"")
    return run_env


def asset_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(table.split("."))


def owned(step: dict[str, Any]) -> list[dg.AssetKey]:
    """The assets of a step: the tables only it writes, or the step itself when it may touch any."""
    tables = [t for t in step["writes"] if t not in SHARED]
    return [asset_key(t) for t in tables] if tables else [dg.AssetKey(["pipeline", step["job"]])]


def windows(step: dict[str, Any], days: list[str]) -> list[str]:
    """The --landed-before of each submission of a step for a run of `days` (in order): a step that
    lands files runs once per day, any other once, after the last day."""
    ends = [(date.fromisoformat(day) + timedelta(days=1)).isoformat() for day in days]
    lands = any(t.startswith("bronze.") for t in step["writes"])
    return ends if lands else ends[-1:]


def step_assets(step: dict[str, Any], upstream: list[dg.AssetKey], env: str) -> dg.AssetsDefinition:
    specs = [dg.AssetSpec(key, deps=upstream, group_name="scenelake", kinds={"spark", "delta"}, partitions_def=DAYS,
                          description=f"written by jobs/{step['job']}.py") for key in owned(step)]

    @dg.multi_asset(name=step["job"], specs=specs, retry_policy=RETRY, partitions_def=DAYS,
                    backfill_policy=dg.BackfillPolicy.single_run())
    def run_step(context: AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        said: list[str] = []
        for before in windows(step, sorted(context.partition_keys)):
            said += submit(context, step, env, before)
        for spec in specs:
            yield dg.MaterializeResult(asset_key=spec.key, metadata={"log": "\n".join(said[-20:])})

    return run_step


def submit(context: AssetExecutionContext, step: dict[str, Any], env: str, before: str) -> list[str]:
    """spark-submit one job with a landing window; its progress lines, or a Failure."""
    args = scenelake("submit-args").split()
    # SCENELAKE_SUBMIT_ARGS: more spark-submit options for this deployment (memory, JVM flags).
    extra = shlex.split(os.environ.get("SCENELAKE_SUBMIT_ARGS", ""))
    command = [str(PIPELINE_BIN / "spark-submit"), *args, *extra, str(PROJECT / "jobs" / f"{step['job']}.py"),
               "--landed-before", before]
    context.log.info(f"submitting jobs/{step['job']}.py --landed-before {before} to "
                     f"{args[args.index('--master') + 1]}")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=submit_env(env), cwd=PROJECT)
    assert process.stdout is not None
    said, tail = [], []
    for line in process.stdout:
        tail = [*tail[-39:], line.rstrip()]
        if line.startswith("["):  # the job's own progress, not Spark's
            said.append(line.rstrip())
            context.log.info(line.rstrip())
    code = process.wait()
    if code == GATE_STOPPED and any(line.startswith(f"[{step['job']}] error:") for line in said):
        raise dg.Failure(f"jobs/{step['job']}.py: a quality gate stopped a batch (see ops.quality_results "
                         "and the log): fix the files or accept the batch, then rerun",
                         allow_retries=False, metadata={"log": "\n".join(said[-40:])})
    if code != 0:
        raise dg.Failure(f"jobs/{step['job']}.py exited with {code}: {' | '.join(tail[-8:])}",
                         metadata={"log": "\n".join(tail)})
    return said


def gate_check(table: str, trino: dict[str, Any]) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=asset_key(table), name="quality_gate", blocking=True,
                    description="The latest quality gate on this table published or accepted its batch")
    def check() -> dg.AssetCheckResult:
        import trino as client

        conn = client.dbapi.connect(host=trino["host"], port=trino["port"], user=trino["user"],
                                    catalog=trino["catalog"])
        try:
            cur = conn.cursor()
            cur.execute("select gate_run_id, outcome, checked_at, count_if(not success and severity = 'fail') "
                        "from ops.quality_results where table_name = ? "
                        "group by gate_run_id, outcome, checked_at order by checked_at desc limit 1", [table])
            rows = cur.fetchall()
        finally:
            conn.close()
        if not rows:
            return dg.AssetCheckResult(passed=True, metadata={"gate": "no batch judged yet"})
        gate, outcome, at, failed = rows[0]
        return dg.AssetCheckResult(passed=outcome in ("published", "accepted"),
                                   metadata={"gate_run_id": gate, "outcome": outcome, "checked_at": str(at),
                                             "failed expectations": failed})

    return check


def build() -> dg.Definitions:
    plan = json.loads(scenelake("plan"))
    assets, upstream = [], []
    for step in plan["steps"]:
        assets.append(step_assets(step, upstream, plan["env"]))
        upstream = owned(step)
    gated = [t for step in plan["steps"] for t in step["writes"]
             if t not in SHARED and not t.startswith("bronze.")]
    checks = [gate_check(t, plan["trino"]) for t in gated]
    pipeline = dg.define_asset_job("pipeline", selection=dg.AssetSelection.all(),
                                   description="jobs/pipeline.py as a DAG")

    @dg.sensor(job=pipeline, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
    def new_landing_files(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        """A run when the landing zone's files (names and sizes) changed since the last run it asked for."""
        listing = scenelake("landing-files")
        digest = hashlib.sha256(listing.encode()).hexdigest()[:16]
        if digest == context.cursor:
            return dg.SkipReason("no new or changed landing files")
        files = len(listing.splitlines())
        return dg.SensorResult(run_requests=[dg.RunRequest(run_key=digest, tags={"landing_files": str(files)},
                                                           partition_key=DAYS.get_last_partition_key())],
                               cursor=digest)

    @dg.schedule(name="pipeline_hourly", job=pipeline, cron_schedule="0 * * * *",
                 default_status=dg.DefaultScheduleStatus.RUNNING)
    def every_hour(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        """Today's partition every hour (everything landed so far that no run has read)."""
        return dg.RunRequest(partition_key=DAYS.get_last_partition_key())
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=[pipeline], schedules=[every_hour],
                          sensors=[new_landing_files])


defs = build()
