"""The pure transforms of jobs/ingest_captures.py, on tiny inline data, compared whole."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from jobs.ingest_captures import parse_captures, split_captures, split_lines, subject_rows
from scenelake.contracts import contract
from tests.frames import as_rows, assert_same_rows

pytestmark = pytest.mark.unit
UTC = dt.UTC
T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
T1 = T0 + dt.timedelta(hours=1)
BRONZE = "source_file string, source_sha256 string, line_number long, batch_id string, loaded_at timestamp, " \
         "payload string"
GRANTED = [{"subject_id": "subj-1", "consent": "granted"}, {"subject_id": "subj-2", "consent": "granted"}]


def manifest(capture_id: str, /, **changes: object) -> str:
    record = {
        "capture_id": capture_id, "source": "real",
        "device": {"model": "PixelCam 4", "serial": "SN1"}, "sensor": "rgb",
        "resolution": {"width": 1920, "height": 1080}, "fps": 30.0,
        "started_at": "2026-11-01T08:00:00Z", "duration_s": 60.5, "region": "eu-west",
        "scenario": {"environment": "indoor", "lighting": "dim", "motion": "static",
                     "occlusion": "heavy", "weather": "rain"},
        "subjects": GRANTED,
    }
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not ...})


def bronze(spark, rows):  # type: ignore[no-untyped-def]
    """Bronze lines from (file, line, payload) or (file, line, payload, loaded_at); digest = file name."""
    return spark.createDataFrame(
        [(r[0], r[0] if len(r) < 5 else r[4], r[1], "b1", r[3] if len(r) > 3 else T0, r[2]) for r in rows], BRONZE)


def test_split_lines_numbers_lines_from_one_and_skips_blank_ones(spark) -> None:  # type: ignore[no-untyped-def]
    files = spark.createDataFrame(
        [("manifests/a.jsonl", "h1", "first\n\nthird\r\nfourth\n")],
        "source_file string, source_sha256 string, value string")
    expected = spark.createDataFrame(
        [("manifests/a.jsonl", "h1", 1, "first"), ("manifests/a.jsonl", "h1", 3, "third"),
         ("manifests/a.jsonl", "h1", 4, "fourth")],
        "source_file string, source_sha256 string, line_number long, payload string")
    assert_df_equality(split_lines(files), expected, ignore_row_order=True, ignore_nullable=True)


def test_parse_captures_types_every_field_keeps_unknown_fields_and_summarises_consent(spark) -> None:  # type: ignore[no-untyped-def]
    lines = [
        manifest("cap-1"),
        manifest("cap-2", scenario={"environment": "outdoor", "lighting": "dark", "motion": "running", "crowd": "3"},
                 firmware="7.1.2", retries=2, location={"lat": 1.5},
                 subjects=[{"subject_id": "subj-1", "consent": "granted"},
                           {"subject_id": "subj-3", "consent": "withdrawn"}]),
        manifest("cap-3", device={"model": "SimRender 1", "serial": None}, source="simulated", subjects=[]),
        manifest("cap-4", subjects=...),
        manifest("cap-5", subjects=[{"subject_id": "subj-4", "consent": "pending"}]),
    ]
    got = parse_captures(bronze(spark, [("m.jsonl", i + 1, line) for i, line in enumerate(lines)]))
    # The contract's columns, all nullable (a bad line yields nulls), then what the job needs to
    # route the line: its subject list and the rule it breaks.
    silver = [T.StructField(f.name, f.dataType, True) for f in contract("silver.captures").spark_schema().fields]
    shape = T.StructType([*silver[:-3], *silver[-3:], T.StructField("loaded_at", T.TimestampType()),
                          T.StructField("payload", T.StringType()),
                          T.StructField("subjects", T.ArrayType(T.StructType([
                              T.StructField("subject_id", T.StringType()),
                              T.StructField("consent", T.StringType())]))),
                          T.StructField("rule", T.StringType())])
    common = ("PixelCam 4", "SN1", "rgb", 1920, 1080, 30.0, T0, 60.5, "eu-west")
    granted = [("subj-1", "granted"), ("subj-2", "granted")]
    # Scenario tags the contract has columns for are promoted (occlusion, crowd); the others stay in tags.
    expected = spark.createDataFrame([
        ("cap-1", "real", *common, "indoor", "dim", "static", "heavy", None, {"weather": "rain"}, "all_granted", None,
         "m.jsonl", 1, "b1", T0, lines[0], granted, None),
        # Unknown top-level fields are kept as the JSON text of their values.
        ("cap-2", "real", *common, "outdoor", "dark", "running", None, "3", None, "partial",
         {"firmware": '"7.1.2"', "retries": "2", "location": '{"lat":1.5}'},
         "m.jsonl", 2, "b1", T0, lines[1], [("subj-1", "granted"), ("subj-3", "withdrawn")], None),
        ("cap-3", "simulated", "SimRender 1", None, *common[2:], "indoor", "dim", "static", "heavy", None,
         {"weather": "rain"},
         "no_subjects", None, "m.jsonl", 3, "b1", T0, lines[2], [], None),
        ("cap-4", "real", *common, "indoor", "dim", "static", "heavy", None, {"weather": "rain"}, "unreported", None,
         "m.jsonl", 4, "b1", T0, lines[3], None, None),
        ("cap-5", "real", *common, "indoor", "dim", "static", "heavy", None, {"weather": "rain"}, "none_granted", None,
         "m.jsonl", 5, "b1", T0, lines[4], [("subj-4", "pending")], None),
    ], shape)
    assert_same_rows(got, expected)


LINE_RULES = [
    ('{"capture_id": "cap-1", "source": "re', "malformed_json"),
    ("[1, 2]", "malformed_json"),
    (manifest("cap-1", capture_id=...), "missing:capture_id"),
    (manifest("cap-1", sensor=None), "missing:sensor"),
    (manifest("cap-1", device={"serial": "SN1"}), "missing:device.model"),
    (manifest("cap-1", resolution={"width": 1920}), "missing:resolution.height"),
    (manifest("cap-1", scenario={"environment": "indoor", "motion": "static"}), "missing:scenario.lighting"),
    (manifest("cap-1", fps="fast"), "type:fps"),
    (manifest("cap-1", resolution={"width": "wide", "height": 1080}), "type:resolution.width"),
    (manifest("cap-1", started_at="yesterday"), "type:started_at"),
    (manifest("cap-1", subjects="everyone"), "type:subjects"),
    (manifest("cap-1", subjects=[{"consent": "granted"}]), "missing:subjects.subject_id"),
    (manifest("cap-1", subjects=[{"subject_id": "subj-1"}]), "missing:subjects.consent"),
    # Allowed values and bounds come from the contracts.
    (manifest("cap-1", sensor="thermal"), "range:sensor_allowed"),
    (manifest("cap-1", source="rendered"), "range:source_allowed"),
    (manifest("cap-1", fps=-3.0), "range:fps_in_1_1000"),
    (manifest("cap-1", resolution={"width": 0, "height": 1080}), "range:width_in_1_16384"),
    (manifest("cap-1", duration_s=-1.0), "range:duration_s>=0"),
    (manifest("cap-1", scenario={"environment": "indoor", "lighting": "pitch-black", "motion": "static"}),
     "range:lighting_allowed"),
    (manifest("cap-1", subjects=[{"subject_id": "subj-1", "consent": "maybe"}]), "range:consent_allowed"),
    (manifest("cap-1", subjects=[{"subject_id": "subj-1", "consent": "granted"},
                                 {"subject_id": "subj-1", "consent": "withdrawn"}]), "duplicate_subject"),
    # The first rule broken is the one named.
    (manifest("cap-1", capture_id=..., fps="fast", sensor="thermal"), "missing:capture_id"),
    # A null serial is allowed (simulated captures have none); an unknown field is no fault.
    (manifest("cap-1", device={"model": "PixelCam 4", "serial": None}, firmware="7.1.2"), None),
]
def test_line_rules(spark) -> None:  # type: ignore[no-untyped-def]
    lines = bronze(spark, [("m.jsonl", i + 1, line) for i, (line, _rule) in enumerate(LINE_RULES)])
    got = parse_captures(lines).orderBy("line_number").select("rule").collect()
    assert [r.rule for r in got] == [rule for _line, rule in LINE_RULES]


def test_split_captures_publishes_good_lines_once_and_rejects_the_rest(spark) -> None:  # type: ignore[no-untyped-def]
    first = [manifest("cap-1", duration_s=10.0), manifest("cap-2", fps=-3.0), manifest("cap-3")]
    rows = [("manifests/a.jsonl", i + 1, line) for i, line in enumerate(first)]
    # cap-1 is sent again in a later file with a corrected duration; a.jsonl is re-delivered as
    # a_2.jsonl (same bytes, so the same digest) in a later batch.
    rows += [("manifests/b.jsonl", 1, manifest("cap-1", duration_s=12.0), T1)]
    rows += [("manifests/a_2.jsonl", i + 1, line, T1, "manifests/a.jsonl") for i, line in enumerate(first)]
    good, rejected = split_captures(bronze(spark, rows))
    assert [(r.capture_id, r.source_file, r.line_number, r.duration_s, r.consent_state)
            for r in good.orderBy("capture_id").collect()] == [
        ("cap-1", "manifests/b.jsonl", 1, 12.0, "all_granted"),
        ("cap-3", "manifests/a.jsonl", 3, 60.5, "all_granted")]
    assert good.columns == [*contract("silver.captures").column_names, "subjects"]
    assert as_rows(rejected) == as_rows(spark.createDataFrame([
        ("manifests/a.jsonl", 1, "duplicate_of:manifests/b.jsonl:1", first[0]),
        ("manifests/a.jsonl", 2, "range:fps_in_1_1000", first[1]),
        ("manifests/a_2.jsonl", 1, "duplicate_of:manifests/a.jsonl:1", first[0]),
        ("manifests/a_2.jsonl", 2, "duplicate_of:manifests/a.jsonl:2", first[1]),
        ("manifests/a_2.jsonl", 3, "duplicate_of:manifests/a.jsonl:3", first[2]),
    ], "source_file string, record_no long, rule string, payload string"))


def test_subject_rows_are_one_per_subject_of_each_capture(spark) -> None:  # type: ignore[no-untyped-def]
    captures = spark.createDataFrame([
        ("cap-1", [("subj-1", "granted"), ("subj-2", "withdrawn")], "m.jsonl", 1, "b1"),
        ("cap-2", [("subj-1", "pending")], "n.jsonl", 4, "b2"),
        ("cap-3", [], "m.jsonl", 2, "b1"),
        ("cap-4", None, "m.jsonl", 3, "b1"),
    ], "capture_id string, subjects array<struct<subject_id:string,consent:string>>, source_file string, "
       "line_number long, batch_id string")
    # Scenario tags the contract has columns for are promoted (occlusion, crowd); the others stay in tags.
    expected = spark.createDataFrame([
        ("cap-1", "subj-1", "granted", "m.jsonl", 1, "b1"), ("cap-1", "subj-2", "withdrawn", "m.jsonl", 1, "b1"),
        ("cap-2", "subj-1", "pending", "n.jsonl", 4, "b2"),
    ], contract("silver.subjects").spark_schema())
    assert_df_equality(subject_rows(captures), expected, ignore_row_order=True, ignore_nullable=True)
