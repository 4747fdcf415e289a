"""Land labelling exports (COCO JSON, MOTChallenge gt.txt) into silver.frames and silver.annotations.

landing/annotations/coco/label_batch=B/capture_id=C/*.json   -> COCO instances files
landing/annotations/mot/label_batch=B/capture_id=C/gt.txt    -> MOTChallenge ground truth
(`scenelake import coco|mot` lays files out this way.)

Every raw record ends in exactly one place: its silver table, or ops.quarantine with the rule it
broke (malformed_json, missing:<field>, type:<field>, range:<rule>, unknown_frame,
unknown_category, duplicate_of:<file>:<record>, also for every record of a file delivered again
under another name). Fields of a COCO annotation the contract does not know (segmentation, ...)
are kept in `extra`. Runs as `scenelake run ingest_annotations` or
`spark-submit jobs/ingest_annotations.py`.

Incremental: a run judges only the bronze batches added since its last marker; a frame or
object delivered again competes with the record that won its key so far ("latest delivery wins",
as a full rebuild would decide). With nothing new it reads no record and commits nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from scenelake import delta_io, ingest, quality
from scenelake.contracts import contract, fingerprint
from scenelake.job import job_main, releases_cache
from scenelake.settings import Settings

BRONZE = "bronze.annotations"
FRAMES = "silver.frames"
ANNOTATIONS = "silver.annotations"
QUARANTINE = ingest.QUARANTINE

COCO_IMAGE = "struct<id:long,width:int,height:int,file_name:string>"
COCO_CATEGORY = "struct<id:long,name:string>"
COCO_ANNOTATION = ("struct<id:long,image_id:long,category_id:long,bbox:array<double>,area:double,"
                   "iscrowd:int,keypoints:array<double>,num_keypoints:int>")
COCO_ANNOTATION_FIELDS = ["id", "image_id", "category_id", "bbox", "area", "iscrowd", "keypoints", "num_keypoints"]


# The tables this job writes (the scheduler's assets: orchestration/definitions.py).
WRITES = [BRONZE, FRAMES, ANNOTATIONS, QUARANTINE]


@dataclass(frozen=True)
class Report:
    new_files: list[str]
    bronze_rows_added: int
    rebuilt: bool
    frames: int
    annotations: int
    quarantined: int


# --- pure transforms ------------------------------------------------------------------
def coco_frames(records: DataFrame) -> DataFrame:
    """COCO image records -> frame rows with a `rule` (null when the record is good)."""
    img = F.from_json("payload", COCO_IMAGE)
    df = records.where(F.col("format") == "coco").where(F.col("section") == "images").withColumn("img", img)
    rule = ingest.first_failed_rule(
        ("malformed_json", ingest.malformed(F.col("payload"))),
        *ingest.field_rules(F.col("payload"), F.col("img"), ["id"]),
        ("range:id>=0", F.col("img.id") < 0),
        ("range:width>=1", F.col("img.width") < 1),
        ("range:height>=1", F.col("img.height") < 1),
    )
    return df.select(
        F.col("import_meta")["capture_id"].alias("capture_id"),
        F.col("img.id").alias("frame_index"), F.col("img.width").alias("width"),
        F.col("img.height").alias("height"), F.col("img.file_name").alias("file_name"),
        F.lit(True).alias("labelled"), "source_file", "section", "record_no", "payload",
        "loaded_at", rule.alias("rule"))


def mot_annotations(rows: DataFrame) -> DataFrame:
    batch = F.col("import_meta")["label_batch"]
    return rows.select(
        F.concat_ws(":", F.col("import_meta")["capture_id"], batch, F.col("frame").cast("long"),
                    F.col("id").cast("long")).alias("annotation_id"),
        F.col("import_meta")["capture_id"].alias("capture_id"),
        F.col("frame").cast("long").alias("frame_index"),
        F.lit("person").alias("category"), F.lit(1).cast("long").alias("category_id"),
        "x", "y", "w", "h", (F.col("w") * F.col("h")).alias("area"),
        # MOT17+ marks regions to ignore with conf 0; they behave like COCO crowd regions.
        F.coalesce(F.col("conf") == 0, F.lit(False)).alias("is_crowd"),
        F.lit(None).cast("array<double>").alias("keypoints"), F.lit(None).cast("int").alias("num_keypoints"),
        F.col("id").cast("long").alias("track_id"), "visibility", "object_class",
        batch.alias("label_batch"), F.lit(None).cast("map<string,string>").alias("extra"),
        "source_file", "section", "record_no", "payload", "loaded_at",
        # A 9-column line (MOT16/17/20) names one of the 13 MOTChallenge classes; anything else cannot be evaluated.
        F.coalesce("rule", F.when((F.size("f") == 9) & ~F.coalesce(F.col("object_class").between(1, 13), F.lit(False)),
                                  F.lit("range:object_class_in_1_13"))).alias("rule"))


def mot_frames(rows: DataFrame) -> DataFrame:
    """Every frame 1..last labelled frame of a sequence is labelled, even with no one in it.

    A line whose box is broken still says its frame was labelled, so every readable frame
    number counts."""
    good = rows.where((F.col("frame") >= 1) & (F.col("frame") == F.floor("frame")))
    last = good.groupBy(F.col("import_meta")["capture_id"].alias("capture_id"), "source_file").agg(
        F.max("frame").cast("long").alias("last"), F.max("loaded_at").alias("loaded_at"))
    return last.select(
        "capture_id", F.explode(F.sequence(F.lit(1).cast("long"), "last")).alias("frame_index"),
        F.lit(None).cast("int").alias("width"), F.lit(None).cast("int").alias("height"),
        F.lit(None).cast("string").alias("file_name"), F.lit(True).alias("labelled"),
        "source_file", F.lit("rows").alias("section"), F.col("frame_index").alias("record_no"),
        F.lit(None).cast("string").alias("payload"), "loaded_at", F.lit(None).cast("string").alias("rule"))


def coco_annotations(records: DataFrame) -> DataFrame:
    """COCO annotation records joined to their file's images and categories, with their rule."""
    coco = records.where(F.col("format") == "coco")
    images = (coco.where(F.col("section") == "images")
              .select("source_file", F.from_json("payload", COCO_IMAGE).alias("i"))
              .select("source_file", F.col("i.id").alias("image_id"), F.col("i.width").alias("img_w"),
                      F.col("i.height").alias("img_h"), F.lit(True).alias("frame_known"))
              .where(F.col("image_id").isNotNull()).dropDuplicates(["source_file", "image_id"]))
    categories = (coco.where(F.col("section") == "categories")
                  .select("source_file", F.from_json("payload", COCO_CATEGORY).alias("c"))
                  .select("source_file", F.col("c.id").alias("category_id"), F.col("c.name").alias("category"))
                  .where(F.col("category_id").isNotNull()).dropDuplicates(["source_file", "category_id"]))
    ann = (coco.where(F.col("section") == "annotations")
           .withColumn("a", F.from_json("payload", COCO_ANNOTATION))
           .withColumn("image_id", F.col("a.image_id")).withColumn("category_id", F.col("a.category_id"))
           .join(images, ["source_file", "image_id"], "left")
           .join(categories, ["source_file", "category_id"], "left"))
    bbox = F.col("a.bbox")
    x, y, w, h = (F.try_element_at(bbox, F.lit(i + 1)) for i in range(4))
    rule = ingest.first_failed_rule(
        ("malformed_json", ingest.malformed(F.col("payload"))),
        *ingest.field_rules(F.col("payload"), F.col("a"), ["id", "image_id", "category_id", "bbox", "area"]),
        ("type:bbox", (F.size(bbox) != 4) | F.exists(bbox, lambda v: v.isNull())),
        ("range:bbox_finite", F.exists(bbox, lambda v: F.isnan(v) | (F.abs(v) == float("inf")))),
        # What pycocotools evaluates is kept as exported: a box past the image edge (a partly visible
        # person) is ground truth like any other, and quality/silver/annotations.yaml counts it
        # (warn). Only a box that can never be matched is refused: no size, or wholly off the image.
        ("range:w>0", w <= 0), ("range:h>0", h <= 0), ("range:area>=0", F.col("a.area") < 0),
        ("range:iscrowd_in_0_1", ~F.col("a.iscrowd").isin(0, 1)),
        ("unknown_frame", F.col("frame_known").isNull()),
        ("unknown_category", F.col("category").isNull()),
        ("range:box_outside_frame",
         (x >= F.col("img_w")) | (y >= F.col("img_h")) | (x + w <= 0) | (y + h <= 0)),
    )
    batch = F.col("import_meta")["label_batch"]
    return ann.select(
        F.concat_ws(":", F.col("import_meta")["capture_id"], batch, F.col("a.id")).alias("annotation_id"),
        F.col("import_meta")["capture_id"].alias("capture_id"),
        F.col("image_id").alias("frame_index"), "category", "category_id",
        x.alias("x"), y.alias("y"), w.alias("w"), h.alias("h"), F.col("a.area").alias("area"),
        F.coalesce(F.col("a.iscrowd") == 1, F.lit(False)).alias("is_crowd"),
        F.col("a.keypoints").alias("keypoints"), F.col("a.num_keypoints").alias("num_keypoints"),
        F.lit(None).cast("long").alias("track_id"), F.lit(None).cast("double").alias("visibility"),
        F.lit(None).cast("int").alias("object_class"),
        batch.alias("label_batch"), ingest.extra_fields(F.col("payload"), COCO_ANNOTATION_FIELDS).alias("extra"),
        "source_file", "section", "record_no", "payload", "loaded_at", rule.alias("rule"))


