"""Slicing in Trino equals pycocotools on the slice's frames alone, on a generated lake.

The whole pipeline (ingestion + evaluation) runs on a generated landing zone; the Trino views
from sql/gold/ are deployed; every number is compared with pycocotools fed the same silver rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import jobs.pipeline as pipeline
from scenelake import delta_io, ingest, views
from scenelake.contracts import all_contracts
from scenelake.generator import generate
from scenelake.settings import Settings
from scenelake.trino_client import query, register_tables
from tests.coco_reference import pycocotools_stats

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lake(spark, trino: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("slices")
    lake = trino.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    generate(Path(lake.landing_root), captures=16, seed=5, defect_rate=0.0)
    pipeline.run(spark, lake, progress=ingest.silent)
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
    return {
        "frames": read("silver.frames", "capture_id", "frame_index", "labelled"),
        "captures": read("silver.captures", "capture_id", "lighting", "motion"),
        "gt": read("silver.annotations", "capture_id", "frame_index", "category_id", *box, "area", "is_crowd",
                   "source_file", "record_no"),
        "dt": read("silver.predictions", "run_id", "capture_id", "frame_index", "category_id", *box, "score",
                   "source_file", "record_no"),
    }


def reference(silver: dict[str, pd.DataFrame], run_id: str, captures: set[str] | None = None) -> list[float]:
    """pycocotools on the run's labelled frames (of `captures` only, when given)."""
    dt = silver["dt"][silver["dt"]["run_id"] == run_id]
    in_scope = set(dt["capture_id"]) if captures is None else set(dt["capture_id"]) & captures
    frames = silver["frames"][silver["frames"]["labelled"] & silver["frames"]["capture_id"].isin(in_scope)]
    image = {key: i + 1 for i, key in enumerate(sorted(zip(frames["capture_id"], frames["frame_index"],
                                                           strict=True)))}

    def coco(df: pd.DataFrame) -> pd.DataFrame:
        keys = list(zip(df["capture_id"], df["frame_index"], strict=True))
        df = df.assign(frame_index=[image.get(k, -1) for k in keys])
        df = df[df["frame_index"] > 0].sort_values(["source_file", "record_no"])
        return df.assign(order=range(len(df)), id=range(1, len(df) + 1))

    return pycocotools_stats(coco(silver["gt"]), coco(dt), images=sorted(image.values()))


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
    captures = silver["captures"]
    assert len(sliced) >= 6
    for (run_id, lighting), numbers in sliced.items():
        ref = reference(silver, run_id, set(captures[captures["lighting"] == lighting]["capture_id"]))
        assert numbers == pytest.approx([ref[0], ref[1], ref[8]], abs=1e-9), (run_id, lighting)


def test_any_grouping_through_the_slice_query(lake, silver) -> None:  # type: ignore[no-untyped-def]
    rows = query(lake, views.slice_query(["lighting", "motion"], ["person-v2"]))
    captures = silver["captures"]
    assert rows and {r[1] for r in rows} == {"lighting,motion"}
    for row in rows:
        lighting, motion = row[2].split(",")
        chosen = captures[(captures["lighting"] == lighting) & (captures["motion"] == motion)]
        ref = reference(silver, "person-v2", set(chosen["capture_id"]))
        assert [row[3], row[4]] == pytest.approx([ref[0], ref[1]], abs=1e-9), row[2]
