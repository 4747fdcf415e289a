"""Slicing in Trino equals pycocotools on the slice's frames alone, on a generated lake.

The whole pipeline (ingestion + evaluation) runs on a generated landing zone (the session's faulty
lake, shared with the conservation and curated-view tests); the Trino views
from sql/gold/ are deployed; every number is compared with pycocotools fed the same silver rows.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from scenelake import delta_io, export, ingest, landing, views
from scenelake.contracts import all_contracts
from scenelake.settings import Settings
from scenelake.trino_client import query, register_tables
from tests.coco_reference import pycocotools_stats

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lake(spark, faulty_lake, trino: Settings) -> Settings:  # type: ignore[no-untyped-def]
    """The shared faulty lake (tests/conftest.py: ingested and evaluated once), its tables registered
    and the views deployed. Its quarantined records are in no silver table, so neither the views nor
    the pycocotools reference (fed the same silver rows) see them."""
    lake, _ = faulty_lake
    names = [n for n in all_contracts() if delta_io.table_exists(spark, lake, n)]
    register_tables(lake, [tuple(n.split(".")) for n in names])  # type: ignore[misc]
    deployed = views.deploy(lake)
    assert {"gold.detection_evaluation", "gold.detection_slice_metrics"} <= set(deployed)
    assert deployed.index("gold.detection_evaluation") < deployed.index("gold.detection_slice_metrics")
    return lake


@pytest.fixture(scope="module")
def silver(spark, lake: Settings) -> dict[str, pd.DataFrame]:  # type: ignore[no-untyped-def]
    def read(name: str, *cols: str) -> pd.DataFrame:
        return delta_io.read_table(spark, lake, name).select(*cols).toPandas()

    box = ("x", "y", "w", "h")
    tables = {
        "frames": read("silver.frames", "capture_id", "frame_index", "labelled"),
        "captures": read("silver.captures", "capture_id", "lighting", "motion"),
        "gt": read("silver.annotations", "capture_id", "frame_index", "category_id", *box, "area", "is_crowd",
                   "source_file", "record_no"),
        "dt": read("silver.predictions", "run_id", "capture_id", "frame_index", "category_id", *box, "score",
                   "source_file", "record_no"),
    }
    # The consent policy: a capture with a subject whose consent is not granted is not evaluated, so
    # the reference leaves it out too (the lake has such captures with predictions on them).
    subjects = read("silver.subjects", "capture_id", "consent")
    held_out = set(subjects[subjects["consent"] != "granted"]["capture_id"])
    assert held_out & set(tables["dt"]["capture_id"])
    return {name: df[~df["capture_id"].isin(held_out)] for name, df in tables.items()}


def reference(silver: dict[str, pd.DataFrame], run_id: str, captures: set[str] | None = None,
              only: set[tuple[str, int]] | None = None) -> list[float]:
    """pycocotools on the run's labelled frames (of `captures` only, and of the (capture, frame) pairs
    `only`, when given)."""
    dt = silver["dt"][silver["dt"]["run_id"] == run_id]
    in_scope = set(dt["capture_id"]) if captures is None else set(dt["capture_id"]) & captures
    frames = silver["frames"][silver["frames"]["labelled"] & silver["frames"]["capture_id"].isin(in_scope)]
    keys = sorted(zip(frames["capture_id"], frames["frame_index"], strict=True))
    image = {key: i + 1 for i, key in enumerate(k for k in keys if only is None or k in only)}

    def coco(df: pd.DataFrame) -> pd.DataFrame:
        keys = list(zip(df["capture_id"], df["frame_index"], strict=True))
        df = df.assign(frame_index=[image.get(k, -1) for k in keys])
        df = df[df["frame_index"] > 0].sort_values(["source_file", "record_no"])
        return df.assign(order=range(len(df)), id=range(1, len(df) + 1))

    return pycocotools_stats(coco(silver["gt"]), coco(dt), images=sorted(image.values()))


def with_values(silver: dict[str, pd.DataFrame], run_id: str, *attributes: str) -> pd.DataFrame:
    """The run's captures with their scenario values: None where silver.captures has no value (a
    capture whose manifest line was quarantined has no row at all), as the views' NULL slice."""
    captures = silver["captures"].set_index("capture_id")
    ids = sorted(set(silver["dt"][silver["dt"]["run_id"] == run_id]["capture_id"]))
    values = {a: [None if c not in captures.index or pd.isna(captures.at[c, a]) else captures.at[c, a] for c in ids]
              for a in attributes}
    return pd.DataFrame({"capture_id": ids, **values})


