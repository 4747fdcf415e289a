"""The `scenelake` command: run jobs, manage the embedded Trino, query the lake.

Every subcommand reads the environment from scenelake.settings (SCENELAKE_ENV, default
`embedded`), so the same commands work against a cluster.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import click

from scenelake.settings import PROJECT_ROOT, SettingsError, load_settings
from scenelake.text import format_table

JOBS_DIR = PROJECT_ROOT / "jobs"


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"scenelake: error: {message}", err=True)
    sys.exit(code)


def job_names() -> list[str]:
    return sorted(p.stem for p in JOBS_DIR.glob("*.py") if not p.stem.startswith("_"))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """scenelake: Spark + Delta Lake + Trino lakehouse for people-understanding models.

    \b
    Quick start:  make run        (set up, start Trino, run the pipeline on a sample)
                  make test       (the whole suite against real Spark and Trino)
    Environment:  SCENELAKE_ENV=embedded|cluster-local|cluster, overrides SCENELAKE_<KEY> (see conf/).
    """


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("job", required=False)
@click.pass_context
def run(ctx: click.Context, job: str | None) -> None:
    """Run JOB (a module in jobs/) with its own arguments; without JOB, list the jobs.

    The same file runs under a scheduler as `spark-submit $(scenelake submit-args) jobs/JOB.py`.
    """
    if job is None:
        for name in job_names():
            doc = (importlib.import_module(f"jobs.{name}").__doc__ or "").strip().splitlines()
            click.echo(f"{name:24} {doc[0] if doc else ''}")
        return
    if job not in job_names():
        _fail(f"no job {job!r}; jobs: {', '.join(job_names())}")
    module = importlib.import_module(f"jobs.{job}")
    sys.exit(module.main(ctx.args))


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--run", "runs", multiple=True, metavar="RUN_ID", help="evaluate only this model run (repeatable)")
@click.option("--register/--no-register", default=True, show_default=True,
              help="register the gold tables and deploy the views in Trino afterwards")
def evaluate(runs: tuple[str, ...], register: bool) -> None:
    """Evaluate model runs into gold (COCO detection, MOTChallenge tracking) and print the headline numbers.

    \b
    Writes gold.detection_matches (one row per prediction and object, match outcome at every IoU
    threshold), gold.detection_metrics (the 12 COCO numbers per run and class) and
    gold.tracking_metrics (MOTA, IDF1, ... per run and capture). Slice them by scenario with
    `scenelake slice --by lighting,motion` or the views in sql/gold/. A rerun with unchanged
    silver tables is a no-op. Same as `scenelake run evaluate`.
    """
    from jobs import evaluate as job

    args = [a for r in runs for a in ("--run", r)] + ([] if register else ["--no-register"])
    sys.exit(job.main(args))


@main.command()
@click.option("--subject", metavar="ID", help="the subject id (as the device manifests give it) to erase")
@click.option("--reason", metavar="TEXT", help="why, e.g. the ticket (recorded in ops.erasures; never the id)")
@click.option("--by", metavar="NAME", help="who asked (recorded; default: $USER)")
@click.option("--verify", metavar="ID", help="only scan every file for the subject id and report; change nothing")
def forget(subject: str | None, reason: str | None, by: str | None, verify: str | None) -> None:
    """Erase a subject who withdrew consent: every capture they appear in, everywhere, provably.

    \b
    Removes those captures whole from every table (and what was derived from them), the raw
    records and quarantined payloads that mention them, their landed files (a manifest keeps its
    other lines), recomputes the affected runs' metrics, purges the earlier versions of every
    table it changed, scans every file for the ids and records the request in ops.erasures
    (admins only). Needs Trino (the subject is recorded as a keyed hash). Exit 4: the proof
    found something left. Same as `scenelake run forget`.
    """
    from jobs import forget as job

    args = [a for flag, value in (("--subject", subject), ("--reason", reason), ("--by", by), ("--verify", verify))
            if value for a in (flag, value)]
    sys.exit(job.main(args))


@main.command("slice")
@click.option("--by", default="", metavar="ATTR[,ATTR...]",
              help="columns of gold.detection_evaluation to group by: any scenario attribute (the columns "
                   "of silver.captures flagged `scenario: true`, e.g. lighting, motion, occlusion), "
                   "model_version, category")
@click.option("--run", "runs", multiple=True, metavar="RUN_ID", help="only this model run (repeatable)")
@click.option("--sql", "show_sql", is_flag=True, help="print the SQL instead of running it")
def slice_cmd(by: str, runs: tuple[str, ...], show_sql: bool) -> None:
    """COCO AP, AP50, AP75, AR100, recall and precision at IoU .50 per slice, computed in Trino.

    Each slice's numbers are what pycocotools gives on that slice's frames alone. The query is
    the view gold.detection_slice_metrics regrouped by sqlglot: print it with --sql to reuse it.
    """
    from scenelake import views

    attributes = [a.strip() for a in by.split(",") if a.strip()]
    try:
        sql = views.slice_query(attributes, list(runs) or None)
    except views.ViewError as exc:
        _fail(str(exc))
    if show_sql:
        click.echo(sql)
        return
    _print_query(sql + "\nORDER BY 1, 3")


@main.command("export")
@click.option("--run", "run_id", metavar="RUN_ID", help="model run whose failures to export")
@click.option("--where", default="", metavar="CONDITION",
              help="which frames, as a Trino condition on the scenario attributes (the columns of "
                   "silver.captures flagged `scenario: true`), capture_id and frame_index, e.g. "
                   "\"lighting = 'dark' and motion = 'running'\" (default: every frame of the run)")
@click.option("--kind", type=click.Choice(["false_negatives", "false_positives", "all"]), default="false_negatives",
              show_default=True, help="frames holding a missed object, a false detection, or either")
@click.option("--iou", default=0.5, show_default=True, help="IoU threshold of a match (.50, .55, ... .95)")
@click.option("--format", "fmt", type=click.Choice(["coco"]), default="coco", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="folder to write the files into")
@click.option("--again", type=click.Path(exists=True, path_type=Path), metavar="EXPORT",
              help="repeat an earlier export (its folder or export.json): same run, filter, kind, threshold "
                   "and table versions")
@click.option("--user", default=None, help="Trino user (default: the configured one)")
def export_cmd(run_id: str | None, where: str, kind: str, iou: float, fmt: str, out: Path | None,
               again: Path | None, user: str | None) -> None:
    """Write a slice's failing frames as COCO files, to relabel them or train on them.

    \b
    OUT/ground_truth.json  the frames (images), every object evaluated on them, their categories
    OUT/results.json       every detection of the run on those frames, with its score
    OUT/export.json        run, filter, kind, threshold, table versions read, counts
    Each annotation and detection carries its `outcome` at the threshold (missed / found / ignored,
    false_positive / true_positive / ignored / not_ranked). Both files load in pycocotools and import
    back with `scenelake import coco`. Read through Trino, under the user's access rules.
    """
    from scenelake import export

    if out is None:
        _fail("--out is required: the folder to write the files into")
    assert out is not None
    try:
        versions = None
        if again is not None:
            earlier = export.recorded(again)
            run_id, where, kind, iou, versions = (earlier["run_id"], earlier["where"], earlier["kind"],
                                                  float(earlier["iou"]), earlier["versions"])
        if not run_id:
            _fail("--run is required (or --again EXPORT); list the runs with: "
                  "scenelake sql \"select distinct run_id from gold.detection_metrics\"")
        assert run_id is not None
        export.export_failures(load_settings(), run_id, where, kind, out, iou, versions, user,
                               progress=lambda line: click.echo(line, err=True))
    except export.ExportError as exc:
        _fail(str(exc))


@main.group()
def quality() -> None:
    """Quality gate results and operator decisions on stopped batches."""


@quality.command("accept")
@click.option("--table", required=True, help="table of the stopped batch, e.g. silver.predictions")
@click.option("--batch-key", required=True, help="batch key printed by the gate that stopped it")
@click.option("--reason", required=True, help="why it may be published anyway (recorded)")
@click.option("--by", default=None, help="who accepts it (default: $USER)")
def quality_accept(table: str, batch_key: str, reason: str, by: str | None) -> None:
    """Accept a stopped batch: the next run of its job publishes it, its failures recorded as accepted."""
    import getpass

    from scenelake import quality as gates
    from scenelake.contracts import ContractError
    from scenelake.spark import get_spark

    settings = load_settings()
    try:
        gates.accept(get_spark("quality-accept", settings), settings, table, batch_key, reason,
                     by or getpass.getuser())
    except (ValueError, ContractError) as exc:
        _fail(str(exc))
    click.echo(f"accepted {table} batch {batch_key}; rerun its job to publish it")


@quality.command("docs")
def quality_docs() -> None:
    """Print where the Great Expectations Data Docs of the gates are (open index.html in a browser)."""
    index = load_settings().state_dir / "data_docs" / "index.html"
    if not index.exists():
        _fail(f"no Data Docs yet at {index}: they are written when a job's quality gate runs")
    click.echo(str(index))


@quality.command("results")
@click.option("--table", default=None, help="only this table")
@click.option("--failed", is_flag=True, help="only expectations that were not met")
@click.option("--limit", default=30, show_default=True)
def quality_results(table: str | None, failed: bool, limit: int) -> None:
    """The newest gate results from ops.quality_results (through Trino)."""
    from sqlglot import exp

    where: list[exp.Expr] = []
    if table:
        where.append(exp.column("table_name").eq(exp.Literal.string(table)))
    if failed:
        where.append(exp.not_(exp.column("success")))
    select = (exp.select("checked_at", "job", "table_name", "expectation", "severity", "success", "outcome",
                         "unexpected_count", "observed_value", "batch_key")
              .from_(f"{load_settings().trino_catalog}.ops.quality_results")
              .order_by("checked_at DESC").limit(limit))
    for condition in where:
        select = select.where(condition)
    _print_query(select.sql(dialect="trino"))


@main.command()
@click.option("--markdown", "out", type=click.Path(path_type=Path), help="write the full catalog as a Markdown page")
def catalog(out: Path | None) -> None:
    """Every table and view: grain, columns, descriptions, PII flags (from schemas/ and sql/)."""
    from scenelake import catalog as cat

    if out is not None:
        out.write_text(cat.markdown() + "\n")
        click.echo(f"wrote {out}")
        return
    click.echo(format_table(["table", "columns", "pii", "grain"],
                            [[n, c, p, g if len(g) < 90 else g[:87] + "..."] for n, g, c, p in cat.summary()]))


@main.command("lineage")
@click.argument("view", required=False)
@click.option("--column", default=None, help="only this column")
def lineage_cmd(view: str | None, column: str | None) -> None:
    """Column-level lineage of a view back to table columns (sqlglot); without VIEW, every view."""
    from scenelake import views

    names = [view] if view else [v.name for v in views.all_views()]
    try:
        for name in names:
            for col, sources in views.lineage(name, column).items():
                click.echo(f"{name}.{col} <- {', '.join(sources) or '(computed)'}")
    except views.ViewError as exc:
        _fail(str(exc))


@main.command("compare", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--baseline", metavar="RUN", help="run compared against")
@click.option("--candidate", metavar="RUN", help="run under review")
@click.option("--by", "combinations", multiple=True, metavar="ATTR,ATTR,...",
              help="also slice by this combination of scenario attributes (repeatable)")
@click.option("--fail-on-regression", is_flag=True, help="exit 3 when a regression is flagged")
@click.option("--plot", type=click.Path(dir_okay=False), metavar="FILE.png",
              help="write the slice delta chart with intervals")
@click.pass_context
def compare_cmd(ctx: click.Context, baseline: str | None, candidate: str | None, combinations: tuple[str, ...],
                fail_on_regression: bool, plot: str | None) -> None:
    """Compare two runs slice by slice: deltas with bootstrap intervals, regressions under FDR control.

    \b
    Every single scenario attribute and every pair (plus --by combinations): AP, AP50, recall and
    precision at IoU .50 of both runs and the difference, 95% intervals from 1000 resamples of
    captures, Benjamini-Hochberg at 5%; rows in gold.slice_comparisons. Prints the top
    regressions and improvements. Without --baseline/--candidate, each model's newest run is
    compared with its previous one. The job's other options pass through: --resamples N,
    --seed N, --fdr Q, --min-captures N, --min-ground-truth N, --top N, --plot-metric METRIC,
    --no-register (all described by `python jobs/compare.py --help`).
    """
    from jobs import compare as job

    args = [*(["--baseline", baseline] if baseline else []), *(["--candidate", candidate] if candidate else []),
            *(a for c in combinations for a in ("--by", c)), *(["--fail-on-regression"] if fail_on_regression else []),
            *(["--plot", plot] if plot else []), *ctx.args]
    sys.exit(job.main(args))


@main.command("report")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("reports"),
              show_default=True, help="folder to write the HTML into")
@click.option("--timeout", default=600, show_default=True, help="seconds a notebook cell may run")
def report_cmd(out_dir: Path, timeout: int) -> None:
    """Execute notebooks/*.ipynb against Trino and write them as HTML with their figures into --out.

    Needs a running Trino with the lake's tables (make run). `make report` runs this.
    """
    from nbclient.exceptions import CellExecutionError

    from scenelake.report import render

    try:
        rendered = render(out_dir, timeout=timeout)
    except CellExecutionError as exc:
        _fail(f"a notebook cell failed (is Trino up with the lake's tables? make run):\n{exc}")
    for item in rendered:
        click.echo(f"{item.html} ({item.figures} figures) from {item.notebook.name}")
    click.echo(f"report: {out_dir.resolve() / 'index.html'}")


@main.command("submit-args")
def submit_args_cmd() -> None:
    """Print the spark-submit arguments (master, Delta jars, confs) of this environment."""
    from scenelake.spark import SparkSetupError, submit_args

    try:
        click.echo(" ".join(submit_args()))
    except SparkSetupError as exc:
        _fail(str(exc))


@main.command("plan")
def plan_cmd() -> None:
    """Print, as JSON for a scheduler, the pipeline's steps in order with the tables each writes, and
    where this environment's Trino is (the scheduler's gate checks read ops.quality_results there)."""
    import json

    from jobs import pipeline

    settings = load_settings()
    trino = {"host": settings.trino_host, "port": settings.trino_port, "user": settings.trino_user,
             "catalog": settings.trino_catalog}
    click.echo(json.dumps({"env": settings.env, "steps": pipeline.plan(), "trino": trino}, indent=1))


@main.command("landing-files")
def landing_files_cmd() -> None:
    """Print every file in the landing zone with its size, one per line ("path size"), sorted: a
    scheduler's sensor starts the pipeline when this changes."""
    settings = load_settings()
    root = settings.landing_root
    if root.startswith("s3a://"):
        from scenelake import objectstore

        try:
            found = objectstore.sizes(settings, root)
        except objectstore.ObjectStoreError as exc:
            _fail(str(exc))
    else:
        base = Path(root.removeprefix("file://"))
        found = {str(p.relative_to(base)): p.stat().st_size for p in base.rglob("*") if p.is_file()}
    for name in sorted(found):
        click.echo(f"{name} {found[name]}")


@main.group()
def deploy() -> None:
    """The Kubernetes manifests of a real cluster (deploy/kubernetes): Spark jobs, the Hive metastore, Trino."""


@deploy.command("render")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder to write into (default: deploy/kubernetes)")
def deploy_render(out: Path | None) -> None:
    """Regenerate the ConfigMaps that come from the code (Trino's catalog and access rules, the
    metastore's settings) for the selected profile: run with SCENELAKE_ENV=cluster after a contract,
    access-rule or profile change. The workloads beside them are written by hand."""
    from scenelake import deploy as manifests
    from scenelake.settings import SettingsError

    try:
        changed = manifests.render(load_settings(), out or manifests.DEPLOY_DIR)
    except SettingsError as exc:
        _fail(str(exc))
    click.echo("\n".join(f"wrote {p}" for p in changed) if changed else "the manifests are up to date")


@main.group()
def cluster() -> None:
    """Start, stop and inspect the local cluster (SCENELAKE_ENV=cluster-local): a Spark standalone
    master and two workers, an S3 object store holding the landing zone and the lake, a Hive metastore
    that Spark and Trino share, and Trino on it.

    \b
    Quick start:  export SCENELAKE_ENV=cluster-local
                  make setup-cluster && scenelake cluster up
                  scenelake generate --captures 8 && scenelake run pipeline
    spark-submit:  eval "$(scenelake cluster env)" (the store's keys), then
                   spark-submit $(scenelake submit-args) jobs/pipeline.py
    """


def _cluster():  # type: ignore[no-untyped-def]
    from scenelake.cluster import ClusterError, LocalCluster

    try:
        return LocalCluster(load_settings())
    except ClusterError as exc:
        _fail(str(exc))


@cluster.command("up")
@click.option("--timeout", default=180, show_default=True, help="seconds to wait for every part")
def cluster_up(timeout: int) -> None:
    """Start the object store, the Hive metastore, the Spark master, the workers and Trino (those
    already running stay) and wait until the workers have registered and Trino takes queries."""
    from scenelake.cluster import ClusterError

    try:
        parts = _cluster().up(timeout=timeout, progress=click.echo)
    except ClusterError as exc:
        _fail(str(exc))
    for part in parts:
        click.echo(part.detail)


@cluster.command("down")
def cluster_down() -> None:
    """Stop every part of the local cluster (the data stays under the state folder)."""
    stopped = _cluster().down()
    click.echo(f"stopped {', '.join(stopped)}" if stopped else "the local cluster was not running")


@cluster.command("env")
def cluster_env() -> None:
    """Print the object store's credentials as shell exports, for processes that start a JVM before
    any scenelake code runs (spark-submit, a scheduler's task): eval "$(scenelake cluster env)"."""
    import shlex

    for key, value in _cluster().credentials().items():
        click.echo(f"export {key}={shlex.quote(value)}")


@cluster.command("status")
def cluster_status() -> None:
    """Say which parts run; exit 1 when one does not."""
    parts = _cluster().status()
    for part in parts:
        click.echo(part.detail)
    sys.exit(0 if all(p.running for p in parts) else 1)


@main.group()
def trino() -> None:
    """Start, stop and inspect the embedded single-node Trino server."""


def _server():  # type: ignore[no-untyped-def]
    from scenelake.trino_server import TrinoServer

    return TrinoServer(load_settings())


@trino.command()
@click.option("--timeout", default=180, show_default=True, help="seconds to wait for readiness")
def up(timeout: int) -> None:
    """Start Trino (no-op when it already runs) and wait until it accepts queries."""
    from scenelake.trino_server import TrinoServerError

    try:
        status = _server().up(timeout=timeout)
    except TrinoServerError as exc:
        _fail(str(exc))
    click.echo(status.detail)


@trino.command()
def down() -> None:
    """Stop Trino."""
    click.echo("Trino stopped" if _server().down() else "Trino was not running")


@trino.command()
def status() -> None:
    """Say whether Trino runs; exit 1 when it does not (or is not ready yet)."""
    current = _server().status()
    click.echo(current.detail)
    sys.exit(0 if current.ready else 1)


@main.command()
@click.argument("sql")
@click.option("--user", default=None, help="Trino user (default: the configured one)")
def query(sql: str, user: str | None) -> None:
    """Run SQL on Trino and print the rows as a table."""
    _print_query(sql, user)


def _print_query(sql: str, user: str | None = None) -> None:
    from scenelake.trino_client import connect

    cur = connect(load_settings(), user).cursor()
    try:
        cur.execute(sql)
        rows = cur.fetchall()
    except Exception as exc:  # the client's errors carry Trino's message
        _fail(str(getattr(exc, "message", exc)))
    click.echo(format_table([d[0] for d in cur.description], rows))


@main.command("sql", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--user", default=None, help="Trino user (default: the configured one, e.g. analyst)")
@click.pass_context
def sql_cmd(ctx: click.Context, user: str | None) -> None:
    """Open Trino's own CLI (the executable jar `make setup` fetched) on the lake; extra arguments
    go to it, e.g. `scenelake sql --user analyst --execute "show tables from silver"`."""
    import os

    settings = load_settings()
    jar = settings.cache_dir / "trino-cli.jar"
    if not jar.exists():
        _fail(f"{jar} is missing: run `make setup`")
    java = shutil.which("java") or ""
    if not java:
        _fail("no `java` on PATH: install a JDK (17 or newer) to run the Trino CLI")
    args = [java, "-jar", str(jar), "--server", f"{settings.trino_host}:{settings.trino_port}",
            "--catalog", settings.trino_catalog, "--user", user or settings.trino_user, *ctx.args]
    os.execv(java, args)


@main.group("access")
def access_group() -> None:
    """Trino access control generated from the contracts' PII flags (scenelake.access)."""


@access_group.command("rules")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write rules.json here (for a cluster's security.config-file) instead of printing it")
def access_rules(out: Path | None) -> None:
    """Print (or write) the file-based access control rules for the configured catalog."""
    import json

    from scenelake import access
    from scenelake.trino_server import refresh_access_rules

    settings = load_settings()
    text = json.dumps(access.rules(settings.trino_catalog), indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text)
    click.echo(f"wrote {out}")
    if refresh_access_rules(settings):
        click.echo("and refreshed the embedded server's rules")


@access_group.command("init")
def access_init() -> None:
    """Create the masking key table (ops.mask_keys) on a running Trino if it is missing (a cluster
    needs this once; the embedded server does it when it starts)."""
    from scenelake import access

    access.ensure_key_table(load_settings())
    click.echo("ops.mask_keys holds the masking key (readable by pipeline and admin only)")


@access_group.command("matrix")
def access_matrix() -> None:
    """Who sees what: every group x table ('*'), PII column and hidden table ($history, ...), allowed / masked /
    denied, and what a mask shows."""
    from scenelake import access

    rows: list[list[object]] = [list(r) for r in access.matrix()]
    click.echo(format_table(["group", "table", "column", "access", "how"], rows))


@main.command()
def tables() -> None:
    """Row counts of every table registered in Trino."""
    from scenelake.trino_client import row_counts

    settings = load_settings()
    counts = row_counts(settings)
    click.echo(format_table(["table", "rows"], counts))


@main.command()
def connect_info() -> None:
    """How to reach Trino: CLI, Python client, JDBC URL."""
    click.echo(connection_help(load_settings()))


def connection_help(settings) -> str:  # type: ignore[no-untyped-def]
    host, port, cat = settings.trino_host, settings.trino_port, settings.trino_catalog
    return "\n".join([
        f"Trino at http://{host}:{port} (catalog {cat}, schemas bronze/silver/gold)",
        f"  CLI:    scenelake query \"select * from {cat}.silver.captures limit 5\"",
        f"          scenelake sql --user analyst    (Trino's CLI: java -jar {settings.cache_dir}/trino-cli.jar "
        f"--server {host}:{port} --catalog {cat} --user analyst)",
        f"  Python: trino.dbapi.connect(host='{host}', port={port}, user='analyst', catalog='{cat}')",
        f"  SQLAlchemy: sqlalchemy.create_engine('trino://analyst@{host}:{port}/{cat}')",
        f"  JDBC:   jdbc:trino://{host}:{port}/{cat}?user=analyst",
        "  Users (dev mode, no password): analyst, ml_engineer, pipeline, admin; see `scenelake access matrix`",
    ])


@main.group("import")
def import_group() -> None:
    """Land standard files (COCO, MOTChallenge) in the landing zone for the ingestion jobs."""


def _land(gt: Path | None, results: Path | None, capture_id: str, label_batch: str | None, run_id: str | None,
          model: tuple[str, str], gt_flag: str, land_gt, results_format: str) -> None:  # type: ignore[no-untyped-def]
    """The shared body of `import coco` and `import mot`: ground truth and/or one run's results."""
    from scenelake import landing

    settings = load_settings()
    try:
        if gt is None and results is None:
            raise landing.LandingError(f"give {gt_flag}, --results or both")
        landed = []
        if gt is not None:
            landed.append(land_gt(settings, gt, capture_id, label_batch or capture_id))
        if results is not None:
            if not run_id:
                raise landing.LandingError("--results needs --run-id")
            landed.append(landing.model_run(settings, run_id, *model))
            landed.append(landing.predictions(settings, results, run_id, capture_id, results_format))
    except landing.LandingError as exc:
        _fail(str(exc))
    for path in landed:
        click.echo(f"landed {path}")


def _run_options(func):  # type: ignore[no-untyped-def]
    for option in reversed([
        click.option("--label-batch", help="label batch of the ground truth (default: the capture id)"),
        click.option("--run-id", help="model run of the results (required with --results)"),
        click.option("--model-name", default="unknown", show_default=True),
        click.option("--model-version", default="unknown", show_default=True),
    ]):
        func = option(func)
    return func


@import_group.command("coco")
@click.option("--annotations", "gt", type=click.Path(exists=True, path_type=Path),
              help="COCO instances JSON (ground truth)")
@click.option("--results", type=click.Path(exists=True, path_type=Path), help="COCO results JSON (detections)")
@click.option("--dataset", required=True, help="capture id the images belong to, e.g. coco-val2014-100")
@_run_options
def import_coco(gt: Path | None, results: Path | None, dataset: str, label_batch: str | None,
                run_id: str | None, model_name: str, model_version: str) -> None:
    """Land a COCO annotation file and/or a COCO results file."""
    from scenelake import landing

    _land(gt, results, dataset, label_batch, run_id, (model_name, model_version), "--annotations",
          landing.coco_annotations, "coco_results")


@import_group.command("mot")
@click.option("--gt", type=click.Path(exists=True, path_type=Path), help="gt.txt or a sequence folder")
@click.option("--results", type=click.Path(exists=True, path_type=Path), help="tracker output (MOT text)")
@click.option("--sequence", required=True, help="sequence name, used as the capture id (e.g. TUD-Campus)")
@_run_options
def import_mot(gt: Path | None, results: Path | None, sequence: str, label_batch: str | None,
               run_id: str | None, model_name: str, model_version: str) -> None:
    """Land a MOTChallenge ground truth and/or a tracker's output for one sequence."""
    from scenelake import landing

    _land(gt, results, sequence, label_batch, run_id, (model_name, model_version), "--gt",
          landing.mot_ground_truth, "mot")


@main.command("generate")
@click.option("--out", type=click.Path(path_type=Path), help="landing folder to write (default: the landing zone)")
@click.option("--captures", default=20, show_default=True, help="number of capture sessions")
@click.option("--seed", default=0, show_default=True, help="random seed (same seed, same files)")
@click.option("--defect-rate", default=0.0, show_default=True,
              help="share of records damaged (malformed, mistyped, out of range, duplicated, ...)")
def generate_cmd(out: Path | None, captures: int, seed: int, defect_rate: float) -> None:
    """Write a realistic landing zone: manifests, COCO and MOT ground truth, two model runs.

    \b
    Runs person-v1 and person-v2 predict on every labelled frame, as JSON lines, Parquet, COCO
    results and MOT tracker output. Recall falls with dim/dark light and heavy occlusion;
    person-v2 is better everywhere except the PLANTED REGRESSION: lighting=dark with
    motion=running, where its recall is halved. With --defect-rate, damaged records are listed
    in OUT/ledger.jsonl with the quarantine rule the pipeline must give them, and one of each
    file-level fault is planted: a truncated manifest and prediction file, a capture and some
    detections sent again in another file, a manifest, prediction file and COCO export
    re-delivered under another name, and an upload with a field no contract knows (null rule:
    published, kept in `extra`). OUT/truth.json describes the captures and the regression.
    """
    from scenelake.generator import generate

    settings = load_settings()
    if out is None and "://" in settings.landing_root:
        import tempfile

        from scenelake import objectstore

        # Written here, then uploaded with the same layout (an object store has no folders to write into).
        with tempfile.TemporaryDirectory(prefix="scenelake-generate-") as folder:
            ledger = generate(Path(folder), captures, seed, defect_rate)
            try:
                sent = objectstore.upload(settings, Path(folder), settings.landing_root)
            except objectstore.ObjectStoreError as exc:
                _fail(f"{exc}; is the object store up? (`scenelake cluster status`)")
        click.echo(f"generated {captures} captures and uploaded {sent} files to {settings.landing_root} "
                   f"({len(ledger.entries)} planted defects)")
        return
    out = out or Path(settings.landing_root)
    ledger = generate(out, captures, seed, defect_rate)
    click.echo(f"generated {captures} captures in {out} ({len(ledger.entries)} planted defects)")


@main.command("sample")
@click.option("--force", is_flag=True, help="overwrite files the landing zone already has")
def sample_cmd(force: bool) -> None:
    """Copy the built-in sample (manifests, COCO exports, two model runs) into the landing zone."""
    settings = load_settings()
    if "://" in settings.landing_root:
        _fail("the landing zone is remote; copy scenelake/sample/landing with your object-store tools")
    source = Path(__file__).parent / "sample" / "landing"
    landed = 0
    for src in sorted(p for p in source.rglob("*") if p.is_file()):
        dest = Path(settings.landing_root) / src.relative_to(source)
        if force or not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            landed += 1
    click.echo(f"sample: {landed} file(s) landed in {settings.landing_root}")


def entry() -> None:
    try:
        main()
    except SettingsError as exc:
        _fail(str(exc))


if __name__ == "__main__":
    entry()
