"""Incremental processing: a lake fed landing by landing equals one built from all the files at once.

A generated landing zone (6 captures, two model runs, planted faults: re-delivered files,
duplicates across files, truncated and mistyped records) is delivered in steps the way it
arrives in real life, in five landings: manifests in uploads, predictions of a run before the
ground truth of the same captures, the ground truth later, a run that grows capture by capture, a
second model run, a manifest re-delivered under another name, and a corrected manifest line (a
capture sent again with another duration and one subject fewer); then, in a sixth landing,
corrected versions of four files delivered again under their names (`corrections`), each of which
supersedes what its first version put in silver and in the quarantine. Between two landings the
maintenance job compacts every table. After each landing the jobs run as the pipeline runs them.
At the end every silver and gold table equals, row for row, the tables of a lake built from
scratch on the same files (their final versions: it never saw the first ones), and a rerun with
nothing new commits nothing anywhere.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import jobs.evaluate as evaluate_job
import jobs.ingest_annotations as annotations_job
import jobs.ingest_captures as captures_job
import jobs.ingest_predictions as predictions_job
import jobs.maintain as maintain_job
from scenelake import delta_io, ingest, quality
from scenelake.generator import generate
from scenelake.settings import Settings
from tests.frames import as_rows

pytestmark = [pytest.mark.integration, pytest.mark.long]
JOBS = (captures_job, annotations_job, predictions_job, evaluate_job)
SILVER_GOLD = ["silver.captures", "silver.subjects", "silver.frames", "silver.annotations", "silver.model_runs",
               "silver.predictions", "gold.detection_matches", "gold.detection_metrics", "gold.tracking_metrics"]
# Differ between two lakes by design (when a batch ran), not by content.
RUN_COLUMNS = {"batch_id", "loaded_at"}
ANN = "annotations/{kind}/label_batch=gen/capture_id=gen-0000{n}"
FIX = "manifests/upload-004-fix.jsonl"
DETECTIONS = "predictions/run_id=person-v1/capture_id=gen-00002/detections.jsonl"
PART2 = "predictions/run_id=person-v1/capture_id=gen-00002/detections-part2.jsonl"
GT = ANN.format(kind="mot", n=1) + "/gt.txt"
COCO = ANN.format(kind="coco", n=0) + "/instances.json"
STEPS: list[list[str]] = [
    # 1: two uploads, the ground truth of captures 0 and 1, and person-v1's output of captures 0 to 3
    # (the ground truth of 2 and 3 has not arrived: their predictions wait in quarantine)
    ["manifests/upload-001.jsonl", "manifests/upload-002.jsonl", ANN.format(kind="coco", n=0),
     ANN.format(kind="mot", n=1), "predictions/run_id=person-v1/run.json",
     *[f"predictions/run_id=person-v1/capture_id=gen-0000{n}" for n in range(4)]],
    # 2: the ground truth of 2 and 3 arrives; the first upload is re-delivered under another name
    [ANN.format(kind="coco", n=2), ANN.format(kind="mot", n=3), "manifests/upload-001_2.jsonl"],
    # 3: the last upload with captures 4 and 5 (an export of capture 4 delivered twice)
    ["manifests/upload-003.jsonl", ANN.format(kind="coco", n=4), ANN.format(kind="mot", n=5)],
    # 4: person-v1 grows to captures 4 and 5
    ["predictions/run_id=person-v1/capture_id=gen-00004", "predictions/run_id=person-v1/capture_id=gen-00005"],
    # 5: a corrected manifest line (written by the test, see `corrected_line`) and a second model
    # run on every capture
    ["manifests/upload-004-fix.jsonl", "predictions/run_id=person-v2"],
    # 6: four files delivered again under their names with other bytes (see `corrections`); the
    # landings before delivered their first versions
    [FIX, DETECTIONS, GT, COCO],
]


def corrected_line(source: Path) -> None:
    """gen-00001 sent again with another duration and its last subject dropped."""
    for line in (source / "manifests" / "upload-001.jsonl").read_text().splitlines():
        record = json.loads(line) if line.startswith("{") else None
        if record and record.get("capture_id") == "gen-00001" and record.get("subjects"):
            fixed = {**record, "duration_s": float(record["duration_s"]) + 1.5, "subjects": record["subjects"][:-1]}
            (source / "manifests" / "upload-004-fix.jsonl").write_text(json.dumps(fixed) + "\n")
            return
    raise AssertionError("the generated first upload has no gen-00001 line with subjects")


def corrections(source: Path, first: Path) -> None:
    """Keep the first version of each file of the last step in `first` and write its corrected
    version in `source`:
    - upload-004-fix.jsonl corrects gen-00003 (a longer duration) instead of gen-00001, whose
      line from upload-002 (which lost to the first version) is the one to keep again;
    - person-v1's detections of gen-00002 lose their last four lines (three of which
      detections-part2.jsonl also holds: those lost to them and must reach silver now; the fourth
      goes for good) and their first line's score changes (another prediction id);
    - the MOT ground truth of gen-00001 loses its last frame and moves one box;
    - the COCO export of gen-00000 loses its last image with its annotations and moves one box."""
    for path in STEPS[-1]:
        (first / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / path, first / path)
    line = next(json.loads(t) for t in (source / "manifests" / "upload-002.jsonl").read_text().splitlines()
                if '"gen-00003"' in t)
    (source / FIX).write_text(json.dumps({**line, "duration_s": float(line["duration_s"]) + 0.5}) + "\n")
    lines = (source / DETECTIONS).read_text().splitlines()
    copied = set((source / PART2).read_text().splitlines())
    assert copied and lines[-len(copied):] == [t for t in lines if t in copied], "part2 copies the last lines"
    head = json.loads(lines[0])
    (source / DETECTIONS).write_text("\n".join([json.dumps({**head, "score": round(head["score"] / 2, 4)}),
                                               *lines[1:-len(copied) - 1]]) + "\n")
    rows = [t.split(",") for t in (source / GT).read_text().splitlines() if t.strip()]
    last = max(int(r[0]) for r in rows)
    rows[0][2] = f"{float(rows[0][2]) + 3:.2f}"
    (source / GT).write_text("".join(",".join(r) + "\n" for r in rows if int(r[0]) != last))
    doc = json.loads((source / COCO).read_text())
    gone = doc["images"][-1]["id"]
    doc["images"] = doc["images"][:-1]
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != gone]
    doc["annotations"][0]["bbox"][0] += 2
    (source / COCO).write_text(json.dumps(doc))


def deliver(source: Path, lake: Settings, paths: list[str], first: Path | None = None) -> None:
    """Copy `paths` (files or folders) from `source` to the landing zone, the first version of a file
    where `first` holds one."""
    for path in paths:
        src, dst = source / path, Path(lake.landing_root) / path
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        if first is not None:
            for older in (first / path).rglob("*") if (first / path).is_dir() else [first / path]:
                if older.is_file():
                    shutil.copyfile(older, Path(lake.landing_root) / older.relative_to(first))


def run_jobs(spark, lake: Settings, progress=ingest.silent) -> None:  # type: ignore[no-untyped-def]
    for job in JOBS:
        job.run(spark, lake, progress=progress)


def contents(spark, lake: Settings) -> dict[str, list[dict[str, object]]]:  # type: ignore[no-untyped-def]
    out = {}
    for table in SILVER_GOLD:
        df = delta_io.read_table(spark, lake, table)
        out[table] = as_rows(df.drop(*[c for c in df.columns if c in RUN_COLUMNS]))
    return out


def quarantined(spark, lake: Settings) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    """Each quarantined record and the kind of rule it broke (a duplicate names the copy that won
    when it lost, which differs when the winner itself lost later)."""
    rows = delta_io.read_table(spark, lake, "ops.quarantine").collect()
    return sorted((r.target_table, r.source_file, r.section, r.record_no, r.rule.split(":")[0]
                   if r.rule.startswith("duplicate_of:") else r.rule) for r in rows)


def versions(spark, lake: Settings) -> dict[str, int | None]:  # type: ignore[no-untyped-def]
    from scenelake.contracts import all_contracts

    return {name: delta_io.table_version(spark, lake, name) for name in all_contracts()}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("incremental-source")
    generate(root, captures=6, seed=3, defect_rate=0.05)
    corrected_line(root)
    corrections(root, root.parent / f"{root.name}-first")
    delivered = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                       and p.name not in ("ledger.jsonl", "truth.json"))
    planned = [p for step in STEPS for p in step]
    missing = [p for p in delivered if not any(p == s or p.startswith(s + "/") for s in planned)]
    assert not missing, f"files the steps do not deliver: {missing}"
    return root


@pytest.fixture(scope="module")
def incremental(spark, settings: Settings, source: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("incremental")
    lake = settings.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    first = source.parent / f"{source.name}-first"
    for number, step in enumerate(STEPS, 1):
        deliver(source, lake, step, None if number == len(STEPS) else first)
        run_jobs(spark, lake)
        if number == 2:
            # Compaction between two landings changes no row, so nothing downstream may run again.
            before = versions(spark, lake)
            results = delta_io.read_table(spark, lake, quality.RESULTS).count()
            maintain_job.run(spark, lake.with_overrides(compact_min_small_files=2), progress=ingest.silent,
                             analyze=False)
            compacted = {n for n, v in versions(spark, lake).items() if v != before[n]}
            assert {"bronze.captures", "bronze.predictions", "silver.predictions"} <= compacted, compacted
            after = versions(spark, lake)
            run_jobs(spark, lake)
            assert versions(spark, lake) == after
            assert delta_io.read_table(spark, lake, quality.RESULTS).count() == results
    return lake


@pytest.fixture(scope="module")
def from_scratch(spark, settings: Settings, source: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("from-scratch")
    lake = settings.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    deliver(source, lake, [p for step in STEPS for p in step])
    run_jobs(spark, lake)
    return lake


def test_landing_by_landing_equals_a_build_from_scratch(spark, source, incremental, from_scratch) -> None:  # type: ignore[no-untyped-def]
    got, want = contents(spark, incremental), contents(spark, from_scratch)
    for table in SILVER_GOLD:
        assert got[table] == want[table], table
    assert quarantined(spark, incremental) == quarantined(spark, from_scratch)
    # The corrected upload-004-fix.jsonl holds gen-00003 only: gen-00001 is upload-002's line again,
    # with every subject it lists (the first version of the fix had dropped one).
    won = {r["capture_id"]: (r["source_file"], r["line_number"]) for r in want["silver.captures"]}
    assert (won["gen-00001"], won["gen-00003"]) == (("manifests/upload-002.jsonl", 1), (FIX, 1))
    sent = json.loads(next(line for line in (source / "manifests" / "upload-002.jsonl").read_text().splitlines()
                           if '"gen-00001"' in line))
    subjects = sorted(r["subject_id"] for r in want["silver.subjects"] if r["capture_id"] == "gen-00001")
    assert subjects == sorted(s["subject_id"] for s in sent["subjects"])
    # The detections detections.jsonl no longer holds are detections-part2.jsonl's now.
    assert sorted(r["record_no"] for r in want["silver.predictions"] if r["source_file"] == PART2) == [1, 2, 3]
    assert {r["run_id"] for r in want["gold.detection_metrics"]} == {"person-v1", "person-v2"}


def test_a_corrected_file_supersedes_its_first_version(spark, source, incremental) -> None:  # type: ignore[no-untyped-def]
    """What only the first versions held is gone from silver and from the quarantine (the equality
    above shows it too; this names what it is)."""
    first = source.parent / f"{source.name}-first"
    kept = len((first / DETECTIONS).read_text().splitlines())
    predictions = delta_io.read_table(spark, incremental, "silver.predictions").where(
        f"source_file = '{DETECTIONS}'").collect()
    assert max(r.record_no for r in predictions) < kept - 3
    frames = delta_io.read_table(spark, incremental, "silver.frames").where("capture_id = 'gen-00001'").collect()
    last = max(int(t.split(",")[0]) for t in (source / GT).read_text().splitlines() if t.strip())
    assert max(r.frame_index for r in frames) == last
    stale = delta_io.read_table(spark, incremental, "ops.quarantine").where(
        f"source_file in ('{DETECTIONS}', '{GT}', '{COCO}', '{FIX}')").collect()
    # Every quarantined record of a corrected file was judged by one run (its job's last): none is left
    # from the first version.
    batches: dict[str, set[str]] = {}
    for r in stale:
        batches.setdefault(r.source_file, set()).add(r.batch_id)
    assert stale and all(len(held) == 1 for held in batches.values()), batches


def test_a_rerun_with_nothing_new_commits_nothing(spark, incremental) -> None:  # type: ignore[no-untyped-def]
    before = versions(spark, incremental)
    results = delta_io.read_table(spark, incremental, quality.RESULTS).count()
    run_jobs(spark, incremental)
    assert versions(spark, incremental) == before
    assert delta_io.read_table(spark, incremental, quality.RESULTS).count() == results
