"""The scheduled pipeline: every ingestion job in order, in one Spark session, then Trino.

captures -> annotations (frames) -> predictions (need frames) -> evaluation (gold) -> comparison of
each model's newest run with its previous one (gold.slice_comparisons) -> maintenance (compaction,
VACUUM, Trino statistics; jobs/maintain.py), then every table that exists is registered in Trino.
A job whose quality gate fails stops the pipeline with exit code 1; the tables it did not publish
stay at their previous version.
"""

from __future__ import annotations

import sys
import time

from pyspark.sql import SparkSession

from jobs import compare, evaluate, ingest_annotations, ingest_captures, ingest_predictions, maintain
from scenelake import delta_io
from scenelake.contracts import all_contracts
from scenelake.job import job_main
from scenelake.settings import Settings

STEPS = (ingest_captures, ingest_annotations, ingest_predictions, evaluate, compare, maintain)


def run(spark: SparkSession, settings: Settings, progress=print) -> None:  # type: ignore[no-untyped-def]
    for step in STEPS:
        started = time.monotonic()
        step.run(spark, settings, progress)
        progress(f"[pipeline] {step.__name__.rsplit('.', 1)[-1]} done in {time.monotonic() - started:.0f}s")


def existing_tables(spark: SparkSession, settings: Settings) -> list[str]:
    return [name for name in all_contracts() if delta_io.table_exists(spark, settings, name)]


def main(argv: list[str] | None = None) -> int:
    return job_main("pipeline", __doc__, run, existing_tables, argv)


if __name__ == "__main__":
    sys.exit(main())
