"""Table maintenance: compact small files (OPTIMIZE, Z-ordered as the contract says), VACUUM, Trino statistics.

The decisions are pure functions of a table's data files and its contract (which partitions are
worth compacting, the OPTIMIZE and VACUUM statements, whether a retention is safe), so they are
unit tested without Spark; `maintain_table` applies them.

Every change is one Delta commit or none: OPTIMIZE commits its rewritten files atomically (a crash
leaves the table as it was, plus orphan files that a later VACUUM removes), and VACUUM only
deletes files the table stopped referencing more than the retention ago. A rerun therefore
converges, and a rerun on a maintained table finds nothing worth doing and commits nothing.

Cost follows what changed: a ledger per table (`<lake>/_maintenance/<layer>.<table>.json`, written
after the table is done, so a crash only means looking again) records the version maintain left it
at and the newest commit whose removed files VACUUM has already deleted. From a listing of the
table's `_delta_log` alone (no Spark job, one LIST on object storage) `plan` then decides: the data
files are read only when something was committed since, VACUUM runs only when a commit's removed
files have aged past the retention since the last VACUUM, and every table gets a full check
(layout, retention property, VACUUM, which also deletes orphan files of crashed writers) once per
retention period or with `--recheck`. Delta offers no such bookkeeping for OPTIMIZE and VACUUM
(auto compaction works per write, and VACUUM always lists the whole table), hence this one.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote

from pyspark.sql import SparkSession

from scenelake import delta_io
from scenelake.contracts import Contract

# Delta refuses a shorter VACUUM retention unless its check is switched off: a reader of a version
# up to this old (a long query, time travel, a concurrent writer) may still need the files.
DELTA_SAFE_RETENTION_HOURS = 168
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"

LEDGER_FOLDER = "_maintenance"
HOUR_MS = 3_600_000

Partition = tuple[tuple[str, str | None], ...]
Progress = Callable[[str], None]
Commit = tuple[int, int]  # (version, commit time in ms: the modification time of its file in _delta_log)


class MaintenanceError(Exception):
    """A maintenance request that would be unsafe, or a table that cannot be maintained."""


@dataclass(frozen=True)
class DataFile:
    partition: Partition
    size: int


@dataclass(frozen=True)
class TableReport:
    table: str
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    compacted_partitions: int
    vacuumed_files: int
    analyzed: bool
    skipped: bool = False  # the ledger said nothing could need doing: no data file was read

    def line(self) -> str:
        if self.skipped:
            return (f"{self.table:28} files {self.files_before:>6} -> {self.files_after:<6} "
                    f"MiB {self.bytes_before / 2**20:>9.1f} -> {self.bytes_after / 2**20:<9.1f} "
                    "unchanged since the last maintenance")
        did = []
        if self.compacted_partitions:
            did.append(f"compacted {self.compacted_partitions} partition(s)")
        if self.vacuumed_files:
            did.append(f"vacuumed {self.vacuumed_files} file(s)")
        if self.analyzed:
            did.append("analyzed in Trino")
        return (f"{self.table:28} files {self.files_before:>6} -> {self.files_after:<6} "
                f"MiB {self.bytes_before / 2**20:>9.1f} -> {self.bytes_after / 2**20:<9.1f} "
                f"{', '.join(did) or 'nothing to do'}")


# --- pure pieces ------------------------------------------------------------------------
def partition_of(relative_path: str) -> Partition:
    """The partition values in a data file's path relative to its table (`run_id=a%3Ab/part-0.parquet`)."""
    values: list[tuple[str, str | None]] = []
    for segment in relative_path.strip("/").split("/")[:-1]:
        key, sep, value = segment.partition("=")
        if sep:
            text = unquote(value)
            values.append((unquote(key), None if text == NULL_PARTITION else text))
    return tuple(values)


def partitions_to_compact(files: Iterable[DataFile], min_small_files: int, small_file_bytes: int) -> list[Partition]:
    """Partitions holding at least `min_small_files` files smaller than `small_file_bytes`.

    Compacting them is what reduces the files a query opens; a partition already compacted has
    one file (or a few large ones) and is left alone, which is what makes a rerun a no-op.
    """
    if min_small_files < 2:
        raise MaintenanceError(f"compact_min_small_files must be at least 2, got {min_small_files}")
    small = Counter(f.partition for f in files if f.size < small_file_bytes)
    return sorted((p for p, n in small.items() if n >= min_small_files), key=lambda p: [(k, v or "") for k, v in p])


