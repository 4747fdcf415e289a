"""The numpy COCO evaluator against pycocotools (the oracle) and on hand-made cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scenelake import coco_eval
from tests.coco_reference import pycocotools_stats, random_dataset

pytestmark = pytest.mark.unit


def our_stats(gt: pd.DataFrame, dt: pd.DataFrame) -> list[float]:
    """The 12 numbers through match -> accumulate -> summarize, every frame in one group."""
    g, d = coco_eval.match(gt, dt)
    g = g.merge(gt[["id", "category_id"]], on="id")
    d = d.merge(dt[["id", "score", "frame_index", "category_id"]], on="id")
    d = d[d["rank"] < 100]
    d = d.assign(image=d["frame_index"])
    curves = []
    for category in sorted(set(g["category_id"]) | set(d["category_id"])):
        objects = g[g["category_id"] == category]
        npig = {area: int((objects[f"ig_{area}"] == 0).sum()) for area in coco_eval.AREA_RANGES}
        curves.append(coco_eval.accumulate(d[d["category_id"] == category], npig))
    stats = coco_eval.summarize(pd.concat(curves))
    return [stats[name] for name, *_ in coco_eval.STATS]


@pytest.mark.parametrize("seed", range(8))
def test_every_statistic_equals_pycocotools(seed: int) -> None:
    gt, dt = random_dataset(seed, images=40 + 5 * seed, categories=1 + seed % 3)
    assert our_stats(gt, dt) == pytest.approx(pycocotools_stats(gt, dt), abs=1e-9, rel=0)


def test_random_data_has_the_corner_cases() -> None:
    gt, dt = random_dataset(3)
    per_frame = dt.groupby(["frame_index", "category_id"]).size()
    assert per_frame.max() > 100
    assert gt["is_crowd"].any()
    assert dt["score"].duplicated().any()
    assert set(dt["frame_index"]) - set(gt["frame_index"]) or set(gt["frame_index"]) - set(dt["frame_index"])


def frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    return df.assign(order=np.arange(len(df)), id=[f"o{i}" for i in range(len(df))])


GT_COLS = ["frame_index", "category_id", "x", "y", "w", "h", "area", "is_crowd"]
DT_COLS = ["frame_index", "category_id", "x", "y", "w", "h", "score"]


def test_crowd_absorbs_many_detections_and_ties_keep_file_order() -> None:
    gt = frame([(1, 1, 0, 0, 10, 10, 100, False), (1, 1, 0, 0, 100, 100, 10000, True)], GT_COLS)
    dt = frame([(1, 1, 0, 0, 10, 10, 0.9),   # exact hit on the object: TP at every threshold
                (1, 1, 0, 0, 10, 10, 0.9),   # same box, same score, later in the file: the object is taken,
                                             # it falls inside the crowd region (IoU 1 by its own area): ignored
                (1, 1, 50, 50, 10, 10, 0.5),  # inside the crowd: ignored
                (1, 1, 500, 500, 10, 10, 0.4)], DT_COLS)  # nothing there: FP
    g, d = coco_eval.match(gt, dt)
    assert d["rank"].tolist() == [0, 1, 2, 3]
    assert d["tp_all"].tolist() == [1023, 0, 0, 0]
    assert d["ig_all"].tolist() == [0, 1023, 1023, 0]
    assert d["matched_id"].tolist() == ["o0", "o1", "o1", None]
    assert g["tp_all"].tolist() == [1023, 0]
    assert g["ig_all"].tolist() == [0, 1023]
    assert g["matched_id"].tolist() == ["o0", None]


def test_iou_threshold_bits_and_area_ranges() -> None:
    # IoU of a 10x10 box with one shifted by 2 px: 80 / 120 = .667, a TP at .50 .55 .60 .65 only.
    gt = frame([(1, 1, 0, 0, 10, 10, 100, False)], GT_COLS)
    dt = frame([(1, 1, 2, 0, 10, 10, 0.8), (1, 1, 0, 0, 40, 40, 0.7)], DT_COLS)
    g, d = coco_eval.match(gt, dt)
    assert d["tp_all"].tolist() == [0b1111, 0]  # the 40x40 box overlaps at IoU .0625: a FP everywhere
    assert d["ig_all"].tolist() == [0, 0]
    assert d["tp_small"].tolist() == [0b1111, 0]
    assert d["ig_small"].tolist() == [0, 1023]  # unmatched, and its area 1600 is not small: ignored
    # In "medium" the object (area 100) is ignored: the first box matches an ignored object at .50-.65
    # and is unmatched outside the range above; the 40x40 box (area 1600) is a medium FP.
    assert d["ig_medium"].tolist() == [1023, 0]
    assert g["ig_medium"].tolist() == [1023]
    assert g["tp_all"].tolist() == [0b1111]


def test_accumulate_matches_hand_computed_precision() -> None:
    # 2 objects; ranked detections TP, FP, TP: precision 1, .5, .667; recall .5, .5, 1.
    dets = pd.DataFrame({"score": [0.9, 0.8, 0.7], "image": [0, 0, 1], "rank": [0, 1, 0],
                         **{f"tp_{a}": [1023, 0, 1023] for a in coco_eval.AREA_RANGES},
                         **{f"ig_{a}": [0, 0, 0] for a in coco_eval.AREA_RANGES}})
    curves = coco_eval.accumulate(dets, {"all": 2, "small": 2, "medium": 0, "large": 0})
    row = curves[(curves["area"] == "all") & (curves["max_dets"] == 100) & (curves["iou_index"] == 0)].iloc[0]
    # Envelope: 1, .667, .667; recall thresholds 0..0.5 (51 points) -> 1, 0.51..1.0 (50 points) -> 2/3.
    assert row["precision"] == pytest.approx((51 * 1.0 + 50 * (2 / (3 + np.spacing(1)))) / 101, abs=1e-12)
    assert row["recall"] == 1.0
    assert (curves[curves["area"] == "medium"][["precision", "recall"]] == -1).all().all()
