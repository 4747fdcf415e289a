"""Captures end to end: landing -> bronze -> quarantine and gated silver -> Trino, rerun-safe.

The sample manifest is ingested once for the module (`sampled`); a test that changes that lake
works on a file copy of it (`after_sample`), which is the state a second run of its own would
start from.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.ingest_captures import BRONZE, QUARANTINE, SILVER, SUBJECTS, run
from scenelake import delta_io
from scenelake.job import job_main
from scenelake.quality import QualityGateFailed
from scenelake.settings import PROJECT_ROOT, Settings, parse_instant
from scenelake.trino_client import query, register_tables
from tests.frames import as_rows

pytestmark = pytest.mark.integration
SAMPLE = PROJECT_ROOT / "scenelake" / "sample" / "landing" / "manifests" / "captures-2026-11-01.jsonl"


@pytest.fixture
def lake(settings: Settings, tmp_path: Path) -> Settings:
    """A lake and landing zone of this test's own, on the session's Spark and Trino."""
    own = settings.with_overrides(lake_root=str(tmp_path / "lake"),
                                  landing_root=str(tmp_path / "landing"))
    (tmp_path / "landing" / "manifests").mkdir(parents=True)
    return own


@pytest.fixture(scope="module")
def sampled(spark, settings: Settings, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The sample manifest landed in a fresh lake and ingested once: (lake, the run's report)."""
    root = tmp_path_factory.mktemp("sampled")
    own = settings.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    (root / "landing" / "manifests").mkdir(parents=True)
    land(own, "captures-2026-11-01.jsonl")
    return own, run(spark, own, progress=lambda _m: None)


@pytest.fixture
def after_sample(sampled, tmp_path: Path) -> Settings:  # type: ignore[no-untyped-def]
    """A private copy of the lake and landing zone the sample run left."""
    source, _ = sampled
    own = source.with_overrides(lake_root=str(tmp_path / "lake"), landing_root=str(tmp_path / "landing"))
    shutil.copytree(source.lake_root, own.lake_root)
    shutil.copytree(source.landing_root, own.landing_root)
    return own


def land(settings: Settings, name: str, lines: list[str] | None = None) -> Path:
    target = Path(settings.landing_root) / "manifests" / name
    if lines is None:
        shutil.copyfile(SAMPLE, target)
    else:
        target.write_text("\n".join(lines) + "\n")
    return target


def versions(spark, settings: Settings) -> tuple[int | None, int | None]:  # type: ignore[no-untyped-def]
    return (delta_io.table_version(spark, settings, BRONZE),
            delta_io.table_version(spark, settings, SILVER))


def test_sample_lands_in_bronze_and_silver_and_reads_in_trino(trino, sampled) -> None:  # type: ignore[no-untyped-def]
    lake, report = sampled
    assert (report.new_files, report.bronze_rows_added, report.silver_rows, report.subjects, report.quarantined) == (
        ["manifests/captures-2026-11-01.jsonl"], 13, 12, 25, 1)
    register_tables(lake, [("bronze", "captures"), ("silver", "captures"), ("silver", "subjects"),
                           ("ops", "quarantine")])
    # Trino serves the test lake's tables under the same names.
    assert query(lake, "select count(*) from delta.bronze.captures") == [[13]]
    assert query(lake, "select count(*), count(distinct capture_id) from delta.silver.captures") \
        == [[12, 12]]
    # cap-0003 was re-sent on line 13 with a corrected duration and a withdrawn consent: the later
    # copy won, and the earlier one is in quarantine naming it.
    assert query(lake, "select line_number, duration_s, lighting, consent_state from delta.silver.captures "
                       "where capture_id = 'cap-0003'") == [[13, 123.4, "dark", "partial"]]
    assert query(lake, "select subject_id, consent from delta.silver.subjects where capture_id = 'cap-0003' "
                       "order by 1") == [["subj-031", "granted"], ["subj-032", "withdrawn"], ["subj-033", "granted"]]
    assert query(lake, "select consent_state, count(*) from delta.silver.captures group by 1 order by 1") == [
        ["all_granted", 7], ["no_subjects", 2], ["partial", 3]]
    assert query(lake, "select target_table, record_no, rule from delta.ops.quarantine") == [
        ["silver.captures", 3, "duplicate_of:manifests/captures-2026-11-01.jsonl:13"]]


def test_rerun_and_redelivery_change_nothing_and_new_files_are_added(spark, after_sample) -> None:  # type: ignore[no-untyped-def]
    lake = after_sample
    before = versions(spark, lake)
    published = {t: as_rows(delta_io.read_table(spark, lake, t)) for t in (SILVER, SUBJECTS)}

    report = run(spark, lake, progress=lambda _m: None)
    assert (report.new_files, report.silver_rebuilt) == ([], False)
    assert versions(spark, lake) == before

    land(lake, "captures-2026-11-01.jsonl")  # re-delivered, byte-identical
    assert run(spark, lake, progress=lambda _m: None).new_files == []
    assert versions(spark, lake) == before

    # The same bytes under another name: landed as delivered, but every line is a duplicate of
    # the first delivery's, so silver does not change.
    land(lake, "captures-2026-11-01_2.jsonl")
    report = run(spark, lake, progress=lambda _m: None)
    # Only the new file is judged: its 13 lines are quarantined (the earlier loser stays where it was).
    assert (report.new_files, report.silver_rows, report.quarantined) == (
        ["manifests/captures-2026-11-01_2.jsonl"], 12, 13)
    assert {t: as_rows(delta_io.read_table(spark, lake, t)) for t in (SILVER, SUBJECTS)} == published
    copies = delta_io.read_table(spark, lake, QUARANTINE).where("source_file like '%_2.jsonl'")
    assert sorted((r.record_no, r.rule) for r in copies.collect()) == [
        (n, f"duplicate_of:manifests/captures-2026-11-01.jsonl:{n}") for n in range(1, 14)]

    first = json.loads(SAMPLE.read_text().splitlines()[0])
    land(lake, "captures-2026-11-02.jsonl", [json.dumps({**first, "capture_id": "cap-0100"})])
    report = run(spark, lake, progress=lambda _m: None)
    assert (report.new_files, report.bronze_rows_added, report.silver_rows) == (
        ["manifests/captures-2026-11-02.jsonl"], 1, 13)