def redelivered_rows(copies: DataFrame, batch_id: str) -> DataFrame:
    """Quarantine rows for the records of a re-delivered export: images were meant for
    silver.frames, everything else but the category list for silver.annotations."""
    kept = copies.where(F.col("section") != "categories")
    target = F.when(F.col("section") == "images", FRAMES).otherwise(ANNOTATIONS)
    return ingest.quarantine_rows(kept, FRAMES, batch_id).withColumn("target_table", target)


# --- I/O ------------------------------------------------------------------------------
def land_new_files(spark: SparkSession, settings: Settings, batch_id: str,
                   progress: ingest.Progress) -> tuple[list[str], int]:
    landed = ingest.LandedFiles(spark, settings, BRONZE)
    coco = ingest.read_files(spark, settings, "annotations/coco", "*.json", landed=landed,
                             progress=progress).withColumn("format", F.lit("coco"))
    mot = ingest.read_files(spark, settings, "annotations/mot", "gt.txt", landed=landed,
                            progress=progress).withColumn("format", F.lit("mot"))
    files = ingest.unseen(spark, coco.unionByName(mot), landed).cache()
    names = sorted(r.source_file for r in files.select("source_file").collect())
    progress(f"[ingest_annotations] {len(names)} new export file(s) under {settings.landing_root}/annotations")
    added = 0
    if names:
        # An export with nothing in it (0 bytes, or only blanks) is one `file` record, quarantined as
        # empty_file, so it is reported by name; a COCO document that does not parse is one as well.
        whole = F.array(F.struct(F.lit("file").alias("section"), F.lit(1).cast("long").alias("record_no"),
                                 F.col("value").alias("payload")))
        records = files.select(
            "source_file", "source_sha256", "format",
            F.explode(F.when(ingest.blank(F.col("value")), whole)
                      .when(F.col("format") == "coco", ingest.json_document_records("value"))
                      .otherwise(ingest.lines(F.col("value")))).alias("r"),
            ingest.path_meta(F.col("source_file")).alias("import_meta"))
        bronze = ingest.to_bronze(records.select("source_file", "source_sha256", "format", "r.section",
                                                 "r.record_no", "r.payload", "import_meta"), batch_id,
                                  files).cache()
        added = bronze.count()
        delta_io.append(spark, settings, BRONZE, bronze, commit_metadata=ingest.batch_metadata(batch_id, landed))
        bronze.unpersist()
        progress(f"[ingest_annotations] bronze.annotations += {added} records (batch {batch_id})")
    landed.save()
    files.unpersist()
    return names, added


