"""Evaluation of the oracle data, imported through the normal ingestion path, against published numbers."""

from __future__ import annotations

import json

import pytest

import jobs.evaluate as evaluate_job
from scenelake import delta_io, ingest
from scenelake.settings import Settings
from tests.oracles import ORACLES

pytestmark = pytest.mark.integration

STATS = ["ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100", "ar_small", "ar_medium",
         "ar_large"]
MOT_KEYS = {"IDF1": "idf1", "IDP": "idp", "IDR": "idr", "Recall": "recall", "Precision": "precision", "GT": "gt_ids",
            "MT": "mt", "PT": "pt", "ML": "ml", "FP": "fp", "FN": "fn", "IDSW": "idsw", "FM": "frag", "MOTA": "mota",
            "MOTP_distance": "motp_distance"}


@pytest.fixture(scope="module")
def evaluated(spark, oracle_lake: Settings) -> Settings:  # type: ignore[no-untyped-def]
    report = evaluate_job.run(spark, oracle_lake, progress=ingest.silent)
    assert report.runs == ["coco-fakebbox", "mot15-tracker"]
    return oracle_lake


def test_coco_bbox_stats_equal_the_published_numbers(spark, evaluated: Settings) -> None:  # type: ignore[no-untyped-def]
    expected = json.loads((ORACLES / "coco-val2014-100" / "expected.json").read_text())
    row = (delta_io.read_table(spark, evaluated, "gold.detection_metrics")
           .where("run_id = 'coco-fakebbox' and category = 'all'").collect())
    assert len(row) == 1
    got = [row[0][s] for s in STATS]
    assert got == pytest.approx(expected["bbox"], abs=expected["tolerance"], rel=0)
    assert (row[0]["num_ground_truth"], row[0]["num_predictions"], row[0]["num_frames"]) == (830, 734, 100)


def test_match_table_holds_one_row_per_prediction_and_object(spark, evaluated: Settings) -> None:  # type: ignore[no-untyped-def]
    rows = (delta_io.read_table(spark, evaluated, "gold.detection_matches").where("run_id = 'coco-fakebbox'")
            .groupBy("kind").count().collect())
    assert {r["kind"]: r["count"] for r in rows} == {"prediction": 734, "ground_truth": 839}


def test_mot_metrics_equal_the_devkit(spark, evaluated: Settings) -> None:  # type: ignore[no-untyped-def]
    expected = json.loads((ORACLES / "mot15-tud" / "expected.json").read_text())
    rows = {r["capture_id"]: r.asDict() for r in delta_io.read_table(spark, evaluated, "gold.tracking_metrics")
            .where("run_id = 'mot15-tracker'").collect()}
    assert set(rows) == {"TUD-Campus", "TUD-Stadtmitte", "all"}
    for sequence, numbers in expected["sequences"].items():
        got = rows["all" if sequence == "OVERALL" else sequence]
        for key, column in MOT_KEYS.items():
            if isinstance(numbers[key], int):
                assert got[column] == numbers[key], (sequence, key)
            else:
                assert got[column] == pytest.approx(numbers[key], abs=expected["tolerance"]), (sequence, key)


def test_hota_equals_trackeval(spark, evaluated: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """HOTA and its parts in gold.tracking_metrics, per sequence and for the run ('all'), equal TrackEval's."""
    import pandas as pd

    from scenelake.mot_eval import HOTA_RATIO_KEYS
    from tests.trackeval_reference import evaluate as trackeval

    names = ["frame", "track_id", "x", "y", "w", "h", "consider", "object_class", "visibility", "wz"]
    sequences = {seq: (pd.read_csv(ORACLES / "mot15-tud" / seq / "gt.txt", header=None, names=names),
                       pd.read_csv(ORACLES / "mot15-tud" / seq / "test.txt", header=None, names=names))
                 for seq in ("TUD-Campus", "TUD-Stadtmitte")}
    reference = trackeval(tmp_path, sequences, "MOT15")
    rows = {r["capture_id"]: r.asDict() for r in delta_io.read_table(spark, evaluated, "gold.tracking_metrics")
            .where("run_id = 'mot15-tracker'").collect()}
    for capture, seq in (("TUD-Campus", "TUD-Campus"), ("TUD-Stadtmitte", "TUD-Stadtmitte"), ("all", "COMBINED_SEQ")):
        got = {k: rows[capture][k] for k in HOTA_RATIO_KEYS}
        assert got == pytest.approx({k: reference[seq][k] for k in HOTA_RATIO_KEYS}, abs=1e-6, rel=0), capture
        assert len(rows[capture]["hota_tp"]) == 19


def test_rerun_is_a_no_op(spark, evaluated: Settings) -> None:  # type: ignore[no-untyped-def]
    tables = ["gold.detection_matches", "gold.detection_metrics", "gold.tracking_metrics"]
    before = {t: delta_io.table_version(spark, evaluated, t) for t in tables}
    assert evaluate_job.run(spark, evaluated, progress=ingest.silent).skipped
    assert {t: delta_io.table_version(spark, evaluated, t) for t in tables} == before
