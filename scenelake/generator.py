"""A realistic landing zone: capture sessions, labelled frames, two model versions, planted faults.

Captures get a plausible scenario mix (environment, lighting, motion, occlusion, crowd). People
walk across the frame on straight tracks; every `label_every`-th frame is labelled. Even
captures are labelled as COCO exports, odd ones as MOTChallenge gt.txt. Two runs of a person
detector predict on every labelled frame, in all formats (JSON lines, Parquet, COCO results,
MOT tracker output). Recall falls with dim/dark light and heavy occlusion. The newer version,
person-v2, is better everywhere except the planted regression: lighting=dark with
motion=running, where its recall is halved.

With a defect rate, records are damaged the way real deliveries are, and every fault is written
to ledger.jsonl with the quarantine rule the pipeline must give it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

RUNS = {"person-v1": 0.80, "person-v2": 0.88}
REGRESSION = {"lighting": "dark", "motion": "running", "run_id": "person-v2"}
REGRESSION_RECALL_FACTOR = 0.5
LIGHT = {"bright": 1.0, "normal": 1.0, "dim": 0.85, "dark": 0.6}
OCCLUSION = {"none": 1.0, "partial": 0.85, "heavy": 0.6}
WIDTH, HEIGHT = 1280, 720


@dataclass
class Ledger:
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, file: str, record_no: int, kind: str, rule: str, section: str = "rows") -> None:
        self.entries.append({"file": file, "section": section, "record_no": record_no, "kind": kind,
                             "rule": rule})


@dataclass(frozen=True)
class Capture:
    capture_id: str
    scenario: dict[str, str]
    frames: int
    people: int


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def make_captures(rng: random.Random, n: int) -> list[Capture]:
    out = []
    for i in range(n):
        scenario = {
            "environment": _pick(rng, {"indoor": 0.6, "outdoor": 0.4}),
            "lighting": _pick(rng, {"bright": 0.25, "normal": 0.35, "dim": 0.2, "dark": 0.2}),
            "motion": _pick(rng, {"static": 0.35, "walking": 0.4, "running": 0.25}),
            "occlusion": _pick(rng, {"none": 0.5, "partial": 0.35, "heavy": 0.15}),
        }
        people = rng.randint(1, 6)
        scenario["crowd"] = str(people)
        out.append(Capture(f"gen-{i:05d}", scenario, rng.randint(4, 10), people))
    return out


def manifest_line(rng: random.Random, cap: Capture, start: datetime) -> str:
    return json.dumps({
        "capture_id": cap.capture_id, "source": "real",
        "device": {"model": rng.choice(["PixelCam 4", "NightEye IR2"]), "serial": f"SN{rng.randrange(10**7):07d}"},
        "sensor": "rgb", "resolution": {"width": WIDTH, "height": HEIGHT}, "fps": 30.0,
        "started_at": start.isoformat().replace("+00:00", "Z"), "duration_s": round(cap.frames * 1.0, 1),
        "region": rng.choice(["eu-west", "us-east"]), "scenario": cap.scenario,
        "subjects": [{"subject_id": f"subj-{rng.randrange(10**6):06d}", "consent": "granted"}
                     for _ in range(cap.people)],
    }, sort_keys=True)


def tracks(rng: random.Random, cap: Capture) -> list[list[tuple[int, float, float, float, float]]]:
    """Per labelled frame, the people in it: (track id, x, y, w, h)."""
    people = []
    for t in range(cap.people):
        w, h = rng.uniform(40, 120), rng.uniform(100, 300)
        x, y = rng.uniform(0, WIDTH - w - 200), rng.uniform(0, HEIGHT - h)
        dx = {"static": 0.0, "walking": 15.0, "running": 40.0}[cap.scenario["motion"]]
        people.append((t + 1, x, y, w, h, dx))
    frames = []
    for f in range(cap.frames):
        frame = []
        for tid, x, y, w, h, dx in people:
            nx = min(max(x + dx * f, 0.0), WIDTH - w)
            frame.append((tid, round(nx, 2), round(y, 2), round(w, 2), round(h, 2)))
        frames.append(frame)
    return frames


def detections(rng: random.Random, cap: Capture, run_id: str,
               truth: list[list[tuple[int, float, float, float, float]]],
               runs: Mapping[str, float] = RUNS, regression: bool = True) -> list[dict[str, Any]]:
    """One run's detections on one capture: `runs[run_id]` is its recall in good conditions."""
    p = runs[run_id] * LIGHT[cap.scenario["lighting"]] * OCCLUSION[cap.scenario["occlusion"]]
    if (regression and run_id == REGRESSION["run_id"] and cap.scenario["lighting"] == REGRESSION["lighting"]
            and cap.scenario["motion"] == REGRESSION["motion"]):
        p *= REGRESSION_RECALL_FACTOR
    out = []
    for f, people in enumerate(truth):
        for tid, x, y, w, h in people:
            if rng.random() < p:
                out.append({"frame_index": f + 1, "track_id": tid, "bbox": [
                    round(x + rng.gauss(0, 3), 2), round(y + rng.gauss(0, 3), 2), w, h],
                    "score": round(rng.uniform(0.4, 0.99), 4)})
        if rng.random() < 0.3:  # a false positive now and then
            out.append({"frame_index": f + 1, "track_id": 1000 + f, "bbox": [600.0, 300.0, 60.0, 150.0],
                        "score": round(rng.uniform(0.05, 0.5), 4)})
    return out


