"""jobs/maintain.py on a lake of many small files: exact file counts, identical data, safe VACUUM, no-op
rerun; and the layout: a filter on one model run reads only that run's files in Trino."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import jobs.maintain as maintain
from scenelake import delta_io, ingest, maintenance
from scenelake.contracts import contract
from scenelake.settings import Settings
from scenelake.trino_client import query, query_with_info, register_tables, scan_splits

pytestmark = pytest.mark.integration
RUNS = ("run-a", "run-b", "run-c")
BATCHES = 6


def prediction_rows(batch: int) -> list[tuple]:  # type: ignore[type-arg]
    return [(run, f"p{batch}-{i}", f"cap-{i % 4}", batch * 10 + i, "person", 1, 1.0 * i, 2.0, 3.0, 4.0,
             0.5 + i / 100, None, None, None, f"predictions/{run}.jsonl", batch * 10 + i)
            for run in RUNS for i in range(5)]


def capture_row(i: int) -> tuple:  # type: ignore[type-arg]
    return (f"cap-{i}", "real", "PixelCam 4", None, "rgb", 1280, 720, 30.0, datetime(2026, 11, 1, tzinfo=UTC), 60.0,
            "eu-west", "indoor", "bright", "static", None, None, None, "no_subjects", None,
            f"manifests/m{i}.jsonl", 1, "batch")


@pytest.fixture(scope="module")
def lake(spark, trino: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:  # type: ignore[no-untyped-def]
    """silver.predictions with 6 files of 5 rows per run partition (18 files), silver.captures with 6 files
    of one row: the small files that many appends leave, written in one commit each to keep the test fast."""
    root: Path = tmp_path_factory.mktemp("maintain")
    lake = trino.with_overrides(lake_root=str(root / "lake"))
    predictions, captures = contract("silver.predictions"), contract("silver.captures")
    rows = [row for batch in range(BATCHES) for row in prediction_rows(batch)]
    (spark.createDataFrame(rows, predictions.spark_schema()).coalesce(1).write.format("delta")
     .partitionBy("run_id").option("maxRecordsPerFile", 5).save(lake.table_path("silver", "predictions")))
    (spark.createDataFrame([capture_row(i) for i in range(BATCHES)], captures.spark_schema()).coalesce(1)
     .write.format("delta").option("maxRecordsPerFile", 1).save(lake.table_path("silver", "captures")))
    return lake


def snapshot(spark, lake: Settings, name: str) -> list[tuple]:  # type: ignore[no-untyped-def, type-arg]
    table = contract(name)
    rows = delta_io.read_table(spark, lake, name).select(*table.column_names).collect()
    return sorted(tuple(r) for r in rows)


def files(spark, lake: Settings, name: str) -> list[maintenance.DataFile]:  # type: ignore[no-untyped-def]
    table = contract(name)
    return maintenance.data_files(spark, lake.table_path(table.layer, table.table))


def test_layout_maintenance_and_rerun(spark, lake: Settings) -> None:  # type: ignore[no-untyped-def]
    names = ["silver.predictions", "silver.captures"]
    assert delta_io.partition_columns(spark, lake.table_path("silver", "predictions")) == ["run_id"]
    assert len(files(spark, lake, "silver.predictions")) == BATCHES * len(RUNS)
    assert len(files(spark, lake, "silver.captures")) == BATCHES
    before = {n: snapshot(spark, lake, n) for n in names}
    reports = {r.table: r for r in maintain.run(spark, lake, progress=ingest.silent)}
    assert (reports["silver.predictions"].files_before, reports["silver.predictions"].files_after) == (18, 3)
    assert reports["silver.predictions"].compacted_partitions == 3
    assert (reports["silver.captures"].files_before, reports["silver.captures"].files_after) == (6, 1)
    assert all(r.analyzed for r in reports.values())
    # One file per run partition, every row as it was.
    assert sorted(f.partition for f in files(spark, lake, "silver.predictions")) == [(("run_id", r),) for r in RUNS]
    assert {n: snapshot(spark, lake, n) for n in names} == before

    # A rerun reads no table (the ledgers say nothing was committed since) and commits nothing.
    versions = {n: delta_io.table_version(spark, lake, n) for n in names}
    again = maintain.run(spark, lake, progress=ingest.silent)
    assert [(r.compacted_partitions, r.vacuumed_files, r.analyzed, r.skipped) for r in again] == [
        (0, 0, False, True)] * 2
    assert [(r.files_after, r.bytes_after) for r in again] == [(r.files_after, r.bytes_after) for r in reports.values()]
    assert {n: delta_io.table_version(spark, lake, n) for n in names} == versions
    # A checked-in-full rerun finds the same: nothing worth doing.
    checked = maintain.run(spark, lake, progress=ingest.silent, recheck=True)
    assert [(r.compacted_partitions, r.vacuumed_files, r.skipped) for r in checked] == [(0, 0, False)] * 2
    assert {n: delta_io.table_version(spark, lake, n) for n in names} == versions

    # One new capture: only silver.captures is read again (2 files, not worth compacting).
    delta_io.merge(spark, lake, "silver.captures",
                   spark.createDataFrame([capture_row(BATCHES)], contract("silver.captures").spark_schema()))
    versions = {n: delta_io.table_version(spark, lake, n) for n in names}
    third = {r.table: r for r in maintain.run(spark, lake, progress=ingest.silent)}
    assert third["silver.predictions"].skipped and not third["silver.captures"].skipped
    assert (third["silver.captures"].files_before, third["silver.captures"].compacted_partitions) == (2, 0)
    assert {n: delta_io.table_version(spark, lake, n) for n in names} == versions
    assert maintain.run(spark, lake, progress=ingest.silent, table=["silver.captures"])[0].skipped

    # Trino reads the new snapshot, with the statistics ANALYZE collected.
    register_tables(lake, [("silver", "predictions"), ("silver", "captures")])
    assert query(lake, "select count(*), count(distinct run_id) from silver.predictions") == [[90, 3]]
    stats = {r[0]: r[2] for r in query(lake, "show stats for silver.predictions")}
    assert stats["capture_id"] == 4.0  # distinct values, from ANALYZE's extended statistics


def test_a_filter_on_one_run_reads_only_that_runs_files(spark, lake: Settings) -> None:  # type: ignore[no-untyped-def]
    register_tables(lake, [("silver", "predictions")])
    per_run = sum(1 for f in files(spark, lake, "silver.predictions") if f.partition == (("run_id", "run-b"),))
    total = len(files(spark, lake, "silver.predictions"))
    rows, info = query_with_info(lake, "select count(*) from silver.predictions where run_id = 'run-b'")
    assert rows == [[30]]
    assert scan_splits(info) == per_run
    rows, info = query_with_info(lake, "select count(*) from silver.predictions")
    assert rows == [[90]]
    assert scan_splits(info) == total > per_run


def test_vacuum_deletes_the_files_a_rewrite_removed_once_they_are_older_than_the_retention(  # type: ignore[no-untyped-def]
        spark, lake: Settings, tmp_path: Path) -> None:
    own = lake.with_overrides(lake_root=str(tmp_path / "lake"))
    table = contract("silver.captures")
    path = own.table_path("silver", "captures")
    rows = spark.createDataFrame([capture_row(i) for i in range(3)], table.spark_schema()).coalesce(1)
    rows.write.format("delta").save(path)
    first = {f.split("/")[-1] for f in spark.read.format("delta").load(path).inputFiles()}
    rows.write.format("delta").mode("overwrite").save(path)  # removes the first file
    data = sorted(Path(path).glob("*.parquet"))
    assert len(data) == 2
    # A retention of 0 hours (explicitly allowed): the removal is old enough at once.
    report = maintain.run(spark, own, progress=ingest.silent, retention_hours=0, allow_unsafe_retention=True,
                          analyze=False)[0]
    assert (report.vacuumed_files, report.files_after) == (1, 1)
    assert {p.name for p in Path(path).glob("*.parquet")} == {p.name for p in data} - first
    assert snapshot(spark, own, "silver.captures") == sorted(tuple(r) for r in rows.collect())
    version = delta_io.table_version(spark, own, "silver.captures")
    again = maintain.run(spark, own, progress=ingest.silent, retention_hours=0, allow_unsafe_retention=True)[0]
    assert (again.vacuumed_files, again.compacted_partitions) == (0, 0)
    assert delta_io.table_version(spark, own, "silver.captures") == version


def test_a_too_short_retention_is_refused(spark, lake: Settings) -> None:  # type: ignore[no-untyped-def]
    version = delta_io.table_version(spark, lake, "silver.predictions")
    with pytest.raises(maintenance.MaintenanceError, match="shorter than Delta's safe minimum of 168 hours"):
        maintain.run(spark, lake, progress=ingest.silent, retention_hours=1)
    assert delta_io.table_version(spark, lake, "silver.predictions") == version


def test_a_table_partitioned_otherwise_is_rewritten_with_the_contracts_layout(spark, lake: Settings,  # type: ignore[no-untyped-def]
                                                                              tmp_path: Path) -> None:
    own = lake.with_overrides(lake_root=str(tmp_path / "lake"))
    table = contract("silver.predictions")
    path = own.table_path("silver", "predictions")
    # As main wrote it before the contract partitioned it: one unpartitioned file.
    spark.createDataFrame(prediction_rows(0), table.spark_schema()).repartition(1).write.format("delta").save(path)
    rows = snapshot(spark, own, "silver.predictions")
    delta_io.merge(spark, own, "silver.predictions",
                   spark.createDataFrame(prediction_rows(1), table.spark_schema()))
    assert delta_io.partition_columns(spark, path) == ["run_id"]
    assert snapshot(spark, own, "silver.predictions") == sorted(rows + [tuple(r) for r in prediction_rows(1)])
