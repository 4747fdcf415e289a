"""Maintain every table that has a contract: compact small files, VACUUM, refresh Trino's statistics.

For each table in the lake (schemas/<layer>/<table>.yaml with data under the lake root):

  compact  OPTIMIZE the partitions holding at least `compact_min_small_files` files smaller than
           `compact_small_file_mb` (conf/<env>.toml) into files of about `compact_target_file_mb`,
           Z-ordered by the contract's `zorder_by`, so a filter on a partition column or a lookup
           of one capture opens few files
  vacuum   delete the data files the table stopped referencing more than `vacuum_retention_hours`
           ago (default 168, Delta's safety minimum; shorter only with --allow-unsafe-retention).
           Delta 4 ignores VACUUM's RETAIN clause, so a retention other than the default is set
           as the table's delta.deletedFileRetentionDuration (one commit, once)
  analyze  Trino's ANALYZE on each compacted table (column statistics for its cost-based planner)

and prints, per table, the data files and MiB before and after. It is the pipeline's last step.

Its cost follows what changed, not the lake: a table nothing was committed to since its last
maintenance is not read at all (one listing of its Delta log against its ledger in
<lake>/_maintenance/), VACUUM runs only once some commit's removed files are older than the
retention, and every table is checked in full once per retention period (or with --recheck).
The ledger assumes maintain is the only job writing while it runs, as in the pipeline.

Crash safety: OPTIMIZE commits atomically (a crash leaves the table as it was; the files it had
written are orphans that VACUUM removes after the retention), and VACUUM only deletes files no
version within the retention references. A rerun converges; on a maintained table it finds
nothing worth doing and commits nothing. Afterwards every table is registered again in Trino,
which flushes Trino's metadata cache, so Trino reads the new snapshot.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from pyspark.sql import SparkSession

from scenelake import delta_io, maintenance
from scenelake.contracts import all_contracts
from scenelake.job import job_main, register, releases_cache
from scenelake.settings import Settings


def _analyzer(spark: SparkSession, settings: Settings, name: str) -> Callable[[], None]:
    def analyze() -> None:
        from scenelake.trino_client import query, quote

        layer, table = name.split(".")
        register(spark, settings, [name])  # the table may be new to Trino; flushes its cache
        query(settings, f"analyze {quote(settings.trino_catalog)}.{quote(layer)}.{quote(table)}")
    return analyze


@releases_cache
def run(spark: SparkSession, settings: Settings, progress: maintenance.Progress = print,  # type: ignore[assignment]
        retention_hours: int | None = None, allow_unsafe_retention: bool = False, analyze: bool = True,
        table: list[str] | None = None, recheck: bool = False) -> list[maintenance.TableReport]:
    hours = settings.vacuum_retention_hours if retention_hours is None else retention_hours
    maintenance.check_retention(hours, allow_unsafe_retention)  # before touching any table
    contracts = all_contracts()
    unknown = sorted(set(table or []) - set(contracts))
    if unknown:
        raise maintenance.MaintenanceError(f"no contract for {', '.join(unknown)}")
    names = [n for n in delta_io.existing_tables(spark, settings) if not table or n in table]
    reports = []
    for name in names:
        started = time.monotonic()
        contract = contracts[name]
        report = maintenance.maintain_table(
            spark, settings.table_path(contract.layer, contract.table), contract, retention_hours=hours,
            allow_unsafe_retention=allow_unsafe_retention, min_small_files=settings.compact_min_small_files,
            small_file_bytes=settings.compact_small_file_mb * 2**20,
            target_file_bytes=settings.compact_target_file_mb * 2**20,
            analyze=_analyzer(spark, settings, name) if analyze else None, progress=progress,
            ledger_at=maintenance.ledger_path(settings.lake_root, name), recheck=recheck)
        progress(f"[maintain] {report.line()} ({time.monotonic() - started:.0f}s)")
        reports.append(report)
    before, after = sum(r.files_before for r in reports), sum(r.files_after for r in reports)
    progress(f"[maintain] {len(reports)} table(s): {before} data files -> {after}; "
             f"{sum(1 for r in reports if r.compacted_partitions)} compacted, "
             f"{sum(1 for r in reports if r.skipped)} unchanged since the last maintenance, retention {hours} h")
    return reports


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retention-hours", type=int, default=None,
                        help="VACUUM retention in hours (default: vacuum_retention_hours of conf/<env>.toml, 168)")
    parser.add_argument("--allow-unsafe-retention", action="store_true",
                        help=f"allow a retention below {maintenance.DELTA_SAFE_RETENTION_HOURS} hours (Delta's "
                             "safety check): only when no query, writer or time travel can need older files")
    parser.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True,
                        help="run Trino's ANALYZE on each compacted table (default: on; needs Trino)")
    parser.add_argument("--recheck", action="store_true",
                        help="check every table in full (layout, retention, VACUUM of orphan files), even those "
                             "the ledger says are unchanged since the last maintenance")
    parser.add_argument("--table", action="append", metavar="LAYER.TABLE",
                        help="maintain only this table (repeatable; default: every table in the lake)")


def main(argv: list[str] | None = None) -> int:
    try:
        return job_main("maintain", __doc__, run, delta_io.existing_tables, argv, options)
    except maintenance.MaintenanceError as exc:
        print(f"[maintain] error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
