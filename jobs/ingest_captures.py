"""Land device upload manifests into bronze.captures and publish silver.captures and silver.subjects.

landing/manifests/*.jsonl -> bronze.captures (verbatim lines + file, digest, batch, load time)
-> silver.captures (typed, one row per capture, latest copy wins) and silver.subjects (one row
per subject of each published capture) after the quality gate.

Every manifest line ends in exactly one place: silver, or ops.quarantine with the rule it broke
(malformed_json, missing:<field>, type:<field>, range:<rule> from the contracts' allowed values
and bounds, duplicate_subject, duplicate_of:<file>:<line> for a capture sent again later or a
re-delivered file). Fields the contract does not know are kept in `extra`.

Incremental: a run judges only the bronze batches added since its last marker on
silver.captures; a capture sent again competes with the line that won it so far (latest
delivery wins) and replaces its subject list. A file already in bronze (same path and digest)
is skipped; with nothing new the job commits nothing. Quarantine is
written first and silver.captures last: its commit marks the rebuild as done. Runs as
`scenelake run ingest_captures` or `spark-submit jobs/ingest_captures.py`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from scenelake import delta_io, ingest, quality
from scenelake.contracts import contract, fingerprint, scenario_attributes
from scenelake.job import job_main, releases_cache
from scenelake.settings import Settings

BRONZE = "bronze.captures"
SILVER = "silver.captures"
SUBJECTS = "silver.subjects"
QUARANTINE = ingest.QUARANTINE
MANIFEST_DIR = "manifests"

MANIFEST_SCHEMA = T.StructType([
    T.StructField("capture_id", T.StringType()),
    T.StructField("source", T.StringType()),
    T.StructField("device", T.StructType([
        T.StructField("model", T.StringType()), T.StructField("serial", T.StringType())])),
    T.StructField("sensor", T.StringType()),
    T.StructField("resolution", T.StructType([
        T.StructField("width", T.IntegerType()), T.StructField("height", T.IntegerType())])),
    T.StructField("fps", T.DoubleType()),
    T.StructField("started_at", T.TimestampType()),
    T.StructField("duration_s", T.DoubleType()),
    T.StructField("region", T.StringType()),
    T.StructField("scenario", T.MapType(T.StringType(), T.StringType())),
    T.StructField("subjects", T.ArrayType(T.StructType([
        T.StructField("subject_id", T.StringType()), T.StructField("consent", T.StringType())]))),
])
# Where each silver.captures column that is not a scenario tag is in a manifest line.
DIRECT_PATHS = {
    "capture_id": "capture_id", "source": "source", "device_model": "device.model",
    "device_serial": "device.serial", "sensor": "sensor", "width": "resolution.width",
    "height": "resolution.height", "fps": "fps", "started_at": "started_at", "duration_s": "duration_s",
    "region": "region",
}
# Every other scenario attribute of the contract is a tag of the manifest's scenario map, promoted to
# its column; the tags no contract column names stay in `tags`.
PROMOTED_TAGS = tuple(name for name in scenario_attributes() if name not in DIRECT_PATHS)
FIELD_PATHS = {**DIRECT_PATHS, **{tag: f"scenario.{tag}" for tag in PROMOTED_TAGS}}
KNOWN_FIELDS = [f.name for f in MANIFEST_SCHEMA.fields]


# The tables this job writes (the scheduler's assets: orchestration/definitions.py).
WRITES = [BRONZE, SILVER, SUBJECTS, QUARANTINE]


@dataclass(frozen=True)
class IngestReport:
    new_files: list[str]
    bronze_rows_added: int
    silver_rebuilt: bool
    silver_rows: int
    warnings: list[str]
    subjects: int = 0
    quarantined: int = 0


# --- pure transforms ------------------------------------------------------------------
def split_lines(files: DataFrame) -> DataFrame:
    """(source_file, source_sha256, value=whole text) -> one row per non-empty line, 1-based."""
    return (files.select("source_file", "source_sha256", F.explode(ingest.lines(F.col("value"))).alias("r"))
            .select("source_file", "source_sha256", F.col("r.record_no").alias("line_number"),
                    F.col("r.payload").alias("payload")))


def consent_state(subjects: Column) -> Column:
    """One word for a capture's consent, from its subject list (see the captures contract)."""
    granted = F.size(F.filter(subjects, lambda s: s["consent"] == "granted"))
    return (F.when(subjects.isNull(), "unreported").when(F.size(subjects) == 0, "no_subjects")
            .when(granted == F.size(subjects), "all_granted").when(granted == 0, "none_granted")
            .otherwise("partial"))


