"""A subject's withdrawal erases their captures from every table, file and version, provably.

A generated lake (two model runs, evaluated, compared and maintained) in which one planted subject
appears in two captures of two different uploads: `forget` must leave no trace of the subject or
those captures in any file under the lake, the landing zone, the state folder or Trino's state, at
any version still readable; leave every silver and gold table equal to a from-scratch build on the
scrubbed landing zone; record the request for admins only; and change nothing when asked again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

import jobs.forget as forget_job
from jobs import pipeline
from scenelake import delta_io, erasure, ingest
from scenelake.contracts import all_contracts
from scenelake.generator import generate
from scenelake.settings import Settings
from scenelake.trino_client import query, register_tables

pytestmark = [pytest.mark.integration, pytest.mark.long]
SUBJECT = "subj-withdrawn-7"
# What differs between two builds of the same files: when and in which batch a row was loaded or computed.
LOAD_COLUMNS = {"batch_id", "loaded_at", "source_modified_at", "source_size", "source_sha256", "computed_at"}


def plant_subject(landing: Path) -> list[str]:
    """Add SUBJECT (consent granted: the withdrawal is the request) to the first capture of the first two
    uploads; returns those captures."""
    planted = []
    for manifest in sorted((landing / "manifests").glob("*.jsonl"))[:2]:
        lines = manifest.read_text().splitlines()
        record = json.loads(lines[0])
        record["subjects"].append({"subject_id": SUBJECT, "consent": "granted"})
        lines[0] = json.dumps(record)
        manifest.write_text("\n".join(lines) + "\n")
        planted.append(record["capture_id"])
    return planted


def contents(spark, lake: Settings, name: str) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    df = delta_io.read_table(spark, lake, name)
    df = df.select(*[c for c in df.columns if c not in LOAD_COLUMNS])
    frame = df.toPandas()
    frame = frame.map(lambda v: json.dumps(v, sort_keys=True, default=str) if isinstance(v, dict | list) else v)
    for col in frame.columns:
        if hasattr(frame[col], "dtype") and frame[col].dtype == object:
            frame[col] = frame[col].map(lambda v: json.dumps(list(v), default=str) if hasattr(v, "tolist") else v)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def delivered(lake: Settings) -> Path:
    return Path(lake.landing_root).parent / "delivered"


@pytest.fixture(scope="module")
def erased(spark, trino: Settings, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("erasure")
    lake = trino.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"),
                                state_dir=root / "state")
    generate(Path(lake.landing_root), captures=6, seed=5, defect_rate=0.0)
    planted = plant_subject(Path(lake.landing_root))
    shutil.copytree(lake.landing_root, delivered(lake))  # what the devices sent, for a re-delivery
    pipeline.run(spark, lake, ingest.silent)  # ingest, evaluate, compare, maintain
    before = {n: contents(spark, lake, n) for n in all_contracts()
              if n.startswith(("silver.", "gold.")) and delta_io.table_exists(spark, lake, n)}
    report = forget_job.run(spark, lake, ingest.silent, subject=SUBJECT, reason="ticket 42", by="dpo")
    return lake, planted, before, report


def test_the_subjects_captures_are_found_and_the_proof_passes(erased) -> None:  # type: ignore[no-untyped-def]
    lake, planted, _, report = erased
    assert report.captures == sorted(planted)
    assert report.hits == [] and report.proof_passed
    assert sorted(report.landing.removed)[:1] and report.landing.rewritten and not report.landing.uncut
    assert {"silver.captures", "silver.subjects", "silver.frames", "silver.annotations", "silver.predictions",
            "gold.detection_matches", "bronze.captures", "bronze.predictions"} <= {t.name for t in report.tables}


def test_no_file_anywhere_holds_the_subject_or_its_captures(erased, trino: Settings) -> None:  # type: ignore[no-untyped-def]
    lake, planted, _, _ = erased
    areas = {"lake": Path(lake.lake_root), "landing": Path(lake.landing_root), "state": Path(lake.state_dir)}
    assert erasure.scan(areas, [SUBJECT, *planted]) == []
    # Trino's own state (logs, data folder) is shared with the other tests' lakes, whose generated capture
    # ids look alike: the subject id is this test's own.
    assert erasure.scan({"trino": Path(trino.state_dir) / "trino"}, [SUBJECT]) == []


def test_no_remaining_version_of_any_table_shows_them(spark, erased) -> None:  # type: ignore[no-untyped-def]
    lake, planted, _, report = erased
    regex = erasure.pattern([SUBJECT, *planted])
    for name in all_contracts():
        if not delta_io.table_exists(spark, lake, name):
            continue
        layer, table = name.split(".")
        versions = [r[0] for r in DeltaTable.forPath(spark, lake.table_path(layer, table)).history()
                    .select("version").collect()]
        for version in versions:
            df = delta_io.read_table(spark, lake, name, version=version)
            assert df.where(erasure.mentions(df, regex)).count() == 0, (name, version)
    assert set(report.purged) >= {"silver.captures", "bronze.captures", "gold.detection_matches"}


def test_silver_and_gold_equal_a_build_from_scratch_on_the_scrubbed_landing_zone(  # type: ignore[no-untyped-def]
        spark, erased, tmp_path: Path) -> None:
    lake, planted, before, _ = erased
    fresh = lake.with_overrides(lake_root=str(tmp_path / "lake"), landing_root=str(tmp_path / "landing"),
                                state_dir=tmp_path / "state")
    shutil.copytree(lake.landing_root, fresh.landing_root)
    for step in pipeline.WATCHED:
        step.run(spark, fresh, ingest.silent)
    for name, old in before.items():
        got, want = contents(spark, lake, name), contents(spark, fresh, name)
        pd.testing.assert_frame_equal(got, want, check_dtype=False, obj=name)
        # Every other row is untouched: what is gone is exactly the erased captures' rows.
        if "capture_id" in old.columns and not name.startswith("gold.detection_metrics"):
            kept = old[~old["capture_id"].isin(planted)].reset_index(drop=True)
            if name != "gold.slice_comparisons":
                pd.testing.assert_frame_equal(got, kept, check_dtype=False, obj=f"{name} (kept rows)")


def test_the_request_is_audited_for_admins_only(spark, erased, trino: Settings) -> None:  # type: ignore[no-untyped-def]
    lake, planted, _, report = erased
    # The pipeline erased the generator's own withdrawn subjects first (requested_by 'pipeline').
    rows = delta_io.read_table(spark, lake, forget_job.AUDIT).where(F.col("requested_by") != "pipeline").collect()
    assert len(rows) == 1
    row = rows[0]
    assert (row.subject_hash, row.requested_by, row.reason, row.captures_removed, row.proof_passed,
            row.proof_hits) == (report.subject_hash, "dpo", "ticket 42", 2, True, 0)
    assert row.subject_hash.startswith("masked:") and SUBJECT not in json.dumps(row.asDict(), default=str)
    assert row.rows_removed["silver.captures"] == 2 and row.landing_files_removed >= 4
    served = trino.with_overrides(lake_root=lake.lake_root)
    register_tables(served, [("ops", "erasures")])
    assert query(served, "select captures_removed from delta.ops.erasures where requested_by = 'dpo'",
                 user="admin") == [[2]]
    for reader in ("analyst", "ml_engineer"):
        with pytest.raises(Exception, match="Access Denied"):
            query(served, "select count(*) from delta.ops.erasures", user=reader)


def test_a_second_request_and_the_next_pipeline_run_change_nothing(spark, erased) -> None:  # type: ignore[no-untyped-def]
    lake, _, _, _ = erased
    versions = {n: delta_io.table_version(spark, lake, n) for n in all_contracts()}
    again = forget_job.run(spark, lake, ingest.silent, subject=SUBJECT, reason="ticket 42 again", by="dpo")
    assert again.nothing_left and again.proof_passed and again.captures == []
    for step in pipeline.WATCHED:
        step.run(spark, lake, ingest.silent)
    assert {n: delta_io.table_version(spark, lake, n) for n in all_contracts()} == versions
    assert delta_io.read_table(spark, lake, forget_job.AUDIT).where(F.col("reason") == "ticket 42 again").count() == 0


def test_the_erased_files_landed_again_bring_nothing_back(spark, erased) -> None:  # type: ignore[no-untyped-def]
    """A device or a script lands every file again as first delivered: ingestion refuses what names the
    erased subject or captures (ops.erasures), so no table changes and the lake still holds no trace."""
    lake, planted, _, _ = erased
    shutil.copytree(delivered(lake), lake.landing_root, dirs_exist_ok=True)
    versions = {n: delta_io.table_version(spark, lake, n) for n in all_contracts()}
    said: list[str] = []
    for step in pipeline.WATCHED:
        step.run(spark, lake, said.append)
    assert {n: delta_io.table_version(spark, lake, n) for n in all_contracts()} == versions
    assert any("name an erased subject or capture (ops.erasures) and are not loaded" in line for line in said), said
    assert not any(SUBJECT in line or any(c in line for c in planted) for line in said)
    areas = {"lake": Path(lake.lake_root), "state": Path(lake.state_dir)}
    assert erasure.scan(areas, [SUBJECT, *planted]) == []


def test_a_withdrawal_in_a_manifest_upload_is_erased_by_the_pipeline(spark, erased) -> None:  # type: ignore[no-untyped-def]
    """Another subject withdraws through a device upload (a corrected manifest line): the pipeline's
    withdrawals step erases them as `forget` does, records it as requested by the pipeline, and the next
    run commits nothing."""
    lake, planted, _, _ = erased
    subjects = delta_io.read_table(spark, lake, "silver.subjects").where(F.col("consent") == "granted")
    subject, capture = sorted((r.subject_id, r.capture_id) for r in subjects.collect()
                              if r.capture_id not in planted)[0]
    line = next(json.loads(text) for path in sorted((Path(lake.landing_root) / "manifests").glob("*.jsonl"))
                for text in path.read_text().splitlines() if text.strip() and json.loads(text)["capture_id"] == capture)
    line["subjects"] = [dict(s, consent="withdrawn") if s["subject_id"] == subject else s for s in line["subjects"]]
    (Path(lake.landing_root) / "manifests" / "withdrawal-001.jsonl").write_text(json.dumps(line) + "\n")
    earlier = [r[0] for r in delta_io.read_table(spark, lake, forget_job.AUDIT).select("erasure_id").collect()]
    said: list[str] = []
    pipeline.run(spark, lake, said.append)
    assert "[withdrawals] 1 subject(s) withdrew consent in a manifest upload: erasing them" in said, said
    rows = (delta_io.read_table(spark, lake, forget_job.AUDIT).where(~F.col("erasure_id").isin(earlier))
            .where(F.col("requested_by") == "pipeline").collect())
    assert [(r.captures_removed, r.proof_passed, r.reason) for r in rows] == [
        (1, True, "consent withdrawn in a manifest upload")]
    for name in ("silver.captures", "silver.subjects", "silver.frames", "gold.detection_matches"):
        assert delta_io.read_table(spark, lake, name).where(F.col("capture_id") == capture).count() == 0, name
    areas = {"lake": Path(lake.lake_root), "landing": Path(lake.landing_root), "state": Path(lake.state_dir)}
    assert erasure.scan(areas, [subject, capture]) == []
    versions = {n: delta_io.table_version(spark, lake, n) for n in all_contracts()}
    pipeline.run(spark, lake, ingest.silent)
    moved = {n for n, v in versions.items() if delta_io.table_version(spark, lake, n) != v}
    assert moved == set(), moved
