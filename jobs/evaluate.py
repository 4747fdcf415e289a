"""Evaluate model runs: COCO detection matching and metrics, MOTChallenge tracking metrics, into gold.

silver.{frames, annotations, predictions} -> gold.detection_matches (one row per prediction and
ground-truth object per run, match outcome at every IoU threshold and area range)
-> gold.detection_metrics (the 12 COCO numbers per run and class) and gold.tracking_metrics
(CLEAR-MOT and IDF1 per run and capture). Slice any of them by scenario in Trino with the views
in sql/gold/.

Each run is re-evaluated as a whole and replaces its previous rows in one commit per table. A
run is skipped when the silver tables have not changed since it was last evaluated, so a rerun
is a no-op. Runs as `scenelake evaluate [--run RUN_ID ...]`, `scenelake run evaluate`, or
`spark-submit jobs/evaluate.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from scenelake import delta_io, evaluation, ingest, quality
from scenelake.contracts import contract
from scenelake.job import job_main
from scenelake.settings import Settings

MATCHES = "gold.detection_matches"
METRICS = "gold.detection_metrics"
TRACKING = "gold.tracking_metrics"
INPUTS = ("silver.frames", "silver.annotations", "silver.predictions")
HEADLINE = ("ap", "ap50", "ap75", "ar100")


@dataclass
class EvaluationReport:
    runs: list[str] = field(default_factory=list)
    skipped: bool = False
    metrics: list[dict[str, object]] = field(default_factory=list)
    tracking: list[dict[str, object]] = field(default_factory=list)


def _in_list(column: str, values: list[str]) -> str:
    return f"{column} in ({', '.join(repr(v) for v in values)})"


def run(spark: SparkSession, settings: Settings, progress=print, runs: list[str] | None = None,  # type: ignore[no-untyped-def]
        ) -> EvaluationReport:
    if not all(delta_io.table_exists(spark, settings, t) for t in INPUTS):
        progress("[evaluate] nothing to evaluate yet: silver frames, annotations or predictions are missing")
        return EvaluationReport(skipped=True)
    versions = {t: delta_io.table_version(spark, settings, t) for t in INPUTS}
    marker = json.dumps({"inputs": versions, "runs": sorted(runs) if runs else "all"}, sort_keys=True)
    if delta_io.last_commit_metadata(spark, settings, METRICS) == marker:
        progress("[evaluate] up to date: silver has not changed since the last evaluation")
        return EvaluationReport(skipped=True)

    frames, annotations, predictions = (delta_io.read_table(spark, settings, t) for t in INPUTS)
    scoped = evaluation.scope(frames, predictions, runs).cache()
    run_ids = sorted(r[0] for r in scoped.select("run_id").distinct().collect())
    missing = sorted(set(runs or []) - set(run_ids))
    if missing:
        raise SystemExit(f"[evaluate] error: no predictions on labelled frames for run(s) {', '.join(missing)}; "
                         "list runs with: scenelake query \"select run_id from delta.silver.model_runs\"")
    report = EvaluationReport(runs=run_ids)
    if not run_ids:
        progress("[evaluate] no model run has predictions on labelled frames")
        return report
    where = _in_list("run_id", run_ids)
    watch = ingest.Stopwatch(progress, "evaluate")

    progress(f"[evaluate] matching {len(run_ids)} run(s): {', '.join(run_ids)}")
    gate_run = quality.GateRun(spark, settings, "evaluate", marker)
    written = evaluation.detection_matches(scoped, annotations, predictions).cache()
    quality.gate(written, MATCHES, gate_run)
    delta_io.replace_where(spark, settings, MATCHES, written, where, marker)
    watch.lap(f"{MATCHES} checked and written")

    # Read back (a lineage of its own: both sides of the accumulation's cogroup come from it).
    published = delta_io.read_table(spark, settings, MATCHES).where(where)
    curves = evaluation.detection_curves(published).toPandas()
    names = {int(r[0]): r[1] for r in published.where("category is not null")
             .groupBy("category_id").agg(F.min("category")).collect()}
    frame_counts = {r[0]: int(r[1]) for r in scoped.groupBy("run_id").count().collect()}
    report.metrics = evaluation.metrics_rows(curves, names, frame_counts)

    sequences = evaluation.tracking_counts(scoped, annotations, predictions).toPandas()
    report.tracking = evaluation.tracking_rows(sequences) if len(sequences) else []
    watch.lap("metrics computed")

    # Metrics last: its commit marker says the whole evaluation of these inputs is done.
    tracking = _frame(spark, TRACKING, report.tracking) if report.tracking else None
    metrics = _frame(spark, METRICS, report.metrics)
    if tracking is not None:
        quality.gate(tracking, TRACKING, gate_run)
    quality.gate(metrics, METRICS, gate_run)
    if tracking is not None:
        delta_io.replace_where(spark, settings, TRACKING, tracking, where, marker)
    delta_io.replace_where(spark, settings, METRICS, metrics, where, marker)
    scoped.unpersist()
    written.unpersist()
    for line in headline(report):
        progress(line)
    return report


def _frame(spark: SparkSession, name: str, rows: list[dict[str, object]]) -> DataFrame:
    table = contract(name)
    return spark.createDataFrame([tuple(r[c] for c in table.column_names) for r in rows], table.spark_schema())


def headline(report: EvaluationReport) -> list[str]:
    """The numbers an ML engineer looks at first, one line per run."""
    lines = []
    for row in report.metrics:
        if row["category"] != "all":
            continue
        numbers = "  ".join(f"{k.upper()} {_fmt(row[k])}" for k in HEADLINE)
        lines.append(f"[evaluate] {row['run_id']:24} {numbers}  ({row['num_ground_truth']} objects, "
                     f"{row['num_predictions']} predictions, {row['num_frames']} frames)")
    for row in report.tracking:
        if row["capture_id"] == "all":
            lines.append(f"[evaluate] {row['run_id']:24} MOTA {_fmt(row['mota'])}  IDF1 {_fmt(row['idf1'])}  "
                         f"IDSW {row['idsw']}  ({row['gt_ids']} tracks)")
    return lines


def _fmt(value: object) -> str:
    return "  n/a" if value is None else f"{float(value):.3f}"  # type: ignore[arg-type]


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="runs", action="append", metavar="RUN_ID",
                        help="evaluate only this model run (repeatable; default: every run)")


def main(argv: list[str] | None = None) -> int:
    return job_main("evaluate", __doc__, run, [MATCHES, METRICS, TRACKING], argv, options)


if __name__ == "__main__":
    sys.exit(main())
