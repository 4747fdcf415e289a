"""Land device upload manifests into bronze.captures and publish a gated silver.captures.

landing/manifests/*.jsonl -> bronze.captures (verbatim lines + file, digest, batch, load time)
-> silver.captures (typed, one row per capture, latest copy wins) after the quality gate.

Reruns converge: a file already in bronze (same path and digest) is skipped, and silver is
rebuilt only when bronze moved past the version silver was built from. Runs as
`scenelake run ingest_captures` or `spark-submit jobs/ingest_captures.py`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from scenelake import delta_io, ingest, quality
from scenelake.job import job_main
from scenelake.settings import Settings

BRONZE = "bronze.captures"
SILVER = "silver.captures"
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
])
PROMOTED_TAGS = ("environment", "lighting", "motion")


@dataclass(frozen=True)
class IngestReport:
    new_files: list[str]
    bronze_rows_added: int
    silver_rebuilt: bool
    silver_rows: int
    warnings: list[str]


# --- pure transforms ------------------------------------------------------------------
def split_lines(files: DataFrame) -> DataFrame:
    """(source_file, source_sha256, value=whole text) -> one row per non-empty line, 1-based."""
    return (files.select("source_file", "source_sha256", F.explode(ingest.lines(F.col("value"))).alias("r"))
            .select("source_file", "source_sha256", F.col("r.record_no").alias("line_number"),
                    F.col("r.payload").alias("payload")))


def parse_captures(bronze: DataFrame) -> DataFrame:
    """Typed capture rows from manifest lines; unparseable fields become nulls for the gate."""
    m = F.from_json("payload", MANIFEST_SCHEMA).alias("m")
    parsed = bronze.select("source_file", "line_number", "batch_id", "loaded_at", m)
    tags = F.col("m.scenario")
    extra = F.map_filter(tags, lambda k, _v: ~k.isin(*PROMOTED_TAGS))
    return parsed.select(
        F.col("m.capture_id").alias("capture_id"),
        F.col("m.source").alias("source"),
        F.col("m.device.model").alias("device_model"),
        F.col("m.device.serial").alias("device_serial"),
        F.col("m.sensor").alias("sensor"),
        F.col("m.resolution.width").alias("width"),
        F.col("m.resolution.height").alias("height"),
        F.col("m.fps").alias("fps"),
        F.col("m.started_at").alias("started_at"),
        F.col("m.duration_s").alias("duration_s"),
        F.col("m.region").alias("region"),
        *[tags[t].alias(t) for t in PROMOTED_TAGS],
        F.when(F.size(extra) > 0, extra).alias("tags"),
        "source_file", "line_number", "batch_id", "loaded_at",
    )


def latest_per_capture(captures: DataFrame) -> DataFrame:
    """One row per capture_id: the copy loaded last wins, then the later file and line."""
    order = Window.partitionBy("capture_id").orderBy(
        F.col("loaded_at").desc(), F.col("source_file").desc(), F.col("line_number").desc())
    return (captures.withColumn("_rank", F.row_number().over(order))
            .where("_rank = 1").drop("_rank", "loaded_at"))


# --- I/O ------------------------------------------------------------------------------
def read_new_files(spark: SparkSession, settings: Settings) -> DataFrame:
    files = ingest.read_files(spark, settings, MANIFEST_DIR, "*.jsonl")
    return ingest.unseen(spark, settings, files, BRONZE)


def run(spark: SparkSession, settings: Settings, progress=print) -> IngestReport:  # type: ignore[no-untyped-def]
    batch_id = ingest.new_batch_id()
    files = read_new_files(spark, settings).cache()
    new_files = sorted(r.source_file for r in files.select("source_file").collect())
    progress(f"[ingest_captures] {len(new_files)} new manifest file(s) in {settings.landing_root}")
    added = 0
    if new_files:
        lines = ingest.to_bronze(split_lines(files), batch_id)
        added = lines.count()
        delta_io.append(spark, settings, BRONZE, lines, commit_metadata=f"batch={batch_id}")
        progress(f"[ingest_captures] bronze.captures += {added} lines (batch {batch_id})")
    files.unpersist()

    bronze_version = delta_io.table_version(spark, settings, BRONZE)
    built_from = f"bronze_version={bronze_version}"
    if bronze_version is None or delta_io.last_commit_metadata(spark, settings, SILVER) == built_from:
        rows = delta_io.read_table(spark, settings, SILVER).count() if bronze_version is not None else 0
        progress(f"[ingest_captures] silver.captures up to date ({rows} rows)")
        return IngestReport(new_files, added, False, rows, [])

    bronze = delta_io.read_table(spark, settings, BRONZE, version=bronze_version)
    silver = latest_per_capture(parse_captures(bronze)).cache()
    gate_run = quality.GateRun(spark, settings, "ingest_captures", f"{BRONZE}@{bronze_version}")
    outcomes = quality.gate(silver, SILVER, gate_run)
    warnings = [o.summary() for o in outcomes if not o.success]
    delta_io.merge(spark, settings, SILVER, silver, commit_metadata=built_from)
    rows = silver.count()
    silver.unpersist()
    progress(f"[ingest_captures] silver.captures published: {rows} rows, "
             f"{len(outcomes)} checks passed the gate ({len(warnings)} warnings)")
    return IngestReport(new_files, added, True, rows, warnings)


def main(argv: list[str] | None = None) -> int:
    return job_main("ingest_captures", __doc__, run, [BRONZE, SILVER], argv)


if __name__ == "__main__":
    sys.exit(main())
