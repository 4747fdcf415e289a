"""The quality gate runs the real Great Expectations on Spark and says what failed."""

from __future__ import annotations

import datetime as dt

import pytest

from scenelake.contracts import contract
from scenelake.quality import QualityGateFailed, checks_for, gate

pytestmark = pytest.mark.unit
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def capture(capture_id: str, **changes: object) -> dict[str, object]:
    row: dict[str, object] = dict(
        capture_id=capture_id, source="real", device_model="PixelCam 4", device_serial="SN1",
        sensor="rgb", width=1920, height=1080, fps=30.0, started_at=T0, duration_s=60.0,
        region="eu-west", environment="indoor", lighting="dim", motion="static", occlusion="none", crowd="1", tags=None,
        consent_state="all_granted", extra=None, source_file="m.jsonl", line_number=1, batch_id="b1")
    row.update(changes)
    return row


def frame(spark, rows, table: str = "silver.captures"):  # type: ignore[no-untyped-def]
    schema = contract(table).spark_schema()
    return spark.createDataFrame([tuple(r[c] for c in schema.names) for r in rows], schema)


def test_suite_is_contract_checks_plus_hand_written_ones() -> None:
    labels = [c.label for c in checks_for("silver.captures")]
    assert labels.count("expect_column_values_to_not_be_null(capture_id)") == 1
    assert "expect_column_values_to_be_in_set(lighting)" in labels
    assert "expect_column_values_to_be_unique(capture_id)" in labels
    assert labels[-3:] == ["expect_column_pair_values_a_to_be_greater_than_b",
                           "expect_table_row_count_to_be_between", "expect_column_max_to_be_between(started_at)"]


def test_clean_batch_passes_every_check(spark) -> None:  # type: ignore[no-untyped-def]
    outcomes = gate(frame(spark, [capture("a"), capture("b")]), "silver.captures")
    assert [o.check.label for o in outcomes if not o.success] == []


def test_warn_only_batch_passes_with_its_warning(spark) -> None:  # type: ignore[no-untyped-def]
    outcomes = gate(frame(spark, [capture("a", width=720, height=1280)]), "silver.captures")
    assert [(o.check.expectation, o.check.severity, o.unexpected_count)
            for o in outcomes if not o.success] == [
        ("expect_column_pair_values_a_to_be_greater_than_b", "warn", 1)]


def test_fail_checks_stop_the_batch_and_are_named(spark) -> None:  # type: ignore[no-untyped-def]
    rows = [capture("a"), capture("a", line_number=2), capture("c", lighting="pitch-black"),
            capture("d", duration_s=-1.0)]
    with pytest.raises(QualityGateFailed) as stopped:
        gate(frame(spark, rows), "silver.captures")
    assert sorted(f.summary() for f in stopped.value.failures) == [
        "expect_column_values_to_be_between(duration_s) [fail], 1 unexpected",
        "expect_column_values_to_be_in_set(lighting) [fail], 1 unexpected",
        "expect_column_values_to_be_unique(capture_id) [fail], 2 unexpected",
    ]


def test_history_bounds_come_from_the_last_published_batch() -> None:
    from scenelake.quality import Check, _with_history

    rows = Check("expect_table_row_count_to_be_between", {"min_value": 0}, "fail", "", {"min_ratio": 0.9})
    assert _with_history(rows, None) == {"min_value": 0}
    assert _with_history(rows, 1000.0) == {"min_value": 900}
    nulls = Check("expect_column_proportion_of_non_null_values_to_be_between", {"column": "c", "min_value": 0},
                  "warn", "", {"max_drop": 0.2})
    assert _with_history(nulls, 0.95) == {"column": "c", "min_value": pytest.approx(0.75)}
    assert _with_history(nulls, 0.1) == {"column": "c", "min_value": 0.0}


def test_sample_keys_name_the_primary_key_of_unexpected_rows() -> None:
    from scenelake.quality import _sample_keys

    details = {"partial_unexpected_index_list": [{"run_id": "r", "prediction_id": "p1", "score": 2.0},
                                                 {"run_id": "r", "prediction_id": "p2", "score": 3.0}]}
    assert _sample_keys(details, ["run_id", "prediction_id"]) == ("run_id=r,prediction_id=p1",
                                                                 "run_id=r,prediction_id=p2")
    rows = {"details": {"unexpected_rows": [{"source_file": "a.jsonl", "quarantined": 9}]}}
    assert _sample_keys(rows, ["target_table", "source_file"]) == ("source_file=a.jsonl",)