def test_bad_lines_are_quarantined_and_the_good_ones_published(spark, after_sample) -> None:  # type: ignore[no-untyped-def]
    lake = after_sample
    first = json.loads(SAMPLE.read_text().splitlines()[0])
    bad = [
        json.dumps({**first, "capture_id": "cap-0200", "sensor": "thermal"}),
        json.dumps({**first, "capture_id": "cap-0201", "fps": -3.0}),
        json.dumps({k: v for k, v in first.items() if k != "started_at"} | {"capture_id": "cap-0202"}),
        json.dumps({**first, "capture_id": "cap-0203", "firmware": "7.1.2"}),
        json.dumps({**first, "capture_id": "cap-0204"})[:40],
    ]
    land(lake, "captures-bad.jsonl", bad)
    report = run(spark, lake, progress=lambda _m: None)
    assert (report.silver_rows, report.quarantined) == (13, 4)  # cap-0203 is kept
    quarantined = delta_io.read_table(spark, lake, QUARANTINE).where("source_file = 'manifests/captures-bad.jsonl'")
    assert sorted((r.record_no, r.rule, r.payload) for r in quarantined.collect()) == [
        (1, "range:sensor_allowed", bad[0]), (2, "range:fps_in_1_1000", bad[1]),
        (3, "missing:started_at", bad[2]), (5, "malformed_json", bad[4])]
    kept = delta_io.read_table(spark, lake, SILVER).where("capture_id = 'cap-0203'").first()
    assert kept is not None and kept.extra == {"firmware": '"7.1.2"'}


def test_a_batch_with_no_good_line_is_stopped_by_the_gate(spark, lake) -> None:  # type: ignore[no-untyped-def]
    land(lake, "captures-garbled.jsonl", ["<html>503 Service Unavailable</html>", "{"])
    with pytest.raises(QualityGateFailed) as stopped:
        run(spark, lake, progress=lambda _m: None)
    assert [f.summary() for f in stopped.value.failures] == ["expect_table_row_count_to_be_between [fail]"]
    assert versions(spark, lake)[1] is None
    assert not delta_io.table_exists(spark, lake, SUBJECTS)


def test_a_backfill_by_date_reads_each_day_in_its_own_run(spark, after_sample) -> None:  # type: ignore[no-untyped-def]
    """--landed-before (settings.landed_before) leaves later files for a later run: a backfill that runs
    the job day by day puts each day's files in a batch of their own, in order, and a day run again
    commits nothing."""
    lake = after_sample
    first = json.loads(SAMPLE.read_text().splitlines()[0])
    days = {"captures-day1.jsonl": ("cap-0301", datetime(2026, 11, 2, 12, tzinfo=UTC)),
            "captures-day2.jsonl": ("cap-0302", datetime(2026, 11, 3, 23, 59, 59, tzinfo=UTC)),
            "captures-today.jsonl": ("cap-0303", None)}
    for name, (capture, landed_at) in days.items():
        path = land(lake, name, [json.dumps({**first, "capture_id": capture})])
        if landed_at is not None:
            os.utime(path, (landed_at.timestamp(), landed_at.timestamp()))

    def day_run(before: str | None) -> list[str]:
        window = lake.with_overrides(landed_before=parse_instant(before) if before else None)
        return run(spark, window, progress=lambda _m: None).new_files

    def captures() -> set[str]:
        return {r.capture_id for r in delta_io.read_table(spark, lake, SILVER).select("capture_id").collect()}

    sample = captures()
    assert day_run("2026-11-03") == ["manifests/captures-day1.jsonl"]
    assert captures() == sample | {"cap-0301"}
    held = versions(spark, lake)
    assert day_run("2026-11-03T00:00:00+00:00") == [] and versions(spark, lake) == held
    assert day_run("2026-11-04") == ["manifests/captures-day2.jsonl"]
    assert day_run(None) == ["manifests/captures-today.jsonl"]
    assert captures() == sample | {"cap-0301", "cap-0302", "cap-0303"}
    batches = delta_io.read_table(spark, lake, BRONZE).groupBy("batch_id").agg(
        F.collect_set("source_file").alias("files")).orderBy("batch_id").collect()
    assert [sorted(b.files) for b in batches][1:] == [
        [f"manifests/{name}"] for name in days]  # after the sample's own batch, one batch per day, in order


def test_landed_before_is_a_flag_of_every_job(spark) -> None:  # type: ignore[no-untyped-def]
    """The flag reaches a job's settings through scenelake.job.job_main (scenelake run, spark-submit)."""
    seen: list[object] = []
    code = job_main("probe", None, lambda _spark, settings: seen.append(settings.landed_before), [],
                    argv=["--no-register", "--landed-before", "2026-11-04T06:30:00+01:00"])
    assert (code, seen) == (0, [datetime(2026, 11, 4, 5, 30, tzinfo=UTC)])
    assert parse_instant("2026-11-04") == datetime(2026, 11, 4, tzinfo=UTC)
    with pytest.raises(SystemExit):
        job_main("probe", None, lambda *_: None, [], argv=["--no-register", "--landed-before", "yesterday"])
