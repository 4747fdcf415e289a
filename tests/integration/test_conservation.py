"""Conservation on a generated landing zone with planted faults: every raw record ends in
exactly one of silver or quarantine, every planted fault is quarantined for its reason, and
unknown fields are published in `extra`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from scenelake import delta_io

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def generated(faulty_lake):  # type: ignore[no-untyped-def]
    return faulty_lake


def per_file(df: DataFrame) -> dict[str, int]:
    return {r.source_file: r["count"] for r in df.groupBy("source_file").count().collect()}


def add(*counts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out


def test_every_record_is_in_silver_or_quarantine_exactly_once(spark, generated) -> None:  # type: ignore[no-untyped-def]
    lake, _ = generated
    read = lambda t: delta_io.read_table(spark, lake, t)  # noqa: E731
    quarantine = read("ops.quarantine")
    bronze_ann = read("bronze.annotations")

    raw_objects = per_file(bronze_ann.where(F.col("section").isin("annotations", "rows", "file")))
    assert raw_objects == add(per_file(read("silver.annotations")),
                              per_file(quarantine.where(F.col("target_table") == "silver.annotations")))
    raw_images = per_file(bronze_ann.where(F.col("section") == "images"))
    coco_frames = read("silver.frames").where(F.col("source_file").contains("/coco/"))
    assert raw_images == add(per_file(coco_frames),
                             per_file(quarantine.where((F.col("target_table") == "silver.frames")
                                                       & F.col("source_file").contains("/coco/"))))
    assert per_file(read("bronze.predictions")) == add(
        per_file(read("silver.predictions")),
        per_file(quarantine.where(F.col("target_table") == "silver.predictions")))
    assert per_file(read("bronze.captures")) == add(
        per_file(read("silver.captures")), per_file(quarantine.where(F.col("target_table") == "silver.captures")))
    # Nothing is in both places.
    kept = read("silver.predictions").select("source_file", "record_no").unionByName(
        read("silver.captures").select("source_file", F.col("line_number").alias("record_no")))
    assert kept.join(quarantine.select("source_file", "record_no"), ["source_file", "record_no"]).count() == 0
    assert sum(raw_objects.values()) > 150 and sum(per_file(read("bronze.predictions")).values()) > 250
    assert sum(per_file(read("bronze.captures")).values()) > 8


def test_every_published_capture_has_its_subjects(spark, generated) -> None:  # type: ignore[no-untyped-def]
    lake, _ = generated
    truth = json.loads((Path(lake.landing_root) / "truth.json").read_text())
    people = {c["capture_id"]: c["people"] for c in truth["captures"]}
    published = [r.capture_id for r in delta_io.read_table(spark, lake, "silver.captures").collect()]
    subjects = delta_io.read_table(spark, lake, "silver.subjects").groupBy("capture_id").count().collect()
    assert {r.capture_id: r["count"] for r in subjects} == {c: people[c] for c in published}
    assert 0 < len(published) < len(people)


def test_every_planted_fault_is_quarantined_for_its_reason(spark, generated) -> None:  # type: ignore[no-untyped-def]
    lake, ledger = generated
    assert len(ledger) >= 15, "the seed should plant a useful number of faults"
    planted = {(e["kind"], e["file"].split("/")[0]) for e in ledger}
    assert {("truncated_file", "manifests"), ("truncated_file", "predictions"),
            ("duplicate_across_files", "manifests"), ("duplicate_across_files", "predictions"),
            ("redelivered_file", "manifests"), ("redelivered_file", "predictions"),
            ("redelivered_file", "annotations"), ("unknown_field", "manifests")} <= planted
    quarantined = {(r.source_file, r.section, r.record_no): r.rule
                   for r in delta_io.read_table(spark, lake, "ops.quarantine").collect()}
    expected = {(e["file"], e["section"], e["record_no"]): e["rule"] for e in ledger if e["rule"] is not None}
    assert {k: quarantined.get(k) for k in expected} == expected
    # Nothing else was quarantined: the clean records all made it.
    assert set(quarantined) == set(expected), json.dumps(sorted(set(quarantined) - set(expected))[:5], default=str)


def test_unknown_fields_are_published_in_extra(spark, generated) -> None:  # type: ignore[no-untyped-def]
    lake, ledger = generated
    drifted = {(e["file"], e["record_no"]): e["field"] for e in ledger if e["kind"] == "unknown_field"}
    captures = delta_io.read_table(spark, lake, "silver.captures").collect()
    assert {(r.source_file, r.line_number): r.extra for r in captures if r.extra} == {
        where: {field: '"7.1.2"'} for where, field in drifted.items()}