def sql_string(value: str) -> str:
    """A Spark SQL string literal (backslash escapes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def optimize_sql(path: str, table: Contract, partitions: Sequence[Partition]) -> str:
    """OPTIMIZE of the given partitions of a table (the whole table when it is not partitioned),
    Z-ordered by the contract's `zorder_by`."""
    statement = f"optimize delta.`{path}`"
    if table.partition_by:
        if not partitions:
            raise MaintenanceError(f"{table.name}: nothing to compact")
        clauses = []
        for partition in partitions:
            terms = [f"`{k}` is null" if v is None else f"`{k}` = {sql_string(v)}" for k, v in partition]
            clauses.append("(" + " and ".join(terms) + ")")
        statement += " where " + " or ".join(clauses)
    if table.zorder_by:
        statement += " zorder by (" + ", ".join(f"`{c}`" for c in table.zorder_by) + ")"
    return statement


def check_retention(hours: int, allow_unsafe: bool = False) -> None:
    """Refuse a VACUUM retention shorter than Delta's safety minimum unless explicitly allowed."""
    if hours < 0:
        raise MaintenanceError(f"VACUUM retention must not be negative, got {hours} hours")
    if hours < DELTA_SAFE_RETENTION_HOURS and not allow_unsafe:
        raise MaintenanceError(
            f"VACUUM retention of {hours} hours is shorter than Delta's safe minimum of "
            f"{DELTA_SAFE_RETENTION_HOURS} hours: it could delete files that a running query, a concurrent "
            "writer or time travel to a recent version still reads. Use a retention of at least "
            f"{DELTA_SAFE_RETENTION_HOURS} hours, or pass --allow-unsafe-retention if no reader can need them")


def retention_property(current: str | None, hours: int) -> str | None:
    """The `delta.deletedFileRetentionDuration` to set so VACUUM keeps `hours`, or None when the table
    already says so. Delta 4 ignores VACUUM's RETAIN clause (except 0) and reads this property;
    a table without it keeps Delta's default of one week."""
    wanted = f"interval {hours} hours"
    if current is None:
        return None if hours == DELTA_SAFE_RETENTION_HOURS else wanted
    return None if current.strip().lower() == wanted else wanted


def vacuum_sql(path: str, dry_run: bool = False) -> str:
    return f"vacuum delta.`{path}`" + (" dry run" if dry_run else "")


