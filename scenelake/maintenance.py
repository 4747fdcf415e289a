"""Table maintenance: compact small files (OPTIMIZE, Z-ordered as the contract says), VACUUM, Trino statistics.

The decisions are pure functions of a table's data files and its contract (which partitions are
worth compacting, the OPTIMIZE and VACUUM statements, whether a retention is safe), so they are
unit tested without Spark; `maintain_table` applies them.

Every change is one Delta commit or none: OPTIMIZE commits its rewritten files atomically (a crash
leaves the table as it was, plus orphan files that a later VACUUM removes), and VACUUM only
deletes files the table stopped referencing more than the retention ago. A rerun therefore
converges, and a rerun on a maintained table finds nothing worth doing and commits nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from scenelake.contracts import Contract

# Delta refuses a shorter VACUUM retention unless its check is switched off: a reader of a version
# up to this old (a long query, time travel, a concurrent writer) may still need the files.
DELTA_SAFE_RETENTION_HOURS = 168
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
RETENTION_PROPERTY = "delta.deletedFileRetentionDuration"

Partition = tuple[tuple[str, str | None], ...]
Progress = Callable[[str], None]


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

    def line(self) -> str:
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


# --- Spark and Trino ----------------------------------------------------------------------
def data_files(spark: SparkSession, path: str) -> list[DataFile]:
    """The data files of the table's current version with their sizes (from the file system)."""
    uris = spark.read.format("delta").load(path).inputFiles()
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[union-attr]
    root = path.split("://", 1)[-1].rstrip("/") + "/"
    files = []
    for uri in uris:
        hadoop_path = jvm.org.apache.hadoop.fs.Path(uri)  # type: ignore[union-attr]
        size = int(hadoop_path.getFileSystem(conf).getFileStatus(hadoop_path).getLen())
        plain = hadoop_path.toUri().getPath()
        relative = plain[plain.index(root) + len(root):] if root in plain else plain.rsplit("/", 1)[-1]
        files.append(DataFile(partition_of(relative), size))
    return files


def maintain_table(spark: SparkSession, path: str, table: Contract, *, retention_hours: int,
                   allow_unsafe_retention: bool, min_small_files: int, small_file_bytes: int, target_file_bytes: int,
                   analyze: Callable[[], None] | None, progress: Progress) -> TableReport:
    """Compact the partitions worth it, vacuum what the retention allows, analyze what changed."""
    check_retention(retention_hours, allow_unsafe_retention)
    before = data_files(spark, path)
    partitions = partitions_to_compact(before, min_small_files, small_file_bytes)
    compact = bool(partitions)
    if compact:
        progress(f"[maintain] {table.name}: compacting {len(partitions)} partition(s)"
                 + (f", Z-order by {', '.join(table.zorder_by)}" if table.zorder_by else ""))
        spark.conf.set("spark.databricks.delta.optimize.maxFileSize", str(target_file_bytes))
        try:
            spark.sql(optimize_sql(path, table, partitions)).collect()
        finally:
            spark.conf.unset("spark.databricks.delta.optimize.maxFileSize")
    properties = DeltaTable.forPath(spark, path).detail().first()["properties"]  # type: ignore[index]
    retention = retention_property(properties.get(RETENTION_PROPERTY), retention_hours)
    if retention is not None:
        progress(f"[maintain] {table.name}: {RETENTION_PROPERTY} = {retention}")
        spark.sql(f"alter table delta.`{path}` set tblproperties ('{RETENTION_PROPERTY}' = '{retention}')")
    # Delta's own check compares with the property just set, so a shorter retention that passed
    # check_retention (explicitly allowed) goes through. A dry run first: VACUUM can record commits
    # (vacuum logging), so skipping it when nothing is to be deleted keeps a rerun commit-free.
    doomed = spark.sql(vacuum_sql(path, dry_run=True)).count()
    if doomed:
        progress(f"[maintain] {table.name}: vacuuming {doomed} file(s)")
        spark.sql(vacuum_sql(path)).collect()
    after = data_files(spark, path) if compact else before
    analyzed = False
    if analyze is not None and compact:
        analyze()
        analyzed = True
    return TableReport(table.name, len(before), len(after), sum(f.size for f in before), sum(f.size for f in after),
                       len(partitions), doomed, analyzed)
