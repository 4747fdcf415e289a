"""Evaluate model runs: COCO detection matching and metrics, MOTChallenge tracking metrics, into gold.

silver.{frames, annotations, predictions} (of the captures the consent policy lets the lake use, see
scenelake.consent: one with a pending or withdrawn subject is held out) -> gold.detection_matches
(one row per prediction and ground-truth object per run, match outcome at every IoU threshold and area range)
-> gold.detection_metrics (the 12 COCO numbers per run and class) and gold.tracking_metrics
(CLEAR-MOT and IDF1 per run and capture). Slice any of them by scenario in Trino with the views
in sql/gold/.

Incremental: only the (run, capture) groups whose predictions, annotations or frames changed
since the last evaluation (the silver tables' Change Data Feed; a capture whose subjects' consent
changed counts as changed) are matched again; their rows of
gold.detection_matches are replaced and every other group's are kept. The metrics of each
affected run are accumulated again from its whole match table (tracking: from the stored
per-capture counts), so they equal a from-scratch evaluation. With nothing changed (maintenance
commits change nothing) the job commits nothing. `--run` evaluates the named runs whole.
Runs as `scenelake evaluate [--run RUN_ID ...]`, `scenelake run evaluate`, or
`spark-submit jobs/evaluate.py`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from scenelake import consent, delta_io, evaluation, ingest, quality
from scenelake.contracts import contract
from scenelake.job import job_main, releases_cache
from scenelake.settings import Settings

MATCHES = "gold.detection_matches"
METRICS = "gold.detection_metrics"
TRACKING = "gold.tracking_metrics"
INPUTS = ("silver.frames", "silver.annotations", "silver.predictions")
# Read when it exists (imported datasets have no manifest): whose consent holds a capture out.
CONSENT = consent.SUBJECTS
KEYED = {"silver.frames": ["capture_id"], "silver.annotations": ["capture_id"],
         "silver.predictions": ["run_id", "capture_id"], CONSENT: ["capture_id"]}
HEADLINE = ("ap", "ap50", "ap75", "ar100")


# The tables this job writes (the scheduler's assets: orchestration/definitions.py).
WRITES = [MATCHES, METRICS, TRACKING]


@dataclass
class EvaluationReport:
    runs: list[str] = field(default_factory=list)
    skipped: bool = False
    metrics: list[dict[str, object]] = field(default_factory=list)
    tracking: list[dict[str, object]] = field(default_factory=list)


def _in_list(column: str, values: list[str]) -> str:
    return f"{column} in ({', '.join(repr(v) for v in values)})"


def _groups_condition(groups: dict[str, list[str]]) -> str:
    """SQL that holds for exactly the (run, capture) groups given (run -> its captures)."""
    return " or ".join(f"(run_id = {run!r} and {_in_list('capture_id', sorted(captures))})"
                       for run, captures in sorted(groups.items()))


def changed_groups(spark: SparkSession, settings: Settings, previous: dict[str, object],
                   versions: dict[str, int | None]) -> dict[str, set[str]] | None:
    """(run -> captures) whose predictions, annotations or frames changed since the `previous`
    evaluation, from the silver tables' Change Data Feed; None when the feed cannot tell."""
    seen = previous.get("inputs") or {}
    assert isinstance(seen, dict)
    changes: dict[str, list[tuple[object, ...]]] = {t: [] for t in KEYED}
    for table in versions:
        columns = KEYED[table]
        since, upto = seen.get(table), versions[table]
        if since is None or upto is None:
            return None
        found = delta_io.changed_keys(spark, settings, table, int(since), int(upto), columns)
        if found is None:
            return None
        changes[table] = found
    groups: dict[str, set[str]] = {}
    for run_id, capture_id in changes["silver.predictions"]:
        groups.setdefault(str(run_id), set()).add(str(capture_id))
    captures = sorted({str(c) for t in ("silver.frames", "silver.annotations", CONSENT) for (c,) in changes[t]})
    if captures:
        for run_id, capture_id in (delta_io.read_table(spark, settings, "silver.predictions")
                                   .where(F.col("capture_id").isin(captures))
                                   .select("run_id", "capture_id").distinct().collect()):
            groups.setdefault(str(run_id), set()).add(str(capture_id))
    return groups


