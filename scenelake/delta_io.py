"""Reading and writing Delta tables by contract name, so a job never hand-builds a path.

Every write checks the DataFrame against the table's contract first: a job cannot write a
table that has no contract, or a column the contract lacks. A column the contract gained since
the table was created is added to the table first (additive columns are not a breaking change),
and a table whose partitioning differs from its contract's is rewritten with the contract's first.
Every table collects Delta statistics on its contract's non-PII columns only (`STATS_PROPERTY`, set
when the table is created and brought in line before a write): see scenelake.contracts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from scenelake.contracts import Column, Contract, all_contracts, contract, spark_type
from scenelake.settings import Settings


def table_exists(spark: SparkSession, settings: Settings, name: str) -> bool:
    layer, table = name.split(".")
    return DeltaTable.isDeltaTable(spark, settings.table_path(layer, table))


def register_in_metastore(spark: SparkSession, settings: Settings, names: list[str]) -> list[str]:
    """Make each table (a Delta table in the lake) known to the shared metastore at its lake location,
    each layer as a schema whose folder is the layer's. Idempotent: a table registered at its location
    is left alone, one registered elsewhere (a moved lake) is re-pointed. Returns those (re-)registered.
    Only for profiles with a `metastore_uri`; the tables stay external (dropping one deletes no data)."""
    from pyspark.sql.utils import AnalysisException

    changed = []
    for layer in sorted({n.split(".")[0] for n in names}):
        spark.sql(f"create schema if not exists {quote(layer)} location '{sql_string(settings.table_path(layer, ''))}'")
    for name in names:
        layer, table = name.split(".")
        path = settings.table_path(layer, table)
        qualified = f"{quote(layer)}.{quote(table)}"
        if spark.catalog.tableExists(table, layer):
            try:
                rows = spark.sql(f"describe table extended {qualified}").collect()
                at = next((r[1] for r in rows if r[0] == "Location"), "")
            except AnalysisException:  # its log is gone: registered where no table is any more
                at = ""
            if str(at).rstrip("/") == path.rstrip("/"):
                continue
            spark.sql(f"drop table {qualified}")
        spark.sql(f"create table {qualified} using delta location '{sql_string(path)}'")
        changed.append(name)
    return changed


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def sql_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def read_table(spark: SparkSession, settings: Settings, name: str,
               version: int | None = None) -> DataFrame:
    layer, table = name.split(".")
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(settings.table_path(layer, table))


def table_version(spark: SparkSession, settings: Settings, name: str) -> int | None:
    if not table_exists(spark, settings, name):
        return None
    layer, table = name.split(".")
    history = DeltaTable.forPath(spark, settings.table_path(layer, table)).history(1)
    return int(history.select("version").first()[0])  # type: ignore[index]


# Commits that rewrite or describe data without changing it (Delta marks their files dataChange=false, or
# they add no file at all). They never make a job reprocess anything. An operation not listed counts as a
# data change: unknown commits cost a reprocessing, never a stale result.
NEUTRAL_OPERATIONS = frozenset({
    "OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES", "UNSET TBLPROPERTIES", "COMPUTE STATS",
    "REORG", "UPGRADE PROTOCOL", "ANALYZE",
})


def history(spark: SparkSession, settings: Settings, name: str) -> list[tuple[int, str, str | None]]:
    """(version, operation, userMetadata) of every commit still in the table's log, newest first."""
    if not table_exists(spark, settings, name):
        return []
    layer, table = name.split(".")
    rows = DeltaTable.forPath(spark, settings.table_path(layer, table)).history().select(
        "version", "operation", "userMetadata").collect()
    return sorted(((int(r[0]), str(r[1]), r[2]) for r in rows), reverse=True)


def data_version(spark: SparkSession, settings: Settings, name: str) -> int | None:
    """The newest version whose commit changed the table's rows (compaction, VACUUM and property
    changes skipped): what a job compares to decide whether its input moved."""
    return data_version_of(history(spark, settings, name))


def data_version_of(commits: list[tuple[int, str, str | None]]) -> int | None:
    """`data_version` from a history already read (newest first).

    A table whose history was purged (scenelake.erasure) starts at a neutral commit that carries the
    data version it was purged at (`{"data_version": N}` in its userMetadata): that is its data version
    until the next data change."""
    for version, operation, metadata in commits:
        if operation not in NEUTRAL_OPERATIONS:
            return version
        kept = (parse_marker(metadata) or {}).get("data_version")
        if kept is not None:
            return int(kept)
    return commits[-1][0] if commits else None


