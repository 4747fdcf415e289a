"""Compare two model runs slice by slice: metrics with capture-bootstrap intervals, regressions under FDR control.

gold.detection_matches (and gold.tracking_metrics for MOTA/IDF1) + the scenario attributes of
silver.captures -> gold.slice_comparisons: per slice (the whole set, every single attribute and
every pair, plus combinations named with --by), AP, AP50, recall and precision at IoU .50 of
both runs and their difference, each with a 95% bootstrap interval (captures resampled, 1000
resamples, seed 0 unless told), Benjamini-Hochberg at 5% across every tested slice and metric,
and a flag where the candidate is significantly worse (regression) or better (improvement). See
scenelake/comparison.py for the statistics and their exact definitions.

Which runs: --baseline RUN --candidate RUN; without them (as the pipeline runs it), every
model's newest run is compared with the run before it (silver.model_runs by started_at, then
model_version, then run_id; runs with match records only), so a new run is compared with its
predecessor as soon as it is evaluated. A comparison is recomputed only when its inputs or
options changed. Prints the top regressions and improvements; exit code 3 with
--fail-on-regression when a regression is flagged (1 stays "a quality gate stopped a batch").
Runs as `scenelake compare ...`, `scenelake run compare ...`, or `spark-submit jobs/compare.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from scenelake import comparison, delta_io, ingest, quality
from scenelake.contracts import contract
from scenelake.job import job_main, releases_cache
from scenelake.settings import Settings
from scenelake.text import format_table

COMPARISONS = "gold.slice_comparisons"
MATCHES = "gold.detection_matches"
TRACKING = "gold.tracking_metrics"
CAPTURES = "silver.captures"
RUNS = "silver.model_runs"
REGRESSION_EXIT = 3


# The tables this job writes (the scheduler's assets: orchestration/definitions.py).
WRITES = [COMPARISONS]


@dataclass
class ComparisonReport:
    pairs: list[tuple[str, str]] = field(default_factory=list)
    skipped: bool = False
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    fail_on_regression: bool = False

    @property
    def regressions(self) -> int:
        return sum(int(((t["flag"] == "regression") & t["same_as"].isna()).sum()) for t in self.tables.values())


def _pandas(df: DataFrame) -> pd.DataFrame:
    """toPandas through Arrow (columnar: millions of match records in seconds, not minutes)."""
    key = "spark.sql.execution.arrow.pyspark.enabled"
    conf = df.sparkSession.conf
    before = conf.get(key, None)
    conf.set(key, "true")
    try:
        return cast(pd.DataFrame, df.toPandas())
    finally:
        if before is None:
            conf.unset(key)
        else:
            conf.set(key, before)


def comparison_id(baseline: str, candidate: str) -> str:
    return f"{baseline}..{candidate}"


def latest_pairs(runs: pd.DataFrame, evaluated: set[str]) -> list[tuple[str, str]]:
    """(previous run, newest run) of every model with at least two evaluated runs."""
    runs = runs[runs["run_id"].isin(evaluated)].copy()
    runs["started"] = pd.to_datetime(runs["started_at"], utc=True)
    pairs = []
    for _, model in runs.sort_values(["model_name", "started", "model_version", "run_id"],
                                     na_position="first").groupby("model_name", sort=True):
        if len(model) >= 2:
            pairs.append((str(model["run_id"].iloc[-2]), str(model["run_id"].iloc[-1])))
    return pairs


def attributes(captures: DataFrame) -> pd.DataFrame:
    """One row per capture, one string column per scenario attribute (the contract's `scenario: true` columns)."""
    columns = [F.col(a).cast("string").alias(a) for a in comparison.SCENARIO_ATTRIBUTES]
    return _pandas(captures.select("capture_id", *columns)).set_index("capture_id")


def records(matches: DataFrame, run_id: str) -> pd.DataFrame:
    """The run's evaluated records (area range all) with the columns comparison.RECORD_COLUMNS."""
    evaluated = (F.col("run_id") == run_id) & ((F.col("kind") == "ground_truth") | (F.col("rank") < 100))
    return _pandas(matches.where(evaluated).select(*comparison.RECORD_COLUMNS))


@releases_cache
def run(spark: SparkSession, settings: Settings, progress=print,  # type: ignore[no-untyped-def]
        baseline: str | None = None, candidate: str | None = None, by: list[str] | None = None,
        resamples: int = 1000, seed: int = 0, fdr: float = 0.05, min_captures: int = 5, min_ground_truth: int = 25,
        top: int = 10, plot: str | None = None, plot_metric: str = "ap",
        fail_on_regression: bool = False) -> ComparisonReport:
    if (baseline is None) != (candidate is None):
        raise SystemExit("[compare] error: give both --baseline and --candidate, or neither")
    if not delta_io.table_exists(spark, settings, MATCHES):
        progress("[compare] nothing to compare yet: gold.detection_matches is missing (run evaluate first)")
        return ComparisonReport(skipped=True)
    options = comparison.Options(resamples=resamples, seed=seed, fdr=fdr, min_captures=min_captures,
                                 min_ground_truth=min_ground_truth)
    combinations = [tuple(a.strip() for a in combo.split(",") if a.strip()) for combo in by or []]
    unknown = sorted({a for combo in combinations for a in combo} - set(comparison.SCENARIO_ATTRIBUTES))
    if unknown:
        raise SystemExit(f"[compare] error: unknown scenario attribute(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(comparison.SCENARIO_ATTRIBUTES)}")
    matches = delta_io.read_table(spark, settings, MATCHES)
    evaluated = {r[0] for r in matches.select("run_id").distinct().collect()}
    if baseline is not None and candidate is not None:
        missing = sorted({baseline, candidate} - evaluated)
        if missing:
            raise SystemExit(f"[compare] error: run(s) {', '.join(missing)} have no evaluation in {MATCHES}; "
                             "run `scenelake evaluate` first, or list runs with: scenelake query "
                             "\"select distinct run_id from delta.gold.detection_matches\"")
        pairs = [(baseline, candidate)]
    elif delta_io.table_exists(spark, settings, RUNS):
        runs = delta_io.read_table(spark, settings, RUNS).select(
            "run_id", "model_name", "model_version", F.col("started_at").cast("string").alias("started_at"))
        pairs = latest_pairs(_pandas(runs), evaluated)
    else:
        pairs = []
    report = ComparisonReport(pairs=pairs, fail_on_regression=fail_on_regression)
    if not pairs:
        progress("[compare] no pair of runs to compare (a model needs two evaluated runs)")
        return report

    # Data versions: compaction and VACUUM of an input never make a comparison run again.
    inputs = {t: delta_io.data_version(spark, settings, t) for t in (MATCHES, TRACKING, CAPTURES)}
    state = {"job": "compare", "inputs": inputs, "pairs": [list(p) for p in pairs], "options": asdict(options),
             "by": [list(c) for c in combinations]}
    marker = delta_io.marker_text(state)
    ids = [comparison_id(b, c) for b, c in pairs]
    where = f"comparison_id in ({', '.join(repr(i) for i in ids)})"
    if delta_io.last_marker(spark, settings, COMPARISONS, "compare") == json.loads(marker):
        progress("[compare] up to date: inputs and options unchanged since the last comparison")
        stored = _pandas(delta_io.read_table(spark, settings, COMPARISONS).where(where))
        report.tables = {i: stored[stored["comparison_id"] == i].reset_index(drop=True) for i in ids}
        report.skipped = True
    else:
        report.tables = _compute(spark, settings, progress, matches, pairs, options, combinations)
        if report.tables:
            frame = _spark_frame(spark, pd.concat(report.tables.values(), ignore_index=True))
            quality.gate(frame, COMPARISONS, quality.GateRun(spark, settings, "compare", marker))
            delta_io.replace_where(spark, settings, COMPARISONS, frame, where, marker)
            delta_io.ensure_marker(spark, settings, COMPARISONS, state)
    for cid, table in report.tables.items():
        for line in summary(cid, table, options, top):
            progress(line)
    if plot:
        from scenelake.plots import delta_chart

        for cid, table in report.tables.items():
            path = Path(plot) if len(report.tables) == 1 else Path(plot).with_stem(f"{Path(plot).stem}-{cid}")
            delta_chart(table, path, cid, plot_metric)
            progress(f"[compare] {cid}: slice delta chart written to {path}")
    return report


def _compute(spark: SparkSession, settings: Settings, progress, matches: DataFrame,  # type: ignore[no-untyped-def]
             pairs: list[tuple[str, str]], options: comparison.Options,
             combinations: list[tuple[str, ...]]) -> dict[str, pd.DataFrame]:
    watch = ingest.Stopwatch(progress, "compare")
    attrs = (attributes(delta_io.read_table(spark, settings, CAPTURES))
             if delta_io.table_exists(spark, settings, CAPTURES)
             else pd.DataFrame(columns=list(comparison.SCENARIO_ATTRIBUTES)).rename_axis("capture_id"))
    tracking = (_pandas(delta_io.read_table(spark, settings, TRACKING))
                if delta_io.table_exists(spark, settings, TRACKING) else None)

    def tracks(run_id: str) -> pd.DataFrame | None:
        if tracking is None:
            return None
        return comparison.tracking_frame(tracking[tracking["run_id"] == run_id])

    cached: dict[str, pd.DataFrame] = {}
    tables = {}
    computed_at = datetime.now(UTC)
    for baseline, candidate in pairs:
        for run_id in (baseline, candidate):
            if run_id not in cached:
                cached[run_id] = records(matches, run_id)
        cid = comparison_id(baseline, candidate)
        common = set(cached[baseline]["capture_id"]) & set(cached[candidate]["capture_id"])
        if not common:
            progress(f"[compare] {cid}: skipped, the runs were evaluated on no capture in common")
            continue
        watch.lap(f"{cid}: {sum(len(cached[r]) for r in (baseline, candidate))} match records read, "
                  f"{len(common)} captures in common")
        table = comparison.compare(cached[baseline], cached[candidate], attrs, options, combinations,
                                   tracks(baseline), tracks(candidate))
        table.insert(0, "candidate_run", candidate)
        table.insert(0, "baseline_run", baseline)
        table.insert(0, "comparison_id", cid)
        tables[cid] = table.assign(
            confidence=options.confidence, fdr_level=options.fdr, resamples=options.resamples, seed=options.seed,
            min_captures=options.min_captures, min_ground_truth=options.min_ground_truth, computed_at=computed_at)
        slices = table[table["metric"] == "ap"]
        watch.lap(f"{cid}: {len(slices)} slices ({int(slices['same_as'].isna().sum())} distinct), "
                  f"{int(table['tested'].sum())} tests, bootstrap with {options.resamples} resamples")
    return tables


def _spark_frame(spark: SparkSession, table: pd.DataFrame) -> DataFrame:
    """The rows as a DataFrame of the contract's schema; NaN (undefined) becomes null."""
    schema = contract(COMPARISONS)
    cleaned = table[schema.column_names].astype(object).where(table[schema.column_names].notna(), None)
    rows = [tuple(_python(v) for v in row) for row in cleaned.itertuples(index=False, name=None)]
    return spark.createDataFrame(rows, schema.spark_schema())


def _python(value: object) -> object:
    """numpy scalars and pandas timestamps -> Python values (Spark's row converter takes only the latter)."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") and not isinstance(value, datetime) else value


def _fmt(value: object, digits: int = 3) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def _with_interval(row: pd.Series, name: str, sign: bool = False) -> str:
    value = f"{float(row[name]):+.3f}" if sign else _fmt(row[name])
    return f"{value} [{_fmt(row[f'{name}_low'])}, {_fmt(row[f'{name}_high'])}]"


def summary(cid: str, table: pd.DataFrame, options: comparison.Options, top: int = 10) -> list[str]:
    """What an ML engineer reads first: how many flags, then the top regressions and improvements as tables."""
    own = table[table["same_as"].isna()]
    regressions, improvements = comparison.ranked(table, "regression"), comparison.ranked(table, "improvement")
    lines = [f"[compare] {cid}: {int((own['metric'] == 'ap').sum())} slices, {int(own['tested'].sum())} tests; "
             f"{options.resamples} capture resamples (seed {options.seed}), {options.confidence:.0%} intervals, "
             f"FDR {options.fdr:.0%}: {len(regressions)} regression(s), {len(improvements)} improvement(s)"]
    for title, rows in (("regressions", regressions), ("improvements", improvements)):
        if not len(rows):
            continue
        lines.append(f"[compare] top {title} ({cid}; delta = candidate - baseline, q = BH-adjusted p):")
        body = [[comparison.slice_label(r["slice_by"], r["slice_value"]), r["metric"], f"{r['num_captures']} captures, "
                 f"{r['num_frames']} frames, {r['num_ground_truth']} objects", _with_interval(r, "baseline"),
                 _with_interval(r, "candidate"), _with_interval(r, "delta", sign=True), f"{r['q_value']:.2g}"]
                for _, r in rows.head(top).iterrows()]
        lines.extend(format_table(["slice", "metric", "support", "baseline", "candidate", "delta", "q"],
                                  body).splitlines())
    return lines


def options(parser: argparse.ArgumentParser) -> None:
    defaults = comparison.Options()
    parser.add_argument("--baseline", metavar="RUN", help="run compared against (with --candidate)")
    parser.add_argument("--candidate", metavar="RUN", help="run under review (with --baseline)")
    parser.add_argument("--by", action="append", metavar="ATTR,ATTR,...",
                        help="also slice by this combination of scenario attributes (repeatable; singles and "
                             "pairs are always there)")
    parser.add_argument("--resamples", type=int, default=defaults.resamples, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="bootstrap seed")
    parser.add_argument("--fdr", type=float, default=defaults.fdr, help="false-discovery rate level")
    parser.add_argument("--min-captures", type=int, default=defaults.min_captures,
                        help="fewest captures for a slice to be tested")
    parser.add_argument("--min-ground-truth", type=int, default=defaults.min_ground_truth,
                        help="fewest ground-truth objects for a slice to be tested")
    parser.add_argument("--top", type=int, default=10, help="rows of each summary table")
    parser.add_argument("--plot", metavar="FILE.png", help="write the slice delta chart with intervals")
    parser.add_argument("--plot-metric", default="ap", choices=comparison.METRICS, help="metric of the chart")
    parser.add_argument("--fail-on-regression", action="store_true",
                        help=f"exit {REGRESSION_EXIT} when a regression is flagged")


def main(argv: list[str] | None = None) -> int:
    reports: list[ComparisonReport] = []

    def run_and_keep(spark: SparkSession, settings: Settings, **kwargs: object) -> ComparisonReport:
        report = run(spark, settings, **kwargs)  # type: ignore[arg-type]
        reports.append(report)
        return report

    code = job_main("compare", __doc__, run_and_keep, WRITES, argv, options)
    if code == 0 and reports and reports[0].fail_on_regression and reports[0].regressions:
        print(f"[compare] error: {reports[0].regressions} regression(s) flagged (--fail-on-regression)",
              file=sys.stderr)
        return REGRESSION_EXIT
    return code


if __name__ == "__main__":
    sys.exit(main())
