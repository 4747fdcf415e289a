"""Act on consent withdrawals that arrive in manifest uploads: the pipeline's step after ingest_captures.

A manifest line that gives a subject consent `withdrawn` (a first delivery or a correction of an
earlier line) makes silver.subjects say so; this step erases every such subject, all in one pass,
exactly as `scenelake forget --subject ID` does (jobs/forget.py: every capture they appear in, from
every table, file and version, with the metrics recomputed, a proof scan and a row per subject in
ops.erasures, requested by `pipeline`). With no withdrawn subject it reads silver.subjects once and
commits nothing. Until it runs, the consent policy holds those captures out of gold
(scenelake/consent.py). Runs as `scenelake run withdrawals`.
"""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession

from jobs import forget
from scenelake import delta_io
from scenelake.job import job_main
from scenelake.settings import Settings


def run(spark: SparkSession, settings: Settings, progress=print) -> object:  # type: ignore[no-untyped-def]
    return forget.run_withdrawals(spark, settings, progress)


def main(argv: list[str] | None = None) -> int:
    return job_main("withdrawals", __doc__, run, delta_io.existing_tables, argv)


if __name__ == "__main__":
    sys.exit(main())
