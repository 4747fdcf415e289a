"""The shared oracle data imports through the normal path with its exact record counts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import functions as F

import jobs.ingest_annotations as annotations_job
import jobs.ingest_predictions as predictions_job
from scenelake import delta_io, ingest
from scenelake.settings import Settings
from scenelake.trino_client import query, register_tables

pytestmark = pytest.mark.integration


def counts(spark, lake: Settings, table: str, *by: str) -> dict[tuple[object, ...], int]:  # type: ignore[no-untyped-def]
    rows = delta_io.read_table(spark, lake, table).groupBy(*by).count().collect()
    return {tuple(r[c] for c in by): r["count"] for r in rows}


def test_annotations_land_with_exact_counts(spark, oracle_lake) -> None:  # type: ignore[no-untyped-def]
    assert counts(spark, oracle_lake, "silver.annotations", "capture_id", "is_crowd") == {
        ("coco-val2014-100", False): 830, ("coco-val2014-100", True): 9,
        ("TUD-Campus", False): 359, ("TUD-Stadtmitte", False): 1156}
    assert counts(spark, oracle_lake, "silver.frames", "capture_id") == {
        ("coco-val2014-100",): 100, ("TUD-Campus",): 71, ("TUD-Stadtmitte",): 179}


def test_predictions_land_with_exact_counts(spark, oracle_lake) -> None:  # type: ignore[no-untyped-def]
    assert counts(spark, oracle_lake, "silver.predictions", "run_id", "capture_id") == {
        ("coco-fakebbox", "coco-val2014-100"): 734, ("mot15-tracker", "TUD-Campus"): 222,
        ("mot15-tracker", "TUD-Stadtmitte"): 749}
    runs = delta_io.read_table(spark, oracle_lake, "silver.model_runs").select(
        "run_id", "model_name", "model_version").collect()
    assert sorted(tuple(r) for r in runs) == [("coco-fakebbox", "fakebbox", "1"),
                                              ("mot15-tracker", "unknown", "unknown")]
    assert delta_io.read_table(spark, oracle_lake, "ops.quarantine").count() == 0


def test_one_oracle_record_reads_back_exactly(spark, oracle_lake) -> None:  # type: ignore[no-untyped-def]
    """The first COCO result and the first TUD-Campus gt line, field by field."""
    first = (delta_io.read_table(spark, oracle_lake, "silver.predictions")
             .where((F.col("frame_index") == 42) & (F.col("score") == 0.236) & (F.col("category_id") == 18))
             .select("frame_index", "category_id", "x", "y", "w", "h", "score").collect())
    assert [tuple(r) for r in first] == [(42, 18, 258.15, 41.29, 348.26, 243.78, 0.236)]
    gt = (delta_io.read_table(spark, oracle_lake, "silver.annotations")
          .where(F.col("annotation_id") == "TUD-Campus:TUD-Campus:1:1")
          .select("frame_index", "track_id", "x", "y", "w", "h", "area", "category").collect())
    assert [tuple(r) for r in gt] == [(1, 1, 399.0, 182.0, 121.0, 229.0, 121.0 * 229.0, "person")]


def test_rerun_changes_no_table(spark, oracle_lake) -> None:  # type: ignore[no-untyped-def]
    tables = ["bronze.annotations", "silver.frames", "silver.annotations", "bronze.predictions",
              "silver.model_runs", "silver.predictions", "ops.quarantine"]
    before = {t: delta_io.table_version(spark, oracle_lake, t) for t in tables}
    assert not annotations_job.run(spark, oracle_lake, progress=ingest.silent).rebuilt
    assert not predictions_job.run(spark, oracle_lake, progress=ingest.silent).rebuilt
    assert {t: delta_io.table_version(spark, oracle_lake, t) for t in tables} == before


def test_silver_and_quarantine_are_queryable_in_trino(trino, oracle_lake) -> None:  # type: ignore[no-untyped-def]
    register_tables(oracle_lake, [("silver", "annotations"), ("silver", "predictions"), ("ops", "quarantine")])
    assert query(oracle_lake, "select count(*), count_if(is_crowd) from delta.silver.annotations "
                              "where capture_id = 'coco-val2014-100'") == [[839, 9]]
    assert query(oracle_lake, "select count(*) from delta.silver.predictions") == [[1705]]
    assert query(oracle_lake, "select count(*) from delta.ops.quarantine") == [[0]]


def test_landing_paths_hold_the_import_metadata(oracle_lake) -> None:  # type: ignore[no-untyped-def]
    landed = sorted(str(p.relative_to(oracle_lake.landing_root)) for p in Path(oracle_lake.landing_root).rglob("*")
                    if p.is_file())
    assert landed == [
        "annotations/coco/label_batch=coco-val2014-100/capture_id=coco-val2014-100/ground_truth.json",
        "annotations/mot/label_batch=TUD-Campus/capture_id=TUD-Campus/gt.txt",
        "annotations/mot/label_batch=TUD-Stadtmitte/capture_id=TUD-Stadtmitte/gt.txt",
        "predictions/run_id=coco-fakebbox/capture_id=coco-val2014-100/predictions_bbox.json",
        "predictions/run_id=coco-fakebbox/run.json",
        "predictions/run_id=mot15-tracker/capture_id=TUD-Campus/test.txt",
        "predictions/run_id=mot15-tracker/capture_id=TUD-Stadtmitte/test.txt",
        "predictions/run_id=mot15-tracker/run.json",
    ]