def last_marker(spark: SparkSession, settings: Settings, name: str, job: str) -> dict[str, Any] | None:
    """The newest job marker `job` committed on the table (a JSON object with "job": job, in the
    commit's userMetadata), skipping commits of other jobs and maintenance; None when there is none."""
    for _, _, metadata in history(spark, settings, name):
        marker = parse_marker(metadata)
        if marker is not None and marker.get("job") == job:
            return marker
    return None


def parse_marker(metadata: str | None) -> dict[str, Any] | None:
    if not metadata or not metadata.startswith("{"):
        return None
    try:
        value = json.loads(metadata)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def marker_text(marker: dict[str, Any]) -> str:
    return json.dumps(marker, sort_keys=True)


def changed_keys(spark: SparkSession, settings: Settings, name: str, since: int, upto: int,
                 columns: list[str], changes: tuple[str, ...] = ()) -> list[tuple[Any, ...]] | None:
    """The distinct `columns` of every row inserted, updated or deleted (or only of the `changes`
    named, such as `delete`) in versions (since, upto], from the table's Change Data Feed
    (maintenance commits change no row, so they add nothing).
    None when the feed cannot say: it was off for some of those versions, or VACUUM removed
    their files; the caller then takes the whole table as changed."""
    if upto <= since:
        return []
    layer, table = name.split(".")
    try:
        rows = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", since + 1)
                .option("endingVersion", upto).load(settings.table_path(layer, table))
                .where(F.col("_change_type").isin(*changes) if changes else F.lit(True))
                .select(*columns).distinct().collect())
    except Exception as exc:  # noqa: BLE001 - any failure to read the feed means "unknown": recompute all
        print(f"[delta_io] change feed of {name} unreadable for versions {since + 1}..{upto}: "
              f"{str(exc).splitlines()[0][:200]}; taking the whole table as changed")
        return None
    return [tuple(r) for r in rows]


def record_marker(spark: SparkSession, settings: Settings, name: str, marker: dict[str, Any]) -> None:
    """Commit `marker` on the table without touching its rows (a table-property commit carrying it
    as userMetadata), for a job whose last write changed nothing and so committed nothing."""
    layer, table = name.split(".")
    path = settings.table_path(layer, table)
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", marker_text(marker))
    try:
        spark.sql(f"alter table delta.`{path}` set tblproperties ('scenelake.marker' = '{marker['job']}')")
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")


def ensure_marker(spark: SparkSession, settings: Settings, name: str, marker: dict[str, Any]) -> None:
    """Make `marker` the job's newest marker on the table (after its last write)."""
    if last_marker(spark, settings, name, str(marker["job"])) != json.loads(marker_text(marker)):
        record_marker(spark, settings, name, marker)


def last_commit_metadata(spark: SparkSession, settings: Settings, name: str) -> str | None:
    """The userMetadata of the table's newest commit (jobs record their inputs there)."""
    if not table_exists(spark, settings, name):
        return None
    layer, table = name.split(".")
    row = DeltaTable.forPath(spark, settings.table_path(layer, table)).history(1).first()
    return row["userMetadata"] if row else None  # type: ignore[index]


def _conformed(df: DataFrame, table: Contract) -> DataFrame:
    table.check_dataframe_schema(df.schema)
    return df.select(*table.column_names)


def add_new_columns(spark: SparkSession, path: str, table: Contract, existing: list[str] | None = None) -> None:
    """Add the contract's columns an existing table lacks, each after its predecessor in the
    contract, so the table's layout stays the contract's."""
    existing = table_metadata(spark, path).columns if existing is None else existing
    missing = [(i, c) for i, c in enumerate(table.columns) if c.name not in existing]
    for i, col in missing:
        place = f"after `{table.columns[i - 1].name}`" if i > 0 else "first"
        column = f"`{col.name}` {spark_type(col.type).simpleString()} {place}"
        spark.sql(f"alter table delta.`{path}` add columns ({column})")


@dataclass(frozen=True)
class TableMetadata:
    """What a write needs to know of an existing table: its columns, partition columns and properties."""

    columns: list[str]
    partition_columns: list[str]
    properties: dict[str, str]


def table_metadata(spark: SparkSession, path: str) -> TableMetadata:
    """The table's metadata as of its newest commit, from Delta's transaction log (`log_metadata`),
    not from `DESCRIBE DETAIL`, which also counts the table's files and so reconstructs the snapshot's
    state after every commit (0.5-1.3 s each, measured; an append then took 2.0 s against 0.7 s).
    Should the log's JVM interface not answer (another Delta version), `DESCRIBE DETAIL` does."""
    from py4j.protocol import Py4JError

    try:
        return log_metadata(spark, path)
    except Py4JError:
        delta = DeltaTable.forPath(spark, path)
        detail = delta.detail().first()
        assert detail is not None
        return TableMetadata(delta.toDF().columns, list(detail["partitionColumns"]), dict(detail["properties"] or {}))


