"""Land model-run outputs into silver.model_runs and silver.predictions.

landing/predictions/run_id=R/run.json                       -> the model run
landing/predictions/run_id=R/capture_id=C/*.json            -> COCO results (image_id = frame)
landing/predictions/run_id=R/capture_id=C/*.txt             -> MOTChallenge tracker output
landing/predictions/run_id=R/capture_id=C/*.jsonl|*.parquet -> batch-inference detections

A detection must be on a known frame (silver.frames, so run ingest_annotations first; a frame
past the end of its capture's recording is refused for good), of a known run, with a box of
non-negative size and, except for MOT trackers, a score in [0, 1];
otherwise it goes to ops.quarantine with the rule it broke. A file delivered again under another
name adds nothing: its records are duplicates of the first delivery's. Fields of a JSON record
(or Parquet row) that the contract does not know are kept in `extra`.

Incremental: a run judges only the bronze batches added since its last marker (see
scenelake.ingest.increment), plus, when silver.frames or the model runs moved, the records
quarantined as unknown_frame/unknown_run, so predictions that arrived before their ground truth
reach silver once it arrives. With nothing new it reads no record and commits nothing.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from scenelake import delta_io, ingest, quality
from scenelake.contracts import contract, fingerprint
from scenelake.job import job_main, releases_cache
from scenelake.settings import Settings

BRONZE = "bronze.predictions"
RUNS = "silver.model_runs"
PREDICTIONS = "silver.predictions"
FRAMES = "silver.frames"
CAPTURES = "silver.captures"
QUARANTINE = ingest.QUARANTINE

COCO_RESULT = "struct<image_id:long,category_id:long,bbox:array<double>,score:double,keypoints:array<double>>"
DETECTION = ("struct<prediction_id:string,capture_id:string,frame_index:long,category:string,category_id:long,"
             "bbox:array<double>,score:double,keypoints:array<double>,track_id:long>")
RUN = ("struct<run_id:string,model_name:string,model_version:string,code_commit:string,"
       "params:map<string,string>,started_at:timestamp,finished_at:timestamp>")
FORMATS = {".json": "coco_results", ".txt": "mot", ".jsonl": "jsonl"}


# The tables this job writes (the scheduler's assets: orchestration/definitions.py).
WRITES = [BRONZE, RUNS, PREDICTIONS, QUARANTINE]


def _fields(struct: str) -> list[str]:
    return [part.split(":")[0] for part in struct.removeprefix("struct<").split(",") if ":" in part]


@dataclass(frozen=True)
class Report:
    new_files: list[str]
    bronze_rows_added: int
    rebuilt: bool
    runs: int
    predictions: int
    quarantined: int


# --- pure transforms ------------------------------------------------------------------
def _box(bbox: Column) -> tuple[Column, ...]:
    return tuple(F.try_element_at(bbox, F.lit(i + 1)) for i in range(4))


def json_detections(records: DataFrame) -> DataFrame:
    """COCO results and JSONL/Parquet records as detection columns plus their field rules."""
    coco = records.where(F.col("format") == "coco_results").withColumn("d", F.from_json("payload", COCO_RESULT))
    coco = coco.select("*", *[F.col(f"d.{c}").alias(c) for c in ("category_id", "bbox", "score", "keypoints")],
                       F.col("d.image_id").alias("frame_index"), F.lit(None).cast("string").alias("category"),
                       F.lit(None).cast("long").alias("track_id"), F.lit(None).cast("string").alias("own_id"),
                       F.col("import_meta")["capture_id"].alias("capture_id"),
                       ingest.extra_fields(F.col("payload"), _fields(COCO_RESULT)).alias("extra"),
                       ingest.first_failed_rule(
                           ("malformed_json", ingest.malformed(F.col("payload"))),
                           *ingest.field_rules(F.col("payload"), F.col("d"),
                                               ["image_id", "category_id", "bbox", "score"])).alias("rule"))
    own = records.where(F.col("format").isin("jsonl", "parquet")).withColumn("d", F.from_json("payload", DETECTION))
    own = own.select("*", *[F.col(f"d.{c}").alias(c) for c in
                            ("frame_index", "category", "category_id", "bbox", "score", "keypoints", "track_id")],
                     F.col("d.prediction_id").alias("own_id"),
                     F.coalesce(F.col("d.capture_id"), F.col("import_meta")["capture_id"]).alias("capture_id"),
                     ingest.extra_fields(F.col("payload"), _fields(DETECTION)).alias("extra"),
                     ingest.first_failed_rule(
                         ("malformed_json", ingest.malformed(F.col("payload"))),
                         *ingest.field_rules(F.col("payload"), F.col("d"),
                                             ["frame_index", "category_id", "bbox", "score"])).alias("rule"))
    both = coco.drop("d").unionByName(own.drop("d"))
    x, y, w, h = _box(F.col("bbox"))
    return both.select("*", x.alias("x"), y.alias("y"), w.alias("w"), h.alias("h")).withColumn(
        "rule", F.coalesce("rule", ingest.first_failed_rule(
            ("type:bbox", (F.size("bbox") != 4) | F.exists("bbox", lambda v: v.isNull())),
            ("range:w>=0", F.col("w") < 0), ("range:h>=0", F.col("h") < 0),
            ("range:score_in_0_1", (F.col("score") < 0) | (F.col("score") > 1)))))


def mot_detections(records: DataFrame) -> DataFrame:
    """Tracker output lines: the MOT confidence is the score (trackers may write -1)."""
    rows = ingest.mot_rows(records.where(F.col("format") == "mot"))
    return rows.select(
        "*", F.col("frame").cast("long").alias("frame_index"), F.lit("person").alias("category"),
        F.lit(1).cast("long").alias("category_id"), F.coalesce("conf", F.lit(-1.0)).alias("score"),
        F.lit(None).cast("array<double>").alias("keypoints"), F.col("id").cast("long").alias("track_id"),
        F.lit(None).cast("string").alias("own_id"), F.col("import_meta")["capture_id"].alias("capture_id"),
        F.lit(None).cast("map<string,string>").alias("extra"))


def predictions(records: DataFrame, frames: DataFrame, runs: DataFrame,
                captures: DataFrame | None = None) -> DataFrame:
    """Every prediction record with its silver columns and the first rule it breaks (or null).

    A detection on a frame silver.frames does not know yet waits for it (unknown_frame), unless
    `captures` (capture_id, fps, duration_s) shows the frame lies past the end of its recording:
    such a frame can never arrive, so the record breaks range:frame_within_capture for good."""
    cols = ["source_file", "section", "record_no", "payload", "loaded_at", "import_meta", "rule",
            "capture_id", "frame_index", "category", "category_id", "x", "y", "w", "h", "score",
            "keypoints", "track_id", "own_id", "extra"]
    both = json_detections(records).select(*cols).unionByName(mot_detections(records).select(*cols))
    known_frames = frames.select("capture_id", "frame_index", F.lit(True).alias("frame_known"))
    known_runs = runs.select("run_id", F.lit(True).alias("run_known"))
    if captures is None:
        captures = records.sparkSession.createDataFrame([], "capture_id string, fps double, duration_s double")
    # The same bound as silver.frames' frame_index_within_capture check.
    ends = captures.select("capture_id", (F.col("duration_s") * F.col("fps") + 1).alias("last_frame"))
    joined = (both.withColumn("run_id", F.col("import_meta")["run_id"])
              .join(known_frames, ["capture_id", "frame_index"], "left")
              .join(known_runs, ["run_id"], "left")
              .join(F.broadcast(ends), ["capture_id"], "left"))
    return joined.withColumn("rule", F.coalesce("rule", ingest.first_failed_rule(
        ("missing:capture_id", F.col("capture_id").isNull()),
        ("unknown_run", F.col("run_known").isNull()),
        ("range:frame_within_capture", F.col("frame_known").isNull()
         & F.coalesce(F.col("frame_index") > F.col("last_frame"), F.lit(False))),
        ("unknown_frame", F.col("frame_known").isNull()),
    ))).drop("last_frame").withColumn("prediction_id", F.coalesce("own_id", content_id()))


def content_id() -> Column:
    """An id from what a detection says, for files that give none: a record delivered twice (in
    one file or two) is then one prediction, and its copy is quarantined as a duplicate."""
    parts = ["run_id", "capture_id", "frame_index", "category_id", "x", "y", "w", "h", "score", "track_id"]
    return F.concat(F.lit("h:"), F.substring(F.sha2(F.concat_ws("|", *[F.col(c).cast("string") for c in parts]),
                                                    256), 1, 24))


def delivery_scope() -> Column:
    """What a file means besides its bytes: its format and folder metadata (run, capture). The
    same bytes in the same scope under another name are a re-delivery."""
    return F.concat_ws("|", "format", F.to_json(F.array_sort(F.map_entries("import_meta"))))


def model_runs(run_files: DataFrame) -> DataFrame:
    parsed = run_files.withColumn("r", F.from_json("value", RUN))
    return parsed.select(
        F.coalesce(F.col("r.run_id"), ingest.path_meta(F.col("source_file"))["run_id"]).alias("run_id"),
        "r.model_name", "r.model_version", "r.code_commit", "r.params", "r.started_at", "r.finished_at",
        "source_file")


# --- I/O ------------------------------------------------------------------------------
def land_new_files(spark: SparkSession, settings: Settings, batch_id: str,
                   progress: ingest.Progress) -> tuple[list[str], int]:
    # One listing for every text format (a brace glob), the format from each file's extension.
    extensions = ",".join(ext.lstrip(".") for ext in FORMATS)
    landed = ingest.LandedFiles(spark, settings, BRONZE)
    files = ingest.read_files(spark, settings, "predictions", f"*.{{{extensions}}}", landed=landed, progress=progress)
    fmt = F.lit(None).cast("string")
    for ext, name in FORMATS.items():
        fmt = F.when(F.col("source_file").endswith(ext), F.lit(name)).otherwise(fmt)
    files = files.withColumn("format", fmt).where(~F.col("source_file").endswith("/run.json"))
    parquet = ingest.read_files(spark, settings, "predictions", "*.parquet", binary=True, landed=landed,
                                  progress=progress).withColumn(
        "format", F.lit("parquet"))
    files = ingest.unseen(spark, files.unionByName(parquet), landed).cache()
    names = sorted(r.source_file for r in files.select("source_file").collect())
    progress(f"[ingest_predictions] {len(names)} new prediction file(s) under {settings.landing_root}/predictions")
    added = 0
    if names:
        text_records = files.where(F.col("format") != "parquet").select(
            "source_file", "source_sha256", "format",
            F.explode(F.when(F.col("format") == "coco_results", ingest.json_document_records("value"))
                      .otherwise(ingest.lines(F.col("value")))).alias("r"))
        text_records = text_records.select("source_file", "source_sha256", "format", "r.section", "r.record_no",
                                           "r.payload")
        parquet_records = _parquet_records(spark, settings, files.where(F.col("format") == "parquet"))
        records = text_records.unionByName(parquet_records).withColumn(
            "import_meta", ingest.path_meta(F.col("source_file")))
        bronze = ingest.to_bronze(records.drop("section"), batch_id, files).cache()
        added = bronze.count()
        delta_io.append(spark, settings, BRONZE, bronze, commit_metadata=ingest.batch_metadata(batch_id, landed))
        bronze.unpersist()
        progress(f"[ingest_predictions] bronze.predictions += {added} records (batch {batch_id})")
    landed.save()
    files.unpersist()
    return names, added


def _parquet_records(spark: SparkSession, settings: Settings, files: DataFrame) -> DataFrame:
    """Each row of each new Parquet file as a JSON payload, numbered by its row index."""
    digests = files.select("source_file", "source_sha256").collect()
    empty = spark.createDataFrame([], "source_file string, source_sha256 string, format string, "
                                      "section string, record_no long, payload string")
    if not digests:
        return empty
    root = settings.landing_root.rstrip("/")
    paths = [f"{root}/{r.source_file}" for r in digests]
    rows = spark.read.parquet(*paths)
    payload = F.to_json(F.struct(*[F.col(c) for c in rows.columns]))
    read = rows.select(F.col("_metadata.file_path").alias("path"),
                       (F.col("_metadata.row_index") + 1).alias("record_no"), payload.alias("payload"))
    lookup = spark.createDataFrame([(r.source_file, r.source_sha256) for r in digests],
                                   "source_file string, source_sha256 string")
    read = read.withColumn("source_file", F.regexp_extract("path", r"(predictions/.*)$", 1))
    return read.join(lookup, ["source_file"]).select(
        "source_file", "source_sha256", F.lit("parquet").alias("format"), F.lit("rows").alias("section"),
        "record_no", "payload")


def with_coverage(predictions: DataFrame, frames: DataFrame) -> DataFrame:
    """Predictions with the number of labelled frames of their capture (for the coverage check)."""
    if "labelled" not in frames.columns:
        return predictions.withColumn("capture_labelled_frames", F.lit(None).cast("long"))
    labelled = frames.where("labelled").groupBy("capture_id").agg(F.count(F.lit(1)).alias("capture_labelled_frames"))
    return predictions.join(labelled, "capture_id", "left")


RECHECKED_RULES = ("unknown_frame", "unknown_run")


def run_signature(runs: DataFrame) -> str:
    """A digest of every model run's description: a new or changed run.json moves it."""
    rows = sorted(json.dumps(r.asDict(recursive=True), sort_keys=True, default=str) for r in runs.collect())
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def rechecks(spark: SparkSession, settings: Settings, step: ingest.Increment, version: int | None) -> DataFrame:
    """Bronze records quarantined (as of the quarantine `version` the last run left) because their
    frame or run was unknown: judged again when frames or runs moved, since they may be known now."""
    if version is None or not delta_io.table_exists(spark, settings, QUARANTINE):
        return step.catalog.limit(0)
    waiting = (delta_io.read_table(spark, settings, QUARANTINE, version=version)
               .where((F.col("target_table") == PREDICTIONS) & F.col("rule").isin(*RECHECKED_RULES))
               .select("source_file", "record_no"))
    # Of the files' newest versions (a record of a superseded version waits for nothing).
    return ingest.newest(ingest.versions_of(step.catalog, waiting)).join(waiting, ["source_file", "record_no"],
                                                                         "left_semi")


