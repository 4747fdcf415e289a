"""Slice comparison at scale: the compare job on N predictions per run, against materialised resampling.

Synthesises gold.detection_matches for two runs (N evaluated predictions each, with their ground
truth; captures of FRAMES frames with the generator's scenario mix and quality model, including
the planted regression) plus silver.captures and silver.model_runs, writes them to a temporary
lake as Delta, then measures in one session:

  job          jobs/compare.run end to end: read the match records from Delta, every slice (singles,
               pairs) with the default bootstrap (1000 capture resamples), BH, quality gate, Delta write
  weighted     one bootstrap replicate of AP on the whole set, as the job computes it (capture weights
               in cumulative sums over a blocked ranking), timed over 20 replicates
  materialised the same replicate done the obvious way: copy each drawn capture's records as often as
               it was drawn, rank them again and run coco_eval.accumulate (what the weights avoid)

and prints the wall times, the ratio per replicate, and how far the blocked replicates are from
exact ones (the job's intervals are built from them). Usage:

  .venv/bin/python bench/compare_runs.py --predictions 1000000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scenelake import coco_eval, comparison, delta_io, generator  # noqa: E402
from scenelake.contracts import contract  # noqa: E402
from scenelake.settings import load_settings  # noqa: E402

IOU = coco_eval.IOU_THRESHOLDS


def synthesise(predictions: int, frames: int, seed: int) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """(captures with scenario attributes, {run_id: detection_matches rows}) at about `predictions` per run."""
    rng = np.random.default_rng(seed)
    per_capture = frames * (3.5 * 0.62 + 0.3)  # people x person-v1's typical recall, plus false positives
    n_caps = max(10, int(round(predictions / per_capture)))
    caps = generator.make_captures(random.Random(seed), n_caps)
    scen = pd.DataFrame([c.scenario for c in caps])
    scen["capture_id"] = [c.capture_id for c in caps]
    scen["device_model"] = rng.choice(["PixelCam 4", "NightEye IR2"], n_caps)
    scen["region"] = rng.choice(["eu-west", "us-east"], n_caps)
    people = np.array([c.people for c in caps])
    objects_per_cap = people * frames
    cap_of_obj = np.repeat(np.arange(n_caps), objects_per_cap)
    frame_of_obj = np.concatenate([np.repeat(np.arange(1, frames + 1), p) for p in people])
    light = scen["lighting"].map(generator.LIGHT).to_numpy()
    occl = scen["occlusion"].map(generator.OCCLUSION).to_numpy()
    runs = {}
    for run_id, base in generator.RUNS.items():
        p = base * light * occl
        if run_id == generator.REGRESSION["run_id"]:
            planted = ((scen["lighting"] == generator.REGRESSION["lighting"])
                       & (scen["motion"] == generator.REGRESSION["motion"])).to_numpy()
            p = np.where(planted, p * generator.REGRESSION_RECALL_FACTOR, p)
        found = rng.random(len(cap_of_obj)) < p[cap_of_obj]
        iou = 1 - rng.beta(2, 12, len(cap_of_obj))  # mostly .8-.95, like 3 px of jitter on these boxes
        bits = ((iou[:, None] >= IOU[None, :]) << np.arange(len(IOU))).sum(axis=1)
        tp_obj = found & (bits > 0)
        # Detections: one per found object, plus a false positive in 30% of frames.
        fp_frames = rng.random(n_caps * frames) < 0.3
        fp_cap, fp_frame = np.divmod(np.flatnonzero(fp_frames), frames)
        det_cap = np.r_[cap_of_obj[found], fp_cap]
        det_frame = np.r_[frame_of_obj[found], fp_frame + 1]
        det_tp = np.r_[np.where(tp_obj[found], bits[found], 0), np.zeros(len(fp_cap), dtype=np.int64)]
        det_score = np.r_[rng.uniform(0.4, 0.99, found.sum()), rng.uniform(0.05, 0.5, len(fp_cap))].round(4)
        order = np.lexsort((-det_score, det_frame, det_cap))
        key = det_cap[order] * (frames + 1) + det_frame[order]
        starts = np.r_[0, np.flatnonzero(np.diff(key)) + 1]
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        ids = np.array([c.capture_id for c in caps])
        gt = pd.DataFrame({"capture_id": ids[cap_of_obj], "frame_index": frame_of_obj, "kind": "ground_truth",
                           "object_id": [f"a{i}" for i in range(len(cap_of_obj))], "score": np.nan, "rank": None,
                           "tp_all": np.where(tp_obj, bits, 0), "ig_all": 0})
        dt = pd.DataFrame({"capture_id": ids[det_cap], "frame_index": det_frame, "kind": "prediction",
                           "object_id": [f"{run_id}-p{i}" for i in range(len(det_cap))], "score": det_score,
                           "rank": rank, "tp_all": det_tp, "ig_all": 0})
        runs[run_id] = pd.concat([gt, dt], ignore_index=True).assign(run_id=run_id)
    return scen, runs


def write_lake(spark, settings, scen: pd.DataFrame, runs: dict[str, pd.DataFrame], tmp: Path) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    matches = pd.concat(runs.values(), ignore_index=True)
    matches["rank"] = matches["rank"].astype("Int32")
    parquet = tmp / "matches.parquet"
    matches.to_parquet(parquet, index=False)
    schema = contract("gold.detection_matches")
    raw = spark.read.parquet(str(parquet))
    columns = []
    for col in schema.columns:
        if col.name in raw.columns:
            columns.append(F.col(col.name).cast(col.type).alias(col.name))
        elif col.name in ("category_id",):
            columns.append(F.lit(1).cast("long").alias(col.name))
        elif col.name == "category":
            columns.append(F.lit("person").alias(col.name))
        elif col.name in ("area",):
            columns.append(F.lit(20000.0).alias(col.name))
        elif col.name == "is_crowd":
            columns.append(F.lit(False).alias(col.name))
        elif col.name.startswith(("tp_", "ig_")):
            columns.append(F.col(col.name.split("_")[0] + "_all").cast("int").alias(col.name))
        else:
            columns.append(F.lit(None).cast(col.type).alias(col.name))
    delta_io.append(spark, settings, "gold.detection_matches", raw.select(*columns))
    now = datetime(2026, 11, 1, tzinfo=UTC)
    captures = [(r.capture_id, "real", r.device_model, None, "rgb", 1280, 720, 30.0, now, 60.0, r.region,
                 r.environment, r.lighting, r.motion, r.occlusion, r.crowd, None, "all_granted", None,
                 "bench", 1, "bench") for r in scen.itertuples()]
    delta_io.append(spark, settings, "silver.captures",
                    spark.createDataFrame(captures, contract("silver.captures").spark_schema()))
    model_runs = [(run_id, "person-detector", run_id.split("-")[1], None, None,
                   datetime(2026, 11, 2, k, tzinfo=UTC), None, "bench") for k, run_id in enumerate(runs)]
    delta_io.append(spark, settings, "silver.model_runs",
                    spark.createDataFrame(model_runs, contract("silver.model_runs").spark_schema()))


def exact_replicates(run: comparison.RunRecords, weights: np.ndarray) -> np.ndarray:
    """AP of each weight row with every detection its own point (no blocks): the reference for the blocks."""
    cls = run.classes[0]
    out = []
    for w in weights:
        per_detection = w[cls.capture].astype(np.float64)[:, None]
        tp = np.cumsum(per_detection * cls.tp, axis=0).T
        fp = np.cumsum(per_detection * cls.fp, axis=0).T
        out.append(float(np.mean(coco_eval.interpolated_ap(tp, fp, float(w @ cls.npig)))))
    return np.array(out)


def replicate_timings(records: pd.DataFrame, captures: list[str], replicates: int, seed: int) -> dict[str, float]:
    """One AP replicate of the whole set: the job's weighted blocked curve vs copying the drawn captures."""
    run = comparison.prepare(records, captures)
    members = np.arange(len(captures))
    weights = np.random.default_rng(seed).multinomial(len(captures), np.full(len(captures), 1 / len(captures)),
                                                      size=replicates)
    started = time.perf_counter()
    blocked = comparison.detection_estimates(run, members, weights, comparison.Options().blocks)["ap"]
    weighted = (time.perf_counter() - started) / replicates
    exact = exact_replicates(run, weights[:3])
    shifted = blocked.replicates[:3] + (blocked.exact - blocked.approx)
    dets = records[records["kind"] == "prediction"].reset_index(drop=True)
    by_capture = dets.groupby("capture_id").indices
    npig_by_capture = records[(records["kind"] == "ground_truth") & (records["ig_all"] == 0)]["capture_id"] \
        .value_counts().reindex(captures, fill_value=0).to_numpy()
    started = time.perf_counter()
    materialised_values = []
    for w in weights[:3]:
        parts, images = [], []
        drawn = [(c, k) for c, k in zip(captures, w, strict=True) if k]
        for copy_no, (capture, count) in enumerate(drawn):
            for k in range(count):
                part = by_capture.get(capture, np.array([], dtype=np.int64))
                parts.append(part)
                images.append(np.full(len(part), copy_no * 100 + k))
        copy = dets.iloc[np.concatenate(parts)][["score", "rank", "frame_index", "tp_all", "ig_all"]] \
            .reset_index(drop=True)
        copy["image"] = np.concatenate(images) * 100_000 + copy["frame_index"].to_numpy()
        for area in ("small", "medium", "large"):  # accumulate walks every area range
            copy[f"tp_{area}"], copy[f"ig_{area}"] = copy["tp_all"], copy["ig_all"]
        curves = coco_eval.accumulate(copy, {"all": int((w * npig_by_capture).sum())})
        materialised_values.append(coco_eval.summarize(curves)["ap"])
    materialised = (time.perf_counter() - started) / 3
    return {"weighted_s": weighted, "materialised_s": materialised,
            "blocked_vs_exact": float(np.max(np.abs(shifted - exact))),
            "exact_vs_materialised": float(np.max(np.abs(exact - np.array(materialised_values)))),
            "bootstrap_sd": float(np.std(blocked.replicates))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=1_000_000, help="evaluated predictions per run")
    parser.add_argument("--frames", type=int, default=200, help="labelled frames per capture")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import jobs.compare as compare_job
    from scenelake.spark import get_spark

    started = time.perf_counter()
    scen, runs = synthesise(args.predictions, args.frames, args.seed)
    counts = {r: int((m["kind"] == "prediction").sum()) for r, m in runs.items()}
    print(f"synthesised {len(scen)} captures; predictions per run {counts}; "
          f"ground truth per run {int((runs['person-v1']['kind'] == 'ground_truth').sum())} "
          f"({time.perf_counter() - started:.0f}s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="scenelake-bench-compare-") as tmp:
        settings = load_settings().with_overrides(lake_root=f"{tmp}/lake", landing_root=f"{tmp}/landing")
        spark = get_spark("bench-compare", settings, extra_conf={"spark.driver.memory": "4g"})
        started = time.perf_counter()
        write_lake(spark, settings, scen, runs, Path(tmp))
        print(f"lake written ({time.perf_counter() - started:.0f}s)", flush=True)
        started = time.perf_counter()
        report = compare_job.run(spark, settings, progress=print)
        job_seconds = time.perf_counter() - started
        table = next(iter(report.tables.values()))
        first = comparison.ranked(table, "regression").head(1)
        print(f"\njob: {job_seconds:.0f}s wall for {counts['person-v1']} + {counts['person-v2']} predictions, "
              f"{int((table['metric'] == 'ap').sum())} slices, {int(table['tested'].sum())} tests, "
              f"1000 resamples; first regression: "
              f"{first['slice_by'].iloc[0] + '=' + first['slice_value'].iloc[0] if len(first) else 'none'}")
        spark.stop()
    captures = sorted(runs["person-v1"]["capture_id"].unique())
    records = runs["person-v2"].assign(category_id=1)[comparison.RECORD_COLUMNS]
    timing = replicate_timings(records, captures, 20, args.seed)
    ratio = timing["materialised_s"] / timing["weighted_s"]
    print(f"one AP replicate on all captures: weighted {timing['weighted_s'] * 1000:.0f} ms, materialised "
          f"{timing['materialised_s'] * 1000:.0f} ms ({ratio:.0f}x)")
    print(f"blocked ({comparison.Options().blocks} blocks) vs exact replicate AP, after the shift: "
          f"max |diff| {timing['blocked_vs_exact']:.1e} (bootstrap sd {timing['bootstrap_sd']:.1e}); "
          f"exact weights vs materialised copies: max |diff| {timing['exact_vs_materialised']:.1e} "
          "(tied scores of different captures order differently among copies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
