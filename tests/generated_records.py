"""Match records of the generator's model runs without Spark: the generator's scenes and detections, matched in numpy.

The same quality model as `scenelake generate` (scenario mix, tracks, recall by lighting and
occlusion, the planted regression) fed straight to `coco_eval.match`, so statistical tests can
repeat a comparison over many seeds in seconds. The random stream differs from `generate`'s
(no files are written), so the data are alike, not identical.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from scenelake import coco_eval, generator

ATTRIBUTES = ["environment", "lighting", "motion", "occlusion", "crowd", "device_model", "sensor", "region",
              "source"]


def generated_records(seed: int, captures: int, runs: Mapping[str, float] = generator.RUNS,
                      regression: bool = True) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """({run_id: match records (comparison.RECORD_COLUMNS)}, scenario attributes indexed by capture_id)."""
    rng = random.Random(seed)
    caps = generator.make_captures(rng, captures)
    attributes = []
    for cap in caps:
        manifest = json.loads(generator.manifest_line(rng, cap, datetime(2026, 11, 1, tzinfo=UTC)))
        attributes.append({"capture_id": cap.capture_id, **cap.scenario, "device_model": manifest["device"]["model"],
                           "sensor": manifest["sensor"], "region": manifest["region"], "source": manifest["source"]})
    gt_rows: list[tuple] = []
    dt_rows: dict[str, list[tuple]] = {run: [] for run in runs}
    for c, cap in enumerate(caps):
        truth = generator.tracks(rng, cap)
        for f, people in enumerate(truth):
            for _tid, x, y, w, h in people:
                gt_rows.append((c, f + 1, x, y, w, h, round(w * h, 2)))
        for run in runs:
            for d in generator.detections(rng, cap, run, truth, runs, regression):
                dt_rows[run].append((c, d["frame_index"], *d["bbox"], d["score"]))
    gt = pd.DataFrame(gt_rows, columns=["capture", "frame", "x", "y", "w", "h", "area"])
    gt = gt.assign(frame_index=gt["capture"] * 1000 + gt["frame"], category_id=1, is_crowd=False,
                   order=np.arange(len(gt)), id=[f"g{i}" for i in range(len(gt))])
    ids = [c.capture_id for c in caps]
    records = {}
    for run, rows in dt_rows.items():
        dt = pd.DataFrame(rows, columns=["capture", "frame", "x", "y", "w", "h", "score"])
        dt = dt.assign(frame_index=dt["capture"] * 1000 + dt["frame"], category_id=1,
                       order=np.arange(len(dt)), id=[f"d{i}" for i in range(len(dt))])
        g, d = coco_eval.match(gt[coco_eval.GT_IN], dt[coco_eval.DT_IN])
        records[run] = pd.concat([
            pd.DataFrame({"capture_id": [ids[i] for i in gt["capture"]], "frame_index": gt["frame"],
                          "category_id": 1, "kind": "ground_truth", "score": np.nan, "rank": np.nan,
                          "tp_all": g["tp_all"].to_numpy(), "ig_all": g["ig_all"].to_numpy()}),
            pd.DataFrame({"capture_id": [ids[i] for i in dt["capture"]], "frame_index": dt["frame"],
                          "category_id": 1, "kind": "prediction", "score": dt["score"],
                          "rank": d["rank"].to_numpy(), "tp_all": d["tp_all"].to_numpy(np.float64, na_value=np.nan),
                          "ig_all": d["ig_all"].to_numpy(np.float64, na_value=np.nan)}),
        ], ignore_index=True)
    return records, pd.DataFrame(attributes).set_index("capture_id")[ATTRIBUTES]