def on_lost_frames(spark: SparkSession, settings: Settings, step: ingest.Increment,
                   frames_version: int | None) -> DataFrame | None:
    """Silver predictions (run_id, prediction_id, source_file, record_no) on frames silver.frames held
    when this job last ran and holds no more (a corrected export dropped them), or None. Judged again,
    they wait in the quarantine for their frame (unknown_frame), as a build from scratch leaves them.
    The frames come from silver.frames' Change Data Feed since then (the whole table when it cannot say)."""
    before = (step.previous or {}).get(FRAMES)
    if (step.full or before is None or frames_version is None or int(before) >= frames_version
            or not delta_io.table_exists(spark, settings, PREDICTIONS)):
        return None
    frame = ["capture_id", "frame_index"]
    changed = delta_io.changed_keys(spark, settings, FRAMES, int(before), frames_version, frame, ("delete",))
    if changed == []:  # no frame deleted (the usual case): nothing else is read
        return None
    now = delta_io.read_table(spark, settings, FRAMES).select(*frame)
    held = delta_io.read_table(spark, settings, PREDICTIONS)
    if changed is None:
        lost = held.join(now, frame, "left_anti")
    else:
        gone = spark.createDataFrame(changed, "capture_id string, frame_index long").join(now, frame, "left_anti")
        lost = held.join(F.broadcast(gone), frame, "left_semi")
    rows = lost.select("run_id", "prediction_id", "source_file", "record_no").collect()
    return spark.createDataFrame(rows, "run_id string, prediction_id string, source_file string, record_no long") \
        if rows else None