def parse_captures(bronze: DataFrame) -> DataFrame:
    """Typed capture rows from manifest lines, each with its subject list, its unknown top-level
    fields and the first rule the line breaks (null when it is good)."""
    m = F.from_json("payload", MANIFEST_SCHEMA).alias("m")
    parsed = bronze.select("source_file", "line_number", "batch_id", "loaded_at", "payload", m)
    tags = F.col("m.scenario")
    extra_tags = F.map_filter(tags, lambda k, _v: ~k.isin(*PROMOTED_TAGS))
    subjects = F.col("m.subjects")
    typed = {
        "capture_id": F.col("m.capture_id"), "source": F.col("m.source"),
        "device_model": F.col("m.device.model"), "device_serial": F.col("m.device.serial"),
        "sensor": F.col("m.sensor"), "width": F.col("m.resolution.width"),
        "height": F.col("m.resolution.height"), "fps": F.col("m.fps"), "started_at": F.col("m.started_at"),
        "duration_s": F.col("m.duration_s"), "region": F.col("m.region"),
        **{tag: tags[tag] for tag in PROMOTED_TAGS},
    }
    return parsed.select(
        *[value.alias(name) for name, value in typed.items()],
        F.when(F.size(extra_tags) > 0, extra_tags).alias("tags"),
        consent_state(subjects).alias("consent_state"),
        ingest.extra_fields(F.col("payload"), KNOWN_FIELDS).alias("extra"),
        "source_file", "line_number", "batch_id", "loaded_at", "payload",
        subjects.alias("subjects"),
        line_rule(F.col("payload"), typed, subjects).alias("rule"),
    )


def line_rule(payload: Column, typed: dict[str, Column], subjects: Column) -> Column:
    """The first rule a manifest line breaks, in order: readable, complete, typed, in range."""
    captures, people = contract(SILVER), contract(SUBJECTS)
    required = [FIELD_PATHS[c.name] for c in captures.columns if c.name in FIELD_PATHS and not c.nullable]
    ids = F.transform(subjects, lambda s: s["subject_id"])

    def any_subject(broken: Callable[[Column], Column]) -> Column:
        return F.coalesce(F.exists(subjects, broken), F.lit(False))

    def consent(test: Callable[[Column], Column]) -> Callable[[Column], Column]:
        return lambda s: test(s["consent"])

    return ingest.first_failed_rule(
        ("malformed_json", ingest.malformed(payload)),
        *ingest.path_rules(payload, {FIELD_PATHS[name]: value for name, value in typed.items()}, required),
        ("type:subjects", F.get_json_object(payload, "$.subjects").isNotNull() & subjects.isNull()),
        ("missing:subjects.subject_id", any_subject(lambda s: s["subject_id"].isNull())),
        ("missing:subjects.consent", any_subject(lambda s: s["consent"].isNull())),
        *ingest.range_rules(captures, typed),
        *[(rule, any_subject(consent(test))) for rule, test in ingest.value_checks(people.column("consent"))],
        ("duplicate_subject", F.coalesce(F.size(F.array_distinct(ids)) < F.size(ids), F.lit(False))),
    )


def subject_rows(captures: DataFrame) -> DataFrame:
    """One row per subject of each published capture (its winning line's subject list)."""
    return captures.select("capture_id", F.explode("subjects").alias("s"), "source_file", "line_number",
                           "batch_id").select(
        "capture_id", F.col("s.subject_id").alias("subject_id"), F.col("s.consent").alias("consent"),
        "source_file", "line_number", "batch_id")


