"""Reading and writing Delta tables by contract name, so a job never hand-builds a path.

Every write checks the DataFrame against the table's contract first: a job cannot write a
table that has no contract, or a column the contract lacks. A column the contract gained since
the table was created is added to the table first (additive columns are not a breaking change),
and a table whose partitioning differs from its contract's is rewritten with the contract's first.
Every table collects Delta statistics on its contract's non-PII columns only (`STATS_PROPERTY`, set
when the table is created and brought in line before a write): see scenelake.contracts.
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from scenelake.contracts import Column, Contract, contract, spark_type
from scenelake.settings import Settings


def table_exists(spark: SparkSession, settings: Settings, name: str) -> bool:
    layer, table = name.split(".")
    return DeltaTable.isDeltaTable(spark, settings.table_path(layer, table))


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


def add_new_columns(spark: SparkSession, path: str, table: Contract) -> None:
    """Add the contract's columns an existing table lacks, each after its predecessor in the
    contract, so the table's layout stays the contract's."""
    existing = DeltaTable.forPath(spark, path).toDF().columns
    missing = [(i, c) for i, c in enumerate(table.columns) if c.name not in existing]
    for i, col in missing:
        place = f"after `{table.columns[i - 1].name}`" if i > 0 else "first"
        column = f"`{col.name}` {spark_type(col.type).simpleString()} {place}"
        spark.sql(f"alter table delta.`{path}` add columns ({column})")


def partition_columns(spark: SparkSession, path: str) -> list[str]:
    return list(DeltaTable.forPath(spark, path).detail().first()["partitionColumns"])  # type: ignore[index]


def conform_layout(spark: SparkSession, path: str, table: Contract) -> bool:
    """Rewrite an existing table partitioned otherwise than its contract says, in one atomic
    overwrite commit (same rows, new layout; older versions stay readable by time travel).
    Returns whether it rewrote. A crash before the commit leaves the old layout, and the next
    write tries again; Delta cannot change partitioning in place."""
    if partition_columns(spark, path) == list(table.partition_by):
        return False
    (spark.read.format("delta").load(path).write.format("delta").mode("overwrite")
     .option("overwriteSchema", "true").partitionBy(*table.partition_by)
     .option("userMetadata", f"layout: partition_by={','.join(table.partition_by)}").save(path))
    return True


STATS_PROPERTY = "delta.dataSkippingStatsColumns"


def conform_stats_columns(spark: SparkSession, path: str, table: Contract) -> bool:
    """Set the table's statistics columns to the contract's when they differ (one commit). Files
    written before keep their statistics until compaction rewrites them. Returns whether it set them."""
    want = ",".join(table.stats_columns)
    properties = DeltaTable.forPath(spark, path).detail().first()["properties"]  # type: ignore[index]
    if properties.get(STATS_PROPERTY) == want:
        return False
    spark.sql(f"alter table delta.`{path}` set tblproperties ('{STATS_PROPERTY}' = '{want}')")
    return True


def _prepare_existing(spark: SparkSession, path: str, table: Contract) -> None:
    add_new_columns(spark, path, table)
    conform_stats_columns(spark, path, table)
    conform_layout(spark, path, table)


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
    if table.partition_by:
        writer = writer.partitionBy(*table.partition_by)
    writer.options(**_writer_options(commit_metadata)).save(path)


def _comparable(alias: str, column: Column) -> str:
    """An expression Spark can compare with <=>: maps are not comparable, their sorted entries are."""
    ref = f"{alias}.`{column.name}`"
    return f"array_sort(map_entries({ref}))" if column.type.startswith("map<") else ref


def merge(spark: SparkSession, settings: Settings, name: str, df: DataFrame,
          commit_metadata: str | None = None, delete_missing: bool = False) -> None:
    """Upsert on the contract's primary key: one atomic commit, so a rerun converges.

    Rows whose every column already equals the target's are not rewritten. With
    `delete_missing`, `df` is the whole table: target rows whose key it lacks are deleted.
    """
    table = contract(name)
    source = _conformed(df, table)
    path = settings.table_path(table.layer, table.table)
    if not DeltaTable.isDeltaTable(spark, path):
        append(spark, settings, name, source, commit_metadata)
        return
    _prepare_existing(spark, path, table)
    key = " and ".join(f"t.`{k}` = s.`{k}`" for k in table.primary_key)
    changed = " or ".join(f"not ({_comparable('t', c)} <=> {_comparable('s', c)})"
                          for c in table.columns if c.name not in table.primary_key)
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata", commit_metadata or "")
    try:
        builder = (DeltaTable.forPath(spark, path).alias("t")
                   .merge(source.alias("s"), key)
                   .whenMatchedUpdateAll(condition=changed or None)
                   .whenNotMatchedInsertAll())
        if delete_missing:
            builder = builder.whenNotMatchedBySourceDelete()
        builder.execute()
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")


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