def log_metadata(spark: SparkSession, path: str) -> TableMetadata:
    """The `metaData` action of the table's newest snapshot, which the JVM's DeltaLog keeps up to date
    (a listing of `_delta_log`, some 10 ms)."""
    jvm: Any = spark._jvm  # type: ignore[attr-defined]
    log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)  # type: ignore[attr-defined]
    none = jvm.scala.Option.empty()
    meta = json.loads(log.update(False, none, none).metadata().json())["metaData"]
    fields = json.loads(meta["schemaString"])["fields"]
    return TableMetadata([f["name"] for f in fields], list(meta.get("partitionColumns") or []),
                         dict(meta.get("configuration") or {}))


def partition_columns(spark: SparkSession, path: str) -> list[str]:
    return table_metadata(spark, path).partition_columns


def conform_layout(spark: SparkSession, path: str, table: Contract, partitioned_by: list[str] | None = None) -> bool:
    """Rewrite an existing table partitioned otherwise than its contract says, in one atomic
    overwrite commit (same rows, new layout; older versions stay readable by time travel).
    Returns whether it rewrote. A crash before the commit leaves the old layout, and the next
    write tries again; Delta cannot change partitioning in place."""
    current = partition_columns(spark, path) if partitioned_by is None else partitioned_by
    if current == list(table.partition_by):
        return False
    (spark.read.format("delta").load(path).write.format("delta").mode("overwrite")
     .option("overwriteSchema", "true").partitionBy(*table.partition_by)
     .option("userMetadata", f"layout: partition_by={','.join(table.partition_by)}").save(path))
    return True


CHANGE_FEED = "delta.enableChangeDataFeed"
STATS_PROPERTY = "delta.dataSkippingStatsColumns"


def _properties(spark: SparkSession, path: str) -> dict[str, str]:
    return table_metadata(spark, path).properties


def ensure_change_feed(spark: SparkSession, path: str, table: Contract,
                       properties: dict[str, str] | None = None) -> None:
    """Turn on the Change Data Feed of a table whose contract asks for it (one property commit,
    once). Readers of the feed fall back to the whole table for versions before it was on."""
    if not table.change_feed:
        return
    if (_properties(spark, path) if properties is None else properties).get(CHANGE_FEED) != "true":
        spark.sql(f"alter table delta.`{path}` set tblproperties ('{CHANGE_FEED}' = 'true')")


def conform_stats_columns(spark: SparkSession, path: str, table: Contract,
                          properties: dict[str, str] | None = None) -> bool:
    """Set the table's statistics columns to the contract's when they differ (one commit). Files
    written before keep their statistics until compaction rewrites them. Returns whether it set them."""
    want = ",".join(table.stats_columns)
    if (_properties(spark, path) if properties is None else properties).get(STATS_PROPERTY) == want:
        return False
    spark.sql(f"alter table delta.`{path}` set tblproperties ('{STATS_PROPERTY}' = '{want}')")
    return True


def _prepare_existing(spark: SparkSession, path: str, table: Contract) -> None:
    """Bring an existing table in line with its contract, from one read of its metadata (each
    step commits only when something differs, and none of them changes what the others read)."""
    meta = table_metadata(spark, path)
    add_new_columns(spark, path, table, meta.columns)
    conform_stats_columns(spark, path, table, meta.properties)
    conform_layout(spark, path, table, meta.partition_columns)
    ensure_change_feed(spark, path, table, meta.properties)


def _writer_options(commit_metadata: str | None) -> dict[str, str]:
    return {"userMetadata": commit_metadata} if commit_metadata else {}


def append(spark: SparkSession, settings: Settings, name: str, df: DataFrame,
           commit_metadata: str | None = None) -> None:
    table = contract(name)
    path = settings.table_path(table.layer, table.table)
    writer = _conformed(df, table).write.format("delta").mode("append")
    if DeltaTable.isDeltaTable(spark, path):
        _prepare_existing(spark, path, table)
    else:
        # A table property on the writer applies when the write creates the table.
        writer = writer.option(STATS_PROPERTY, ",".join(table.stats_columns))
        if table.change_feed:
            writer = writer.option(CHANGE_FEED, "true")
    if table.partition_by:
        writer = writer.partitionBy(*table.partition_by)
    writer.options(**_writer_options(commit_metadata)).save(path)


def _comparable(alias: str, column: Column) -> str:
    """An expression Spark can compare with <=>: maps are not comparable, their sorted entries are."""
    ref = f"{alias}.`{column.name}`"
    return f"array_sort(map_entries({ref}))" if column.type.startswith("map<") else ref