def test_subjects_suite_warns_on_an_identity_in_place_of_a_pseudonym(spark) -> None:  # type: ignore[no-untyped-def]
    def subject(subject_id: str, consent: str = "granted") -> dict[str, object]:
        return dict(capture_id="cap-1", subject_id=subject_id, consent=consent, source_file="m.jsonl",
                    line_number=1, batch_id="b1")

    rows = [subject("subj-1"), subject("jane.doe@example.com"), subject("Jane Doe", "withdrawn")]
    outcomes = gate(frame(spark, rows, "silver.subjects"), "silver.subjects")
    assert [(o.check.label, o.check.severity, o.unexpected_count) for o in outcomes if not o.success] == [
        ("expect_column_values_to_not_match_regex(subject_id)", "warn", 2)]
    with pytest.raises(QualityGateFailed) as stopped:
        gate(frame(spark, [subject("subj-1", "maybe"), subject("subj-1")], "silver.subjects"), "silver.subjects")
    assert sorted(f.summary() for f in stopped.value.failures) == [
        "expect_column_values_to_be_in_set(consent) [fail], 1 unexpected",
        "expect_compound_columns_to_be_unique(['capture_id', 'subject_id']) [fail], 2 unexpected"]


def test_sample_keys_withhold_pii_they_cannot_mask(settings) -> None:  # type: ignore[no-untyped-def]
    """Without a Trino to read the masking key from, a PII key part is withheld, never written in clear;
    raw records always are. (With the key, the access probe checks the masked form through Trino.)"""
    from scenelake.quality import WITHHELD, _sample_keys, sample_key_mask
    from tests.conftest import free_port

    nowhere = settings.with_overrides(trino_port=free_port())
    details = {"partial_unexpected_index_list": [{"capture_id": "cap-1", "subject_id": "jane.doe@example.com",
                                                  "consent": "maybe"}]}
    assert _sample_keys(details, ["capture_id", "subject_id"], sample_key_mask(nowhere, "silver.subjects")) == (
        f"capture_id=cap-1,subject_id={WITHHELD}",)
    rows = {"details": {"unexpected_rows": [{"target_table": "silver.captures", "payload": "{\"serial\": \"SN1\"}"}]}}
    assert _sample_keys(rows, ["payload"], sample_key_mask(nowhere, "ops.quarantine")) == (f"payload={WITHHELD}",)
    assert _sample_keys(details, ["capture_id", "subject_id"]) == (
        "capture_id=cap-1,subject_id=jane.doe@example.com",)  # no mask asked for: the gate's own view


def test_a_suites_stored_results_are_pruned_to_the_newest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from scenelake.quality import prune_results

    suite = tmp_path / "silver" / "captures-pandas"
    times = [f"20261206T22{m:02d}00.000000Z" for m in range(5)]
    for t in times:
        (suite / "__none__" / t).mkdir(parents=True)
        (suite / "__none__" / t / "r.json").write_text("{}")
    prune_results(suite, keep=2)
    assert sorted(p.name for p in suite.glob("*/*")) == times[-2:]
    prune_results(tmp_path / "absent")  # a suite with no results yet


# --- the SQL checks give the same outcomes in SQLite as on Spark --------------------------------------
DEFAULTS = {"string": "x", "bigint": 1, "int": 1, "double": 0.5, "boolean": False}


def batch(spark, table: str, rows: list[dict[str, object]], **extra_types: str):  # type: ignore[no-untyped-def]
    """A batch of `table` (its contract's columns, plus the columns a job adds before the gate, given
    as name=type) whose unnamed columns hold a plain value of their type (nested ones null)."""
    from pyspark.sql import types as T

    schema = T.StructType([T.StructField(f.name, f.dataType) for f in contract(table).spark_schema().fields])
    for column, kind in extra_types.items():
        schema = schema.add(column, T._parse_datatype_string(kind))
    default = {f.name: DEFAULTS.get(f.dataType.simpleString()) for f in schema.fields}
    return spark.createDataFrame([tuple({**default, **r}.get(c) for c in schema.names) for r in rows], schema)


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


