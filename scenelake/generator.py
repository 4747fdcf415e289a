"""A realistic landing zone: capture sessions, labelled frames, two model versions, planted faults.

Captures get a plausible scenario mix (environment, lighting, motion, occlusion, crowd). People
walk across the frame on straight tracks; every `label_every`-th frame is labelled. Even
captures are labelled as COCO exports, odd ones as MOTChallenge gt.txt. Two runs of a person
detector predict on every labelled frame, in all formats (JSON lines, Parquet, COCO results,
MOT tracker output). Recall falls with dim/dark light and heavy occlusion. The newer version,
person-v2, is better everywhere except the planted regression: lighting=dark with
motion=running, where its recall is halved.

Manifests come as a few uploads of several captures each, every subject with a consent state.

With a defect rate, records are damaged the way real deliveries are, and every fault is written
to ledger.jsonl with the quarantine rule the pipeline must give it. Besides damaged records, a
defect rate plants one of each file-level fault: a capture sent again in a later upload and a
prediction shard that repeats detections of another file (duplicates across files), a manifest
and a JSON-lines prediction file cut mid-record (truncated files), a manifest, a prediction file
and a COCO export delivered twice under another name (re-delivered files), and an upload whose
lines carry a field the contract does not know (ledger rule null: published, the field kept in
`extra`).
"""

from __future__ import annotations

import json
import math
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
MANIFEST_UPLOADS = 3
CONSENT = {"granted": 0.9, "pending": 0.06, "withdrawn": 0.04}


@dataclass
class Ledger:
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, file: str, record_no: int, kind: str, rule: str | None, section: str = "rows",
            **details: str) -> None:
        self.entries.append({"file": file, "section": section, "record_no": record_no, "kind": kind,
                             "rule": rule, **details})

    def faulty(self, file: str) -> set[int]:
        """Record numbers of a file that carry a fault, or are the winning copy of a planted duplicate."""
        mine = [e for e in self.entries if e["file"] == file]
        winners = {int(e["rule"].rsplit(":", 1)[1]) for e in mine
                   if (e["rule"] or "").startswith(f"duplicate_of:{file}:")}
        return {e["record_no"] for e in mine} | winners


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


def manifest_line(rng: random.Random, cap: Capture, start: datetime, consent: random.Random) -> str:
    return json.dumps({
        "capture_id": cap.capture_id, "source": "real",
        "device": {"model": rng.choice(["PixelCam 4", "NightEye IR2"]), "serial": f"SN{rng.randrange(10**7):07d}"},
        "sensor": "rgb", "resolution": {"width": WIDTH, "height": HEIGHT}, "fps": 30.0,
        "started_at": start.isoformat().replace("+00:00", "Z"), "duration_s": round(cap.frames * 1.0, 1),
        "region": rng.choice(["eu-west", "us-east"]), "scenario": cap.scenario,
        "subjects": [{"subject_id": f"subj-{rng.randrange(10**6):06d}", "consent": _pick(consent, CONSENT)}
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
    # Consent, manifest faults and file-level faults draw from streams of their own, so the
    # records and record faults of a seed stay what they were before those existed.
    consent, faults = random.Random(f"{seed}/consent"), random.Random(f"{seed}/faults")
    ledger = Ledger()
    caps = make_captures(rng, captures)
    t0 = datetime(2026, 11, 1, 8, tzinfo=UTC)
    _manifests(out, [manifest_line(rng, c, t0 + timedelta(hours=i), consent) for i, c in enumerate(caps)],
               faults, defect_rate, ledger)
    for run_id in runs:
        run_dir = out / "predictions" / f"run_id={run_id}"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps({
            "run_id": run_id, "model_name": "person-detector", "model_version": run_id.split("-")[1],
            "code_commit": "abc1234", "params": {"score_threshold": "0.05"},
            "started_at": "2026-11-02T00:00:00Z", "finished_at": "2026-11-02T01:00:00Z"}) + "\n")
    exports: list[str] = []
    predicted: list[tuple[str, str]] = []
    for i, cap in enumerate(caps):
        truth = tracks(rng, cap)
        if i % 2 == 0:
            exports.append(_coco_export(out, cap, truth, rng, defect_rate, ledger))
        else:
            _mot_export(out, cap, truth, rng, defect_rate, ledger)
        for k, run_id in enumerate(runs):
            fmt = ("mot" if i % 2 else "coco_results") if (i + k) % 3 == 0 else ("jsonl", "parquet")[(i + k) % 2]
            predicted.append(_predictions(out, cap, run_id, fmt, detections(rng, cap, run_id, truth, runs, regression),
                                          rng, defect_rate, ledger))
    if defect_rate > 0:
        _prediction_file_faults(out, predicted, faults, ledger)
        if exports:
            _redeliver(out, faults.choice(exports), "coco", ledger)
    (out / "ledger.jsonl").write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in ledger.entries))
    described = {"regression": {**REGRESSION, "recall_factor": REGRESSION_RECALL_FACTOR} if regression else None,
                 "runs": dict(runs),
             "captures": [asdict(c) for c in caps]}
    (out / "truth.json").write_text(json.dumps(described, indent=1))
    return ledger