def capture_sizes(spark: SparkSession, settings: Settings) -> DataFrame:
    """Frame size, rate and length of every capture with a manifest (empty before the first one)."""
    if not delta_io.table_exists(spark, settings, "silver.captures"):
        return spark.createDataFrame([], "capture_id string, width int, height int, fps double, duration_s double")
    return delta_io.read_table(spark, settings, "silver.captures").select(
        "capture_id", "width", "height", "fps", "duration_s")


def frames_in_captures(frames: DataFrame, captures: DataFrame) -> DataFrame:
    """Frames with their capture's rate and length (for the frame-index range check)."""
    return frames.join(captures.select("capture_id", F.col("fps").alias("capture_fps"),
                                       F.col("duration_s").alias("capture_duration_s")), "capture_id", "left")


def annotations_in_frames(annotations: DataFrame, frames: DataFrame, captures: DataFrame) -> DataFrame:
    """Annotations with their frame's size (the export's, else the capture's) for the box checks."""
    sizes = (frames.select("capture_id", "frame_index", F.col("width").alias("fw"), F.col("height").alias("fh"))
             .join(captures.select("capture_id", F.col("width").alias("cw"), F.col("height").alias("ch")),
                   "capture_id", "left")
             .select("capture_id", "frame_index", F.coalesce("fw", "cw").alias("frame_width"),
                     F.coalesce("fh", "ch").alias("frame_height")))
    return annotations.join(sizes, ["capture_id", "frame_index"], "left")


def candidate_frames(records: DataFrame) -> DataFrame:
    return coco_frames(records).unionByName(mot_frames(ingest.mot_rows(records.where(F.col("format") == "mot"))))


