"""A job killed at any commit boundary, then rerun, leaves exactly the tables of a clean run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import jobs.ingest_annotations as job
import jobs.ingest_captures as captures_job
import jobs.ingest_predictions as predictions_job
from scenelake import delta_io, ingest, landing
from scenelake.settings import PROJECT_ROOT, Settings
from tests.frames import as_rows

pytestmark = [pytest.mark.integration, pytest.mark.long]
TABLES = ["bronze.annotations", "silver.frames", "silver.annotations", "ops.quarantine"]
CAPTURE_TABLES = ["bronze.captures", "silver.captures", "silver.subjects", "ops.quarantine"]
SAMPLE = PROJECT_ROOT / "scenelake" / "sample" / "landing" / "manifests" / "captures-2026-11-01.jsonl"
# Columns that differ between two runs by design (when a batch ran), not by content.
# Facts of one delivery, not of the data: the two lakes load the same files at other times.
RUN_COLUMNS = {"batch_id", "loaded_at", "source_modified_at"}


def land_exports(lake: Settings, folder: Path) -> None:
    coco = {"images": [{"id": i, "width": 64, "height": 48} for i in range(1, 4)],
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "face"}],
            "annotations": [{"id": i, "image_id": 1 + i % 3, "category_id": 1 + i % 2, "bbox": [1, 2, 10, 12],
                             "area": 120.0, "iscrowd": 0} for i in range(1, 9)]
            + [{"id": 99, "image_id": 42, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12.0, "iscrowd": 0}]}
    (folder / "gt.json").write_text(json.dumps(coco))
    (folder / "gt.txt").write_text("1,1,1,2,3,4,1\n1,2,5,6,7,8,1\n2,1,1,2,3,4,1\n3,1,x,2,3,4,1\n")
    landing.coco_annotations(lake, folder / "gt.json", "cap-coco", "lb-coco")
    landing.mot_ground_truth(lake, folder / "gt.txt", "cap-mot", "lb-mot")


def contents(spark, lake: Settings, tables: list[str] = TABLES) -> dict[str, list[dict[str, object]]]:  # type: ignore[no-untyped-def]
    out = {}
    for table in tables:
        df = delta_io.read_table(spark, lake, table)
        out[table] = as_rows(df.drop(*[c for c in df.columns if c in RUN_COLUMNS]))
    return out


def make_lake(settings: Settings, root: Path) -> Settings:
    lake = settings.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    (root / "in").mkdir(parents=True)
    land_exports(lake, root / "in")
    return lake


def kill_at(lake: Settings, job_name: str, point: str) -> None:
    """Run a job in its own process, as the scheduler would, and have it die at `point`."""
    env = {**os.environ, "SCENELAKE_LAKE_ROOT": lake.lake_root, "SCENELAKE_LANDING_ROOT": lake.landing_root,
           "SCENELAKE_CRASH_AT": point}
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "jobs" / f"{job_name}.py"), "--no-register"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 99, done.stderr[-2000:]


@pytest.fixture(scope="module")
def reference(spark, settings: Settings, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    lake = make_lake(settings, tmp_path_factory.mktemp("reference"))
    job.run(spark, lake, progress=ingest.silent)
    return contents(spark, lake)


@pytest.mark.parametrize("point", ["annotations:after_bronze",
                                   "annotations:after_frames"])
def test_killed_then_rerun_equals_an_uninterrupted_run(spark, settings, reference, tmp_path, point) -> None:  # type: ignore[no-untyped-def]
    lake = make_lake(settings, tmp_path)
    kill_at(lake, "ingest_annotations", point)
    job.run(spark, lake, progress=ingest.silent)
    assert contents(spark, lake) == reference
    # The reference itself is what the rules say: 8 + 3 MOT rows good, one unknown frame, one bad line.
    assert sorted((r["rule"], r["record_no"]) for r in reference["ops.quarantine"]) == [
        ("type:x", 4), ("unknown_frame", 9)]


def make_capture_lake(settings: Settings, root: Path) -> Settings:
    lake = settings.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    manifests = Path(lake.landing_root) / "manifests"
    manifests.mkdir(parents=True)
    shutil.copyfile(SAMPLE, manifests / SAMPLE.name)
    (manifests / "cut.jsonl").write_text('{"capture_id": "cap-0900", "sensor": "rg')
    return lake


@pytest.fixture(scope="module")
def capture_reference(spark, settings: Settings, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    lake = make_capture_lake(settings, tmp_path_factory.mktemp("capture-reference"))
    captures_job.run(spark, lake, progress=ingest.silent)
    return contents(spark, lake, CAPTURE_TABLES)


@pytest.mark.parametrize("point", ["captures:after_bronze", "captures:after_subjects"])
def test_captures_killed_then_rerun_equals_an_uninterrupted_run(spark, settings, capture_reference, tmp_path,  # type: ignore[no-untyped-def]
                                                                point) -> None:
    lake = make_capture_lake(settings, tmp_path)
    kill_at(lake, "ingest_captures", point)
    captures_job.run(spark, lake, progress=ingest.silent)
    assert contents(spark, lake, CAPTURE_TABLES) == capture_reference
    assert sorted((r["source_file"], r["rule"]) for r in capture_reference["ops.quarantine"]) == [
        ("manifests/captures-2026-11-01.jsonl", "duplicate_of:manifests/captures-2026-11-01.jsonl:13"),
        ("manifests/cut.jsonl", "malformed_json")]
    assert (len(capture_reference["silver.captures"]), len(capture_reference["silver.subjects"])) == (12, 25)


PREDICTION_TABLES = ["bronze.predictions", "silver.model_runs", "silver.predictions", "ops.quarantine"]


def detections(ids_scores: list[tuple[str, int, float]]) -> str:
    return "".join(json.dumps({"prediction_id": pid, "capture_id": "cap-coco", "frame_index": frame,
                               "category_id": 1, "bbox": [1, 2, 10, 12], "score": score}) + "\n"
                   for pid, frame, score in ids_scores)


def make_prediction_lake(spark, settings: Settings, root: Path) -> Settings:  # type: ignore[no-untyped-def]
    """Frames and a first batch of predictions published; a second batch landed that re-sends one
    prediction with another score (its earlier copy must be quarantined) and adds one."""
    lake = make_lake(settings, root)
    job.run(spark, lake, progress=ingest.silent)
    landing.model_run(lake, "run-a", "person-detector", "1")
    (root / "in" / "first.jsonl").write_text(detections([("p1", 1, 0.5), ("p2", 2, 0.6), ("p3", 42, 0.7)]))
    landing.predictions(lake, root / "in" / "first.jsonl", "run-a", "cap-coco", "jsonl")
    predictions_job.run(spark, lake, progress=ingest.silent)
    (root / "in" / "second.jsonl").write_text(detections([("p1", 1, 0.9), ("p4", 3, 0.4)]))
    landing.predictions(lake, root / "in" / "second.jsonl", "run-a", "cap-coco", "jsonl")
    return lake


@pytest.fixture(scope="module")
def prediction_lake(spark, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """The lake before the increment, built once; each test works on a copy of its folder (Delta
    logs name their files relative to the table, the lake holds landing-relative paths)."""
    root = tmp_path_factory.mktemp("prediction-lake")
    make_prediction_lake(spark, settings, root)
    return root


def copy_of(settings: Settings, original: Path, root: Path) -> Settings:
    shutil.copytree(original, root, dirs_exist_ok=True)
    return settings.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))


@pytest.fixture(scope="module")
def prediction_reference(spark, settings: Settings, prediction_lake: Path,  # type: ignore[no-untyped-def]
                         tmp_path_factory: pytest.TempPathFactory):
    lake = copy_of(settings, prediction_lake, tmp_path_factory.mktemp("prediction-reference"))
    predictions_job.run(spark, lake, progress=ingest.silent)
    return contents(spark, lake, PREDICTION_TABLES)


@pytest.mark.parametrize("point", ["predictions:after_quarantine", "predictions:after_runs"])
def test_predictions_killed_in_an_increment_then_rerun_equal_an_uninterrupted_run(  # type: ignore[no-untyped-def]
        spark, settings, prediction_lake, prediction_reference, tmp_path, point) -> None:
    lake = copy_of(settings, prediction_lake, tmp_path)
    kill_at(lake, "ingest_predictions", point)
    predictions_job.run(spark, lake, progress=ingest.silent)
    assert contents(spark, lake, PREDICTION_TABLES) == prediction_reference
    # The reference: p1's later copy won, its earlier one names it; p3 waits for frame 42.
    assert sorted((r["prediction_id"], r["score"]) for r in prediction_reference["silver.predictions"]) == [
        ("p1", 0.9), ("p2", 0.6), ("p4", 0.4)]
    assert sorted((r["source_file"].rsplit("/", 1)[-1], r["record_no"], r["rule"])
                  for r in prediction_reference["ops.quarantine"] if r["target_table"] == "silver.predictions") == [
        ("first.jsonl", 1, "duplicate_of:predictions/run_id=run-a/capture_id=cap-coco/second.jsonl:1"),
        ("first.jsonl", 3, "unknown_frame")]