def generate(out: Path, captures: int, seed: int, defect_rate: float = 0.0,
             runs: Mapping[str, float] = RUNS, regression: bool = True) -> Ledger:
    """Write the landing zone. `runs` maps each model run to its recall in good conditions; two runs
    of equal recall and `regression=False` are two runs of equal quality that differ only in noise."""
    rng = random.Random(seed)
    ledger = Ledger()
    caps = make_captures(rng, captures)
    t0 = datetime(2026, 11, 1, 8, tzinfo=UTC)
    manifests = out / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    (manifests / "captures-generated.jsonl").write_text(
        "".join(manifest_line(rng, c, t0 + timedelta(hours=i)) + "\n" for i, c in enumerate(caps)))
    for run_id in runs:
        run_dir = out / "predictions" / f"run_id={run_id}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps({
            "run_id": run_id, "model_name": "person-detector", "model_version": run_id.split("-")[1],
            "code_commit": "abc1234", "params": {"score_threshold": "0.05"},
            "started_at": "2026-11-02T00:00:00Z", "finished_at": "2026-11-02T01:00:00Z"}) + "\n")
    for i, cap in enumerate(caps):
        truth = tracks(rng, cap)
        if i % 2 == 0:
            _coco_export(out, cap, truth, rng, defect_rate, ledger)
        else:
            _mot_export(out, cap, truth, rng, defect_rate, ledger)
        for k, run_id in enumerate(runs):
            fmt = ("mot" if i % 2 else "coco_results") if (i + k) % 3 == 0 else ("jsonl", "parquet")[(i + k) % 2]
            _predictions(out, cap, run_id, fmt, detections(rng, cap, run_id, truth, runs, regression), rng,
                         defect_rate, ledger)
    (out / "ledger.jsonl").write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in ledger.entries))
    described = {"regression": {**REGRESSION, "recall_factor": REGRESSION_RECALL_FACTOR} if regression else None,
                 "runs": dict(runs),
             "captures": [asdict(c) for c in caps]}
    (out / "truth.json").write_text(json.dumps(described, indent=1))
    return ledger


def _coco_export(out: Path, cap: Capture, truth: list[Any], rng: random.Random, rate: float, ledger: Ledger) -> None:
    folder = out / "annotations" / "coco" / "label_batch=gen" / f"capture_id={cap.capture_id}"
    folder.mkdir(parents=True, exist_ok=True)
    rel = str((folder / "instances.json").relative_to(out))
    images = [{"id": f + 1, "width": WIDTH, "height": HEIGHT} for f in range(len(truth))]
    anns: list[dict[str, Any]] = []
    for f, people in enumerate(truth):
        for _tid, x, y, w, h in people:
            record = {"id": len(anns) + 1, "image_id": f + 1, "category_id": 1, "bbox": [x, y, w, h],
                      "area": round(w * h, 2), "iscrowd": 0}
            if rng.random() < rate:
                kind = rng.choice(["negative_size", "outside_frame", "missing_bbox", "unknown_frame"])
                rule = {"negative_size": "range:w>=0", "outside_frame": "range:box_inside_frame",
                        "missing_bbox": "missing:bbox", "unknown_frame": "unknown_frame"}[kind]
                if kind == "negative_size":
                    record["bbox"] = [x, y, -w, h]
                elif kind == "outside_frame":
                    record["bbox"] = [WIDTH - 5.0, y, w, h]
                elif kind == "missing_bbox":
                    del record["bbox"]
                else:
                    record["image_id"] = 10_000 + f
                ledger.add(rel, len(anns) + 1, kind, rule, section="annotations")
            anns.append(record)
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    (folder / "instances.json").write_text(json.dumps(doc))


