"""Evaluation transforms in Spark: COCO matching per capture, metrics per class, tracking per sequence.

Scope of a model run: the labelled frames (silver.frames.labelled) of every capture the run has
predictions for; predictions on frames that are not labelled are not evaluated. Frames and
classes are processed by grouped pandas UDFs (one Spark group per run, capture and block of
FRAME_BLOCK frames for matching, per run and class for accumulation) that call the numpy cores in
`coco_eval` and `mot_eval`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from scenelake import coco_eval, mot_eval
from scenelake.contracts import contract

RUN_CAPTURE = ["run_id", "capture_id"]
FRAME = ["capture_id", "frame_index"]
# Matching is per frame and class, so a capture is matched in blocks of this many consecutive frame
# indices: one imported COCO dataset (one capture of any size) spreads over every core, and a task holds
# one block's records, not a whole capture's. Video captures of up to this many frames stay one group.
FRAME_BLOCK = 1024
MATCH_GROUP = [*RUN_CAPTURE, "frame_block"]
CURVE_SCHEMA = T.StructType([
    T.StructField("run_id", T.StringType()), T.StructField("category_id", T.LongType()),
    T.StructField("area", T.StringType()), T.StructField("max_dets", T.IntegerType()),
    T.StructField("iou_index", T.IntegerType()), T.StructField("precision", T.DoubleType()),
    T.StructField("recall", T.DoubleType()), T.StructField("num_ground_truth", T.LongType()),
    T.StructField("num_predictions", T.LongType()),
])


def scope(frames: DataFrame, predictions: DataFrame, runs: Sequence[str] | None = None) -> DataFrame:
    """(run_id, capture_id, frame_index) of every labelled frame each run is evaluated on.

    The (run, capture) pairs are collected (they are few) so that the scope has a lineage of
    its own: it is joined with the predictions again later.
    """
    if runs:
        predictions = predictions.where(F.col("run_id").isin(list(runs)))
    pairs = predictions.select(*RUN_CAPTURE).distinct().collect()
    run_captures = frames.sparkSession.createDataFrame(
        [tuple(p) for p in pairs], T.StructType([T.StructField(c, T.StringType()) for c in RUN_CAPTURE]))
    return frames.where("labelled").select(*FRAME).join(run_captures, "capture_id").select("run_id", *FRAME)


def _file_order(df: pd.DataFrame) -> np.ndarray:
    order = np.lexsort((df["record_no"].to_numpy(), df["source_file"].to_numpy().astype(str)))
    out = np.empty(len(df), dtype=np.int64)
    out[order] = np.arange(len(df))
    return out


def _match_capture(dt: pd.DataFrame, gt: pd.DataFrame) -> pd.DataFrame:
    """One run's predictions and the ground truth of one block of a capture's frames -> gold.detection_matches rows.

    Ties in score keep file order, which only matters between detections of the same frame: the order
    taken within a block is the order within the file."""
    run_id, capture_id = (dt if len(dt) else gt)[RUN_CAPTURE].iloc[0]
    gt_in = gt.assign(order=_file_order(gt), id=gt["annotation_id"])
    dt_in = dt.assign(order=_file_order(dt), id=dt["prediction_id"])
    g, d = coco_eval.match(gt_in[coco_eval.GT_IN], dt_in[coco_eval.DT_IN])
    names = dict(zip(gt["category_id"], gt["category"], strict=False))
    masks = coco_eval.mask_columns("tp") + coco_eval.mask_columns("ig")
    gt_rows = pd.DataFrame({
        "frame_index": gt["frame_index"].to_numpy(), "category_id": gt["category_id"].to_numpy(),
        "category": gt["category"].to_numpy(), "kind": "ground_truth", "object_id": g["id"].to_numpy(),
        "score": np.nan, "area": gt["area"].to_numpy(np.float64), "is_crowd": gt["is_crowd"].to_numpy(bool),
        "rank": pd.array([None] * len(gt), dtype="Int32"), "matched_id": g["matched_id"].to_numpy(),
        **{m: g[m].astype("Int32").to_numpy() for m in masks},
    })
    dt_names = dt["category"].where(dt["category"].notna(), dt["category_id"].map(names))
    dt_rows = pd.DataFrame({
        "frame_index": dt["frame_index"].to_numpy(), "category_id": dt["category_id"].to_numpy(),
        "category": dt_names.to_numpy(), "kind": "prediction", "object_id": d["id"].to_numpy(),
        "score": dt["score"].to_numpy(np.float64), "area": d["area"].to_numpy(), "is_crowd": False,
        "rank": d["rank"].astype("Int32").to_numpy(), "matched_id": d["matched_id"].to_numpy(),
        **{m: d[m].astype("Int32").to_numpy() for m in masks},
    })
    out = pd.concat([gt_rows, dt_rows], ignore_index=True)
    out.insert(0, "capture_id", capture_id)
    out.insert(0, "run_id", run_id)
    return out[contract("gold.detection_matches").column_names]


def detection_matches(scoped: DataFrame, annotations: DataFrame, predictions: DataFrame) -> DataFrame:
    """gold.detection_matches for every run in `scoped` (see `scope`)."""
    gt = (annotations.join(scoped, FRAME)
          .select("run_id", *FRAME, "annotation_id", "category_id", "category", "x", "y", "w", "h", "area",
                  "is_crowd", "source_file", "record_no"))
    dt = (predictions.join(scoped, ["run_id", *FRAME], "left_semi")
          .select("run_id", *FRAME, "prediction_id", "category_id", "category", "x", "y", "w", "h", "score",
                  "source_file", "record_no"))
    schema = contract("gold.detection_matches").spark_schema()
    block = F.floor(F.col("frame_index") / FRAME_BLOCK).alias("frame_block")
    dt, gt = dt.select("*", block), gt.select("*", block)
    return dt.groupBy(*MATCH_GROUP).cogroup(gt.groupBy(*MATCH_GROUP)).applyInPandas(_match_capture, schema)


def _class_curves(dets: pd.DataFrame, gts: pd.DataFrame) -> pd.DataFrame:
    """Accumulate one (run, class): 4 areas x 3 maxDets x 10 IoU thresholds."""
    run_id, category_id = (dets if len(dets) else gts)[["run_id", "category_id"]].iloc[0]
    npig = {area: int((gts[f"ig_{area}"] == 0).sum()) for area in coco_eval.AREA_RANGES}
    dets = dets.assign(image=dets.groupby(FRAME, sort=True).ngroup())
    curves = coco_eval.accumulate(dets, npig)
    curves.insert(0, "category_id", category_id)
    curves.insert(0, "run_id", run_id)
    curves["num_ground_truth"] = npig["all"]
    curves["num_predictions"] = len(dets)
    return curves


def detection_curves(matches: DataFrame) -> DataFrame:
    """Precision (mean of the 101 points) and recall per run, class, area, maxDets and IoU threshold."""
    masks = coco_eval.mask_columns("tp") + coco_eval.mask_columns("ig")
    keys = ["run_id", "category_id"]
    dets = matches.where("kind = 'prediction' and rank < 100").select(*keys, *FRAME, "score", "rank", *masks)
    gts = matches.where("kind = 'ground_truth'").select(*keys, *coco_eval.mask_columns("ig"))
    return dets.groupBy(*keys).cogroup(gts.groupBy(*keys)).applyInPandas(_class_curves, CURVE_SCHEMA)


def metrics_rows(curves: pd.DataFrame, names: dict[int, str], frames: dict[str, int]) -> list[dict[str, object]]:
    """gold.detection_metrics rows from collected curves: per class, and 'all' per run."""
    rows = []
    for run_id, run_curves in curves.groupby("run_id", sort=True):
        parts: list[tuple[int | None, pd.DataFrame]] = [
            (None, run_curves), *((int(c), p) for c, p in run_curves.groupby("category_id", sort=True))]
        for category_id, part in parts:
            stats = coco_eval.summarize(part)
            firsts = part[(part["area"] == "all") & (part["max_dets"] == 100) & (part["iou_index"] == 0)]
            rows.append({
                "run_id": run_id,
                "category": "all" if category_id is None else names.get(category_id, str(category_id)),
                "category_id": category_id,
                **{k: (None if v == -1.0 else v) for k, v in stats.items()},
                "num_ground_truth": int(firsts["num_ground_truth"].sum()),
                "num_predictions": int(firsts["num_predictions"].sum()),
                "num_frames": frames.get(str(run_id), 0),
            })
    return rows


TRACKING_IN = ["frame", "track_id", "x", "y", "w", "h"]
GT_CLASSES = ["consider", "object_class"]
TRACKING_COUNTS = ["gt_ids", "gt_dets", "tr_dets", "tp", "fp", "fn", "idsw", "frag", "mt", "pt", "ml", "motp_sum",
                   "idtp", "idfp", "idfn"]
HOTA_PARTS = list(mot_eval.HOTA_KEYS)
SEQUENCE_SCHEMA = T.StructType([T.StructField("run_id", T.StringType()), T.StructField("capture_id", T.StringType()),
                                T.StructField("num_frames", T.LongType())]
                               + [T.StructField(c, T.DoubleType()) for c in TRACKING_COUNTS]
                               + [T.StructField(c, T.ArrayType(T.DoubleType())) for c in HOTA_PARTS])


def _track_sequence(tr: pd.DataFrame, gt: pd.DataFrame) -> pd.DataFrame:
    if not len(tr):  # a detector run, or a capture the tracker did not run on
        return pd.DataFrame(columns=SEQUENCE_SCHEMA.fieldNames())
    run_id, capture_id = tr[RUN_CAPTURE].iloc[0]
    counts = mot_eval.evaluate_sequence(gt.rename(columns={"frame_index": "frame"})[[*TRACKING_IN, *GT_CLASSES]],
                                        tr.rename(columns={"frame_index": "frame"})[TRACKING_IN])
    frames = len(set(gt.loc[gt["consider"] != 0, "frame_index"]) | set(tr["frame_index"]))
    return pd.DataFrame([{"run_id": run_id, "capture_id": capture_id, "num_frames": frames,
                          **{c: float(counts[c]) for c in TRACKING_COUNTS},
                          **{c: [float(v) for v in counts[c]] for c in HOTA_PARTS}}])


def tracking_counts(scoped: DataFrame, annotations: DataFrame, predictions: DataFrame) -> DataFrame:
    """CLEAR-MOT and identity counts per (run, capture) for runs whose predictions carry track ids.

    Ground truth: the objects with a track id on the run's labelled frames; crowd (MOT consider = 0) objects
    and, in MOTChallenge 16/17/20 files, other classes than pedestrian are not evaluated, but a tracker box
    matched to a distractor class is removed first (scenelake.mot_eval.preprocess).
    """
    tr = (predictions.where(F.col("track_id").isNotNull()).join(scoped, ["run_id", *FRAME], "left_semi")
          .select("run_id", *FRAME, "track_id", "x", "y", "w", "h"))
    gt = (annotations.where(F.col("track_id").isNotNull()).join(scoped, FRAME)
          .select("run_id", *FRAME, "track_id", "x", "y", "w", "h",
                  F.when(F.col("is_crowd"), 0).otherwise(1).alias("consider"), "object_class"))
    return tr.groupBy(*RUN_CAPTURE).cogroup(gt.groupBy(*RUN_CAPTURE)).applyInPandas(_track_sequence, SEQUENCE_SCHEMA)


def tracking_rows(sequences: pd.DataFrame) -> list[dict[str, object]]:
    """gold.tracking_metrics rows: one per (run, capture) and an overall row per run (capture_id 'all')."""
    rows = []
    for run_id, part in sequences.groupby("run_id", sort=True):
        per = [(str(r["capture_id"]), int(r["num_frames"]), {c: r[c] for c in [*TRACKING_COUNTS, *HOTA_PARTS]})
               for _, r in part.sort_values("capture_id").iterrows()]
        total = mot_eval.sum_counts(c for _, _, c in per)
        for capture_id, frames, counts in [*per, ("all", sum(f for _, f, _ in per), total)]:
            ratios = {k: (None if np.isnan(v) else float(v)) for k, v in mot_eval.ratios(counts).items()}
            rows.append({"run_id": run_id, "capture_id": capture_id, "num_frames": frames,
                         **{c: int(round(counts[c])) for c in TRACKING_COUNTS if c != "motp_sum"},
                         "motp_sum": float(counts["motp_sum"]), **ratios, **mot_eval.hota_ratios(counts),
                         **{c: [float(v) for v in counts[c]] for c in HOTA_PARTS}})
    return rows
