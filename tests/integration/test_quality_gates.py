"""Quality gates stop bad batches, on a generated lake, with the real Spark, Delta, GE and Trino.

A clean generated landing zone is ingested once (the session's clean_lake); each test copies that
lake and delivers bad batches the way they arrive in real life. A job runs every gate before it
stops, so one delivery of several bad batches is one job run that names each of them: the gate
stops it naming each batch's expectation, the target tables keep their Delta versions, and the
results are in ops.quality_results. The labelling exports, fixed and delivered again, are then
published exactly once. Then: a warn-only batch is published with its warning recorded, and an
accepted batch is published with its failures recorded as accepted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import functions as F

import jobs.ingest_annotations as annotations_job
import jobs.ingest_captures as captures_job
import jobs.ingest_predictions as predictions_job
from scenelake import delta_io, ingest, landing, quality
from scenelake.settings import Settings
from scenelake.trino_client import query, register_tables
from tests.conftest import copy_lake

pytestmark = pytest.mark.integration
COCO = "annotations/coco/label_batch=gen/capture_id=gen-00002/instances.json"
MOT = "annotations/mot/label_batch=gen/capture_id=gen-00001/gt.txt"


@pytest.fixture(scope="module")
def clean(clean_lake: Settings) -> Settings:
    """The session's clean lake (tests/conftest.py: 6 captures, seed 3, ingested into silver)."""
    return clean_lake


@pytest.fixture
def lake(clean: Settings, tmp_path: Path) -> Settings:
    """A private copy of the clean lake and its landing zone."""
    return copy_lake(clean, tmp_path)


def labelled_frames(spark, lake: Settings) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    rows = delta_io.read_table(spark, lake, "silver.frames").where("labelled").orderBy("capture_id", "frame_index")
    return [(r.capture_id, r.frame_index) for r in rows.collect()]