def slice_rows(lake: Settings, where: str) -> dict[tuple[str, str], list[float]]:
    rows = query(lake, "select run_id, slice_value, ap, ap50, ar100 from delta.gold.detection_slice_metrics "
                       f"where {where}")
    return {(r[0], r[1]): r[2:] for r in rows}


def test_the_whole_run_slice_equals_the_metrics_table_and_pycocotools(lake, silver) -> None:  # type: ignore[no-untyped-def]
    metrics = {r[0]: r[1:] for r in query(lake, "select run_id, ap, ap50, ar100 from delta.gold.detection_metrics "
                                                "where category = 'all'")}
    sliced = slice_rows(lake, "slice_by = 'all'")
    assert sorted(metrics) == ["person-v1", "person-v2"]
    for run_id, numbers in metrics.items():
        assert sliced[(run_id, "all")] == pytest.approx(numbers, abs=1e-12)
        ref = reference(silver, run_id)
        assert numbers == pytest.approx([ref[0], ref[1], ref[8]], abs=1e-9)


def test_each_lighting_slice_equals_pycocotools_on_its_frames(lake, silver) -> None:  # type: ignore[no-untyped-def]
    sliced = slice_rows(lake, "slice_by = 'lighting'")
    assert len(sliced) >= 6
    for (run_id, lighting), numbers in sliced.items():
        captures = with_values(silver, run_id, "lighting")
        ref = reference(silver, run_id, {c for c, v in zip(captures["capture_id"], captures["lighting"], strict=True)
                                         if v == lighting})
        assert numbers == pytest.approx([ref[0], ref[1], ref[8]], abs=1e-9), (run_id, lighting)
    # The NULL slice included, a run's lighting slices hold every one of its records once.
    counts = query(lake, "select run_id, slice_by, sum(num_ground_truth), sum(num_predictions) "
                         "from delta.gold.detection_slice_metrics where slice_by in ('all', 'lighting') group by 1, 2")
    totals = {(r[0], r[1]): r[2:] for r in counts}
    for run_id in {r for r, _ in sliced}:
        assert totals[(run_id, "lighting")] == totals[(run_id, "all")]


def test_any_grouping_through_the_slice_query(lake, silver) -> None:  # type: ignore[no-untyped-def]
    rows = query(lake, views.slice_query(["lighting", "motion"], ["person-v2"]))
    captures = with_values(silver, "person-v2", "lighting", "motion")
    assert rows and {r[1] for r in rows} == {"lighting,motion"}
    for row in rows:
        # A capture without a value shows as 'null' in a combined slice value.
        label = [",".join("null" if v is None else str(v) for v in pair)
                 for pair in zip(captures["lighting"], captures["motion"], strict=True)]
        chosen = {c for c, value in zip(captures["capture_id"], label, strict=True) if value == row[2]}
        ref = reference(silver, "person-v2", chosen)
        assert [row[3], row[4]] == pytest.approx([ref[0], ref[1]], abs=1e-9), row[2]


