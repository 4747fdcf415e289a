"""Ingestion throughput: jobs/ingest_predictions against a plain Spark copy of the same files.

Generates N predictions as JSON lines (plus the COCO ground truth that defines their frames),
then, in one Spark session and side by side:
  baseline  spark.read.json(files) -> Delta, nothing else
  scenelake ingest_predictions: bronze, parse, rules, dedup, quarantine, quality gate, MERGE
and prints rows per second of each and the ratio, and the quality gates' share of the job's wall
time (every quality.gate call of the job is timed). Usage:

  .venv/bin/python bench/ingest_throughput.py --predictions 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from jobs import ingest_annotations, ingest_predictions
from scenelake import ingest, landing, quality
from scenelake.settings import load_settings
from scenelake.spark import get_spark


def generate(root: Path, predictions: int, captures: int, seed: int) -> None:
    rng = random.Random(seed)
    settings = load_settings().with_overrides(landing_root=str(root / "landing"))
    frames_per_capture = max(1, predictions // (captures * 10))
    per_file = predictions // captures
    landing.model_run(settings, "bench-run", "person-detector", "bench")
    for c in range(captures):
        capture = f"cap-{c:05d}"
        images = [{"id": f, "width": 1920, "height": 1080} for f in range(frames_per_capture)]
        gt = {"images": images, "categories": [{"id": 1, "name": "person"}], "annotations": []}
        src = root / "gt.json"
        src.write_text(json.dumps(gt))
        landing.coco_annotations(settings, src, capture, "bench")
        lines = []
        for _ in range(per_file):
            x, y = rng.uniform(0, 1700), rng.uniform(0, 800)
            lines.append(json.dumps({"capture_id": capture, "frame_index": rng.randrange(frames_per_capture),
                                     "category_id": 1, "category": "person",
                                     "bbox": [round(x, 2), round(y, 2), round(rng.uniform(10, 200), 2),
                                              round(rng.uniform(20, 270), 2)],
                                     "score": round(rng.random(), 4)}))
        src = root / "detections.jsonl"
        src.write_text("\n".join(lines) + "\n")
        landing.predictions(settings, src, "bench-run", capture, "jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--captures", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the generated folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="scenelake-bench-"))
    started = time.monotonic()
    generate(root, args.predictions, args.captures, args.seed)
    print(f"generated {args.predictions} predictions in {args.captures} files in {time.monotonic() - started:.0f}s")
    settings = load_settings().with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"),
                                              state_dir=root / "state")
    spark = get_spark("bench-ingest", settings)
    ingest_annotations.run(spark, settings, progress=ingest.silent)

    started = time.monotonic()
    raw = spark.read.json(f"{settings.landing_root}/predictions/run_id=bench-run/*/*.jsonl")
    raw.write.format("delta").save(f"{root}/baseline")
    baseline = time.monotonic() - started

    gate_seconds: list[float] = []
    real_gate = quality.gate

    def timed_gate(*args, **kwargs):  # type: ignore[no-untyped-def]
        begun = time.monotonic()
        try:
            return real_gate(*args, **kwargs)
        finally:
            gate_seconds.append(time.monotonic() - begun)

    quality.gate = timed_gate  # type: ignore[assignment]
    started = time.monotonic()
    report = ingest_predictions.run(spark, settings, progress=print)
    ours = time.monotonic() - started
    quality.gate = real_gate  # type: ignore[assignment]
    assert report.predictions == args.predictions, report

    n = args.predictions
    print(f"{'':22}{'seconds':>10}{'rows/s':>12}")
    print(f"{'plain Spark copy':22}{baseline:10.1f}{n / baseline:12.0f}")
    print(f"{'ingest_predictions':22}{ours:10.1f}{n / ours:12.0f}")
    print(f"ratio ingest_predictions / plain copy: {ours / baseline:.2f}x the time")
    print(f"quality gates: {sum(gate_seconds):.1f} s in {len(gate_seconds)} gates = "
          f"{100 * sum(gate_seconds) / ours:.0f}% of the job's wall time")
    spark.stop()
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