def merge(spark: SparkSession, settings: Settings, name: str, df: DataFrame,
          commit_metadata: str | None = None, delete_missing: bool = False,
          delete: DataFrame | None = None, insert_only: bool = False) -> None:
    """Upsert on the contract's primary key: one atomic commit, so a rerun converges.

    Rows whose every column already equals the target's are not rewritten. With
    `delete_missing`, `df` is the whole table: target rows whose key it lacks are deleted. With
    `delete` (the key columns of rows to remove), those rows are deleted in the same commit.
    Otherwise the match also requires the target's `lookup_columns` (key columns the table is
    partitioned or Z-ordered by) to hold one of the source's values, so Delta reads and rewrites
    only the files those values can be in: a batch of one run costs that run, not the table.

    With `insert_only`, the caller knows that no target row has a key of `df` (scenelake.ingest.reconcile
    looked them up: `fresh`): the rows are appended, one commit as the merge's, without its join of
    source and target (an append costs about a third of a merge of the same rows, measured). An empty
    `df` still merges, so that a batch that adds nothing commits what it did before.
    """
    table = contract(name)
    source = _conformed(df, table)
    path = settings.table_path(table.layer, table.table)
    if not DeltaTable.isDeltaTable(spark, path) or (
            insert_only and not delete_missing and delete is None and not source.isEmpty()):
        append(spark, settings, name, source, commit_metadata)
        return
    _prepare_existing(spark, path, table)
    key = " and ".join(f"t.`{k}` = s.`{k}`" for k in table.primary_key)
    changed = " or ".join(f"not ({_comparable('t', c)} <=> {_comparable('s', c)})"
                          for c in table.columns if c.name not in table.primary_key)
    upsert = "s.`_delete` = false"
    source = source.withColumn("_delete", F.lit(False))
    if delete is not None:
        gone = delete.select(*table.primary_key).distinct()
        for col in table.columns:
            if col.name not in table.primary_key:
                gone = gone.withColumn(col.name, F.lit(None).cast(spark_type(col.type)))
        source = source.unionByName(gone.select(*table.column_names).withColumn("_delete", F.lit(True)))
    condition = F.expr(key)
    if not delete_missing:
        condition = condition & lookup_condition(source, table.lookup_columns, lambda c: F.col(f"t.`{c}`"))
    values: dict[str, str | SparkColumn] = {f"`{c}`": f"s.`{c}`" for c in table.column_names}
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", commit_metadata or "")
    try:
        builder = DeltaTable.forPath(spark, path).alias("t").merge(source.alias("s"), condition)
        if delete is not None:
            builder = builder.whenMatchedDelete(condition="s.`_delete`")
        builder = (builder.whenMatchedUpdate(condition=f"{upsert} and ({changed})" if changed else upsert,
                                             set=values)
                   .whenNotMatchedInsert(condition=upsert, values=values))
        if delete_missing:
            builder = builder.whenNotMatchedBySourceDelete()
        builder.execute()
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")


def lookup_condition(source: DataFrame, columns: Iterable[str],
                     target: Callable[[str], SparkColumn] = F.col) -> SparkColumn:
    """True where the `target` columns hold one of the values `source` has in them (one small
    aggregation of every column's distinct values), so a look-up of `source`'s keys reads only the
    files they can be in. A null key matches nothing: a column with no value at all gives false."""
    columns = list(columns)
    if not columns:
        return F.lit(True)
    row = source.agg(*[F.collect_set(c).alias(f"_{i}") for i, c in enumerate(columns)]).first()
    condition = F.lit(True)
    for i, column in enumerate(columns):
        found = sorted(v for v in (row[i] if row is not None else []) if v is not None)
        condition = condition & (target(column).isin(*found) if found else F.lit(False))
    return condition


def replace_where(spark: SparkSession, settings: Settings, name: str, df: DataFrame, condition: str,
                  commit_metadata: str | None = None) -> None:
    """Atomically replace the rows matching `condition` (e.g. the runs re-evaluated) with `df`."""
    table = contract(name)
    path = settings.table_path(table.layer, table.table)
    if not DeltaTable.isDeltaTable(spark, path):
        append(spark, settings, name, df, commit_metadata)
        return
    _prepare_existing(spark, path, table)
    writer = (_conformed(df, table).write.format("delta").mode("overwrite").option("replaceWhere", condition)
              .options(**_writer_options(commit_metadata)))
    if table.partition_by:
        writer = writer.partitionBy(*table.partition_by)
    writer.save(path)


def existing_tables(spark: SparkSession, settings: Settings) -> list[str]:
    """Every contract's table (layer.table) that exists in the lake."""
    return [name for name in all_contracts() if table_exists(spark, settings, name)]