@dataclass(frozen=True)
class Ledger:
    """What maintain left a table at: its newest commit then, the newest commit whose removed files
    VACUUM has deleted, the retention that held, when it last checked everything, the file totals."""
    version: int
    committed_ms: int
    vacuumed_through: int
    retention_hours: int
    full_check_ms: int
    files: int
    bytes: int

    def text(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def report(self, table: str, vacuumed_files: int = 0, skipped: bool = False) -> TableReport:
        """The table's report when its data files were not read: the totals the ledger counted."""
        return TableReport(table, self.files, self.files, self.bytes, self.bytes, 0, vacuumed_files, False, skipped)

    @classmethod
    def parse(cls, text: str) -> Ledger | None:
        """None for anything unreadable (then the table is checked in full, which rewrites it)."""
        try:
            return cls(**{k: int(v) for k, v in json.loads(text).items()})
        except (ValueError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class Plan:
    layout: bool  # read the data files and compact what is worth it: something was committed since
    vacuum: bool  # VACUUM: removed files aged past the retention since the last VACUUM, or a full check
    full: bool    # everything, the retention property included (no ledger, its retention differs, a week old)


def commits_in_log(names_and_times: Iterable[tuple[str, int]]) -> list[Commit]:
    """The commits among the files of a `_delta_log` folder, oldest first: a commit's time is its JSON
    file's; a checkpoint stands for its version only where that JSON was cleaned up."""
    commits: dict[int, int] = {}
    checkpoints: dict[int, int] = {}
    for name, modified in names_and_times:
        match = re.fullmatch(r"(\d{20})\.(json|checkpoint(?:\.\d+\.\d+)?\.parquet)", name)
        if match:
            found = commits if match.group(2) == "json" else checkpoints
            found[int(match.group(1))] = max(found.get(int(match.group(1)), 0), modified)
    return sorted({**checkpoints, **commits}.items())


def plan(ledger: Ledger | None, commits: Sequence[Commit], now_ms: int, retention_hours: int,
         recheck: bool = False) -> Plan:
    """What maintaining the table needs, from its ledger and its log's commits alone."""
    retention_ms = retention_hours * HOUR_MS
    if (recheck or ledger is None or not commits or ledger.retention_hours != retention_hours
            or now_ms - ledger.full_check_ms >= retention_ms):
        return Plan(layout=True, vacuum=True, full=True)
    moved = commits[-1] != (ledger.version, ledger.committed_ms)
    aged = any(version > ledger.vacuumed_through and committed <= now_ms - retention_ms
               for version, committed in commits)
    return Plan(layout=moved, vacuum=aged, full=False)


def next_ledger(ledger: Ledger | None, done: Plan, before: Sequence[Commit], after: Sequence[Commit], now_ms: int,
                retention_hours: int, files: int, size: int) -> Ledger:
    """The ledger once `done` was applied: `before` are the commits it saw, `after` the log since."""
    horizon = now_ms - retention_hours * HOUR_MS
    vacuumed = ledger.vacuumed_through if ledger is not None and not done.full else -1
    if done.vacuum:  # every removal committed by the horizon is gone now
        vacuumed = max([vacuumed] + [version for version, committed in before if committed <= horizon])
    full_check = now_ms if done.full or ledger is None else ledger.full_check_ms
    version, committed = after[-1]
    return Ledger(version, committed, vacuumed, retention_hours, full_check, files, size)


# --- Spark and Trino ----------------------------------------------------------------------
def data_files(spark: SparkSession, path: str) -> list[DataFile]:
    """The data files of the table's current version with their sizes (from the file system)."""
    uris = spark.read.format("delta").load(path).inputFiles()
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    # Compared as URI paths: on s3a:// the bucket is the authority, not a part of the path.
    root = jvm.org.apache.hadoop.fs.Path(path).toUri().getPath().rstrip("/") + "/"  # type: ignore[union-attr]
    files = []
    for uri in uris:
        hadoop_path = jvm.org.apache.hadoop.fs.Path(uri)  # type: ignore[union-attr]
        size = int(hadoop_path.getFileSystem(conf).getFileStatus(hadoop_path).getLen())
        plain = hadoop_path.toUri().getPath()
        relative = plain[plain.index(root) + len(root):] if root in plain else plain.rsplit("/", 1)[-1]
        files.append(DataFile(partition_of(relative), size))
    return files


def _file_system(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)  # type: ignore[union-attr]
    return hadoop_path, hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())  # type: ignore[union-attr]


def log_commits(spark: SparkSession, path: str) -> list[Commit]:
    """The table's commits from one listing of its `_delta_log` (Hadoop's file system: local or s3a)."""
    log, fs = _file_system(spark, path.rstrip("/") + "/_delta_log")
    return commits_in_log((s.getPath().getName(), int(s.getModificationTime())) for s in fs.listStatus(log))


def ledger_path(lake_root: str, name: str) -> str:
    return f"{lake_root.rstrip('/')}/{LEDGER_FOLDER}/{name}.json"


def read_text(spark: SparkSession, location: str) -> str | None:
    """A small text file through Hadoop's file system (local or s3a); None when there is none."""
    where, fs = _file_system(spark, location)
    if not fs.exists(where):
        return None
    stream = fs.open(where)
    try:
        return str(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))  # type: ignore[union-attr]
    finally:
        stream.close()


def write_text(spark: SparkSession, location: str, text: str) -> None:
    """Write (or replace) a small text file through Hadoop's file system."""
    where, fs = _file_system(spark, location)
    stream = fs.create(where, True)
    try:
        stream.write(text.encode())
    finally:
        stream.close()


