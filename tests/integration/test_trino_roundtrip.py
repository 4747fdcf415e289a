"""A Delta table written by Spark reads back identically through the real Trino server."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import types as T

from scenelake.settings import Settings
from scenelake.trino_client import query, register_tables

pytestmark = pytest.mark.integration
UTC = dt.UTC

# Every column type the contracts use. Timestamps carry milliseconds: Trino's Delta connector
# reads timestamps at millisecond precision.
SCHEMA = T.StructType([
    T.StructField("id", T.LongType(), False),
    T.StructField("name", T.StringType()),
    T.StructField("frame", T.IntegerType()),
    T.StructField("score", T.DoubleType()),
    T.StructField("crowd", T.BooleanType()),
    T.StructField("started_at", T.TimestampType()),
    T.StructField("day", T.DateType()),
    T.StructField("bbox", T.ArrayType(T.DoubleType())),
    T.StructField("device", T.StructType([T.StructField("model", T.StringType()),
                                          T.StructField("fps", T.DoubleType())])),
    T.StructField("tags", T.MapType(T.StringType(), T.StringType())),
])
ROWS = [
    (1, "cap-1", 0, 0.25, False, dt.datetime(2026, 11, 1, 8, 0, 0, 123000, tzinfo=UTC),
     dt.date(2026, 11, 1), [1.5, 2.0, 30.0, 40.25], ("PixelCam 4", 30.0), {"lighting": "dim"}),
    (2, "cap-2 ünïcode", 2147483647, -1e-300, True,
     dt.datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), dt.date(1970, 1, 1), [],
     ("NightEye", None), {}),
    (3, None, None, None, None, None, None, None, None, None),
]


def trino_rows(settings: Settings, sql: str) -> list[tuple[object, ...]]:
    """Rows with Trino's row values turned into plain tuples, sorted by id."""
    out = []
    for row in query(settings, sql):
        out.append(tuple(tuple(v) if type(v).__name__ == "NamedRowTuple" else v for v in row))
    return sorted(out, key=lambda r: r[0])


def expected_rows() -> list[tuple[object, ...]]:
    return [tuple(tuple(v) if isinstance(v, tuple) else v for v in row) for row in ROWS]


def test_spark_write_reads_identically_in_trino_then_updates_and_time_travels(spark, trino) -> None:  # type: ignore[no-untyped-def]
    settings = trino
    path = settings.table_path("bronze", "roundtrip")
    spark.createDataFrame(ROWS, SCHEMA).write.format("delta").mode("overwrite").save(path)
    assert register_tables(settings, [("bronze", "roundtrip")]) == ["bronze.roundtrip"]

    columns = query(settings, "describe delta.bronze.roundtrip")
    assert [(c[0], c[1]) for c in columns] == [
        ("id", "bigint"), ("name", "varchar"), ("frame", "integer"), ("score", "double"),
        ("crowd", "boolean"), ("started_at", "timestamp(3) with time zone"), ("day", "date"),
        ("bbox", "array(double)"), ("device", "row(model varchar, fps double)"),
        ("tags", "map(varchar, varchar)")]
    assert trino_rows(settings, "select * from delta.bronze.roundtrip") == expected_rows()

    # A second Spark write is visible with no manual step; registering again changes nothing.
    extra = (4, "cap-4", 7, 0.5, True, None, None, [0.0], ("X", 1.0), {"a": "b"})
    spark.createDataFrame([extra], SCHEMA).write.format("delta").mode("append").save(path)
    assert register_tables(settings, [("bronze", "roundtrip")]) == []
    assert query(settings, "select count(*), max(id) from delta.bronze.roundtrip") == [[4, 4]]

    # Time travel to the first version returns the earlier rows exactly.
    assert trino_rows(settings, "select * from delta.bronze.roundtrip for version as of 0") \
        == expected_rows()


def test_schema_change_is_picked_up_without_reregistering(spark, trino) -> None:  # type: ignore[no-untyped-def]
    settings = trino
    path = settings.table_path("bronze", "evolving")
    spark.createDataFrame([(1, "a")], "id long, name string").write.format("delta").save(path)
    register_tables(settings, [("bronze", "evolving")])
    (spark.createDataFrame([(2, "b", 0.5)], "id long, name string, score double")
     .write.format("delta").mode("append").option("mergeSchema", "true").save(path))
    register_tables(settings, [("bronze", "evolving")])
    assert query(settings, "select id, name, score from delta.bronze.evolving order by id") \
        == [[1, "a", None], [2, "b", 0.5]]




def test_a_table_whose_lake_folder_is_gone_is_registered_again_at_its_new_place(spark, trino, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A lake deleted (or moved) after its tables were registered: Trino can no longer read the log at
    the registered location; registering the table of the new lake replaces the stale registration."""
    import shutil

    old = trino.with_overrides(lake_root=str(tmp_path / "old"))
    spark.createDataFrame([(1, "old")], "id long, name string").write.format("delta").save(
        old.table_path("bronze", "moved"))
    assert register_tables(old, [("bronze", "moved")]) == ["bronze.moved"]
    shutil.rmtree(tmp_path / "old")
    new = trino.with_overrides(lake_root=str(tmp_path / "new"))
    spark.createDataFrame([(2, "new")], "id long, name string").write.format("delta").save(
        new.table_path("bronze", "moved"))
    assert register_tables(new, [("bronze", "moved")]) == ["bronze.moved"]
    assert query(new, "select id, name from delta.bronze.moved") == [[2, "new"]]