@releases_cache
def run(spark: SparkSession, settings: Settings, progress=print, runs: list[str] | None = None,  # type: ignore[no-untyped-def]
        ) -> EvaluationReport:
    if not all(delta_io.table_exists(spark, settings, t) for t in INPUTS):
        progress("[evaluate] nothing to evaluate yet: silver frames, annotations or predictions are missing")
        return EvaluationReport(skipped=True)
    present = [*INPUTS, *([CONSENT] if delta_io.table_exists(spark, settings, CONSENT) else [])]
    versions = {t: delta_io.data_version(spark, settings, t) for t in present}
    marker: dict[str, object] = {"job": "evaluate", "inputs": versions, "runs": sorted(runs) if runs else "all"}
    previous = delta_io.last_marker(spark, settings, METRICS, "evaluate")
    if previous == marker:
        progress("[evaluate] up to date: silver has not changed since the last evaluation")
        return EvaluationReport(skipped=True)

    frames, annotations, predictions = (delta_io.read_table(spark, settings, t) for t in INPUTS)
    # Held-out captures (consent pending or withdrawn) have no frame to be evaluated on.
    frames = consent.usable(frames, delta_io.read_table(spark, settings, CONSENT) if CONSENT in versions else None)
    groups = None
    if not runs and previous is not None and previous.get("runs") == "all":
        groups = changed_groups(spark, settings, previous, versions)
    if groups is not None:
        # Only the groups that changed are matched again; every other row of the match table stays.
        progress(f"[evaluate] {sum(len(c) for c in groups.values())} changed (run, capture) group(s) "
                 f"in {len(groups)} run(s)")
        if not groups:
            delta_io.ensure_marker(spark, settings, METRICS, marker)
            return EvaluationReport(skipped=True)
        pairs = spark.createDataFrame([(r, c) for r, cs in groups.items() for c in cs],
                                      "run_id string, capture_id string")
        scoped = evaluation.scope(frames, predictions.join(pairs, evaluation.RUN_CAPTURE, "left_semi")).cache()
        run_ids = sorted(groups)
        replaced = _groups_condition({r: sorted(c) for r, c in groups.items()})
    else:
        scoped = evaluation.scope(frames, predictions, runs).cache()
        run_ids = sorted(r[0] for r in scoped.select("run_id").distinct().collect())
        missing = sorted(set(runs or []) - set(run_ids))
        if missing:
            raise SystemExit(f"[evaluate] error: no predictions on labelled frames for run(s) {', '.join(missing)}; "
                             "list runs with: scenelake query \"select run_id from delta.silver.model_runs\"")
        replaced = _in_list("run_id", run_ids) if run_ids else "false"
    report = EvaluationReport(runs=run_ids)
    if not run_ids:
        progress("[evaluate] no model run has predictions on labelled frames")
        return report
    where = _in_list("run_id", run_ids)
    watch = ingest.Stopwatch(progress, "evaluate")
    text = delta_io.marker_text(marker)

    progress(f"[evaluate] matching {len(run_ids)} run(s): {', '.join(run_ids)}")
    gate_run = quality.GateRun(spark, settings, "evaluate", text)
    written = evaluation.detection_matches(scoped, annotations, predictions).cache()
    quality.gate(written, MATCHES, gate_run)
    delta_io.replace_where(spark, settings, MATCHES, written, replaced, text)
    ingest.crash_point("evaluate:after_matches")
    watch.lap(f"{MATCHES} checked and written")

    # Read back (a lineage of its own: both sides of the accumulation's cogroup come from it). Metrics
    # are accumulated over each affected run's whole match table, so they equal a full evaluation.
    published = delta_io.read_table(spark, settings, MATCHES).where(where)
    curves = evaluation.detection_curves(published).toPandas()
    names = {int(r[0]): r[1] for r in published.where("category is not null")
             .groupBy("category_id").agg(F.min("category")).collect()}
    whole = scoped if groups is None else evaluation.scope(frames, predictions, run_ids)
    frame_counts = {r[0]: int(r[1]) for r in whole.groupBy("run_id").count().collect()}
    report.metrics = evaluation.metrics_rows(curves, names, frame_counts)

    sequences = evaluation.tracking_counts(scoped, annotations, predictions).toPandas()
    if groups is not None:
        sequences = _with_stored_sequences(spark, settings, sequences, groups)
    report.tracking = evaluation.tracking_rows(sequences) if len(sequences) else []
    watch.lap("metrics computed")

    # Metrics last: its commit marker says the whole evaluation of these inputs is done.
    tracking = _frame(spark, TRACKING, report.tracking) if report.tracking else None
    metrics = _frame(spark, METRICS, report.metrics)
    with gate_run:
        if tracking is not None:
            quality.gate(tracking, TRACKING, gate_run)
        quality.gate(metrics, METRICS, gate_run)
    if tracking is not None:
        delta_io.replace_where(spark, settings, TRACKING, tracking, where, text)
    delta_io.replace_where(spark, settings, METRICS, metrics, where, text)
    delta_io.ensure_marker(spark, settings, METRICS, marker)
    scoped.unpersist()
    written.unpersist()
    for line in headline(report):
        progress(line)
    return report


def _with_stored_sequences(spark: SparkSession, settings: Settings, fresh: pd.DataFrame,
                           groups: dict[str, set[str]]) -> pd.DataFrame:
    """The per-capture tracking counts of the affected runs: the fresh ones of the changed groups
    and the stored ones of every other capture (the run's `all` row sums them all)."""
    if not delta_io.table_exists(spark, settings, TRACKING):
        return fresh
    # The per-alpha HOTA parts too: the run's `all` row sums them over its captures like the counts.
    columns = ["run_id", "capture_id", "num_frames", *evaluation.TRACKING_COUNTS, *evaluation.HOTA_PARTS]
    stored = pd.DataFrame(delta_io.read_table(spark, settings, TRACKING)
                          .where(F.col("run_id").isin(sorted(groups)) & (F.col("capture_id") != "all"))
                          .select(*columns).toPandas())
    # A boolean Series, not a list: `frame[[]]` (no stored row) would select no *columns*.
    unchanged = pd.Series([c not in groups.get(r, set()) for r, c in zip(stored["run_id"], stored["capture_id"],
                                                                         strict=True)], index=stored.index, dtype=bool)
    kept = stored[unchanged].astype({c: "float64" for c in evaluation.TRACKING_COUNTS})
    parts = [p for p in (fresh, kept) if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else fresh


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
    return job_main("evaluate", __doc__, run, WRITES, argv, options)


if __name__ == "__main__":
    sys.exit(main())