def engine_batches(spark):  # type: ignore[no-untyped-def]
    """For every suite with Spark SQL checks, a batch that fails some of them and passes others."""
    predictions = (
        [dict(run_id="collapsed", prediction_id=p, score=0.5, frame_index=1, capture_labelled_frames=1)
         for p in ids("c", 25)]
        + [dict(run_id="scaled", prediction_id=p, score=s, frame_index=i, capture_labelled_frames=3)
           for i, (p, s) in enumerate(zip(ids("s", 3), [1.5, -1.0, 0.25], strict=True))]
        + [dict(run_id="short", prediction_id=p, score=0.1 * i, frame_index=1, capture_labelled_frames=10)
           for i, p in enumerate(ids("h", 4))])
    quarantine = (
        [dict(source_file="bad.jsonl", record_no=i, rule="range:w>=0", file_records=12) for i in range(7)]
        + [dict(source_file="bad.jsonl", record_no=10 + i, rule="duplicate_of:a.jsonl:1", file_records=12)
           for i in range(5)]
        + [dict(source_file="waits.jsonl", record_no=i, rule="unknown_frame", file_records=10) for i in range(10)]
        + [dict(source_file="cut.json", section="file", record_no=1, rule="malformed_json", file_records=1)]
        # Spark's LIKE is case-sensitive: these are not duplicates (SQLite's LIKE would say they are).
        + [dict(source_file="cased.jsonl", record_no=i, rule="Duplicate_of:a.jsonl:1", file_records=10)
           for i in range(6)])
    annotations = [dict(annotation_id=a, x=x, y=5.0, w=w, h=10.0, frame_width=fw, frame_height=100)
                   for a, x, w, fw in [("in", 5.0, 10.0, 100), ("edge", 95.0, 10.0, 100),
                                       ("outside", 150.0, 10.0, 100), ("unsized", 150.0, 10.0, None)]]
    frames = [dict(capture_id="c1", frame_index=i, capture_fps=f, capture_duration_s=1.0)
              for i, f in [(1, 10.0), (11, 10.0), (12, 10.0), (500, None)]]
    metrics = [dict(run_id=r, category=c, ap=ap, ap50=0.5) for r, c, ap in
               [("one", "all", 0.4), ("one", "person", 0.6), ("two", "all", 0.1), ("two", "all", 0.2),
                ("none", "face", 0.1)]]
    matches = [dict(run_id="r", kind=k, object_id=o, rank=rank, tp_all=tp, ig_all=ig) for k, o, rank, tp, ig in
               [("prediction", "p1", 0, 1023, 0), ("prediction", "p2", 1, 1, 1), ("prediction", "p3", 2, None, 0),
                ("prediction", "p4", 150, None, None), ("ground_truth", "g1", None, 0, 1023),
                ("ground_truth", "g2", None, 3, 12)]]
    tracking = [dict(run_id="r", capture_id=c, mt=1, pt=0, ml=0, gt_ids=g, tp=1, fn=0, gt_dets=1, fp=0, tr_dets=1,
                     idtp=1, idfn=0) for c, g in [("adds-up", 1), ("off", 2)]]
    return [
        ("silver.predictions", batch(spark, "silver.predictions", predictions, capture_labelled_frames="long")),
        ("ops.quarantine", batch(spark, "ops.quarantine", quarantine, file_records="long")),
        ("silver.annotations", batch(spark, "silver.annotations", annotations, frame_width="long",
                                     frame_height="long")),
        ("silver.frames", batch(spark, "silver.frames", frames, capture_fps="double", capture_duration_s="double")),
        ("gold.detection_metrics", batch(spark, "gold.detection_metrics", metrics)),
        ("gold.detection_matches", batch(spark, "gold.detection_matches", matches)),
        ("gold.tracking_metrics", batch(spark, "gold.tracking_metrics", tracking)),
    ]


def test_sql_checks_give_the_same_outcomes_in_sqlite_as_on_spark(spark) -> None:  # type: ignore[no-untyped-def]
    from scenelake.quality import SQL_EXPECTATIONS, sqlite_query, validate

    def outcomes(df, table: str, engine: str):  # type: ignore[no-untyped-def]
        return [(o.check.label, o.success, o.unexpected_count, o.observed, o.sample_keys)
                for o in validate(df, table, sql_engine=engine) if o.check.expectation in SQL_EXPECTATIONS]

    tables = {name for name, _ in engine_batches(spark)}
    assert tables == {n for n in _suites_with_sql_checks()}, "a suite with Spark SQL checks has no batch here"
    failed = 0
    for table, df in engine_batches(spark):
        checks = [c for c in checks_for(table) if c.expectation in SQL_EXPECTATIONS]
        # Each runs in SQLite (none falls back to Spark on this batch's schema) ...
        assert all(sqlite_query(c.kwargs["unexpected_rows_query"], df.schema) for c in checks), table
        lite, on_spark = outcomes(df, table, "sqlite"), outcomes(df, table, "spark")
        # ... with Spark's outcomes, observed counts and sample keys.
        assert lite == on_spark, table
        assert len(lite) == len(checks)
        failed += sum(not ok for _, ok, *_ in lite)
    # The batches fail most checks (a check both engines pass on every row would prove little).
    assert failed >= 9


def _suites_with_sql_checks() -> list[str]:
    from scenelake.quality import QUALITY_DIR, SQL_EXPECTATIONS, hand_checks

    names = [f"{p.parent.name}.{p.stem}" for p in sorted(QUALITY_DIR.glob("*/*.yaml"))]
    return [n for n in names if any(c.expectation in SQL_EXPECTATIONS for c in hand_checks(n))]


def test_a_query_sqlite_cannot_take_stays_on_spark(spark) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import types as T

    from scenelake.quality import sqlite_query

    schema = T.StructType([T.StructField("a", T.StringType()), T.StructField("tags", T.MapType(T.StringType(),
                                                                                                T.StringType()))])
    assert sqlite_query("SELECT a FROM {batch} WHERE a <> 'x'", schema) == (
        'SELECT "a" FROM {batch} WHERE "a" <> \'x\'', ["a"])
    assert sqlite_query("SELECT a FROM {batch} WHERE a NOT LIKE 'd_p:%'", schema) == (
        'SELECT "a" FROM {batch} WHERE NOT "a" GLOB \'d?p:*\'', ["a"])
    assert sqlite_query("SELECT a FROM {batch} WHERE a LIKE 'a!%' ESCAPE '!'", schema) is None
    assert sqlite_query("SELECT a FROM {batch} WHERE tags['k'] = 'v'", schema) is None
    assert sqlite_query("SELECT a FROM {batch} WHERE", schema) is None