def _coco_export(out: Path, cap: Capture, truth: list[Any], rng: random.Random, rate: float, ledger: Ledger) -> str:
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
                rule = {"negative_size": "range:w>0", "outside_frame": "range:box_outside_frame",
                        "missing_bbox": "missing:bbox", "unknown_frame": "unknown_frame"}[kind]
                if kind == "negative_size":
                    record["bbox"] = [x, y, -w, h]
                elif kind == "outside_frame":  # wholly off the image (a box past the edge is kept)
                    record["bbox"] = [WIDTH + 5.0, y, w, h]
                elif kind == "missing_bbox":
                    del record["bbox"]
                else:
                    record["image_id"] = 10_000 + f
                ledger.add(rel, len(anns) + 1, kind, rule, section="annotations")
            anns.append(record)
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    (folder / "instances.json").write_text(json.dumps(doc))
    return rel


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
                 rng: random.Random, rate: float, ledger: Ledger) -> tuple[str, str]:
    folder = out / "predictions" / f"run_id={run_id}" / f"capture_id={cap.capture_id}"
    folder.mkdir(parents=True, exist_ok=True)
    name = {"jsonl": "detections.jsonl", "parquet": "detections.parquet", "coco_results": "results.json",
            "mot": "tracks.txt"}[fmt]
    rel = str((folder / name).relative_to(out))
    if fmt == "mot":
        lines = [f"{d['frame_index']},{d['track_id']},{','.join(str(v) for v in d['bbox'])},{d['score']},-1,-1,-1"
                 for d in dets]
        (folder / name).write_text("\n".join(lines) + "\n")
        return rel, fmt
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
                    # A frame within the recording that nobody labelled: the record waits for it.
                    record["image_id" if fmt == "coco_results" else "frame_index"] = cap.frames + 5
                ledger.add(rel, len(records) + 1, kind, rule)
        records.append(record)
    if fmt == "jsonl":
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "coco_results":
        (folder / name).write_text(json.dumps(records))
    else:
        pq.write_table(pa.Table.from_pylist(records), folder / name)
    return rel, fmt


@dataclass
class _Line:
    """One manifest line while the uploads are laid out; its fault is resolved to a line number last."""
    text: str
    kind: str | None = None
    rule: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    winner: _Line | None = None


