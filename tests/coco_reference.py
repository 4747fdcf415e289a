"""pycocotools as the oracle, and random COCO-like data that stresses its corner cases.

Used by the evaluation tests; pycocotools is a test
dependency only, never imported by scenelake itself.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd


def random_dataset(seed: int, images: int = 60, categories: int = 3, max_objects: int = 12,
                   crowd_rate: float = 0.05, many_dets_rate: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(gt, dt) in the layout of `scenelake.coco_eval.GT_IN`/`DT_IN`, with every corner case.

    Frames without ground truth, frames without detections, crowd objects, tied scores
    (scores are rounded to 2 decimals), boxes of every area range including the range edges,
    and some frames with more than 100 detections of one class.
    """
    rng = np.random.default_rng(seed)
    gts, dts = [], []
    for image in range(1, images + 1):
        for cat in range(1, categories + 1):
            n_gt = 0 if rng.random() < 0.2 else int(rng.integers(0, max_objects))
            boxes = []
            for _ in range(n_gt):
                w, h = _size(rng)
                x, y = rng.uniform(0, 600), rng.uniform(0, 400)
                crowd = bool(rng.random() < crowd_rate)
                area = float(w * h * rng.uniform(0.6, 1.0)) if rng.random() < 0.7 else float(w * h)
                if rng.random() < 0.05:
                    area = float(rng.choice([32.0 ** 2, 96.0 ** 2]))
                gts.append((image, cat, x, y, w, h, area, crowd))
                boxes.append((x, y, w, h))
            if rng.random() < 0.15:
                continue
            many = rng.random() < many_dets_rate
            n_dt = int(rng.integers(101, 130)) if many else int(rng.integers(0, 2 * max_objects))
            for _ in range(n_dt):
                if boxes and rng.random() < 0.7:
                    bx, by, bw, bh = boxes[int(rng.integers(len(boxes)))]
                    jitter = rng.normal(0, 0.12, 4) * np.array([bw, bh, bw, bh])
                    x, y, w, h = bx + jitter[0], by + jitter[1], max(bw + jitter[2], 1.0), max(bh + jitter[3], 1.0)
                else:
                    w, h = _size(rng)
                    x, y = rng.uniform(0, 600), rng.uniform(0, 400)
                dts.append((image, cat, float(x), float(y), float(w), float(h), round(float(rng.uniform(0, 1)), 2)))
    gt = pd.DataFrame(gts, columns=["frame_index", "category_id", "x", "y", "w", "h", "area", "is_crowd"])
    gt["order"] = np.arange(len(gt))
    gt["id"] = np.arange(1, len(gt) + 1)
    dt = pd.DataFrame(dts, columns=["frame_index", "category_id", "x", "y", "w", "h", "score"])
    dt = dt.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # file order is not frame order
    dt["order"] = np.arange(len(dt))
    dt["id"] = np.arange(1, len(dt) + 1)
    return gt, dt


def _size(rng: np.random.Generator) -> tuple[float, float]:
    side = float(np.exp(rng.uniform(np.log(8), np.log(300))))
    return side * float(rng.uniform(0.5, 1.5)), side


def pycocotools_stats(gt: pd.DataFrame, dt: pd.DataFrame, images: list[int] | None = None) -> list[float]:
    """The 12 numbers of COCOeval (bbox) on the same data; `images` (the labelled frames) default to
    every frame that has ground truth or detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    image_ids = sorted(set(gt["frame_index"]) | set(dt["frame_index"]) if images is None else images)
    coco_gt = COCO()
    coco_gt.dataset = {
        "images": [{"id": int(i)} for i in image_ids],
        "categories": [{"id": int(c)} for c in sorted(set(gt["category_id"]) | set(dt["category_id"]))],
        "annotations": [
            {"id": int(r.id), "image_id": int(r.frame_index), "category_id": int(r.category_id),
             "bbox": [r.x, r.y, r.w, r.h], "area": r.area, "iscrowd": int(r.is_crowd)}
            for r in gt.sort_values("order").itertuples() if r.frame_index in set(image_ids)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        kept = dt[dt["frame_index"].isin(image_ids)].sort_values("order")
        results = [{"image_id": int(r.frame_index), "category_id": int(r.category_id),
                    "bbox": [r.x, r.y, r.w, r.h], "score": r.score} for r in kept.itertuples()]
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # a run with no detection on these images: pycocotools needs an empty result set, not none
            coco_dt = COCO()
            coco_dt.dataset = {**coco_gt.dataset, "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(s) for s in evaluator.stats]
