"""The pure transforms of jobs/ingest_captures.py, on tiny inline data, compared whole."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from jobs.ingest_captures import latest_per_capture, parse_captures, split_lines
from scenelake.contracts import contract
from tests.frames import assert_same_rows

pytestmark = pytest.mark.unit
UTC = dt.UTC
T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def manifest(capture_id: str, **changes: object) -> str:
    record = {
        "capture_id": capture_id, "source": "real",
        "device": {"model": "PixelCam 4", "serial": "SN1"}, "sensor": "rgb",
        "resolution": {"width": 1920, "height": 1080}, "fps": 30.0,
        "started_at": "2026-11-01T08:00:00Z", "duration_s": 60.5, "region": "eu-west",
        "scenario": {"environment": "indoor", "lighting": "dim", "motion": "static",
                     "occlusion": "heavy"},
    }
    record.update(changes)
    return json.dumps(record)


def test_split_lines_numbers_lines_from_one_and_skips_blank_ones(spark) -> None:  # type: ignore[no-untyped-def]
    files = spark.createDataFrame(
        [("manifests/a.jsonl", "h1", "first\n\nthird\r\nfourth\n")],
        "source_file string, source_sha256 string, value string")
    expected = spark.createDataFrame(
        [("manifests/a.jsonl", "h1", 1, "first"), ("manifests/a.jsonl", "h1", 3, "third"),
         ("manifests/a.jsonl", "h1", 4, "fourth")],
        "source_file string, source_sha256 string, line_number long, payload string")
    assert_df_equality(split_lines(files), expected, ignore_row_order=True, ignore_nullable=True)


def test_parse_captures_types_every_field_and_keeps_unpromoted_tags(spark) -> None:  # type: ignore[no-untyped-def]
    bronze = spark.createDataFrame(
        [("m.jsonl", 7, "b1", T0, manifest("cap-1")),
         ("m.jsonl", 8, "b1", T0, manifest("cap-2", sensor="thermal", fps="fast",
                                           scenario={"environment": "outdoor"}))],
        "source_file string, line_number long, batch_id string, loaded_at timestamp, payload string")
    got = parse_captures(bronze).drop("loaded_at")
    # The contract's columns, all nullable: a parse must be able to yield nulls for the gate.
    silver = T.StructType([T.StructField(f.name, f.dataType, True)
                           for f in contract("silver.captures").spark_schema().fields])
    expected = spark.createDataFrame([
        ("cap-1", "real", "PixelCam 4", "SN1", "rgb", 1920, 1080, 30.0, T0, 60.5, "eu-west",
         "indoor", "dim", "static", {"occlusion": "heavy"}, "m.jsonl", 7, "b1"),
        # A mistyped fps becomes null (the gate then stops the batch); an unknown sensor stays
        # as sent so the allowed-values check can name it.
        ("cap-2", "real", "PixelCam 4", "SN1", "thermal", 1920, 1080, None, T0, 60.5, "eu-west",
         "outdoor", None, None, None, "m.jsonl", 8, "b1"),
    ], silver)
    assert_same_rows(got, expected)


def test_latest_copy_of_a_capture_wins(spark) -> None:  # type: ignore[no-untyped-def]
    later = T0 + dt.timedelta(hours=1)
    rows = spark.createDataFrame(
        [("cap-1", "a.jsonl", 1, T0, 10.0), ("cap-1", "a.jsonl", 5, T0, 20.0),
         ("cap-1", "b.jsonl", 1, later, 30.0), ("cap-2", "a.jsonl", 2, T0, 40.0)],
        "capture_id string, source_file string, line_number long, loaded_at timestamp, duration_s double")
    expected = spark.createDataFrame(
        [("cap-1", "b.jsonl", 1, 30.0), ("cap-2", "a.jsonl", 2, 40.0)],
        "capture_id string, source_file string, line_number long, duration_s double")
    assert_df_equality(latest_per_capture(rows), expected, ignore_row_order=True)
