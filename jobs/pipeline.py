"""The scheduled pipeline: every ingestion job in order, in one Spark session, then Trino.

captures -> withdrawals (erase the subjects a manifest upload withdrew; jobs/withdrawals.py) ->
annotations (frames) -> predictions (need frames) -> evaluation (gold) -> comparison of each model's
newest run with its previous one (gold.slice_comparisons) -> maintenance (compaction, VACUUM, Trino
statistics; jobs/maintain.py), then every table that exists is registered in Trino.
A job whose quality gate fails stops the pipeline with exit code 1; the tables it did not publish
stay at their previous version.

Every step processes only what is new since it last ran (see each job), so a scheduler can call
this every few minutes (`make submit JOB=pipeline`, cron, an orchestrator); a run with nothing new
commits nothing. `--watch` keeps one Spark session and runs a pass every `--interval` seconds.
"""

from __future__ import annotations

import argparse
import sys
import time

from pyspark.sql import SparkSession

from jobs import compare, evaluate, ingest_annotations, ingest_captures, ingest_predictions, maintain, withdrawals
from jobs.forget import DERIVE
from scenelake import delta_io, quality
from scenelake.contracts import all_contracts
from scenelake.job import job_main, publish
from scenelake.settings import Settings

STEPS = (ingest_captures, withdrawals, ingest_annotations, ingest_predictions, evaluate, compare, maintain)
WATCHED = STEPS[:-1]  # --watch compacts on its own clock (--maintain-every), not every pass
# An erasure runs the other steps again (jobs/forget.py DERIVE) to recompute what the removed captures fed.
assert tuple(step for step in WATCHED if step is not withdrawals) == DERIVE, "jobs/forget.py DERIVE is stale"


def run(spark: SparkSession, settings: Settings, progress=print, watch: bool = False,  # type: ignore[no-untyped-def]
        interval: float = 10.0, maintain_every: float = 3600.0, passes: int | None = None) -> None:
    if not watch:
        for step in STEPS:
            run_step(spark, settings, step, progress)
        return
    # One Spark session for every pass: a pass with nothing new costs a few Delta log reads.
    last_maintained, done = time.monotonic(), 0
    progress(f"[pipeline] watching {settings.landing_root} every {interval:g}s (Ctrl-C stops after the pass)")
    try:
        while passes is None or done < passes:
            started = time.monotonic()
            before = versions(spark, settings)
            steps = list(WATCHED)
            if time.monotonic() - last_maintained >= maintain_every:
                steps.append(maintain)
                last_maintained = time.monotonic()
            try:
                for step in steps:
                    run_step(spark, settings, step, progress)
            except quality.QualityGateFailed as exc:
                progress(f"[pipeline] error: {exc} (watching on; the batch waits for a fix or an acceptance)")
            moved = sorted(n for n, v in versions(spark, settings).items() if v != before.get(n))
            if moved:
                publish(spark, settings, "pipeline", delta_io.existing_tables(spark, settings))
                progress(f"[pipeline] pass {done + 1}: {len(moved)} table(s) changed in "
                         f"{time.monotonic() - started:.1f}s")
            done += 1
            if passes is None or done < passes:
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        progress("[pipeline] stopped")


def plan() -> list[dict[str, object]]:
    """The steps in order with the tables each writes (none named: it may touch any, as withdrawals
    and maintenance do). The scheduler builds its assets from this (orchestration/definitions.py)."""
    return [{"job": step.__name__.rsplit(".", 1)[-1], "writes": list(getattr(step, "WRITES", []))}
            for step in STEPS]


def run_step(spark: SparkSession, settings: Settings, step, progress) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    step.run(spark, settings, progress)
    progress(f"[pipeline] {step.__name__.rsplit('.', 1)[-1]} done in {time.monotonic() - started:.0f}s")


def versions(spark: SparkSession, settings: Settings) -> dict[str, int | None]:
    return {name: delta_io.table_version(spark, settings, name) for name in all_contracts()}


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--watch", action="store_true",
                        help="keep one Spark session and process new landing files as they arrive (each pass "
                             "registers what changed in Trino); Ctrl-C stops")
    parser.add_argument("--interval", type=float, default=10.0, metavar="SECONDS",
                        help="with --watch: seconds between the starts of two passes (default 10)")
    parser.add_argument("--maintain-every", type=float, default=3600.0, metavar="SECONDS",
                        help="with --watch: run the maintenance job at most this often (default 3600)")
    parser.add_argument("--passes", type=int, default=None, metavar="N",
                        help="with --watch: stop after N passes (default: never; for tests and benchmarks)")


def main(argv: list[str] | None = None) -> int:
    return job_main("pipeline", __doc__, run, delta_io.existing_tables, argv, options)


if __name__ == "__main__":
    sys.exit(main())
