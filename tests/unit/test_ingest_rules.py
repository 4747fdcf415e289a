"""Every quarantine rule of the annotation and prediction transforms, on tiny inline records."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from jobs.ingest_annotations import coco_annotations, coco_frames, mot_annotations, redelivered_rows
from jobs.ingest_predictions import predictions
from scenelake.contracts import Column
from scenelake.ingest import (
    extra_fields,
    json_document_records,
    latest_wins,
    mot_rows,
    split_redeliveries,
    value_checks,
)

pytestmark = pytest.mark.unit
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
META = {"capture_id": "cap-1", "label_batch": "lb1", "run_id": "run-1"}
SCHEMA = ("source_file string, format string, section string, record_no long, payload string, "
          "import_meta map<string,string>, loaded_at timestamp")


def records(spark, rows):  # type: ignore[no-untyped-def]
    return spark.createDataFrame([(*r, META, T0) for r in rows], SCHEMA)


def coco_file(spark, annotations):  # type: ignore[no-untyped-def]
    base = [("f.json", "coco", "images", 1, json.dumps({"id": 7, "width": 100, "height": 50})),
            ("f.json", "coco", "categories", 1, json.dumps({"id": 1, "name": "person"}))]
    return records(spark, base + [("f.json", "coco", "annotations", i + 1, a) for i, a in enumerate(annotations)])


def ann(**changes: object) -> str:
    record = {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10.0, 5.0, 20.0, 30.0], "area": 600.0, "iscrowd": 0}
    record.update(changes)
    return json.dumps({k: v for k, v in record.items() if v is not ...})


def test_coco_annotation_rules(spark) -> None:  # type: ignore[no-untyped-def]
    got = coco_annotations(coco_file(spark, [
        ann(), ann(id=2, iscrowd=1), "{not json", ann(id=4, bbox=...), ann(id=5, area="big"),
        ann(id=6, bbox=[1.0, 2.0, 3.0]), ann(id=7, bbox=[1.0, 2.0, -3.0, 4.0]), ann(id=8, image_id=99),
        ann(id=9, category_id=5), ann(id=10, bbox=[90.0, 5.0, 20.0, 30.0]),
        ann(id=11, bbox=[-5.0, 40.0, 20.0, 30.0]), ann(id=12, bbox=[100.0, 5.0, 20.0, 30.0]),
        ann(id=13, bbox=[-20.0, 5.0, 20.0, 30.0]), ann(id=14, bbox=[10.0, 10.0, 0.0, 0.0]),
        ann(id=15, iscrowd=2), ann(id=16, iscrowd=-1),
        '{"id": 17, "image_id": 7, "category_id": 1, "bbox": [1e999, 1.0, 2.0, 3.0], "area": 6.0}',  # overflows
    ])).select("record_no", "annotation_id", "is_crowd", "rule").orderBy("record_no").collect()
    assert [tuple(r) for r in got] == [
        (1, "cap-1:lb1:1", False, None), (2, "cap-1:lb1:2", True, None), (3, "cap-1:lb1", False, "malformed_json"),
        (4, "cap-1:lb1:4", False, "missing:bbox"), (5, "cap-1:lb1:5", False, "type:area"),
        (6, "cap-1:lb1:6", False, "type:bbox"),
        (7, "cap-1:lb1:7", False, "range:w>0"), (8, "cap-1:lb1:8", False, "unknown_frame"),
        (9, "cap-1:lb1:9", False, "unknown_category"),
        # Past the right, bottom and left edges (the image is 100 x 50): kept, as pycocotools keeps them.
        (10, "cap-1:lb1:10", False, None), (11, "cap-1:lb1:11", False, None),
        (12, "cap-1:lb1:12", False, "range:box_outside_frame"), (13, "cap-1:lb1:13", False, "range:box_outside_frame"),
        (14, "cap-1:lb1:14", False, "range:w>0"),
        (15, "cap-1:lb1:15", False, "range:iscrowd_in_0_1"), (16, "cap-1:lb1:16", False, "range:iscrowd_in_0_1"),
        (17, "cap-1:lb1:17", False, "range:bbox_finite"),
    ]


def test_coco_frames_rules(spark) -> None:  # type: ignore[no-untyped-def]
    got = coco_frames(records(spark, [
        ("f.json", "coco", "images", 1, json.dumps({"id": 7, "width": 100, "height": 50, "file_name": "a.jpg"})),
        ("f.json", "coco", "images", 2, json.dumps({"width": 100, "height": 50})),
        ("f.json", "coco", "images", 3, json.dumps({"id": 8, "width": 0, "height": 50})),
    ])).select("frame_index", "width", "file_name", "rule").collect()
    assert [tuple(r) for r in got] == [(7, 100, "a.jpg", None), (None, 100, None, "missing:id"),
                                       (8, 0, None, "range:width>=1")]


def test_mot_line_rules(spark) -> None:  # type: ignore[no-untyped-def]
    lines = ["1,1,399,182,121,229,1,-1,-1,-1", "2,1,1,2", "x,1,1,2,3,4,1", "1.5,1,1,2,3,4,1",
             "0,1,1,2,3,4,1", "3,1,1,2,-3,4,1", "4,2,1.5,2.5,3,4"]
    got = mot_rows(records(spark, [("gt.txt", "mot", "rows", i + 1, ln) for i, ln in enumerate(lines)]))
    assert [r.rule for r in got.orderBy("record_no").collect()] == [
        None, "malformed_csv", "type:frame", "type:frame", "range:frame>=1", "range:w>=0", None]


def test_mot17_ground_truth_keeps_class_and_visibility_and_refuses_an_unknown_class(spark) -> None:  # type: ignore[no-untyped-def]
    lines = ["1,1,399,182,121,229,1,1,0.83", "1,2,10,20,30,40,0,7,0.5", "1,3,10,20,30,40,0,14,1",
             "1,4,10,20,30,40,0,x,1", "1,5,399,182,121,229,1,-1,-1,-1"]
    rows = mot_rows(records(spark, [("gt.txt", "mot", "rows", i + 1, ln) for i, ln in enumerate(lines)]))
    got = mot_annotations(rows).orderBy("record_no").collect()
    assert [(r.object_class, r.visibility, r.is_crowd, r.rule) for r in got] == [
        (1, 0.83, False, None), (7, 0.5, True, None), (14, 1.0, True, "range:object_class_in_1_13"),
        (None, 1.0, True, "range:object_class_in_1_13"), (None, None, False, None)]


def test_truncated_json_document_is_one_file_record_holding_the_text(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame([('{"images": [{"id": 1}', ), ('[{"a": 1}, {"a": 2}]', )], "value string")
    got = [r.r for r in df.select(json_document_records("value").alias("r")).collect()]
    assert [[tuple(x) for x in rs] for rs in got] == [
        [("file", 1, '{"images": [{"id": 1}')],
        [("results", 1, '{"a": 1}'), ("results", 2, '{"a": 2}')]]


def test_prediction_rules(spark) -> None:  # type: ignore[no-untyped-def]
    det = {"frame_index": 7, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}
    rows = records(spark, [
        ("p.jsonl", "jsonl", "rows", 1, json.dumps(det)),
        ("p.jsonl", "jsonl", "rows", 2, json.dumps({**det, "score": 1.5})),
        ("p.jsonl", "jsonl", "rows", 3, json.dumps({**det, "frame_index": 8})),
        ("p.jsonl", "jsonl", "rows", 4, json.dumps({**det, "prediction_id": "own-4", "score": "high"})),
        ("p.jsonl", "jsonl", "rows", 5, '{"frame_index": 7, "bbox": [1,'),
        ("p.jsonl", "jsonl", "rows", 6, json.dumps(det)),
        ("t.txt", "mot", "rows", 1, "7,3,1,2,3,4,-1,-1,-1,-1"),
    ])
    frames = spark.createDataFrame([("cap-1", 7)], "capture_id string, frame_index long")
    runs = spark.createDataFrame([("run-1",)], "run_id string")
    got = predictions(rows, frames, runs).select("source_file", "record_no", "prediction_id", "score", "track_id",
                                                 "rule").orderBy("source_file", "record_no").collect()
    assert [(r.source_file, r.record_no, r.score, r.track_id, r.rule) for r in got] == [
        ("p.jsonl", 1, 0.5, None, None),
        ("p.jsonl", 2, 1.5, None, "range:score_in_0_1"),
        ("p.jsonl", 3, 0.5, None, "unknown_frame"),
        ("p.jsonl", 4, None, None, "type:score"),
        ("p.jsonl", 5, None, None, "malformed_json"),
        ("p.jsonl", 6, 0.5, None, None),
        ("t.txt", 1, -1.0, 3, None),
    ]
    ids = [r.prediction_id for r in got]
    assert ids[3] == "own-4"
    assert ids[0] == ids[5] and ids[0].startswith("h:") and len(set(ids)) == 6  # record 6 repeats record 1
    unknown_run = predictions(rows, frames, spark.createDataFrame([], "run_id string"))
    assert {r.rule for r in unknown_run.where("record_no = 1 and source_file = 'p.jsonl'").collect()} == {"unknown_run"}
    # A 10 s capture at 30 fps ends at frame 301: frame 8 may still be labelled, frame 302 never.
    past_end = records(spark, [("p.jsonl", "jsonl", "rows", 1, json.dumps({**det, "frame_index": 8})),
                               ("p.jsonl", "jsonl", "rows", 2, json.dumps({**det, "frame_index": 301})),
                               ("p.jsonl", "jsonl", "rows", 3, json.dumps({**det, "frame_index": 302}))])
    captures = spark.createDataFrame([("cap-1", 30.0, 10.0)], "capture_id string, fps double, duration_s double")
    assert [r.rule for r in predictions(past_end, frames, runs, captures).orderBy("record_no").collect()] == [
        "unknown_frame", "unknown_frame", "range:frame_within_capture"]


def test_latest_copy_wins_and_losers_name_their_winner(spark) -> None:  # type: ignore[no-untyped-def]
    later = T0 + dt.timedelta(hours=1)
    df = spark.createDataFrame([("k", "a.json", 1, T0), ("k", "a.json", 2, T0), ("k", "b.json", 1, later),
                                ("j", "a.json", 3, T0)],
                               "key string, source_file string, record_no long, loaded_at timestamp")
    winners, losers = latest_wins(df, ["key"])
    assert sorted(tuple(r) for r in winners.select("key", "source_file", "record_no").collect()) == [
        ("j", "a.json", 3), ("k", "b.json", 1)]
    assert sorted(tuple(r) for r in losers.select("source_file", "record_no", "rule").collect()) == [
        ("a.json", 1, "duplicate_of:b.json:1"), ("a.json", 2, "duplicate_of:b.json:1")]


def test_extra_fields_keeps_unknown_top_level_fields_as_json_text(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame([
        (1, json.dumps({"id": 1, "note": "1", "n": 1, "flag": True, "nested": {"a": [1, 2.5]}, "gone": None})),
        (2, json.dumps({"id": 2})),
        (3, "{not json"),
        (4, "[1, 2]"),
    ], "k int, payload string")
    got = df.select("k", extra_fields(F.col("payload"), ["id"]).alias("extra")).orderBy("k").collect()
    assert [(r.k, r.extra) for r in got] == [
        (1, {"note": '"1"', "n": "1", "flag": "true", "nested": '{"a":[1,2.5]}', "gone": "null"}),
        (2, None), (3, None), (4, None)]


def test_contract_bounds_and_allowed_values_become_named_rules(spark) -> None:  # type: ignore[no-untyped-def]
    def column(**bounds: object) -> Column:
        return Column("v", "double", True, "a value", **bounds)  # type: ignore[arg-type]

    cases = [(column(minimum=0, maximum=1), ["range:v_in_0_1"]), (column(minimum=0.5), ["range:v>=0.5"]),
             (column(maximum=10), ["range:v<=10"]), (column(allowed=(1.0, 2.0)), ["range:v_allowed"]),
             (column(), [])]
    assert [[name for name, _test in value_checks(c)] for c, _names in cases] == [n for _c, n in cases]
    df = spark.createDataFrame([(-1.0,), (0.0,), (1.0,), (2.0,), (None,)], "v double")
    (_, between), = value_checks(column(minimum=0, maximum=1))
    (_, allowed), = value_checks(column(allowed=(1.0, 2.0)))
    got = df.select("v", between(F.col("v")).alias("b"), allowed(F.col("v")).alias("a")).collect()
    # A null breaks no range rule: a missing value is a missing:/type: rule's to name.
    assert sorted((r.v is None, r.v, r.b, r.a) for r in got) == [
        (False, -1.0, True, True), (False, 0.0, False, True), (False, 1.0, False, False),
        (False, 2.0, True, False), (True, None, False, False)]


def test_a_redelivered_file_is_a_duplicate_of_the_first_delivery(spark) -> None:  # type: ignore[no-untyped-def]
    later = T0 + dt.timedelta(hours=1)
    rows = [("p/run_id=r/capture_id=c/a.jsonl", "h1", 1, T0), ("p/run_id=r/capture_id=c/a.jsonl", "h1", 2, T0),
            # The same bytes again, under another name, in the same batch and a later one.
            ("p/run_id=r/capture_id=c/a_2.jsonl", "h1", 1, T0), ("p/run_id=r/capture_id=c/a_2.jsonl", "h1", 2, T0),
            ("p/run_id=r/capture_id=c/later.jsonl", "h1", 1, later),
            # The same bytes for another capture mean something else: not a re-delivery.
            ("p/run_id=r/capture_id=d/a.jsonl", "h1", 1, T0),
            ("p/run_id=r/capture_id=c/b.jsonl", "h2", 1, T0)]
    df = spark.createDataFrame(rows, "source_file string, source_sha256 string, record_no long, loaded_at timestamp")
    scope = F.regexp_extract("source_file", "capture_id=([^/]*)", 1)
    originals, copies = split_redeliveries(df, scope)
    assert sorted((r.source_file, r.record_no) for r in originals.collect()) == [
        ("p/run_id=r/capture_id=c/a.jsonl", 1), ("p/run_id=r/capture_id=c/a.jsonl", 2),
        ("p/run_id=r/capture_id=c/b.jsonl", 1), ("p/run_id=r/capture_id=d/a.jsonl", 1)]
    assert originals.columns == df.columns
    assert sorted((r.source_file, r.record_no, r.rule) for r in copies.collect()) == [
        ("p/run_id=r/capture_id=c/a_2.jsonl", 1, "duplicate_of:p/run_id=r/capture_id=c/a.jsonl:1"),
        ("p/run_id=r/capture_id=c/a_2.jsonl", 2, "duplicate_of:p/run_id=r/capture_id=c/a.jsonl:2"),
        ("p/run_id=r/capture_id=c/later.jsonl", 1, "duplicate_of:p/run_id=r/capture_id=c/a.jsonl:1")]


def test_unknown_fields_of_annotations_and_detections_are_kept(spark) -> None:  # type: ignore[no-untyped-def]
    polygon = [[10.0, 5.0, 30.0, 5.0, 30.0, 35.0]]
    got = coco_annotations(coco_file(spark, [ann(segmentation=polygon), ann(id=2)]))
    assert [(r.annotation_id, r.extra) for r in got.orderBy("record_no").collect()] == [
        ("cap-1:lb1:1", {"segmentation": "[[10,5,30,5,30,35]]"}), ("cap-1:lb1:2", None)]
    det = {"frame_index": 7, "category_id": 1, "bbox": [1.0, 2.0, 3.0, 4.0], "score": 0.5}
    rows = records(spark, [
        ("p.jsonl", "jsonl", "rows", 1, json.dumps({**det, "model_tag": "nightly", "latency_ms": 12})),
        ("p.jsonl", "jsonl", "rows", 2, json.dumps(det)),
        ("r.json", "coco_results", "rows", 1, json.dumps({"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4],
                                                          "score": 0.5, "segmentation": {"counts": "ab"}})),
        ("t.txt", "mot", "rows", 1, "7,3,1,2,3,4,-1,-1,-1,-1"),
    ])
    frames = spark.createDataFrame([("cap-1", 7)], "capture_id string, frame_index long")
    got = predictions(rows, frames, spark.createDataFrame([("run-1",)], "run_id string")).orderBy(
        "source_file", "record_no")
    assert [(r.source_file, r.record_no, r.rule, r.extra) for r in got.collect()] == [
        ("p.jsonl", 1, None, {"model_tag": '"nightly"', "latency_ms": "12"}), ("p.jsonl", 2, None, None),
        ("r.json", 1, None, {"segmentation": '{"counts":"ab"}'}), ("t.txt", 1, None, None)]


def test_a_redelivered_export_is_quarantined_for_the_table_each_record_was_meant_for(spark) -> None:  # type: ignore[no-untyped-def]
    copies = spark.createDataFrame([
        ("f_2.json", "images", 1, "{}", "duplicate_of:f.json:1"),
        ("f_2.json", "annotations", 1, "{}", "duplicate_of:f.json:1"),
        ("f_2.json", "categories", 1, "{}", "duplicate_of:f.json:1"),
    ], "source_file string, section string, record_no long, payload string, rule string")
    got = redelivered_rows(copies, "b1")
    assert sorted(tuple(r) for r in got.collect()) == [
        ("silver.annotations", "f_2.json", "annotations", 1, "duplicate_of:f.json:1", "{}", "b1"),
        ("silver.frames", "f_2.json", "images", 1, "duplicate_of:f.json:1", "{}", "b1")]


def test_the_landing_listing_skips_files_bronze_holds_and_reads_new_or_touched_ones(spark, settings,  # type: ignore[no-untyped-def]
                                                                                    tmp_path) -> None:
    """A file whose path, size and modification time bronze holds is not read again; a new file and
    one written again since (another modification time) are; no folder at all is no file. The
    answer comes from the landed-file ledger while bronze's newest commit is the one it names, and
    from bronze's rows after any other commit, the same either way."""
    import os

    from scenelake import delta_io
    from scenelake.ingest import LandedFiles, new_batch_id, read_files, to_bronze, unseen

    lake = settings.with_overrides(lake_root=str(tmp_path / "lake"), landing_root=str(tmp_path / "landing"))
    folder = tmp_path / "landing" / "manifests"
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text('{"capture_id": "a"}\n')
    (folder / "b c.jsonl").write_text('{"capture_id": "b"}\n')

    def listed(landed: LandedFiles) -> list[str]:
        return sorted(r.source_file for r in read_files(spark, lake, "manifests", "*.jsonl", landed=landed).collect())

    landed = LandedFiles(spark, lake, "bronze.captures")
    first = unseen(spark, read_files(spark, lake, "manifests", "*.jsonl", landed=landed), landed)
    assert sorted(r.source_file for r in first.collect()) == ["manifests/a.jsonl", "manifests/b%20c.jsonl"]
    lines = first.select("source_file", "source_sha256", F.lit(1).cast("long").alias("line_number"),
                         F.col("value").alias("payload"))
    delta_io.append(spark, lake, "bronze.captures", to_bronze(lines, new_batch_id(), first))
    landed.save()
    ledger = (tmp_path / "lake" / "_landed" / "bronze.captures.json").read_text()
    assert "manifests/a.jsonl" in ledger and '"capture_id"' not in ledger  # names, sizes, times, digests only
    assert sorted(json.loads(ledger)["newest"]) == ["manifests/a.jsonl", "manifests/b%20c.jsonl"]
    current = LandedFiles(spark, lake, "bronze.captures")
    assert current.trusted and listed(current) == []

    (folder / "new.jsonl").write_text('{"capture_id": "n"}\n')
    os.utime(folder / "a.jsonl", (1_900_000_000, 1_900_000_000))  # the same bytes, written again
    again = LandedFiles(spark, lake, "bronze.captures")
    assert listed(again) == ["manifests/a.jsonl", "manifests/new.jsonl"]
    # The touched file's bytes are known: only the new one is unseen.
    current = LandedFiles(spark, lake, "bronze.captures")
    fresh = read_files(spark, lake, "manifests", "*.jsonl", landed=current)
    assert [r.source_file for r in unseen(spark, fresh, current).collect()] == ["manifests/new.jsonl"]
    assert current.trusted and [name for name, _ in current.loaded] == ["manifests/new.jsonl"]
    assert read_files(spark, lake, "nowhere", "*.jsonl", landed=again).count() == 0
    # Another commit on bronze (compaction, an erasure's rewrite, a crash after an append): bronze is read.
    path = lake.table_path("bronze", "captures")
    spark.sql(f"alter table delta.`{path}` set tblproperties ('scenelake.test' = 'moved')")
    stale = LandedFiles(spark, lake, "bronze.captures")
    assert not stale.trusted and listed(stale) == ["manifests/a.jsonl", "manifests/new.jsonl"]
    # ... and so are its digests: the touched file is still known by its bytes.
    stale = LandedFiles(spark, lake, "bronze.captures")
    fresh = read_files(spark, lake, "manifests", "*.jsonl", landed=stale)
    assert [r.source_file for r in unseen(spark, fresh, stale).collect()] == ["manifests/new.jsonl"]

    # A corrected a.jsonl, then the first bytes again: each is a new version, since each differs
    # from the newest version bronze holds (the first bytes supersede the correction).
    import hashlib

    versions = ['{"capture_id": "a", "fps": 25}\n', '{"capture_id": "a"}\n']
    for text, want in zip(versions, [["manifests/a.jsonl", "manifests/new.jsonl"], ["manifests/a.jsonl"]], strict=True):
        (folder / "a.jsonl").write_text(text)
        landed = LandedFiles(spark, lake, "bronze.captures")
        found = unseen(spark, read_files(spark, lake, "manifests", "*.jsonl", landed=landed), landed).cache()
        assert sorted(r.source_file for r in found.collect()) == want
        delta_io.append(spark, lake, "bronze.captures", to_bronze(found.select(
            "source_file", "source_sha256", F.lit(1).cast("long").alias("line_number"),
            F.col("value").alias("payload")), new_batch_id(), found))
        landed.save()
    # Read from bronze's rows (after another commit), the newest version is the one loaded last.
    spark.sql(f"alter table delta.`{path}` set tblproperties ('scenelake.test' = 'again')")
    rebuilt = LandedFiles(spark, lake, "bronze.captures")
    digest = [hashlib.sha256(t.encode()).hexdigest() for t in versions]
    assert not rebuilt.trusted and (rebuilt.holds("manifests/a.jsonl", digest[1]),
                                    rebuilt.holds("manifests/a.jsonl", digest[0])) == (True, False)


