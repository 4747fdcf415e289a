"""The scheduled pipeline: every ingestion job in order, in one Spark session, then Trino.

captures -> annotations (frames) -> predictions (need frames), then every table is registered
in Trino. A job whose quality gate fails stops the pipeline with exit code 1; the tables it
did not publish stay at their previous version.
"""

from __future__ import annotations

import argparse
import sys
import time

from jobs import ingest_annotations, ingest_captures, ingest_predictions
from scenelake import quality
from scenelake.contracts import all_contracts
from scenelake.settings import load_settings
from scenelake.spark import get_spark

STEPS = (ingest_captures, ingest_annotations, ingest_predictions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--register", action=argparse.BooleanOptionalAction, default=True,
                        help="register every table in Trino at the end (default: on)")
    args = parser.parse_args(argv)
    settings = load_settings()
    spark = get_spark("pipeline", settings)
    for step in STEPS:
        name = step.__name__.rsplit(".", 1)[-1]
        started = time.monotonic()
        try:
            step.run(spark, settings)
        except quality.QualityGateFailed as exc:
            print(f"[pipeline] {name} stopped: {exc}", file=sys.stderr)
            return 1
        print(f"[pipeline] {name} done in {time.monotonic() - started:.0f}s")
    if args.register:
        from scenelake import delta_io
        from scenelake.trino_client import register_tables

        written = [tuple(name.split(".")) for name in all_contracts()
                   if delta_io.table_exists(spark, settings, name)]
        register_tables(settings, written)  # type: ignore[arg-type]
        print(f"[pipeline] {len(written)} tables registered in Trino")
    return 0


if __name__ == "__main__":
    sys.exit(main())
