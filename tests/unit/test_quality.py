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