def test_a_blank_or_unreadable_export_is_one_file_record_with_its_rule(spark) -> None:  # type: ignore[no-untyped-def]
    from scenelake.ingest import file_failures

    got = file_failures(records(spark, [("a.json", "coco", "file", 1, ""), ("b.txt", "mot", "file", 1, " \n "),
                                        ("c.json", "coco", "file", 1, '{"images": ['),
                                        ("d.json", "coco", "images", 1, "{}")]))
    assert sorted((r.source_file, r.rule) for r in got.collect()) == [
        ("a.json", "empty_file"), ("b.txt", "empty_file"), ("c.json", "malformed_json")]


def test_the_landed_file_ledger_round_trips_and_a_damaged_one_is_not_trusted() -> None:
    from scenelake.ingest import Landed

    ledger = Landed(3, 1_700_000_000_000, {}).plus(4, 1_700_000_000_500, [
        ("manifests/a.jsonl", 20, "2026-12-01T10:00:00"), ("manifests/a.jsonl", 21, "2026-12-02T10:00:00"),
        ("manifests/b.jsonl", 7, "2026-12-01T10:00:00")], [("manifests/a.jsonl", "d1"), ("manifests/a.jsonl", "d2")])
    assert Landed.parse(ledger.text()) == ledger
    assert ledger.newest == {"manifests/a.jsonl": "d2"}  # the version loaded last
    # A ledger from before it kept each path's newest digest is not trusted: bronze is read once instead.
    before = json.loads(ledger.text())
    del before["newest"]
    assert Landed.parse(json.dumps(before)) is None
    before["digests"] = {"manifests/a.jsonl": ["d1", "d2"]}
    assert Landed.parse(json.dumps(before)) is None
    assert Landed.parse(json.dumps({**before, "newest": {"manifests/a.jsonl": ["d1", "d2"]}})) is None
    assert (ledger.version, ledger.committed_ms) == (4, 1_700_000_000_500)
    assert ledger.files["manifests/a.jsonl"] == {(20, "2026-12-01T10:00:00"), (21, "2026-12-02T10:00:00")}
    assert [Landed.parse(t) for t in ("", "{", '{"version": 1}', '{"version": 1, "committed_ms": 2, "files": 3}')] == [
        None, None, None, None]
