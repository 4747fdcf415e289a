"""The entry point every job shares: arguments, session, run, quality-gate exit code, Trino.

A job module defines `run(spark, settings, progress) -> report` and the tables it writes; its
`main()` is one call to `job_main`, so `scenelake run <job>` and `spark-submit jobs/<job>.py`
behave the same for every job.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pyspark.sql import SparkSession

from scenelake import objectstore, quality, views
from scenelake.settings import Settings, SettingsError, load_settings, parse_instant
from scenelake.spark import get_spark
from scenelake.trino_server import refresh_access_rules

Run = Callable[..., Any]


def releases_cache(run: Run) -> Run:
    """Decorate a job's `run` so that it leaves Spark's cache as empty as it found it, however it ends.

    A gate that stops a batch raises past the job's own unpersist calls; in a long-lived session
    (`--watch`, the pipeline, the test suite) every stopped batch's cached DataFrames would otherwise
    stay in the driver's memory, until the heap is all cache and the JVM does little but collect
    garbage. A cache the caller made before the job (the cache was not empty) is left alone."""

    @functools.wraps(run)
    def wrapper(spark: SparkSession, *args: Any, **kwargs: Any) -> Any:
        started_empty = spark._jsparkSession.sharedState().cacheManager().isEmpty()
        try:
            return run(spark, *args, **kwargs)
        finally:
            if started_empty:
                spark.catalog.clearCache()

    return wrapper


def job_main(prog: str, doc: str | None, run: Run, tables: Sequence[str] | Callable[[SparkSession, Settings],
             Sequence[str]], argv: list[str] | None = None,
             options: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """Parse the common flags, run the job, register `tables` (layer.table) in Trino.

    `options` adds the job's own flags; their values reach `run` as keyword arguments.
    Exit codes: 0 published, 1 a quality gate stopped a batch (nothing of it was published), 3 the
    object store could not be reached (the message names it).
    """
    parser = argparse.ArgumentParser(prog=prog, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--register", action=argparse.BooleanOptionalAction, default=True,
                        help="register the written tables in Trino afterwards (default: on)")
    parser.add_argument("--landed-before", metavar="INSTANT", type=_instant,
                        help="read only landing files last modified before INSTANT (ISO 8601, UTC unless it "
                             "says otherwise; a date means its midnight); later files wait for a later run. "
                             "A backfill by date runs the jobs once per day with the next day's midnight")
    if options:
        options(parser)
    args = parser.parse_args(argv)
    extra = {k: v for k, v in vars(args).items() if k not in ("register", "landed_before")}
    settings = load_settings()
    if args.landed_before is not None:
        settings = settings.with_overrides(landed_before=args.landed_before)
    spark = get_spark(prog, settings)

    status = 0
    try:
        run(spark, settings, **extra)
    except quality.QualityGateFailed as exc:
        print(f"[{prog}] error: {exc}", file=sys.stderr)
        status = 1
    except Exception as exc:
        message = objectstore.unreachable(settings, exc)
        if message is None:
            raise
        print(f"[{prog}] error: {message}", file=sys.stderr)
        return 3
    if args.register:
        publish(spark, settings, prog, [] if status else list(tables(spark, settings) if callable(tables) else tables))
    return status


def _instant(text: str) -> datetime:
    try:
        return parse_instant(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def publish(spark: SparkSession, settings: Settings, prog: str, names: list[str]) -> None:
    """Register `names` (and the gate's results) in Trino, refresh the access rules, deploy the views.

    The gate's results are registered even when it stopped a batch: that is when people look."""
    from scenelake import delta_io

    # A table the job did not write yet (gold.tracking_metrics before any tracked capture) is left out.
    names = [t for t in dict.fromkeys([*names, quality.RESULTS, quality.ACCEPTANCES])
             if delta_io.table_exists(spark, settings, t)]
    register(spark, settings, names)
    where = "the shared metastore" if settings.metastore_uri else "Trino"
    print(f"[{prog}] {len(names)} table(s) registered in {where}")
    refresh_access_rules(settings)
    deployed = views.deploy(settings)
    if deployed:
        print(f"[{prog}] {len(deployed)} view(s) deployed: {', '.join(deployed)}")


def register(spark: SparkSession, settings: Settings, names: list[str]) -> None:
    """Make tables Spark wrote queryable in Trino: in the shared metastore (Spark registers them there,
    Trino forgets its cached snapshots), or else in Trino's own metastore (CALL register_table)."""
    from scenelake import delta_io
    from scenelake.trino_client import flush_caches, register_tables

    tables = [(n.split(".")[0], n.split(".")[1]) for n in names]
    if settings.metastore_uri:
        delta_io.register_in_metastore(spark, settings, names)
        flush_caches(settings, tables)
    else:
        register_tables(settings, tables)