def deliver_run(lake: Settings, run_id: str, records: list[dict[str, object]]) -> None:
    """A model run's predictions as JSON lines, one file per capture, landed the normal way."""
    landing.model_run(lake, run_id, "person-detector", run_id)
    by_capture: dict[str, list[dict[str, object]]] = {}
    for r in records:
        by_capture.setdefault(str(r["capture_id"]), []).append(r)
    for capture_id, rows in by_capture.items():
        folder = Path(lake.landing_root) / "predictions" / f"run_id={run_id}" / f"capture_id={capture_id}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "detections.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def detection(capture_id: str, frame: int, score: float, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {"capture_id": capture_id, "frame_index": frame, "category": "person", "category_id": 1,
                              "bbox": [100.0 + frame, 100.0, 50.0, 120.0], "score": score}
    row.update(changes)
    return row


def every_frame(spark, lake: Settings, per_frame: int = 3, **changes: object) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return [{**detection(c, f, round(0.3 + 0.1 * k + 0.001 * f, 4), bbox=[100.0 + 60 * k, 100.0, 50.0, 120.0]),
             **changes} for c, f in labelled_frames(spark, lake) for k in range(per_frame)]


def coco_export(lake: Settings, name: str, change: Callable[[dict[str, object]], None]) -> None:
    """A second labelling batch for one capture: the generated export, changed."""
    doc = json.loads((Path(lake.landing_root) / COCO).read_text())
    change(doc)
    folder = Path(lake.landing_root) / "annotations" / "coco" / f"label_batch={name}" / "capture_id=gen-00002"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instances.json").write_text(json.dumps(doc))


def mot_export(lake: Settings, name: str, shift: float) -> None:
    """A second labelling batch for one MOT capture: the generated gt.txt with every box moved right."""
    lines = []
    for line in (Path(lake.landing_root) / MOT).read_text().splitlines():
        fields = line.split(",")
        fields[2] = str(round(float(fields[2]) + shift, 2))
        lines.append(",".join(fields))
    folder = Path(lake.landing_root) / "annotations" / "mot" / f"label_batch={name}" / "capture_id=gen-00001"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gt.txt").write_text("\n".join(lines) + "\n")


def negative_sizes(doc: dict[str, object]) -> None:
    for a in doc["annotations"]:  # type: ignore[attr-defined]
        a["bbox"][2] = -1.0


def far_frames(doc: dict[str, object]) -> None:
    for image in doc["images"]:  # type: ignore[attr-defined]
        image["id"] += 100_000
    for a in doc["annotations"]:  # type: ignore[attr-defined]
        a["image_id"] += 100_000


def identity(doc: dict[str, object]) -> None:
    """The generated export as it is: the corrected delivery of a broken one."""


# Each bad batch: (how it is delivered, the table it must not reach, the expectation that stops it).
# One job run judges a whole delivery and reports every stopped table at once (quality.GateRun), so
# the cases of one job are delivered together and stopped by one run: each must still be named by
# its own expectation, with the offending files counted and sampled.
Delivery = dict[str, tuple[Callable[..., None], str, str]]
LABELLING: Delivery = {
    "labelling export with every box shifted out of the frame": (
        lambda spark, lake: mot_export(lake, "shifted", 2000.0), "silver.annotations", "boxes_overlap_frame"),
    "labelling export with negative box sizes": (
        lambda spark, lake: coco_export(lake, "negative", negative_sizes), "ops.quarantine",
        "file_mostly_quarantined"),
}
# Stopped on its own, on the lake the other batches left (its corrected export supersedes the
# broken one, as every corrected file does: scenelake.ingest.newest).
FAR: Delivery = {
    "labelling export for frames past the end of the capture": (
        lambda spark, lake: coco_export(lake, "far", far_frames), "silver.frames", "frame_index_within_capture"),
}
INFERENCE: Delivery = {
    "inference run with most of its frames missing": (
        lambda spark, lake: deliver_run(lake, "cut-short", [detection(c, f, 0.9) for c, f in
                                                            labelled_frames(spark, lake)[::5]]),
        "silver.predictions", "run_covers_labelled_frames"),
    "inference run with a silently changed score scale": (
        lambda spark, lake: deliver_run(lake, "percent", [dict(r, score=round(float(r["score"]) * 100, 2))  # type: ignore[arg-type]
                                                          for r in every_frame(spark, lake)]),
        "ops.quarantine", "file_mostly_quarantined"),
    "inference run on frames that do not exist": (
        lambda spark, lake: deliver_run(lake, "wrong-frames", every_frame(spark, lake, frame_index=99_999)),
        "ops.quarantine", "file_mostly_quarantined"),
    "truncated prediction file (mostly garbage)": (
        lambda spark, lake: _garbage(lake), "ops.quarantine", "file_mostly_quarantined"),
}
COLLAPSED: Delivery = {
    "inference run whose scores collapsed to one value": (
        lambda spark, lake: deliver_run(lake, "collapsed", every_frame(spark, lake, score=0.5)),
        "silver.predictions", "scores_not_collapsed"),
}


def _garbage(lake: Settings) -> None:
    landing.model_run(lake, "garbage", "person-detector", "garbage")
    folder = Path(lake.landing_root) / "predictions" / "run_id=garbage" / "capture_id=gen-00000"
    folder.mkdir(parents=True, exist_ok=True)
    good = json.dumps(detection("gen-00000", 1, 0.9))
    (folder / "detections.jsonl").write_text(good + "\n" + "".join(good[: 7 + i] + "\n" for i in range(30)))


def results(spark, lake: Settings, label: str):  # type: ignore[no-untyped-def]
    return (delta_io.read_table(spark, lake, quality.RESULTS).where(F.col("expectation") == label)
            .select("table_name", "severity", "success", "outcome", "unexpected_count", "sample_keys").collect())


def stopped_and_recorded(spark, lake: Settings, job: object, delivery: Delivery,  # type: ignore[no-untyped-def]
                         published: tuple[str, ...]) -> quality.QualityGateFailed:
    """Deliver every bad batch of `delivery`, run `job` once, and check: it stops naming each batch's
    expectation (with the command to accept), none of the `published` tables moved, and each stop
    is in ops.quality_results as a failed `fail` result with its unexpected count and sample keys."""
    for deliver, _, _ in delivery.values():
        deliver(spark, lake)
    before = {t: delta_io.table_version(spark, lake, t) for t in published}
    with pytest.raises(quality.QualityGateFailed) as stopped:
        job.run(spark, lake, progress=ingest.silent)  # type: ignore[attr-defined]
    failed = {f.check.label for f in stopped.value.failures}
    assert {expectation for _, _, expectation in delivery.values()} <= failed, failed
    assert {table for _, table, _ in delivery.values()} <= set(stopped.value.tables)
    assert "scenelake quality accept" in str(stopped.value)
    assert {t: delta_io.table_version(spark, lake, t) for t in published} == before
    for _, table, expectation in delivery.values():
        recorded = [r for r in results(spark, lake, expectation) if r.outcome == "stopped" and not r.success]
        assert len(recorded) == 1 and recorded[0].severity == "fail", expectation
        assert recorded[0].table_name == table and recorded[0].unexpected_count >= 1 and recorded[0].sample_keys
    return stopped.value


def sampled_files(spark, lake: Settings, expectation: str) -> tuple[int, set[str]]:  # type: ignore[no-untyped-def]
    """The unexpected count of a stopped result and the files its sample keys name."""
    (row,) = [r for r in results(spark, lake, expectation) if r.outcome == "stopped" and not r.success]
    return row.unexpected_count, {k.split("source_file=")[1].split(",")[0] for k in row.sample_keys}


def test_bad_labelling_exports_are_stopped_together_and_published_once_fixed(spark, lake: Settings) -> None:  # type: ignore[no-untyped-def]
    stopped_and_recorded(spark, lake, annotations_job, LABELLING, ("silver.frames", "silver.annotations"))
    assert sampled_files(spark, lake, "file_mostly_quarantined") == (
        1, {"annotations/coco/label_batch=negative/capture_id=gen-00002/instances.json"})
    # Every result of the stopped run is recorded as stopped, the passing checks' too.
    runs = delta_io.read_table(spark, lake, quality.RESULTS).where("job = 'ingest_annotations'").groupBy(
        "table_name").agg(F.collect_set("outcome").alias("outcomes")).collect()
    recorded = {r.table_name: sorted(r.outcomes) for r in runs}
    assert recorded == {t: ["published", "stopped"] for t in ("ops.quarantine", "silver.frames",
                                                              "silver.annotations")}, recorded
    # The labelling vendor re-delivers both exports, fixed, under the same names.
    mot_export(lake, "shifted", 0.0)
    coco_export(lake, "negative", identity)
    annotations_job.run(spark, lake, progress=ingest.silent)
    annotations = delta_io.read_table(spark, lake, "silver.annotations")
    mot = len((Path(lake.landing_root) / MOT).read_text().splitlines())
    coco = len(json.loads((Path(lake.landing_root) / COCO).read_text())["annotations"])
    for batch, expected in (("shifted", mot), ("negative", coco)):
        rows = annotations.where(F.col("label_batch") == batch)
        assert rows.count() == expected == rows.select("annotation_id").distinct().count(), batch
    assert annotations.where(F.col("label_batch") == "shifted").where(F.col("x") > 1280).count() == 0
    # Then an export for frames the capture does not have.
    stopped_and_recorded(spark, lake, annotations_job, FAR, ("silver.frames", "silver.annotations"))


def test_bad_inference_runs_are_stopped_together_each_named(spark, lake: Settings) -> None:  # type: ignore[no-untyped-def]
    stopped_and_recorded(spark, lake, predictions_job, INFERENCE, ("silver.predictions", "silver.model_runs"))
    # The mostly quarantined files are exactly those of the three broken runs: one per capture of the
    # rescaled and the misnumbered run, and the truncated file.
    captures = len({c for c, _ in labelled_frames(spark, lake)})
    count, files = sampled_files(spark, lake, "file_mostly_quarantined")
    assert count == 2 * captures + 1 and files, files
    assert {f.split("/")[1] for f in files} <= {"run_id=percent", "run_id=wrong-frames", "run_id=garbage"}, files


def test_clean_runs_published_with_every_result_recorded(spark, clean: Settings) -> None:  # type: ignore[no-untyped-def]
    rows = delta_io.read_table(spark, clean, quality.RESULTS).groupBy("table_name", "outcome").count().collect()
    outcomes = {(r.table_name, r.outcome) for r in rows}
    assert {("silver.captures", "published"), ("silver.annotations", "published"),
            ("silver.predictions", "published"), ("ops.quarantine", "published")} <= outcomes
    assert not [o for o in outcomes if o[1] != "published"]


def test_warn_only_batch_is_published_with_its_warning(spark, lake: Settings) -> None:  # type: ignore[no-untyped-def]
    lake = lake.with_overrides(data_docs=True, state_dir=Path(lake.lake_root).parent / "state")  # and its report
    first_upload = sorted((Path(lake.landing_root) / "manifests").glob("*.jsonl"))[0]
    line = json.loads(first_upload.read_text().splitlines()[0])
    line.update(capture_id="portrait-1", resolution={"width": 720, "height": 1280})
    (Path(lake.landing_root) / "manifests" / "portrait.jsonl").write_text(json.dumps(line) + "\n")
    before = delta_io.table_version(spark, lake, "silver.captures")
    report = captures_job.run(spark, lake, progress=ingest.silent)
    assert delta_io.table_version(spark, lake, "silver.captures") == (before or 0) + 1
    assert [w.split(" ")[0] for w in report.warnings] == ["expect_column_pair_values_a_to_be_greater_than_b"]
    warned = results(spark, lake, "expect_column_pair_values_a_to_be_greater_than_b")
    assert [(r.severity, r.success, r.outcome, r.unexpected_count) for r in warned if not r.success] == [
        ("warn", False, "published", 1)]
    # The Data Docs site has a page for each of the job's gates (not only the last one's), all in its index.
    site = lake.state_dir / "data_docs"
    pages = sorted(p.relative_to(site).as_posix() for p in (site / "validations").rglob("*.html"))
    assert [p.split("/")[1:3] for p in pages] == [["ops", "quarantine-pandas"], ["ops", "quarantine-sqlite"],
                                                  ["silver", "captures-pandas"], ["silver", "subjects-pandas"]], pages
    assert all(p in (site / "index.html").read_text() for p in pages)
    assert quality.KEPT_RESULTS >= 1 and all(  # one stored result each, pruned to the newest KEPT_RESULTS
        len(list((site / quality.RESULTS_FOLDER / s).glob("*/*"))) == 1 for s in
        ("ops/quarantine-pandas", "ops/quarantine-sqlite", "silver/captures-pandas", "silver/subjects-pandas"))


def test_accepted_batch_is_published_and_recorded_as_accepted(spark, lake: Settings, trino: Settings) -> None:  # type: ignore[no-untyped-def]
    stopped = stopped_and_recorded(spark, lake, predictions_job, COLLAPSED, ("silver.predictions",))
    assert stopped.tables == ["silver.predictions"]
    assert stopped.batch_key
    quality.accept(spark, lake, "silver.predictions", stopped.batch_key, "constant-score baseline on purpose",
                   "test")
    predictions_job.run(spark, lake, progress=ingest.silent)
    published = delta_io.read_table(spark, lake, "silver.predictions").where("run_id = 'collapsed'").count()
    assert published == len(every_frame(spark, lake))
    assert sorted(r.outcome for r in results(spark, lake, "scores_not_collapsed") if not r.success) == [
        "accepted", "stopped"]
    served = trino.with_overrides(lake_root=lake.lake_root)
    register_tables(served, [("ops", "quality_results"), ("ops", "quality_acceptances")])
    assert query(served, "select outcome, count(*) from delta.ops.quality_results "
                         "where expectation = 'scores_not_collapsed' and not success group by 1 order by 1") == [
        ["accepted", 1], ["stopped", 1]]
    assert query(served, "select reason from delta.ops.quality_acceptances") == [["constant-score baseline on purpose"]]