def pycocotools_on_files(folder: Path) -> list[float]:
    """COCOeval (bbox) on an export's two files, loaded as pycocotools loads any COCO file."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(folder / "ground_truth.json"))
        evaluator = COCOeval(gt, gt.loadRes(str(folder / "results.json")), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def test_a_slices_false_negatives_export_and_import_back_as_pycocotools_evaluates_them(  # type: ignore[no-untyped-def]
        spark, lake, silver, tmp_path: Path) -> None:
    out = tmp_path / "dark"
    where = "lighting = 'dark'"
    env = {**os.environ, "SCENELAKE_LAKE_ROOT": lake.lake_root, "SCENELAKE_LANDING_ROOT": lake.landing_root}
    done = subprocess.run([sys.executable, "-m", "scenelake.cli", "export", "--run", "person-v2", "--where", where,
                           "--kind", "false_negatives", "--out", str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    instances = json.loads((out / "ground_truth.json").read_text())
    results = json.loads((out / "results.json").read_text())
    manifest = json.loads((out / "export.json").read_text())

    # The frames are the slice's frames with a missed object, as the curated view tells them.
    frames = {(i["capture_id"], i["frame_index"]) for i in instances["images"]}
    missed = query(lake, "select distinct capture_id, frame_index from delta.gold.detection_evaluation "
                         "where run_id = 'person-v2' and lighting = 'dark' and kind = 'ground_truth' "
                         "and ig_all = 0 and bitwise_and(tp_all, 1) = 0")
    assert frames == {(r[0], r[1]) for r in missed} and len(frames) >= 5
    outcomes = [a["outcome"] for a in instances["annotations"]]
    flagged = [r["outcome"] for r in results]
    assert manifest["counts"] == {"images": len(frames), "annotations": len(outcomes), "results": len(results),
                                  "missed": outcomes.count("missed"),
                                  "false_positives": flagged.count("false_positive")}
    assert outcomes.count("missed") >= len(frames) and set(flagged) <= {"true_positive", "false_positive", "ignored"}
    assert manifest["versions"] == {name: delta_io.table_version(spark, lake, name) for name in export.TABLES}

    # Faithful: pycocotools on the files equals pycocotools on the lake's silver rows of those frames.
    on_files = pycocotools_on_files(out)
    assert on_files == pytest.approx(reference(silver, "person-v2", only=frames), abs=1e-12)

    # Imported back as a new dataset, the evaluation gives pycocotools' numbers on the files.
    back = lake.with_overrides(lake_root=str(tmp_path / "lake"), landing_root=str(tmp_path / "landing"))
    landing.coco_annotations(back, out / "ground_truth.json", "dark-misses", "export")
    landing.model_run(back, "person-v2", "person-detector", "v2")
    landing.predictions(back, out / "results.json", "person-v2", "dark-misses", "coco_results")
    import jobs.evaluate as evaluate_job
    import jobs.ingest_annotations as annotations_job
    import jobs.ingest_predictions as predictions_job

    for job in (annotations_job, predictions_job, evaluate_job):
        job.run(spark, back, progress=ingest.silent)
    row = delta_io.read_table(spark, back, "gold.detection_metrics").where("category = 'all'").collect()
    assert len(row) == 1
    stats = ["ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100", "ar_small",
             "ar_medium", "ar_large"]
    # gold.detection_metrics holds null where pycocotools prints -1 (no object in the area range).
    got = [row[0][s] for s in stats]
    assert [v is None for v in got] == [v == -1 for v in on_files]
    assert [v for v in got if v is not None] == pytest.approx([v for v in on_files if v != -1], abs=1e-12)
    assert (row[0]["num_frames"], row[0]["num_predictions"]) == (len(frames), len(results))

    # --again reads the recorded versions and writes the same files.
    again = tmp_path / "again"
    export.export_failures(lake, **export.recorded(out), out=again, progress=ingest.silent)
    for name in ("ground_truth.json", "results.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes()


def test_an_export_filter_names_only_what_it_may(lake, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(export.ExportError, match=r"--where names device_serial: it may name the scenario "
                                                 r"attributes \(source, .*\) and capture_id, frame_index"):
        export.export_failures(lake, "person-v2", "device_serial = 'SN1'", "all", tmp_path)
    with pytest.raises(export.ExportError, match="may not hold a query"):
        export.export_failures(lake, "person-v2", "lighting in (select 'dark')", "all", tmp_path)
    with pytest.raises(export.ExportError, match="run 'person-v9' has no evaluated record"):
        export.export_failures(lake, "person-v9", "", "all", tmp_path)
    assert not list(tmp_path.iterdir())