def split_captures(lines: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Good lines deduplicated per capture (with their subject list), and every rejected line
    (source_file, record_no, rule, payload).

    A re-delivered manifest's lines are duplicates of the original's; among the rest, the copy
    of a capture loaded last wins and the earlier copies name it."""
    originals, copies = ingest.split_redeliveries(lines.withColumn("record_no", F.col("line_number")), F.lit(""))
    rows = parse_captures(originals).withColumn("record_no", F.col("line_number"))
    good, rejected = ingest.split_good(rows, ["capture_id"], [*contract(SILVER).column_names, "subjects"])
    shape = ["source_file", "record_no", "rule", "payload"]
    return good, rejected.select(*shape).unionByName(copies.select(*shape))


# --- I/O ------------------------------------------------------------------------------
def read_new_files(spark: SparkSession, settings: Settings, landed: ingest.LandedFiles,
                   progress: ingest.Progress = ingest.silent) -> DataFrame:
    files = ingest.read_files(spark, settings, MANIFEST_DIR, "*.jsonl", landed=landed, progress=progress)
    return ingest.unseen(spark, files, landed)


def candidates(lines: DataFrame) -> DataFrame:
    """Parsed manifest lines (bronze rows) with the record number the quarantine keys on."""
    return parse_captures(lines.withColumn("record_no", F.col("line_number"))).withColumn(
        "record_no", F.col("line_number"))


@releases_cache
def run(spark: SparkSession, settings: Settings, progress=print) -> IngestReport:  # type: ignore[no-untyped-def]
    batch_id = ingest.new_batch_id()
    landed = ingest.LandedFiles(spark, settings, BRONZE)
    files = read_new_files(spark, settings, landed, progress).cache()
    new_files = sorted(r.source_file for r in files.select("source_file").collect())
    progress(f"[ingest_captures] {len(new_files)} new manifest file(s) in {settings.landing_root}")
    added = 0
    if new_files:
        lines = ingest.to_bronze(split_lines(files), batch_id, files)
        added = lines.count()
        delta_io.append(spark, settings, BRONZE, lines, commit_metadata=ingest.batch_metadata(batch_id, landed))
        progress(f"[ingest_captures] bronze.captures += {added} lines (batch {batch_id})")
    landed.save()
    files.unpersist()
    ingest.crash_point("captures:after_bronze")

    step = ingest.increment(spark, settings, "ingest_captures", BRONZE, SILVER,
                            fingerprint(SILVER, SUBJECTS, QUARANTINE))
    if step is None:
        rows = delta_io.read_table(spark, settings, SILVER).count() if delta_io.table_exists(
            spark, settings, SILVER) else 0
        progress(f"[ingest_captures] nothing new: silver.captures is up to date ({rows} rows)")
        return IngestReport(new_files, added, False, rows, [])
    progress(f"[ingest_captures] judging {step.describe()}")
    clock = ingest.Stopwatch(progress, "ingest_captures")
    reopened, stale = ingest.refresh(spark, settings, step, [SILVER])
    lines = ingest.with_reopened(step, reopened).withColumn("record_no", F.col("line_number"))
    originals, copies = ingest.split_redeliveries(
        lines, F.lit(""), None if step.full else step.catalog.withColumn("record_no", F.col("line_number")))
    originals = originals.cache()
    good, rejected, gone, fresh = ingest.reconcile(
        spark, settings, SILVER, candidates(originals.drop("record_no")), ["capture_id"],
        [*contract(SILVER).column_names, "subjects"], lambda names: candidates(step.files(names)), step.full,
        replaced=step.replaced)
    shape = ["source_file", "record_no", "rule", "payload"]
    rejected = rejected.select(*shape).unionByName(copies.select(*shape))
    good = good.cache()
    gone = ingest.materialized(spark, gone)
    captures, subjects = good.drop("subjects"), subject_rows(good).cache()
    quarantine = ingest.quarantine_rows(rejected, SILVER, batch_id).cache()
    with quality.GateRun(spark, settings, "ingest_captures", delta_io.marker_text(step.marker)) as gate_run:
        outcomes = quality.gate(ingest.with_file_totals(quarantine, lines), QUARANTINE, gate_run)
        if not originals.isEmpty():
            outcomes += quality.gate(captures, SILVER, gate_run) + quality.gate(subjects, SUBJECTS, gate_run)
    clock.lap("parsed, checked and gated")
    warnings = [o.summary() for o in outcomes if not o.success]
    quarantined = quarantine.count()
    # Quarantine first, silver.captures last: the marker on its commit says the batches are done. A
    # capture sent again replaces its subject list, so a subject dropped from the newer copy goes.
    ingest.write_quarantine(spark, settings, quarantine, quarantined, ingest.released(stale, quarantine))
    ingest.crash_point("captures:after_quarantine")
    clock.lap(f"{quarantined} line(s) quarantined")
    done = step.finished(spark, settings)
    marker = delta_io.marker_text(done)
    dropped = None
    if not step.full and delta_io.table_exists(spark, settings, SUBJECTS):
        # A capture sent again replaces its subject list; a capture no manifest holds any more (its
        # line gone from a corrected file) takes its subjects with it.
        held = delta_io.read_table(spark, settings, SUBJECTS)
        dropped = (held.join(good.select("capture_id"), "capture_id", "left_semi")
                   .join(subjects, ["capture_id", "subject_id"], "left_anti").select("capture_id", "subject_id"))
        if gone is not None:
            dropped = dropped.unionByName(held.join(gone, "capture_id", "left_semi").select("capture_id", "subject_id"))
    delta_io.merge(spark, settings, SUBJECTS, subjects, commit_metadata=marker, delete_missing=step.full,
                   delete=dropped)
    ingest.crash_point("captures:after_subjects")
    delta_io.merge(spark, settings, SILVER, captures, commit_metadata=marker, delete_missing=step.full, delete=gone,
                   insert_only=fresh)
    delta_io.ensure_marker(spark, settings, SILVER, done)
    clock.lap("silver.subjects and silver.captures merged")
    report = IngestReport(new_files, added, True, delta_io.read_table(spark, settings, SILVER).count(), warnings,
                          subjects.count(), quarantined)
    for df in (good, subjects, quarantine, originals):
        df.unpersist()
    progress(f"[ingest_captures] silver.captures published: {report.silver_rows} rows, {report.subjects} "
             f"new or changed subjects; {quarantined} line(s) in {QUARANTINE}; {len(outcomes)} checks passed "
             f"the gate ({len(warnings)} warnings)")
    return report


def main(argv: list[str] | None = None) -> int:
    return job_main("ingest_captures", __doc__, run, WRITES, argv)


if __name__ == "__main__":
    sys.exit(main())