@releases_cache
def run(spark: SparkSession, settings: Settings, progress: ingest.Progress = print) -> Report:
    batch_id = ingest.new_batch_id()
    names, added = land_new_files(spark, settings, batch_id, progress)
    ingest.crash_point("predictions:after_bronze")
    runs_raw = ingest.read_files(spark, settings, "predictions", "run.json")
    runs, bad_runs = ingest.split_good(
        model_runs(runs_raw).withColumn("rule", ingest.first_failed_rule(
            ("missing:run_id", F.col("run_id").isNull()), ("missing:model_name", F.col("model_name").isNull()),
            ("missing:model_version", F.col("model_version").isNull())))
        .withColumn("record_no", F.lit(1).cast("long")).withColumn("loaded_at", F.current_timestamp())
        .join(runs_raw.select("source_file", F.col("value").alias("payload")), ["source_file"]),
        ["run_id"], contract(RUNS).column_names)
    runs = runs.cache()
    frames_version = delta_io.data_version(spark, settings, FRAMES)
    inputs = {FRAMES: frames_version, "runs": run_signature(runs)}
    step = ingest.increment(spark, settings, "ingest_predictions", BRONZE, PREDICTIONS,
                            fingerprint(RUNS, PREDICTIONS, QUARANTINE), inputs)
    if step is None:
        progress("[ingest_predictions] nothing new: silver.predictions is up to date")
        runs.unpersist()
        return Report(names, added, False, 0, 0, 0)
    clock = ingest.Stopwatch(progress, "ingest_predictions")
    progress(f"[ingest_predictions] judging {step.describe()}")
    reopened, stale = ingest.refresh(spark, settings, step, [PREDICTIONS])
    records = ingest.with_reopened(step, reopened)
    # Single records judged again besides whole files: those waiting for their frame or run, and those
    # whose frame is gone (none of a file judged whole: its records are there already).
    whole = F.col("source_file").isin(*step.paths, *reopened) if step.paths or reopened else F.lit(False)
    waiting = None
    if not step.full:
        waiting = rechecks(spark, settings, step, step.previous.get("quarantine") if step.previous else None)
        records = records.unionByName(waiting.where(~whole))
    lost = on_lost_frames(spark, settings, step, frames_version)
    if lost is not None:
        again = step.files(r[0] for r in lost.select("source_file").distinct().collect()).join(
            lost.select("source_file", "record_no"), ["source_file", "record_no"], "left_semi")
        records = records.unionByName(again.where(~whole))
    records = records.withColumn("section", F.lit("rows"))
    records, copies = ingest.split_redeliveries(records, delivery_scope(),
                                                None if step.full else step.catalog)
    records = records.cache()
    frames = (delta_io.read_table(spark, settings, FRAMES) if frames_version is not None
              else spark.createDataFrame([], "capture_id string, frame_index long"))
    captures = (delta_io.read_table(spark, settings, CAPTURES).select("capture_id", "fps", "duration_s")
                if delta_io.table_exists(spark, settings, CAPTURES) else None)
    rows = predictions(records, frames, runs, captures).cache()

    def reparse(files: list[str]) -> DataFrame:
        return predictions(step.files(files).withColumn("section", F.lit("rows")), frames, runs, captures)

    good, rejected, gone, fresh = ingest.reconcile(spark, settings, PREDICTIONS, rows, ["run_id", "prediction_id"],
                                                   contract(PREDICTIONS).column_names, reparse, step.full,
                                                   replaced=step.replaced)
    good = good.cache()
    if lost is not None:
        # Those that do not win their key again (they wait for their frame now) leave silver.
        unmoored = lost.select("run_id", "prediction_id").join(good.select("run_id", "prediction_id"),
                                                               ["run_id", "prediction_id"], "left_anti")
        gone = unmoored if gone is None else gone.unionByName(unmoored)
    gone = ingest.materialized(spark, gone)
    # An unreadable COCO results file is one record whose payload is the whole text: it fails
    # malformed_json like any bad record.
    quarantine = (ingest.quarantine_rows(rejected, PREDICTIONS, batch_id)
                  .unionByName(ingest.quarantine_rows(copies, PREDICTIONS, batch_id))
                  .unionByName(ingest.quarantine_rows(bad_runs, RUNS, batch_id))).cache()
    release = ingest.released(stale, quarantine)
    if waiting is not None:
        arrived = (good.select("source_file", "record_no").join(waiting.select("source_file", "record_no"),
                                                                 ["source_file", "record_no"], "left_semi")
                   .select(F.lit(PREDICTIONS).alias("target_table"), "source_file", F.lit("rows").alias("section"),
                           "record_no"))
        release = arrived if release is None else release.unionByName(arrived)
    kept = good.count()
    clock.lap(f"parsed and checked {kept} new or changed predictions")
    # The model runs are judged and merged only when a run.json is new or changed since the last run.
    runs_moved = step.full or (step.previous or {}).get("runs") != inputs["runs"]
    with quality.GateRun(spark, settings, "ingest_predictions", delta_io.marker_text(step.marker)) as gate_run:
        quality.gate(ingest.with_file_totals(quarantine, records), QUARANTINE, gate_run)
        if runs_moved:
            quality.gate(runs, RUNS, gate_run)
        if kept or not records.isEmpty():
            quality.gate(with_coverage(good, frames), PREDICTIONS, gate_run)
    clock.lap("quality gate passed")
    quarantined = quarantine.count()
    ingest.write_quarantine(spark, settings, quarantine, quarantined, release)
    ingest.crash_point("predictions:after_quarantine")
    clock.lap(f"{quarantined} record(s) quarantined")
    marker = step.finished(spark, settings)
    if runs_moved:
        delta_io.merge(spark, settings, RUNS, runs, commit_metadata=delta_io.marker_text(marker))
    ingest.crash_point("predictions:after_runs")
    delta_io.merge(spark, settings, PREDICTIONS, good, commit_metadata=delta_io.marker_text(marker),
                   delete_missing=step.full, delete=gone, insert_only=fresh)
    delta_io.ensure_marker(spark, settings, PREDICTIONS, marker)
    clock.lap("silver.predictions merged")
    report = Report(names, added, True, runs.count(), kept, quarantined)
    progress(f"[ingest_predictions] published {report.runs} model runs, {kept} new or changed predictions; "
             f"{quarantined} record(s) in {QUARANTINE}")
    for df in (runs, good, quarantine, rows, records):
        df.unpersist()
    return report


def main(argv: list[str] | None = None) -> int:
    return job_main("ingest_predictions", __doc__, run, WRITES, argv)


if __name__ == "__main__":
    sys.exit(main())
