"""Match records of the generator's model runs without the ingestion pipeline: scenes and detections matched in numpy.

The same quality model as `scenelake generate` (scenario mix, tracks, recall by lighting and
occlusion, the planted regression) fed straight to `coco_eval.match`, so statistical tests can
repeat a comparison over many seeds in seconds, and an integration test can write the tables
a comparison reads (silver.captures, silver.frames, silver.model_runs, gold.detection_matches)
without minutes of ingestion. The random stream differs from `generate`'s after the capture mix
(no files are written), so the data are alike, not identical.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from scenelake import coco_eval, comparison, delta_io, generator
from scenelake.contracts import contract
from scenelake.settings import Settings

ATTRIBUTES = list(comparison.SCENARIO_ATTRIBUTES)


@dataclass
class Generated:
    captures: pd.DataFrame  # silver.captures rows
    frames: pd.DataFrame  # silver.frames rows (every frame labelled)
    runs: pd.DataFrame  # silver.model_runs rows
    matches: dict[str, pd.DataFrame]  # run_id -> gold.detection_matches rows

    def records(self, run_id: str) -> pd.DataFrame:
        return self.matches[run_id][comparison.RECORD_COLUMNS]

    @property
    def attributes(self) -> pd.DataFrame:
        return self.captures.set_index("capture_id")[ATTRIBUTES]


def generate_matches(seed: int, captures: int, runs: Mapping[str, float] = generator.RUNS,
                     regression: bool = True) -> Generated:
    rng = random.Random(seed)
    caps = generator.make_captures(rng, captures)
    t0 = datetime(2026, 11, 1, 8, tzinfo=UTC)
    capture_rows = []
    consent = random.Random(f"{seed}/consent")  # the generator's own stream for consent states
    for i, cap in enumerate(caps):
        m = json.loads(generator.manifest_line(rng, cap, t0 + timedelta(hours=i), consent))
        capture_rows.append({
            "capture_id": cap.capture_id, "source": m["source"], "device_model": m["device"]["model"],
            "device_serial": m["device"]["serial"], "sensor": m["sensor"], "width": generator.WIDTH,
            "height": generator.HEIGHT, "fps": m["fps"], "started_at": t0 + timedelta(hours=i),
            "duration_s": m["duration_s"], "region": m["region"], "environment": cap.scenario["environment"],
            "lighting": cap.scenario["lighting"], "motion": cap.scenario["motion"],
            "occlusion": cap.scenario["occlusion"], "crowd": cap.scenario["crowd"], "tags": None,
            "consent_state": "all_granted", "extra": None,
            "source_file": "manifests/captures-generated.jsonl", "line_number": i + 1, "batch_id": f"seed-{seed}"})
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
                   order=np.arange(len(gt)), id=[f"{caps[c].capture_id}-a{i}" for i, c in enumerate(gt["capture"])])
    ids = np.array([c.capture_id for c in caps])
    frames = pd.DataFrame({"capture_id": [c.capture_id for c in caps for _ in range(c.frames)],
                           "frame_index": [f + 1 for c in caps for f in range(c.frames)]})
    matches = {}
    for run, rows in dt_rows.items():
        dt = pd.DataFrame(rows, columns=["capture", "frame", "x", "y", "w", "h", "score"])
        dt = dt.assign(frame_index=dt["capture"] * 1000 + dt["frame"], category_id=1, order=np.arange(len(dt)),
                       id=[f"{run}-p{i}" for i in range(len(dt))])
        g, d = coco_eval.match(gt[coco_eval.GT_IN], dt[coco_eval.DT_IN])
        masks = coco_eval.mask_columns("tp") + coco_eval.mask_columns("ig")
        objects = pd.DataFrame({
            "run_id": run, "capture_id": ids[gt["capture"]], "frame_index": gt["frame"], "category_id": 1,
            "category": "person", "kind": "ground_truth", "object_id": g["id"], "score": np.nan,
            "area": gt["area"].astype(float), "is_crowd": False, "rank": pd.array([pd.NA] * len(gt), dtype="Int32"),
            **{k: g[k].astype("Int32") for k in masks}, "matched_id": g["matched_id"]})
        detections = pd.DataFrame({
            "run_id": run, "capture_id": ids[dt["capture"]], "frame_index": dt["frame"], "category_id": 1,
            "category": "person", "kind": "prediction", "object_id": d["id"], "score": dt["score"],
            "area": d["area"], "is_crowd": False, "rank": d["rank"].astype("Int32"),
            **{k: d[k].astype("Int32") for k in masks}, "matched_id": d["matched_id"]})
        matches[run] = pd.concat([objects, detections], ignore_index=True)
    model_runs = pd.DataFrame([{
        "run_id": run, "model_name": "person-detector", "model_version": run.split("-", 1)[-1],
        "code_commit": "abc1234", "params": {"score_threshold": "0.05"},
        "started_at": datetime(2026, 11, 2, k, tzinfo=UTC), "finished_at": datetime(2026, 11, 2, k + 1, tzinfo=UTC),
        "source_file": f"predictions/run_id={run}/run.json"} for k, run in enumerate(runs)])
    return Generated(pd.DataFrame(capture_rows), frames, model_runs, matches)


def generated_records(seed: int, captures: int, runs: Mapping[str, float] = generator.RUNS,
                      regression: bool = True) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """({run_id: match records (comparison.RECORD_COLUMNS)}, scenario attributes indexed by capture_id)."""
    generated = generate_matches(seed, captures, runs, regression)
    return {run: generated.records(run) for run in generated.matches}, generated.attributes


def write_lake(spark, settings: Settings, generated: Generated) -> None:  # type: ignore[no-untyped-def]
    """Write the four tables a comparison and the notebooks read, each checked against its contract."""
    frames = generated.frames.assign(width=generator.WIDTH, height=generator.HEIGHT, file_name=None, labelled=True,
                                     source_file="generated")
    tables = {"silver.captures": generated.captures, "silver.frames": frames, "silver.model_runs": generated.runs,
              "gold.detection_matches": pd.concat(generated.matches.values(), ignore_index=True)}
    for name, table in tables.items():
        schema = contract(name)
        cleaned = table[schema.column_names].astype(object).where(table[schema.column_names].notna(), None)
        rows = [tuple(_python(v) for v in row) for row in cleaned.itertuples(index=False, name=None)]
        delta_io.append(spark, settings, name, spark.createDataFrame(rows, schema.spark_schema()))


def _python(value: object) -> object:
    """numpy scalars and pandas timestamps as the Python values Spark's row converter takes."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if isinstance(value, np.generic) else value
