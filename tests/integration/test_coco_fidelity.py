"""Real-world COCO files through `scenelake import coco`: what pycocotools evaluates is kept, the rest is refused.

A random COCO ground-truth file (tests/coco_reference.random_dataset: crowds, ties, every area
range) on 640 x 480 images, so that many boxes extend past the right or bottom edge as partly
visible people do, plus records pycocotools would evaluate wrongly or not at all: `iscrowd: 2`,
zero-size boxes, a box wholly off the image. Imported and evaluated by the jobs; the 12 numbers
equal pycocotools on the same file without the refused records, and each refused record is in
ops.quarantine with its own rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from scenelake import delta_io, evaluation, ingest
from scenelake.settings import Settings
from tests.coco_reference import pycocotools_stats, random_dataset
from tests.conftest import run_cli

pytestmark = pytest.mark.integration
STATS = ["ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100", "ar_small", "ar_medium",
         "ar_large"]
WIDTH, HEIGHT = 640, 480
# (record id, what is wrong with it, the rule that refuses it)
REFUSED = [(900001, {"iscrowd": 2}, "range:iscrowd_in_0_1"), (900002, {"bbox": [10.0, 10.0, 0.0, 0.0]}, "range:w>0"),
           (900003, {"bbox": [20.0, 30.0, 40.0, 0.0]}, "range:h>0"),
           (900004, {"bbox": [WIDTH + 10.0, 30.0, 40.0, 50.0]}, "range:box_outside_frame")]


@pytest.fixture(scope="module")
def evaluated(spark, settings: Settings, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import jobs.evaluate as evaluate_job
    import jobs.ingest_annotations as annotations_job
    import jobs.ingest_predictions as predictions_job

    root = tmp_path_factory.mktemp("fidelity")
    lake = settings.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    gt, dt = random_dataset(21, images=40, categories=2)
    annotations = [{"id": int(r.id), "image_id": int(r.frame_index), "category_id": int(r.category_id),
                    "bbox": [r.x, r.y, r.w, r.h], "area": r.area, "iscrowd": int(r.is_crowd)}
                   for r in gt.sort_values("order").itertuples()]
    for record_id, change, _ in REFUSED:
        annotations.append({"id": record_id, "image_id": 1, "category_id": 1, "bbox": [100.0, 100.0, 50.0, 80.0],
                            "area": 4000.0, "iscrowd": 0, **change})
    images = sorted(set(gt["frame_index"]) | set(dt["frame_index"]))
    doc = {"images": [{"id": int(i), "width": WIDTH, "height": HEIGHT} for i in images],
           "categories": [{"id": c, "name": f"class-{c}"} for c in (1, 2)], "annotations": annotations}
    (root / "gt.json").write_text(json.dumps(doc))
    (root / "dt.json").write_text(json.dumps([
        {"image_id": int(r.frame_index), "category_id": int(r.category_id), "bbox": [r.x, r.y, r.w, r.h],
         "score": r.score} for r in dt.sort_values("order").itertuples()]))
    run_cli(lake, "import", "coco", "--annotations", str(root / "gt.json"), "--results", str(root / "dt.json"),
            "--dataset", "fidelity", "--run-id", "fidelity-run", "--model-name", "m", "--model-version", "1")
    for job in (annotations_job, predictions_job):
        job.run(spark, lake, progress=ingest.silent)
    # The dataset is one capture of 40 images: blocks of 7 frames make it 6 matching groups (a real dataset
    # of 50k images, 49 blocks of 1,024), whose results must be those of one.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation, "FRAME_BLOCK", 7)
        evaluate_job.run(spark, lake, progress=ingest.silent)
    return lake, gt, dt, images


def test_boxes_past_the_edge_are_kept_and_the_numbers_equal_pycocotools(spark, evaluated) -> None:  # type: ignore[no-untyped-def]
    lake, gt, dt, images = evaluated
    past = gt[(gt["x"] + gt["w"] > WIDTH) | (gt["y"] + gt["h"] > HEIGHT)]
    assert len(past) >= 10  # the data does what the test says
    kept = delta_io.read_table(spark, lake, "silver.annotations")
    assert kept.count() == len(gt)
    assert kept.where(F.col("x") + F.col("w") > WIDTH).count() == int((gt["x"] + gt["w"] > WIDTH).sum())
    row = (delta_io.read_table(spark, lake, "gold.detection_metrics")
           .where("run_id = 'fidelity-run' and category = 'all'").collect())
    assert len(row) == 1
    assert [row[0][s] for s in STATS] == pytest.approx(pycocotools_stats(gt, dt, images=images), abs=1e-9)


def test_records_pycocotools_would_misread_are_quarantined_with_their_rule(spark, evaluated) -> None:  # type: ignore[no-untyped-def]
    lake, gt, *_ = evaluated
    rules = {r.record_no: r.rule for r in delta_io.read_table(spark, lake, "ops.quarantine")
             .where((F.col("target_table") == "silver.annotations") & (F.col("section") == "annotations")).collect()}
    # The refused records follow the generated ones in the file's annotation list (1-based record numbers).
    assert rules == {len(gt) + i + 1: rule for i, (_, _, rule) in enumerate(REFUSED)}


def test_a_blank_export_in_the_landing_zone_is_named_in_the_gate_results(spark, evaluated) -> None:  # type: ignore[no-untyped-def]
    """Its only record is quarantined as empty_file; the warn check unreadable_files names the file, and
    a batch with no frame left is stopped by the frames' row count."""
    import jobs.ingest_annotations as annotations_job
    from scenelake import quality

    lake, *_ = evaluated
    folder = Path(lake.landing_root) / "annotations" / "coco" / "label_batch=blank" / "capture_id=fidelity"
    folder.mkdir(parents=True)
    (folder / "instances.json").write_text("  \n\n")
    with pytest.raises(quality.QualityGateFailed) as stopped:
        annotations_job.run(spark, lake, progress=ingest.silent)
    assert stopped.value.table == "silver.frames"
    (warned,) = (delta_io.read_table(spark, lake, quality.RESULTS).where("expectation = 'unreadable_files'")
                 .where("not success").collect())
    assert warned.severity == "warn" and warned.unexpected_count == 1
    assert [k for k in warned.sample_keys if "label_batch=blank/capture_id=fidelity/instances.json" in k]
