"""Detection evaluation at scale: scenelake (Spark, jobs/evaluate's transforms) against the references.

Generates N predictions with their ground truth (COCO-like: 3 classes, ~25 detections per frame,
crowd objects, tied scores, some frames with more than 100 detections), writes them once as
Parquet, then runs side by side, one after the other, each in its own process so its peak
memory is its own:

  scenelake         Spark: detection_matches -> Delta, detection_curves -> summarize
  faster-coco-eval  COCO() + loadRes() + COCOeval_faster evaluate/accumulate/summarize (C++, every core)
  pycocotools       COCO() + loadRes() + COCOeval evaluate/accumulate/summarize

The references start from the records as COCO dicts in memory (what json.load of the files gives);
scenelake from the Parquet files. Prints wall time, peak resident memory (the whole process tree:
Spark's JVM and Python workers included), each reference's numbers' largest difference from
scenelake's, the ratios, and how many matching tasks Spark ran at once (its event log). Usage:

  .venv/bin/python bench/evaluate_side_by_side.py --predictions 1000000
  .venv/bin/python bench/evaluate_side_by_side.py --predictions 10000000 --engines scenelake,faster-coco-eval
  .venv/bin/python bench/evaluate_side_by_side.py --predictions 1000000 --frames-per-capture 0  # one dataset
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FRAMES_PER_CAPTURE = 200


def generate(predictions: int, seed: int, frames_per_capture: int = FRAMES_PER_CAPTURE,
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Vectorised COCO-like data: (gt, dt) with capture_id, frame_index, category_id, boxes, order."""
    rng = np.random.default_rng(seed)
    groups = max(1, predictions // 8)  # (frame, class) groups, ~8 detections each
    frame = np.arange(groups) // 3
    category = np.arange(groups) % 3 + 1
    n_gt = rng.poisson(5, groups)
    n_dt = rng.poisson(8, groups)
    many = rng.random(groups) < 0.002
    n_dt[many] = rng.integers(101, 140, many.sum())
    scale = predictions / max(n_dt.sum(), 1)
    n_dt = np.maximum(np.round(n_dt * scale).astype(int), 0)

    g_group = np.repeat(np.arange(groups), n_gt)
    side = np.exp(rng.uniform(np.log(8), np.log(300), len(g_group)))
    gw, gh = side * rng.uniform(0.5, 1.5, len(g_group)), side
    gx, gy = rng.uniform(0, 600, len(g_group)), rng.uniform(0, 400, len(g_group))
    crowd = rng.random(len(g_group)) < 0.01
    gt = pd.DataFrame({"frame_index": frame[g_group], "category_id": category[g_group], "x": gx, "y": gy,
                       "w": gw, "h": gh, "area": gw * gh * rng.uniform(0.6, 1.0, len(g_group)), "is_crowd": crowd})

    d_group = np.repeat(np.arange(groups), n_dt)
    starts = np.r_[0, np.cumsum(n_gt)[:-1]]
    has_gt = n_gt[d_group] > 0
    pick = starts[d_group] + (rng.random(len(d_group)) * np.maximum(n_gt[d_group], 1)).astype(int)
    pick = np.where(has_gt, np.minimum(pick, len(g_group) - 1), 0)
    near = has_gt & (rng.random(len(d_group)) < 0.7)
    base = np.stack([gx, gy, gw, gh], axis=1)[pick] if len(g_group) else np.zeros((len(d_group), 4))
    jitter = rng.normal(0, 0.12, (len(d_group), 4)) * np.stack([base[:, 2], base[:, 3]] * 2, axis=1)
    rand_side = np.exp(rng.uniform(np.log(8), np.log(300), len(d_group)))
    rand = np.stack([rng.uniform(0, 600, len(d_group)), rng.uniform(0, 400, len(d_group)),
                     rand_side * rng.uniform(0.5, 1.5, len(d_group)), rand_side], axis=1)
    boxes = np.where(near[:, None], base + jitter, rand)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
    dt = pd.DataFrame({"frame_index": frame[d_group], "category_id": category[d_group], "x": boxes[:, 0],
                       "y": boxes[:, 1], "w": boxes[:, 2], "h": boxes[:, 3],
                       "score": np.round(rng.random(len(d_group)), 3)})
    dt = dt.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    for df in (gt, dt):
        df["capture_id"] = ([f"cap-{c:05d}" for c in df["frame_index"] // frames_per_capture]
                            if frames_per_capture else "dataset")
        df["order"] = np.arange(len(df))
        df["id"] = np.arange(1, len(df) + 1)
    return gt, dt


def coco_inputs(folder: Path) -> tuple[dict[str, object], list[dict[str, object]]]:
    """The benchmark's records as a COCO ground-truth dict and a COCO results list (what a user's files hold)."""
    gt = pd.read_parquet(folder / "gt.parquet")
    dt = pd.read_parquet(folder / "dt.parquet")
    images = sorted(set(gt["frame_index"]) | set(dt["frame_index"]))
    dataset = {
        "images": [{"id": int(i)} for i in images], "categories": [{"id": c} for c in (1, 2, 3)],
        "annotations": [{"id": int(i), "image_id": int(f), "category_id": int(c), "bbox": [x, y, w, h],
                         "area": a, "iscrowd": int(k)}
                        for i, f, c, x, y, w, h, a, k in zip(gt["id"], gt["frame_index"], gt["category_id"], gt["x"],
                                                             gt["y"], gt["w"], gt["h"], gt["area"], gt["is_crowd"],
                                                             strict=True)]}
    results = [{"image_id": int(f), "category_id": int(c), "bbox": [x, y, w, h], "score": s}
               for f, c, x, y, w, h, s in zip(dt["frame_index"], dt["category_id"], dt["x"], dt["y"], dt["w"],
                                              dt["h"], dt["score"], strict=True)]
    return dataset, results


def run_reference(folder: Path, coco_class: type, eval_class: type) -> dict[str, object]:
    """A COCO-API evaluator on the dicts: index the ground truth, load the results, evaluate, accumulate, summarize."""
    import contextlib
    import io

    dataset, results = coco_inputs(folder)
    started = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_class()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        evaluator = eval_class(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {"seconds": time.monotonic() - started, "stats": [float(s) for s in evaluator.stats]}


def run_pycocotools(folder: Path) -> dict[str, object]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return run_reference(folder, COCO, COCOeval)


def run_faster_coco_eval(folder: Path) -> dict[str, object]:
    """faster-coco-eval: C++ evaluate and accumulate, on every core."""
    from faster_coco_eval import COCO, COCOeval_faster

    return run_reference(folder, COCO, COCOeval_faster)


def run_scenelake(folder: Path) -> dict[str, object]:
    from pyspark.sql import functions as F

    from scenelake import coco_eval, delta_io, evaluation
    from scenelake.settings import load_settings
    from scenelake.spark import get_spark

    settings = load_settings().with_overrides(lake_root=str(folder / "lake"))
    events = folder / "events"
    events.mkdir(exist_ok=True)
    spark = get_spark("bench-evaluate", settings, extra_conf={
        "spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "8",
        "spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(),
        "spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    gt = spark.read.parquet(str(folder / "gt.parquet"))
    dt = spark.read.parquet(str(folder / "dt.parquet"))
    started = time.monotonic()
    annotations = gt.select(
        "capture_id", "frame_index", F.col("id").cast("string").alias("annotation_id"),
        F.col("category_id").cast("long").alias("category_id"), F.lit("c").alias("category"), "x", "y", "w", "h",
        "area", "is_crowd", F.lit("gt").alias("source_file"), F.col("order").alias("record_no"))
    predictions = dt.select(
        F.lit("bench").alias("run_id"), "capture_id", "frame_index", F.col("id").cast("string").alias("prediction_id"),
        F.col("category_id").cast("long").alias("category_id"), F.lit(None).cast("string").alias("category"),
        "x", "y", "w", "h", "score", F.lit("dt").alias("source_file"), F.col("order").alias("record_no"))
    frames = (annotations.select(*evaluation.FRAME).union(predictions.select(*evaluation.FRAME)).distinct()
              .withColumn("labelled", F.lit(True)))
    scoped = evaluation.scope(frames, predictions).cache()
    matches = evaluation.detection_matches(scoped, annotations, predictions)
    spark.sparkContext.setJobGroup("matching", "detection_matches written to Delta")
    delta_io.replace_where(spark, settings, "gold.detection_matches", matches, "run_id = 'bench'")
    matched = time.monotonic() - started
    spark.sparkContext.setJobGroup("accumulating", "detection_curves")
    curves = evaluation.detection_curves(delta_io.read_table(spark, settings, "gold.detection_matches")).toPandas()
    stats = coco_eval.summarize(curves)
    seconds = time.monotonic() - started
    spark.stop()
    return {"seconds": seconds, "match_seconds": matched, "stats": [stats[name] for name, *_ in coco_eval.STATS],
            "matching_tasks_at_once": most_tasks_at_once(events, "matching")}


def most_tasks_at_once(events: Path, group: str) -> int:
    """The most tasks of a job group's stages that ran at the same moment, from Spark's event log."""
    stages: set[int] = set()
    spans: list[tuple[int, int]] = []
    for log in (p for p in events.rglob("*") if p.is_file() and not p.name.startswith("appstatus")):
        for line in log.read_text().splitlines():
            event = json.loads(line)
            kind = event.get("Event")
            if kind == "SparkListenerJobStart" and (event.get("Properties") or {}).get("spark.jobGroup.id") == group:
                stages.update(event["Stage IDs"])
            elif kind == "SparkListenerTaskEnd" and event["Stage ID"] in stages:
                info = event["Task Info"]
                spans.append((info["Launch Time"], info["Finish Time"]))
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def tree_rss_kib(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:"))
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
        stack.extend(int(c) for c in children)
    return total


def measured(engine: str, folder: Path) -> dict[str, object]:
    """Run one engine in a child process; sample its process tree's memory every 0.2 s."""
    out = folder / f"{engine}.json"
    proc = subprocess.Popen([sys.executable, __file__, "--engine", engine, "--folder", str(folder)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kib(proc.pid))
        time.sleep(0.2)
    if proc.returncode != 0:
        return {"failed": f"exit code {proc.returncode}", "peak_mib": peak / 1024}
    return {**json.loads(out.read_text()), "peak_mib": peak / 1024}


ENGINES = {"scenelake": run_scenelake, "faster-coco-eval": run_faster_coco_eval, "pycocotools": run_pycocotools}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--frames-per-capture", type=int, default=FRAMES_PER_CAPTURE,
                        help="frames per capture (0: the whole set is one capture, as one imported COCO dataset)")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help="comma-separated, from: " + ", ".join(ENGINES) + " (e.g. scenelake alone at 10 million)")
    parser.add_argument("--engine", choices=list(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        result = ENGINES[args.engine](args.folder)
        (args.folder / f"{args.engine}.json").write_text(json.dumps(result))
        return 0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        parser.error(f"unknown engine(s) {', '.join(unknown)}: choose from {', '.join(ENGINES)}")

    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        folder = Path(tmp)
        gt, dt = generate(args.predictions, args.seed, args.frames_per_capture)
        gt.to_parquet(folder / "gt.parquet")
        dt.to_parquet(folder / "dt.parquet")
        print(f"data: {len(dt):,} predictions, {len(gt):,} ground-truth objects, "
              f"{dt['frame_index'].nunique():,} frames, {dt['capture_id'].nunique()} captures")
        del gt, dt
        results = {}
        for engine in engines:  # one at a time: each has the machine to itself
            results[engine] = measured(engine, folder)
            print(f"  {engine} done", flush=True)
    first = engines[0]  # the others' numbers are compared with the first engine's (scenelake by default)
    print(f"\n{'engine':18} {'seconds':>9} {'peak MiB':>9}  {'max |diff| vs ' + first:>28}  notes")
    ours = results[first]
    for engine, r in results.items():
        if "failed" in r:
            print(f"{engine:18} FAILED ({r['failed']}), peak {r['peak_mib']:.0f} MiB")
            continue
        diff = ""
        if engine != first and "failed" not in ours:
            diff = f"{max(abs(a - b) for a, b in zip(ours['stats'], r['stats'], strict=True)):.1e}"  # type: ignore[arg-type]
        notes = ""
        if "match_seconds" in r:
            notes = f"matching {r['match_seconds']:.1f} s on up to {r['matching_tasks_at_once']} tasks at once"
        print(f"{engine:18} {r['seconds']:9.1f} {r['peak_mib']:9.0f}  {diff:>28}  {notes}")
    if "failed" not in ours:
        for engine, r in results.items():
            if engine != first and "failed" not in r:
                print(f"ratio {engine}/{first} wall time: {r['seconds'] / ours['seconds']:.2f}x "  # type: ignore[operator]
                      f"(peak memory {r['peak_mib'] / ours['peak_mib']:.2f}x)")  # type: ignore[operator]
    return 0


if __name__ == "__main__":
    sys.exit(main())