def _mot_export(out: Path, cap: Capture, truth: list[Any], rng: random.Random, rate: float, ledger: Ledger) -> None:
    folder = out / "annotations" / "mot" / "label_batch=gen" / f"capture_id={cap.capture_id}"
    folder.mkdir(parents=True, exist_ok=True)
    rel = str((folder / "gt.txt").relative_to(out))
    lines: list[str] = []
    for f, people in enumerate(truth):
        for tid, x, y, w, h in people:
            line = f"{f + 1},{tid},{x},{y},{w},{h},1,-1,-1,-1"
            if rng.random() < rate:
                kind = rng.choice(["malformed_line", "wrong_type"])
                line = f"{f + 1},{tid},{x}" if kind == "malformed_line" else f"{f + 1},{tid},{x},{y},wide,{h},1"
                ledger.add(rel, len(lines) + 1, kind, "malformed_csv" if kind == "malformed_line" else "type:w")
            lines.append(line)
    (folder / "gt.txt").write_text("\n".join(lines) + "\n")


def _predictions(out: Path, cap: Capture, run_id: str, fmt: str, dets: list[dict[str, Any]],
                 rng: random.Random, rate: float, ledger: Ledger) -> None:
    folder = out / "predictions" / f"run_id={run_id}" / f"capture_id={cap.capture_id}"
    folder.mkdir(parents=True, exist_ok=True)
    name = {"jsonl": "detections.jsonl", "parquet": "detections.parquet", "coco_results": "results.json",
            "mot": "tracks.txt"}[fmt]
    rel = str((folder / name).relative_to(out))
    if fmt == "mot":
        lines = [f"{d['frame_index']},{d['track_id']},{','.join(str(v) for v in d['bbox'])},{d['score']},-1,-1,-1"
                 for d in dets]
        (folder / name).write_text("\n".join(lines) + "\n")
        return
    records: list[dict[str, Any]] = []
    for d in dets:
        record: dict[str, Any] = ({"image_id": d["frame_index"], "category_id": 1, "bbox": d["bbox"],
                                   "score": d["score"]}
                                  if fmt == "coco_results" else
                                  {"capture_id": cap.capture_id, "frame_index": d["frame_index"], "category": "person",
                                   "category_id": 1, "bbox": d["bbox"], "score": d["score"]})
        if rate and rng.random() < rate:
            kind = rng.choice(["score_above_1", "negative_size", "unknown_frame", "duplicate"])
            if kind == "duplicate":
                records.append(dict(record))
                # The later copy wins; the earlier one is quarantined as its duplicate.
                ledger.add(rel, len(records), kind, f"duplicate_of:{rel}:{len(records) + 1}")
            else:
                rule = {"score_above_1": "range:score_in_0_1", "negative_size": "range:w>=0",
                        "unknown_frame": "unknown_frame"}[kind]
                if kind == "score_above_1":
                    record["score"] = 1.5
                elif kind == "negative_size":
                    record["bbox"] = [record["bbox"][0], record["bbox"][1], -3.0, record["bbox"][3]]
                else:
                    record["image_id" if fmt == "coco_results" else "frame_index"] = 99_999
                ledger.add(rel, len(records) + 1, kind, rule)
        records.append(record)
    if fmt == "jsonl":
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "coco_results":
        (folder / name).write_text(json.dumps(records))
    else:
        pq.write_table(pa.Table.from_pylist(records), folder / name)