def _damage_manifest_line(rng: random.Random, line: _Line) -> None:
    record = json.loads(line.text)
    kind = rng.choice(["malformed_line", "missing_field", "wrong_type", "out_of_range", "unknown_value",
                       "bad_consent"])
    if kind == "malformed_line":
        line.text, line.rule = line.text[: len(line.text) // 2], "malformed_json"
    elif kind == "missing_field":
        del record["started_at"]
        line.rule = "missing:started_at"
    elif kind == "wrong_type":
        record["fps"], line.rule = "thirty", "type:fps"
    elif kind == "out_of_range":
        record["fps"], line.rule = -30.0, "range:fps_in_1_1000"
    elif kind == "unknown_value":
        record["sensor"], line.rule = "thermal", "range:sensor_allowed"
    else:
        record["subjects"][0]["consent"], line.rule = "maybe", "range:consent_allowed"
    if kind != "malformed_line":
        line.text = json.dumps(record, sort_keys=True)
    line.kind = kind


def _manifests(out: Path, texts: list[str], rng: random.Random, rate: float, ledger: Ledger) -> None:
    """A few upload manifests of consecutive captures, with their faults when rate > 0."""
    folder = out / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    size = max(1, math.ceil(len(texts) / MANIFEST_UPLOADS))
    uploads = [[_Line(t) for t in texts[i:i + size]] for i in range(0, len(texts), size)]
    names = [f"manifests/upload-{n + 1:03d}.jsonl" for n in range(len(uploads))]
    truncated, resent = None, []
    if rate > 0:
        for line in (ln for upload in uploads for ln in upload):
            if rng.random() < rate:
                _damage_manifest_line(rng, line)
        clean = [ln for ln in uploads[0] if ln.kind is None]
        if len(uploads) > 1 and clean:
            # A capture sent again in the next upload with a corrected duration: the later copy wins.
            sent = rng.choice(clean)
            record = json.loads(sent.text)
            record["duration_s"] = round(record["duration_s"] + 0.5, 1)
            again = _Line(json.dumps(record, sort_keys=True))
            uploads[1].insert(0, again)
            sent.kind, sent.winner = "duplicate_across_files", again
            resent = [sent, again]
        # A newer app version adds a field to every line of one upload: kept in `extra`, not a fault.
        for line in uploads[1 if len(uploads) > 1 else 0]:
            if line.rule != "malformed_json":
                line.text = json.dumps({**json.loads(line.text), "firmware_build": "7.1.2"}, sort_keys=True)
                if line.kind is None:
                    line.kind, line.details = "unknown_field", {"field": "firmware_build"}
        last = uploads[-1][-1]
        if all(last is not ln for ln in resent):  # the upload was cut in the middle of its last line
            last.text = last.text[: len(last.text) // 2]
            last.kind, last.rule, last.details = "truncated_file", "malformed_json", {}
            truncated = names[-1]
    where = {id(ln): (names[u], n + 1) for u, upload in enumerate(uploads) for n, ln in enumerate(upload)}
    for u, upload in enumerate(uploads):
        ending = "" if names[u] == truncated else "\n"
        (out / names[u]).write_text("\n".join(ln.text for ln in upload) + ending)
        for n, ln in enumerate(upload):
            if ln.winner is not None:
                ln.rule = "duplicate_of:{}:{}".format(*where[id(ln.winner)])
            if ln.kind is not None:
                ledger.add(names[u], n + 1, ln.kind, ln.rule, **ln.details)
    if rate > 0:
        _redeliver(out, names[0], "jsonl", ledger)


def _prediction_file_faults(out: Path, files: list[tuple[str, str]], rng: random.Random, ledger: Ledger) -> None:
    """A shard repeating detections of another file, a file cut mid-record, a file delivered twice."""
    jsonl = [rel for rel, fmt in files if fmt == "jsonl"]
    if jsonl:
        shard_of = rng.choice(jsonl)
        _overlapping_shard(out, shard_of, ledger)
        _truncate(out, rng.choice([rel for rel in jsonl if rel != shard_of] or jsonl), ledger)
    _redeliver(out, *rng.choice(files), ledger)


def _overlapping_shard(out: Path, rel: str, ledger: Ledger) -> None:
    """A retried inference shard that repeats the last clean detections of `rel` in a file of its
    own: the copies in the file that sorts first lose to those in the other (latest copy wins:
    same batch, so the later file name)."""
    lines = (out / rel).read_text().splitlines()
    faulty = ledger.faulty(rel)
    repeated = [n for n in range(1, len(lines) + 1) if n not in faulty][-3:]
    if not repeated:
        return
    shard = rel.replace("detections.jsonl", "detections-part2.jsonl")
    (out / shard).write_text("".join(lines[n - 1] + "\n" for n in repeated))
    for i, n in enumerate(repeated, start=1):
        (loser, loser_no), (winner, winner_no) = sorted([(shard, i), (rel, n)])
        ledger.add(loser, loser_no, "duplicate_across_files", f"duplicate_of:{winner}:{winner_no}")


def _truncate(out: Path, rel: str, ledger: Ledger) -> None:
    """Cut a JSON-lines file in the middle of a record after its last complete one."""
    text = (out / rel).read_text()
    records = [ln for ln in text.splitlines() if ln.strip()]
    (out / rel).write_text(text + records[-1][: len(records[-1]) // 2])
    ledger.add(rel, len(records) + 1, "truncated_file", "malformed_json")


def _redeliver(out: Path, rel: str, fmt: str, ledger: Ledger) -> None:
    """The same bytes delivered again as <name>_2<ext>: every record is a duplicate of the first
    delivery's record with the same number (the first delivery sorts first by name)."""
    source = out / rel
    copy = source.with_name(f"{source.stem}_2{source.suffix}")
    copy.write_bytes(source.read_bytes())
    copy_rel = str(copy.relative_to(out))
    if fmt == "coco":
        doc = json.loads(source.read_text())
        counts = {"images": len(doc["images"]), "annotations": len(doc["annotations"])}
    elif fmt == "coco_results":
        counts = {"rows": len(json.loads(source.read_text()))}
    elif fmt == "parquet":
        counts = {"rows": pq.read_metadata(source).num_rows}
    else:
        counts = {"rows": sum(1 for ln in source.read_text().splitlines() if ln.strip())}
    for section, count in counts.items():
        for n in range(1, count + 1):
            ledger.add(copy_rel, n, "redelivered_file", f"duplicate_of:{rel}:{n}", section=section)