def read_ledger(spark: SparkSession, location: str) -> Ledger | None:
    text = read_text(spark, location)
    return None if text is None else Ledger.parse(text)


def write_ledger(spark: SparkSession, location: str, ledger: Ledger) -> None:
    write_text(spark, location, ledger.text())


def maintain_table(spark: SparkSession, path: str, table: Contract, *, retention_hours: int,
                   allow_unsafe_retention: bool, min_small_files: int, small_file_bytes: int, target_file_bytes: int,
                   analyze: Callable[[], None] | None, progress: Progress, ledger_at: str | None = None,
                   recheck: bool = False) -> TableReport:
    """Compact the partitions worth it, vacuum what the retention allows, analyze what changed; with a
    ledger (`ledger_at`), only what could have changed since the last maintenance (see `plan`)."""
    check_retention(retention_hours, allow_unsafe_retention)
    now_ms = int(time.time() * 1000)
    commits = log_commits(spark, path)
    ledger = read_ledger(spark, ledger_at) if ledger_at else None
    todo = plan(ledger, commits, now_ms, retention_hours, recheck) if ledger_at else Plan(True, True, True)
    if not (todo.layout or todo.vacuum) and ledger is not None:
        return ledger.report(table.name, skipped=True)
    report = _apply(spark, path, table, todo, retention_hours=retention_hours, min_small_files=min_small_files,
                    small_file_bytes=small_file_bytes, target_file_bytes=target_file_bytes, analyze=analyze,
                    progress=progress, known=ledger)
    if ledger_at:
        write_ledger(spark, ledger_at, next_ledger(ledger, todo, commits, log_commits(spark, path), now_ms,
                                                   retention_hours, report.files_after, report.bytes_after))
    return report


def _apply(spark: SparkSession, path: str, table: Contract, todo: Plan, *, retention_hours: int, min_small_files: int,
           small_file_bytes: int, target_file_bytes: int, analyze: Callable[[], None] | None, progress: Progress,
           known: Ledger | None) -> TableReport:
    before = data_files(spark, path) if todo.layout else None  # no ledger (known) means a full plan
    partitions = partitions_to_compact(before, min_small_files, small_file_bytes) if before is not None else []
    compact = bool(partitions)
    if compact:
        progress(f"[maintain] {table.name}: compacting {len(partitions)} partition(s)"
                 + (f", Z-order by {', '.join(table.zorder_by)}" if table.zorder_by else ""))
        spark.conf.set("spark.databricks.delta.optimize.maxFileSize", str(target_file_bytes))
        try:
            spark.sql(optimize_sql(path, table, partitions)).collect()
        finally:
            spark.conf.unset("spark.databricks.delta.optimize.maxFileSize")
    if todo.full:  # the ledger's retention is the table's otherwise
        properties = delta_io.table_metadata(spark, path).properties
        retention = retention_property(properties.get(RETENTION_PROPERTY), retention_hours)
        if retention is not None:
            progress(f"[maintain] {table.name}: {RETENTION_PROPERTY} = {retention}")
            spark.sql(f"alter table delta.`{path}` set tblproperties ('{RETENTION_PROPERTY}' = '{retention}')")
    # Delta's own check compares with the property just set, so a shorter retention that passed
    # check_retention (explicitly allowed) goes through. A dry run first: VACUUM can record commits
    # (vacuum logging), so skipping it when nothing is to be deleted keeps a rerun commit-free.
    doomed = spark.sql(vacuum_sql(path, dry_run=True)).count() if todo.vacuum else 0
    if doomed:
        progress(f"[maintain] {table.name}: vacuuming {doomed} file(s)")
        spark.sql(vacuum_sql(path)).collect()
    after = data_files(spark, path) if compact else before
    analyzed = False
    if analyze is not None and compact:
        analyze()
        analyzed = True
    if before is None or after is None:  # only VACUUM was due: the data files are those the ledger counted
        assert known is not None
        return known.report(table.name, vacuumed_files=doomed)
    return TableReport(table.name, len(before), len(after), sum(f.size for f in before), sum(f.size for f in after),
                       len(partitions), doomed, analyzed)