def candidate_annotations(records: DataFrame) -> DataFrame:
    rows = ingest.mot_rows(records.where(F.col("format") == "mot"))
    return coco_annotations(records).unionByName(mot_annotations(rows))


@releases_cache
def run(spark: SparkSession, settings: Settings, progress: ingest.Progress = print) -> Report:
    batch_id = ingest.new_batch_id()
    names, added = land_new_files(spark, settings, batch_id, progress)
    ingest.crash_point("annotations:after_bronze")
    step = ingest.increment(spark, settings, "ingest_annotations", BRONZE, ANNOTATIONS,
                            fingerprint(FRAMES, ANNOTATIONS, QUARANTINE))
    if step is None:
        progress("[ingest_annotations] nothing new: silver.frames and silver.annotations are up to date")
        return Report(names, added, False, 0, 0, 0)
    progress(f"[ingest_annotations] judging {step.describe()}")
    reopened, stale = ingest.refresh(spark, settings, step, [FRAMES, ANNOTATIONS])
    records, copies = ingest.split_redeliveries(ingest.with_reopened(step, reopened),
                                                F.to_json(F.array_sort(F.map_entries("import_meta"))),
                                                None if step.full else step.catalog)
    records = records.cache()

    def earlier(parse):  # type: ignore[no-untyped-def]
        return lambda files: parse(step.files(files))

    # silver.annotations is Z-ordered by capture, and an annotation id starts with its capture id
    # (coco_annotations, mot_annotations): the look-up of earlier winners reads the increment's captures.
    frames, bad_frames, gone_frames, new_frames = ingest.reconcile(
        spark, settings, FRAMES, candidate_frames(records), ["capture_id", "frame_index"],
        contract(FRAMES).column_names, earlier(candidate_frames), step.full, replaced=step.replaced)
    annotations, bad_annotations, gone_annotations, new_annotations = ingest.reconcile(
        spark, settings, ANNOTATIONS, candidate_annotations(records), ["annotation_id"],
        contract(ANNOTATIONS).column_names, earlier(candidate_annotations), step.full, narrow=("capture_id",),
        replaced=step.replaced)
    rejected = (ingest.quarantine_rows(bad_frames, FRAMES, batch_id)
                .unionByName(ingest.quarantine_rows(bad_annotations, ANNOTATIONS, batch_id))
                .unionByName(ingest.quarantine_rows(ingest.file_failures(records), ANNOTATIONS, batch_id))
                .unionByName(redelivered_rows(copies, batch_id))).cache()
    frames, annotations = frames.cache(), annotations.cache()
    gone_frames = ingest.materialized(spark, gone_frames)
    gone_annotations = ingest.materialized(spark, gone_annotations)
    clock = ingest.Stopwatch(progress, "ingest_annotations")
    captures = capture_sizes(spark, settings)
    with quality.GateRun(spark, settings, "ingest_annotations", delta_io.marker_text(step.marker)) as gate_run:
        quality.gate(ingest.with_file_totals(rejected, records), QUARANTINE, gate_run)
        if not records.isEmpty():
            quality.gate(frames_in_captures(frames, captures), FRAMES, gate_run)
            quality.gate(annotations_in_frames(annotations, frames, captures), ANNOTATIONS, gate_run)
    clock.lap("parsed, checked and gated")
    quarantined = rejected.count()
    # Quarantine first, silver last: the marker on silver.annotations' commit says the batches are done.
    ingest.write_quarantine(spark, settings, rejected, quarantined, ingest.released(stale, rejected))
    ingest.crash_point("annotations:after_quarantine")
    clock.lap(f"{quarantined} record(s) quarantined")
    done = step.finished(spark, settings)
    marker = delta_io.marker_text(done)
    delta_io.merge(spark, settings, FRAMES, frames, commit_metadata=marker, delete_missing=step.full,
                   delete=gone_frames, insert_only=new_frames)
    ingest.crash_point("annotations:after_frames")
    delta_io.merge(spark, settings, ANNOTATIONS, annotations, commit_metadata=marker, delete_missing=step.full,
                   delete=gone_annotations, insert_only=new_annotations)
    delta_io.ensure_marker(spark, settings, ANNOTATIONS, done)
    clock.lap("silver.frames and silver.annotations merged")
    report = Report(names, added, True, frames.count(), annotations.count(), quarantined)
    progress(f"[ingest_annotations] published {report.frames} new or changed frames, {report.annotations} "
             f"annotations; {quarantined} record(s) in {QUARANTINE}")
    for df in (records, rejected, frames, annotations):
        df.unpersist()
    return report


def main(argv: list[str] | None = None) -> int:
    return job_main("ingest_annotations", __doc__, run, WRITES, argv)


if __name__ == "__main__":
    sys.exit(main())
