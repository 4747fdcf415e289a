"""Trino against DuckDB on the same Delta tables, after maintenance: time ratios and files read.

Synthesises a lake at the silver and gold layers with Spark (not through ingestion and evaluation,
which would take most of an hour at this size here): silver.captures, silver.frames,
silver.annotations, silver.model_runs, silver.predictions (N predictions over R model runs) and
gold.detection_matches for every run, each written in several appends of small files as hourly
batches would be, with the contracts' partitioning. Then it runs jobs/maintain.py (compaction with
the contracts' Z-order into files of --target-file-mb, of every partition with at least
--min-small-files small files; VACUUM; Trino's ANALYZE) and prints the data files per table
before and after.

The same queries then run on the embedded Trino (trino client) and on DuckDB with its Delta
extension (the duckdb-ext-delta wheel, loaded from disk: no download), each written once in Trino
SQL and transpiled with sqlglot (read="trino", write="duckdb"). In DuckDB every table is a view
`<layer>.<table>` over `delta_scan('<path>')` and the views in sql/gold/ are created from their
files, transpiled, so the queries run unchanged. Each query runs once to warm up, then --repeats
times on each side; the table gives the medians, the ratio Trino/DuckDB, whether the results are
equal (exactly, doubles to 1e-9) and, for filtered queries, the share of the table's data files
Trino read. Method: the splits of the query's table scans, from Trino's record of the query
(/v1/query/<id>, operator summaries); every file is compacted to at most --target-file-mb (below
Trino's 32 MB initial split size), so one split is one file, which the output checks on an
unfiltered scan of the same table.

  .venv/bin/python bench/trino_vs_duckdb.py --predictions 10000000

Trino is the one at SCENELAKE_TRINO_PORT (started with `scenelake trino up` when not running).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlglot  # noqa: E402
from sqlglot import exp  # noqa: E402

from scenelake import delta_io, maintenance, views  # noqa: E402
from scenelake.contracts import all_contracts, contract  # noqa: E402
from scenelake.settings import Settings, load_settings  # noqa: E402

LIGHTING = ["bright", "dim", "dark"]
MOTION = ["static", "walking", "running"]
ENVIRONMENT = ["indoor", "outdoor"]
TABLES = ("silver.captures", "silver.frames", "silver.annotations", "silver.model_runs", "silver.predictions",
          "gold.detection_matches")


# --- the lake ---------------------------------------------------------------------------
def build_lake(spark, settings: Settings, predictions: int, runs: int, captures: int, frames: int,  # type: ignore[no-untyped-def]
               batches: int) -> dict[str, str]:
    """Write the synthetic tables; returns the run ids."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    def pick(values: list[str], seed: Any) -> Any:
        return F.element_at(F.array(*[F.lit(v) for v in values]), (F.abs(F.hash(seed)) % len(values) + 1).cast("int"))

    def conform(df, name: str):  # type: ignore[no-untyped-def]
        table = contract(name)
        return df.select(*[(F.col(c.name) if c.name in df.columns else F.lit(None)).cast(c.type).alias(c.name)
                           for c in table.columns])

    def write(df, name: str, parts: int) -> None:  # type: ignore[no-untyped-def]
        """`batches` appends, each of `parts` files per partition: the small files hourly batches leave."""
        for b in range(batches):
            chunk = df.where(F.col("_batch") == b).drop("_batch", "_r").repartition(parts)
            delta_io.append(spark, settings, name, conform(chunk, name))

    run_ids = {f"run-{k}": f"person-v{k + 1}" for k in range(runs)}
    cap = spark.range(captures).select(
        F.format_string("cap-%05d", "id").alias("capture_id"), F.lit("real").alias("source"),
        pick(["PixelCam 4", "NightEye IR2", "Orbit 2"], F.col("id") * 7).alias("device_model"),
        pick(["rgb", "ir"], F.col("id") * 11).alias("sensor"), F.lit(1280).alias("width"), F.lit(720).alias("height"),
        F.lit(30.0).alias("fps"), F.timestamp_seconds(F.lit(1793491200) + F.col("id") * 3600).alias("started_at"),
        (F.lit(frames) / 30.0 * 4).alias("duration_s"), pick(["eu-west", "us-east"], F.col("id") * 13).alias("region"),
        pick(ENVIRONMENT, F.col("id") * 3).alias("environment"), pick(LIGHTING, F.col("id") * 5).alias("lighting"),
        pick(MOTION, F.col("id") * 17).alias("motion"),
        pick(["none", "partial", "heavy"], F.col("id") * 19).alias("occlusion"),
        pick(["1", "2-5", "6+"], F.col("id") * 23).alias("crowd"),
        F.lit("no_subjects").alias("consent_state"), F.lit("bench").alias("source_file"),
        F.col("id").alias("line_number"), F.lit("bench").alias("batch_id"),
        (F.col("id") % batches).alias("_batch"))
    write(cap, "silver.captures", 1)
    frame = spark.range(captures * frames).select(
        F.format_string("cap-%05d", (F.col("id") / frames).cast("long")).alias("capture_id"),
        (F.col("id") % frames).alias("frame_index"), F.lit(1280).alias("width"), F.lit(720).alias("height"),
        ((F.col("id") % frames) % 5 == 0).alias("labelled"), F.lit("bench").alias("source_file"),
        ((F.col("id") / frames).cast("long") % batches).alias("_batch"))
    write(frame, "silver.frames", 2)
    labelled = captures * ((frames + 4) // 5)
    gt = spark.range(labelled * 3).select(
        "id", (F.col("id") / 3).cast("long").alias("lf")).select(
        "id", F.format_string("cap-%05d", (F.col("lf") / ((frames + 4) // 5)).cast("long")).alias("capture_id"),
        ((F.col("lf") % ((frames + 4) // 5)) * 5).alias("frame_index"),
        ((F.col("lf") / ((frames + 4) // 5)).cast("long") % batches).alias("_batch"))
    box = (F.abs(F.hash("id")) % 1000).cast("double")
    ann = gt.select(F.format_string("%s:b1:%d", "capture_id", "id").alias("annotation_id"), "capture_id", "frame_index",
                    F.lit("person").alias("category"), F.lit(1).cast("long").alias("category_id"), box.alias("x"),
                    (box / 2).alias("y"), F.lit(60.0).alias("w"), F.lit(150.0).alias("h"), F.lit(9000.0).alias("area"),
                    F.lit(False).alias("is_crowd"), F.lit("b1").alias("label_batch"),
                    F.lit("bench").alias("source_file"), F.col("id").alias("record_no"), "_batch")
    write(ann, "silver.annotations", 2)
    model_runs = spark.createDataFrame([(r, "person-detector", v, "bench", k % batches) for k, (r, v) in
                                        enumerate(run_ids.items())],
                                       "run_id string, model_name string, model_version string, source_file string, "
                                       "_batch long")
    write(model_runs, "silver.model_runs", 1)
    per_run = predictions // runs
    run_array = F.array(*[F.lit(r) for r in run_ids])
    pred = spark.range(per_run * runs).select(
        "id", (F.col("id") / per_run).cast("int").alias("_r"), (F.col("id") % per_run).alias("i")).select(
        "id", "_r", F.element_at(run_array, F.col("_r") + 1).alias("run_id"),
        ((F.col("i") * 7919) % (captures * frames)).alias("g"))
    pred = pred.select(
        "run_id", "_r", F.format_string("p%d", "id").alias("prediction_id"),
        F.format_string("cap-%05d", (F.col("g") / frames).cast("long")).alias("capture_id"),
        (F.col("g") % frames).alias("frame_index"), F.lit("person").alias("category"),
        F.lit(1).cast("long").alias("category_id"), (F.abs(F.hash("id")) % 1200).cast("double").alias("x"),
        (F.abs(F.hash("id", F.lit(1))) % 600).cast("double").alias("y"), F.lit(60.0).alias("w"),
        F.lit(150.0).alias("h"),
        ((F.abs(F.hash("id", F.lit(2))) % 10000) / 10000.0).alias("score"), F.lit("bench").alias("source_file"),
        F.col("id").alias("record_no"), (F.col("id") % batches).alias("_batch"))
    write(pred, "silver.predictions", 1)
    # Match records: each prediction on a labelled frame (an outcome from its hash) and each object, per run.
    on_labelled = pred.where(F.col("frame_index") % 5 == 0)
    # About a third of the detections are true positives (fewer than the objects); one at IoU
    # threshold t is one at every lower threshold: bits 0..k. Synthetic outcomes, not a matching.
    positive = (F.col("score") > 0.3) & (F.abs(F.hash("prediction_id", F.lit(3))) % 2 == 0)
    tp = F.when(positive, F.expr("shiftleft(1, abs(hash(prediction_id)) % 10 + 1) - 1")).otherwise(F.lit(0))
    dets = on_labelled.select(
        "run_id", "_r", "capture_id", "frame_index", "category_id", "category", F.lit("prediction").alias("kind"),
        F.col("prediction_id").alias("object_id"), "score", F.lit(9000.0).alias("area"), F.lit(False).alias("is_crowd"),
        F.row_number().over(Window.partitionBy("run_id", "capture_id", "frame_index")
                            .orderBy(F.desc("score"), "prediction_id")).cast("int").alias("rank"),
        tp.cast("int").alias("tp_all"), F.lit(0).alias("ig_all"), "_batch")
    objects = ann.crossJoin(spark.createDataFrame([(k, r) for k, r in enumerate(run_ids)], "_r int, run_id string"))
    found = F.when(F.abs(F.hash("annotation_id", "run_id")) % 10 < 6, F.lit(1023)).otherwise(F.lit(0))
    objs = objects.select(
        "run_id", "_r", "capture_id", "frame_index", "category_id", "category", F.lit("ground_truth").alias("kind"),
        F.col("annotation_id").alias("object_id"), F.lit(None).cast("double").alias("score"), "area", "is_crowd",
        F.lit(None).cast("int").alias("rank"), found.cast("int").alias("tp_all"), F.lit(0).alias("ig_all"), "_batch")
    matches = dets.unionByName(objs)
    for area in ("small", "medium", "large"):
        matches = matches.withColumn(f"tp_{area}", F.col("tp_all")).withColumn(f"ig_{area}", F.col("ig_all"))
    write(matches, "gold.detection_matches", 1)
    return run_ids


# --- the queries ------------------------------------------------------------------------
def coverage_sql() -> str:
    return """
with frame_counts as (
  select f.capture_id, count(*) as frames, count_if(f.labelled) as labelled_frames
  from silver.frames as f
  group by f.capture_id
),
object_counts as (
  select a.capture_id, count(*) as objects
  from silver.annotations as a
  group by a.capture_id
)
select
  c.lighting, c.motion, c.environment, c.occlusion,
  count(*) as captures,
  sum(coalesce(f.frames, 0)) as frames,
  sum(coalesce(f.labelled_frames, 0)) as labelled_frames,
  sum(coalesce(o.objects, 0)) as objects,
  round(sum(c.duration_s) / 3600, 6) as hours
from silver.captures as c
left join frame_counts as f on f.capture_id = c.capture_id
left join object_counts as o on o.capture_id = c.capture_id
group by 1, 2, 3, 4
order by 1, 2, 3, 4
"""


def queries(run_a: str, run_b: str, capture: str) -> list[tuple[str, str, str | None]]:
    """(name, Trino SQL, the table whose share of files is reported, or None)."""
    slice_sql = views.slice_query(["lighting"], [run_a, run_b]) + "\norder by 1, 2, 3"
    return [
        ("slice metrics, 2 runs", slice_sql, None),
        ("  files: detection_matches run_id in (A, B)",
         f"select count(*) from gold.detection_matches where run_id in ('{run_a}', '{run_b}')",
         "gold.detection_matches"),
        ("coverage by scenario", coverage_sql(), None),
        ("one capture's predictions",
         f"select run_id, frame_index, prediction_id, x, y, score from silver.predictions "
         f"where capture_id = '{capture}' order by run_id, frame_index, prediction_id", "silver.predictions"),
        ("one capture's annotations",
         f"select frame_index, annotation_id, x, y, w, h from silver.annotations "
         f"where capture_id = '{capture}' order by frame_index, annotation_id", "silver.annotations"),
        ("one run's predictions, filtered count",
         f"select count(*), round(avg(score), 9) from silver.predictions where run_id = '{run_a}' and score >= 0.5",
         "silver.predictions"),
    ]


def duckdb_connection(settings: Settings, tables: list[str]):  # type: ignore[no-untyped-def]
    import duckdb
    import duckdb_ext

    extensions = os.path.join(next(iter(duckdb_ext.__path__)), "extensions")
    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false",
                                 "extension_directory": extensions, "threads": "2"})
    con.execute("load delta")
    for name in tables:
        layer, table = name.split(".")
        con.execute(f"create schema if not exists {layer}")
        con.execute(f"create or replace view {layer}.{table} as select * from "
                    f"delta_scan('{settings.table_path(layer, table)}')")
    for view in views.deployable(tables):  # the views over the benchmark's tables, in dependency order
        con.execute(f"create or replace view {view.name} as {to_duckdb(view.sql)}")
    return con


def to_duckdb(trino_sql: str) -> str:
    """sqlglot's transpilation, plus the Trino functions it passes through unchanged (DuckDB lacks them)."""
    tree = sqlglot.parse_one(trino_sql, read="trino")

    def fix(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Anonymous) and node.name.lower() == "bitwise_right_shift":
            return exp.paren(exp.BitwiseRightShift(this=node.expressions[0], expression=node.expressions[1]))
        if isinstance(node, exp.Anonymous) and node.name.lower() == "bitwise_left_shift":
            return exp.paren(exp.BitwiseLeftShift(this=node.expressions[0], expression=node.expressions[1]))
        return node

    return tree.transform(fix).sql(dialect="duckdb")


def same(a: list[list[Any]], b: list[list[Any]]) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        if len(ra) != len(rb):
            return False
        for x, y in zip(ra, rb, strict=True):
            if isinstance(x, float) or isinstance(y, float):
                if x is None or y is None:
                    if x is not y:
                        return False
                elif not (math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-9)
                          or (math.isnan(float(x)) and math.isnan(float(y)))):
                    return False
            elif str(x) != str(y):  # Decimal vs int, datetime renderings
                return False
    return True


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=10_000_000, help="rows of silver.predictions")
    parser.add_argument("--runs", type=int, default=8, help="model runs (at least 6, so one run is < 20%% of files)")
    parser.add_argument("--captures", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=250, help="frames per capture (every 5th is labelled)")
    parser.add_argument("--batches", type=int, default=6, help="appends per table before maintenance")
    parser.add_argument("--target-file-mb", type=int, default=16, help="compaction target file size")
    parser.add_argument("--min-small-files", type=int, default=2,
                        help="compact a partition holding this many small files (the pipeline's default is 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per query and engine (after a warm-up)")
    parser.add_argument("--lake", default="/tmp/scenelake-bench-trino-duckdb/lake",
                        help="lake root; reused when it holds every table (--rebuild to start over)")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    import shutil

    import jobs.maintain as maintain
    from scenelake.spark import get_spark
    from scenelake.trino_client import query, query_with_info, register_tables, scan_splits
    from scenelake.trino_server import TrinoServer

    settings = load_settings().with_overrides(
        lake_root=args.lake, compact_target_file_mb=args.target_file_mb,
        compact_small_file_mb=max(1, args.target_file_mb // 2), compact_min_small_files=args.min_small_files)
    spark = get_spark("bench-trino-duckdb", settings)
    started = time.perf_counter()
    reuse = not args.rebuild and all(delta_io.table_exists(spark, settings, n) for n in TABLES)
    if reuse:
        run_ids = [r.run_id for r in delta_io.read_table(spark, settings, "silver.model_runs")
                   .orderBy("run_id").collect()]
        print(f"reusing the lake at {args.lake}")
    else:
        shutil.rmtree(args.lake, ignore_errors=True)
        run_ids = sorted(build_lake(spark, settings, args.predictions, args.runs, args.captures, args.frames,
                                    args.batches))
        print(f"built the lake at {args.lake} in {time.perf_counter() - started:.0f}s")
    counts = {n: delta_io.read_table(spark, settings, n).count() for n in TABLES}
    print("rows: " + ", ".join(f"{n} {c:,}" for n, c in counts.items()), flush=True)

    TrinoServer(settings).up(timeout=300)
    started = time.perf_counter()
    reports = maintain.run(spark, settings, progress=print)
    print(f"maintenance took {time.perf_counter() - started:.0f}s")
    register_tables(settings, [tuple(n.split(".")) for n in all_contracts()  # type: ignore[misc]
                               if delta_io.table_exists(spark, settings, n)])
    views.deploy(settings)
    files = {n: len(maintenance.data_files(spark, settings.table_path(*n.split(".")))) for n in TABLES}
    spark.stop()

    print("\ndata files per table, before -> after maintenance:")
    for r in reports:
        print(f"  {r.table:26} {r.files_before:>5} -> {r.files_after}")

    con = duckdb_connection(settings, list(TABLES))
    run_a, run_b = run_ids[0], run_ids[1]
    rows = []
    for name, sql, table in queries(run_a, run_b, "cap-00123"):
        duck_sql = to_duckdb(sql)
        trino_s, trino_rows = timed(lambda sql=sql: query(settings, sql), args.repeats)
        duck_s, duck_rows = timed(lambda q=duck_sql: [list(r) for r in con.execute(q).fetchall()], args.repeats)
        share = ""
        if table:
            _, info = query_with_info(settings, sql)
            _, full = query_with_info(settings, f"select count(*) from {table}")
            read, total = scan_splits(info), scan_splits(full)
            check = "" if total == files[table] else f" (unfiltered scan {total} splits != {files[table]} files!)"
            share = f"{read}/{files[table]} = {read / files[table]:.1%}{check}"
        rows.append((name, trino_s, duck_s, same(trino_rows, duck_rows), share, len(trino_rows)))
        print(f"  {name}: Trino {trino_s:.2f}s DuckDB {duck_s:.2f}s", flush=True)

    print(f"\n{counts['silver.predictions']:,} predictions, {len(run_ids)} runs; medians of {args.repeats} runs "
          "after a warm-up; load average at the end "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared)")
    print(f"{'query':44} | {'Trino s':>8} | {'DuckDB s':>8} | {'Trino/DuckDB':>12} | {'equal':5} | rows | "
          "files Trino read (splits/data files)")
    for name, t, d, eq, share, n in rows:
        print(f"{name:44} | {t:8.2f} | {d:8.2f} | {t / d:12.2f} | {'yes' if eq else 'NO':5} | {n:>4} | {share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
