"""The walking skeleton end to end: landing -> bronze -> gated silver -> Trino, rerun-safe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from jobs.ingest_captures import BRONZE, SILVER, run
from scenelake import delta_io
from scenelake.quality import QualityGateFailed
from scenelake.settings import PROJECT_ROOT, Settings
from scenelake.spark import submit_args
from scenelake.trino_client import query, register_tables

pytestmark = pytest.mark.integration
SAMPLE = PROJECT_ROOT / "scenelake" / "sample" / "landing" / "manifests" / "captures-2026-11-01.jsonl"


@pytest.fixture
def lake(settings: Settings, tmp_path: Path) -> Settings:
    """A lake and landing zone of this test's own, on the session's Spark and Trino."""
    own = settings.with_overrides(lake_root=str(tmp_path / "lake"),
                                  landing_root=str(tmp_path / "landing"))
    (tmp_path / "landing" / "manifests").mkdir(parents=True)
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


def test_sample_lands_in_bronze_and_silver_and_reads_in_trino(spark, trino, lake) -> None:  # type: ignore[no-untyped-def]
    land(lake, "captures-2026-11-01.jsonl")
    report = run(spark, lake, progress=lambda _m: None)
    assert (report.new_files, report.bronze_rows_added, report.silver_rows) == (
        ["manifests/captures-2026-11-01.jsonl"], 13, 12)
    register_tables(lake, [("bronze", "captures"), ("silver", "captures")])
    # Trino serves the test lake's tables under the same names.
    assert query(lake, "select count(*) from delta.bronze.captures") == [[13]]
    assert query(lake, "select count(*), count(distinct capture_id) from delta.silver.captures") \
        == [[12, 12]]
    # cap-0003 was re-sent on line 13 with a corrected duration: the later copy won.
    assert query(lake, "select line_number, duration_s, lighting from delta.silver.captures "
                       "where capture_id = 'cap-0003'") == [[13, 123.4, "dark"]]


def test_rerun_and_redelivery_change_nothing_and_new_files_are_added(spark, lake) -> None:  # type: ignore[no-untyped-def]
    land(lake, "captures-2026-11-01.jsonl")
    run(spark, lake, progress=lambda _m: None)
    before = versions(spark, lake)

    report = run(spark, lake, progress=lambda _m: None)
    assert (report.new_files, report.silver_rebuilt) == ([], False)
    assert versions(spark, lake) == before

    land(lake, "captures-2026-11-01.jsonl")  # re-delivered, byte-identical
    assert run(spark, lake, progress=lambda _m: None).new_files == []
    assert versions(spark, lake) == before

    first = json.loads(SAMPLE.read_text().splitlines()[0])
    land(lake, "captures-2026-11-02.jsonl", [json.dumps({**first, "capture_id": "cap-0100"})])
    report = run(spark, lake, progress=lambda _m: None)
    assert (report.new_files, report.bronze_rows_added, report.silver_rows) == (
        ["manifests/captures-2026-11-02.jsonl"], 1, 13)


def test_a_bad_batch_is_stopped_by_the_gate_and_silver_stays_as_it_was(spark, lake) -> None:  # type: ignore[no-untyped-def]
    land(lake, "captures-2026-11-01.jsonl")
    run(spark, lake, progress=lambda _m: None)
    silver_before = versions(spark, lake)[1]

    first = json.loads(SAMPLE.read_text().splitlines()[0])
    land(lake, "captures-bad.jsonl", [
        json.dumps({**first, "capture_id": "cap-0200", "sensor": "thermal"}),
        json.dumps({**first, "capture_id": "cap-0201", "fps": -3.0}),
    ])
    with pytest.raises(QualityGateFailed) as stopped:
        run(spark, lake, progress=lambda _m: None)
    failed = sorted(f.summary() for f in stopped.value.failures)
    assert failed == ["expect_column_values_to_be_between(fps) [fail], 1 unexpected",
                      "expect_column_values_to_be_in_set(sensor) [fail], 1 unexpected"]
    assert versions(spark, lake)[1] == silver_before
    assert delta_io.read_table(spark, lake, SILVER).count() == 12


def test_the_same_job_runs_under_spark_submit(spark, lake) -> None:  # type: ignore[no-untyped-def]
    land(lake, "captures-2026-11-01.jsonl")
    venv_bin = Path(sys.executable).parent
    # As a scheduler would call it: no activated virtualenv, only SPARK_HOME and the Python to use.
    env = {**os.environ, "SCENELAKE_LAKE_ROOT": lake.lake_root, "SCENELAKE_LANDING_ROOT": lake.landing_root,
           "SPARK_HOME": str(Path(pyspark.__file__).parent), "PYSPARK_PYTHON": sys.executable,
           "PATH": os.environ.get("PATH", "").replace(f"{venv_bin}:", "")}
    spark_submit = str(venv_bin / "spark-submit")
    done = subprocess.run([spark_submit, *submit_args(lake), "--conf", "spark.driver.memory=1g",
                           str(PROJECT_ROOT / "jobs" / "ingest_captures.py"), "--no-register"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[ingest_captures] silver.captures published: 12 rows" in done.stdout
    assert delta_io.read_table(spark, lake, SILVER).count() == 12
