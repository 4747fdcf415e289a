"""Quality gates with Great Expectations: a batch with a failed `fail` check is not published.

A table's suite is its contract's checks (not-null, allowed values, ranges, key uniqueness;
severity `fail`) plus the hand-written domain checks in `quality/<layer>/<table>.yaml`. A hand
check may compare the batch with the table's history (`freshness: {max_age_days: n}` bounds a
newest timestamp by now - n days): `history: {min_ratio: r}` bounds a row
count below by r times the last published one, `history: {max_drop: d}` bounds a proportion
below by the last published one minus d. Domain checks that need other tables read columns the
job adds to the batch before the gate (e.g. the frame size for boxes); GE's
`unexpected_rows_expectation` runs a Spark SQL query on `{batch}`.

With a `GateRun`, every result lands in ops.quality_results, and a stopped batch that an
operator accepted (ops.quality_acceptances, `scenelake quality accept`) is published with its
failures recorded as accepted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

# No usage statistics: this machine (and many clusters) cannot reach the vendor anyway.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
import yaml  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql import types as T  # noqa: E402

from scenelake.contracts import Contract, contract  # noqa: E402
from scenelake.settings import PROJECT_ROOT, Settings  # noqa: E402

QUALITY_DIR = PROJECT_ROOT / "quality"
SEVERITIES = ("fail", "warn")
RESULTS = "ops.quality_results"
ACCEPTANCES = "ops.quality_acceptances"
SAMPLE_KEYS = 5


class QualityGateFailed(Exception):
    """A batch failed at least one `fail` expectation; it was not published.

    One job run may stop the batches of several tables at once (its gates all run before it
    stops, so that a delivery's every problem is reported by one run, not one per fix): `tables`
    names them in the order the job gates them, `failures` holds every table's failed checks and
    `table` is the first stopped table."""

    def __init__(self, table: str, failures: list[CheckResult], batch_key: str | None = None,
                 more: tuple[tuple[str, list[CheckResult]], ...] = ()):
        self.stops = ((table, failures), *more)
        self.table = table
        self.tables = [t for t, _ in self.stops]
        self.failures = [f for _, fs in self.stops for f in fs]
        self.batch_key = batch_key
        message = "; ".join(f"quality gate stopped the {t} batch: " + "; ".join(f.explained() for f in fs)
                            for t, fs in self.stops)
        if batch_key:
            message += (". Nothing of it was published. Fix the input and rerun, or accept it: " + "; ".join(
                f"scenelake quality accept --table {t} --batch-key '{batch_key}' --reason '...'" for t in self.tables))
        super().__init__(message)


@dataclass
class GateRun:
    """Where a gate records its results: the job, the batch it validates, the lake.

    Used as a context manager around a job's gates (`with GateRun(...) as run:`), every gate in the
    block runs, and when the block ends their results are appended to ops.quality_results in one
    commit (each append is a Delta commit of a second or so); then, when any of them stopped its
    batch, one QualityGateFailed names every stopped table, and every result of the block is
    recorded as `stopped` (nothing the block judged is published). Outside a `with` block a gate
    records at once and a stop raises at once."""

    spark: SparkSession
    settings: Settings
    job: str
    batch_key: str
    gate_run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    judged: list[tuple[str, list[CheckResult], str, datetime]] = field(default_factory=list, repr=False)
    depth: int = field(default=0, repr=False)

    def __enter__(self) -> GateRun:
        self.depth += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self.depth -= 1
        if self.depth:
            return
        stops = tuple((name, failed(outcomes)) for name, outcomes, verdict, _ in self.judged if verdict == "stopped")
        self.flush()
        if stops and kind is None:
            (table, failures), *more = stops
            raise QualityGateFailed(table, failures, self.batch_key, tuple(more))

    def flush(self) -> None:
        """Append the results recorded so far to ops.quality_results (one commit; none when empty)."""
        from scenelake import delta_io

        if not self.judged:
            return
        judged, self.judged = self.judged, []
        stopped = any(verdict == "stopped" for _, _, verdict, _ in judged)
        rows = [row for name, outcomes, verdict, at in judged
                for row in _rows(self, name, outcomes, "stopped" if stopped else verdict, at)]
        delta_io.append(self.spark, self.settings, RESULTS,
                        self.spark.createDataFrame(rows, contract(RESULTS).spark_schema()),
                        commit_metadata=f"gate={self.gate_run_id}")


@dataclass(frozen=True)
class Check:
    expectation: str
    kwargs: dict[str, Any]
    severity: str
    why: str
    history: dict[str, float] | None = None
    freshness: dict[str, float] | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        target = self.kwargs.get("column") or self.kwargs.get("column_list") or ""
        return f"{self.expectation}({target})" if target else self.expectation


@dataclass(frozen=True)
class CheckResult:
    check: Check
    success: bool
    unexpected_count: int | None
    observed: Any
    sample_keys: tuple[str, ...] = ()

    def summary(self) -> str:
        count = f", {self.unexpected_count} unexpected" if self.unexpected_count else ""
        return f"{self.check.label} [{self.check.severity}]{count}"

    def explained(self) -> str:
        """The summary with the observed value or a few offending keys, for people."""
        observed = f", observed {self.observed}" if self.observed is not None and not self.unexpected_count else ""
        sample = f" (e.g. {'; '.join(self.sample_keys[:3])})" if self.sample_keys else ""
        return f"{self.summary()}{observed}{sample}"


def contract_checks(table: Contract) -> list[Check]:
    checks = []
    for col in table.columns:
        why = f"contract {table.path.name}: {col.name}"
        if not col.nullable:
            checks.append(Check("expect_column_values_to_not_be_null", {"column": col.name},
                                "fail", f"{why} is required"))
        if col.allowed is not None:
            checks.append(Check("expect_column_values_to_be_in_set",
                                {"column": col.name, "value_set": list(col.allowed)},
                                "fail", f"{why} allows {list(col.allowed)}"))
        if col.minimum is not None or col.maximum is not None:
            checks.append(Check("expect_column_values_to_be_between",
                                {"column": col.name, "min_value": col.minimum,
                                 "max_value": col.maximum},
                                "fail", f"{why} in [{col.minimum}, {col.maximum}]"))
    key = list(table.primary_key)
    if len(key) == 1:
        checks.append(Check("expect_column_values_to_be_unique", {"column": key[0]}, "fail",
                            "primary key"))
    else:
        checks.append(Check("expect_compound_columns_to_be_unique", {"column_list": key},
                            "fail", "primary key"))
    return checks


def suite_file(name: str) -> Path:
    layer, table = name.split(".")
    return QUALITY_DIR / layer / f"{table}.yaml"


def hand_checks(name: str) -> list[Check]:
    path = suite_file(name)
    if not path.exists():
        return []
    raw = yaml.safe_load(path.read_text())
    checks = []
    for item in raw.get("expectations", []):
        if item.get("severity") not in SEVERITIES:
            raise ValueError(f"{path}: {item.get('expectation')} needs severity fail or warn")
        checks.append(Check(item["expectation"], dict(item.get("kwargs", {})), item["severity"],
                            item.get("why", ""), item.get("history"), item.get("freshness"), item.get("name")))
    return checks


def checks_for(name: str) -> list[Check]:
    return contract_checks(contract(name)) + hand_checks(name)


def _expectation(check: Check, index: int, kwargs: dict[str, Any]) -> gx.expectations.Expectation:
    class_name = "".join(part.capitalize() for part in check.expectation.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None:
        raise ValueError(f"unknown Great Expectations expectation {check.expectation!r}")
    return cls(**kwargs, meta={"severity": check.severity, "why": check.why, "check": index})


def _with_history(check: Check, last: float | None) -> dict[str, Any]:
    """The check's kwargs with bounds from the last published observation (none yet: no bound)."""
    kwargs = dict(check.kwargs)
    if check.freshness:
        # Spark hands GE naive timestamps (session time zone, UTC here): compare like with like.
        kwargs["min_value"] = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=check.freshness["max_age_days"])
    if not check.history or last is None:
        return kwargs
    if "min_ratio" in check.history:
        kwargs["min_value"] = math.floor(last * check.history["min_ratio"])
    if "max_drop" in check.history:
        kwargs["min_value"] = max(0.0, last - check.history["max_drop"])
    return kwargs


Shown = Callable[[str, Any], Any]  # (column, value) -> what a sample key shows of it
WITHHELD = "<withheld>"


def sample_key_mask(settings: Settings, name: str) -> Shown:
    """What sample keys of `name` show of a value: every reader reads ops.quality_results, so a PII
    identifier shows as the readers' mask shows it (scenelake.access.masked_value with the deployment's
    key, read through Trino once it is first needed; a reader finds the row with `where subject_id =
    '<masked value>'`), and a raw value, or any PII value when no key can be read, is withheld."""
    from scenelake import access

    columns = {c.name: c for c in contract(name).columns if c.pii}

    @cache
    def key() -> str | None:
        try:
            return access.read_key(settings)
        except access.AccessError:
            return None

    def shown(column: str, value: Any) -> Any:
        col = columns.get(column)
        if col is None or value is None:
            return value
        secret = key() if col.pii != "raw" and col.type == "string" else None
        return WITHHELD if secret is None else access.masked_value(str(value), secret)

    return shown


def _sample_keys(details: dict[str, Any], keys: list[str], shown: Shown | None = None) -> tuple[str, ...]:
    rows = details.get("partial_unexpected_index_list") or (details.get("details") or {}).get("unexpected_rows") or []
    out = []
    for row in rows[:SAMPLE_KEYS]:
        if isinstance(row, dict):
            columns = [k for k in keys if k in row] or list(row)[:4]
            out.append(",".join(f"{k}={row[k] if shown is None else shown(k, row[k])}" for k in columns))
    return tuple(out)


def _unexpected_rows(df: DataFrame, check: Check, keys: list[str], shown: Shown | None = None) -> tuple[str, ...]:
    """The first few rows of a failed unexpected-rows query (GE's summary format leaves them out)."""
    view = f"gate_batch_{uuid.uuid4().hex[:8]}"
    df.createOrReplaceTempView(view)
    try:
        query = check.kwargs["unexpected_rows_query"].replace(BATCH, view)
        width = len(df.sparkSession.sql(query).columns)  # analysed, not run
        rows = df.sparkSession.sql(first_rows(query, width, SAMPLE_KEYS)).collect()
    finally:
        df.sparkSession.catalog.dropTempView(view)
    return _sample_keys({"details": {"unexpected_rows": [r.asDict() for r in rows]}}, keys, shown)


def first_rows(query: str, width: int, limit: int) -> str:
    """The first `limit` rows of a query's `width` columns, ordered by every column in turn: the sample
    rows of a failed check are the same on every engine and every run (both order nulls first)."""
    return f"SELECT * FROM ({query}) ORDER BY {', '.join(str(i + 1) for i in range(width))} LIMIT {limit}"


# A batch up to this many rows is validated in pandas: Great Expectations on Spark runs one or more
# Spark jobs per expectation (a second or more each, whatever the batch's size), pandas runs them in
# milliseconds. Expectations that are Spark SQL queries (`unexpected_rows_expectation`) run on the same
# collected rows in an in-memory SQLite database, through GE's SQL engine, with the query translated
# from Spark SQL by sqlglot (measured on the clean 6-capture lake's three ingest jobs: 9 such checks
# took 8.1 s on Spark, about 0.9 s each, and take tens of milliseconds in SQLite). A query SQLite cannot
# take as it is written (a column of a nested type, a construct sqlglot cannot translate) stays on Spark.
PANDAS_MAX_ROWS = 200_000
SQL_EXPECTATIONS = ("unexpected_rows_expectation",)
# Spark types whose values SQLite holds as Spark compares them (numbers, text, booleans as 0/1).
SQLITE_TYPES = (T.StringType, T.BooleanType, T.ByteType, T.ShortType, T.IntegerType, T.LongType,
                T.FloatType, T.DoubleType)
BATCH = "{batch}"


def sqlite_query(query: str, schema: T.StructType) -> tuple[str, list[str]] | None:
    """A Spark SQL check query in SQLite's dialect (`{batch}` kept) and the batch columns it reads, or
    None when it must run on Spark: it does not parse or translate, or it reads a column SQLite cannot
    hold as Spark does (arrays, maps, structs, timestamps, decimals)."""
    import sqlglot
    from sqlglot import exp

    placeholder = "scenelake_gate_batch"
    try:
        tree = sqlglot.parse_one(query.replace(BATCH, placeholder), read="spark")
        translated = tree.transform(_case_sensitive_like).sql(
            dialect="sqlite", identify=True, unsupported_level=sqlglot.ErrorLevel.RAISE)
    except (sqlglot.errors.SqlglotError, _Untranslatable):
        return None
    types = {f.name: f.dataType for f in schema.fields}
    read = sorted({c.name for c in tree.find_all(exp.Column)} & set(types))
    if not all(isinstance(types[c], SQLITE_TYPES) for c in read):
        return None
    return translated.replace(f'"{placeholder}"', BATCH), read


class _Untranslatable(Exception):
    """A construct SQLite would not evaluate as Spark does."""


def _case_sensitive_like(node: Any) -> Any:
    """Spark's LIKE is case-sensitive, SQLite's is not (for ASCII): `x LIKE 'a%'` becomes `x GLOB 'a*'`,
    which is. A pattern that is not a plain literal, or has an ESCAPE clause, is not translated."""
    from sqlglot import exp

    if isinstance(node, exp.ILike | exp.Escape):
        raise _Untranslatable(node.sql())
    if not isinstance(node, exp.Like):
        return node
    pattern = node.expression
    plain = {k for k, v in node.args.items() if v} <= {"this", "expression", "negate"}
    if not (plain and isinstance(pattern, exp.Literal) and pattern.is_string):
        raise _Untranslatable(node.sql())
    glob = "".join({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(ch, ch) for ch in pattern.this)
    matched = exp.Glob(this=node.this, expression=exp.Literal.string(glob))
    return exp.Not(this=matched) if node.args.get("negate") else matched


def validate(df: DataFrame, name: str, history: dict[str, float] | None = None,
             docs_dir: Path | None = None, shown: Shown | None = None,
             sql_engine: str = "sqlite") -> list[CheckResult]:
    """Run the table's suite on one batch with Great Expectations.

    `history` maps a check's label to its last published observation (see `_with_history`);
    with `docs_dir`, the result is also rendered into the Great Expectations Data Docs there;
    `shown` says what sample keys show of each value (`sample_key_mask`; default: the value). A
    small batch (PANDAS_MAX_ROWS) is collected once and validated with GE's pandas engine, and its
    Spark SQL checks with GE's SQL engine on SQLite (`sql_engine="spark"`: on Spark); a large one
    stays on Spark. The engines give the same outcomes (tests/unit/test_quality.py).
    """
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    checks = checks_for(name)
    everything = list(range(len(checks)))
    # Each expectation on Spark is a Spark job of its own: validate a cached batch (a no-op when the
    # caller cached it), so that the joins and parsing behind it run once. The first job collects the
    # batch when it is small (and fills the cache for the Spark SQL checks). (Counting into the cache
    # and collecting it whole instead was measured: no faster.)
    cached = None if df.storageLevel.useMemory else df.cache()
    outcomes: list[CheckResult] = []
    try:
        head = df.limit(PANDAS_MAX_ROWS + 1).toPandas()
        if len(head) <= PANDAS_MAX_ROWS:
            sql = [i for i in everything if checks[i].expectation in SQL_EXPECTATIONS]
            rest = [i for i in everything if i not in sql]
            lite = ({i: q for i in sql if (q := sqlite_query(checks[i].kwargs["unexpected_rows_query"], df.schema))}
                    if sql_engine == "sqlite" else {})
            parts: list[tuple[str, Any, list[int]]] = [("pandas", head, rest)]
            if lite:
                parts.append(("sqlite", head, sorted(lite)))
            if len(lite) < len(sql):
                parts.append(("spark", df, [i for i in sql if i not in lite]))
        else:
            parts = [("spark", df, everything)]
        for engine, data, chosen in parts:
            outcomes += _validate_part(engine, data, df, name, checks, chosen, history, docs_dir, shown,
                                       lite if engine == "sqlite" else {})
            if engine == "sqlite":
                answered = {checks.index(o.check) for o in outcomes}
                if unanswered := [i for i in chosen if i not in answered]:
                    outcomes += _validate_part("spark", df, df, name, checks, unanswered, history, docs_dir, shown)
    finally:
        if cached is not None:
            cached.unpersist()
    return sorted(outcomes, key=lambda o: checks.index(o.check))


# The Data Docs site lists the results in its context's validation results store. A gate's context is
# otherwise in memory (suites and checkpoints are built from the contracts on every run), so the results
# are kept in a folder of the site, else each gate's build dropped every other gate's page and the site
# showed the job's last gate alone. Each suite keeps its newest KEPT_RESULTS, so a build stays bounded.
RESULTS_FOLDER = ".results"
KEPT_RESULTS = 20


def _context(docs_dir: Path | None) -> Any:
    if docs_dir is None:
        return gx.get_context(mode="ephemeral")
    defaults = InMemoryStoreBackendDefaults()
    defaults.stores[defaults.validation_results_store_name]["store_backend"] = {
        "class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir / RESULTS_FOLDER)}
    return gx.get_context(mode="ephemeral", project_config=DataContextConfig(store_backend_defaults=defaults))


def prune_results(suite_dir: Path, keep: int = KEPT_RESULTS) -> None:
    """Delete all but the newest `keep` stored results of a suite (`<suite>/<run name>/<run time>/`); the
    site's next build drops their pages."""
    import shutil

    runs = sorted((p for p in suite_dir.glob("*/*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    for old in runs[keep:]:
        shutil.rmtree(old)


def _validate_part(engine: str, data: Any, df: DataFrame, name: str, checks: list[Check], chosen: list[int],
                   history: dict[str, float] | None, docs_dir: Path | None, shown: Shown | None,
                   queries: dict[int, tuple[str, list[str]]] | None = None) -> list[CheckResult]:
    """One engine's checks of the suite: `data` is the collected rows (pandas, and sqlite with the
    checks' translated `queries`) or the batch (spark)."""
    queries = queries or {}
    keys = list(contract(name).primary_key)
    context = _context(docs_dir)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    with (_SqliteBatch(data, sorted({c for _, read in queries.values() for c in read})) if engine == "sqlite"
          else contextlib.nullcontext()) as database:
        if database is not None:
            source = context.data_sources.add_sqlite(name="scenelake", connection_string=database.url)
            batch_definition = source.add_table_asset(name=name, table_name=database.table) \
                .add_batch_definition_whole_table("batch")
        else:
            source = (context.data_sources.add_pandas(name="scenelake") if engine == "pandas"
                      else context.data_sources.add_spark(name="scenelake"))
            batch_definition = source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("batch")
        suite = gx.ExpectationSuite(name=f"{name}-{engine}")
        for index in chosen:
            check = checks[index]
            kwargs = _with_history(check, (history or {}).get(check.label))
            if index in queries:
                kwargs["unexpected_rows_query"] = queries[index][0]
            suite.add_expectation(_expectation(check, index, kwargs))
        result_format = {"result_format": "SUMMARY", "unexpected_index_column_names": keys,
                         "partial_unexpected_count": SAMPLE_KEYS}
        parameters = None if database is not None else {"dataframe": data}
        if docs_dir is None:
            result = batch_definition.get_batch(batch_parameters=parameters).validate(
                suite, result_format=result_format)
        else:
            # Through a checkpoint, so that Great Expectations renders the result into the Data Docs site.
            context.add_data_docs_site(site_name="scenelake", site_config={
                "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)}})
            definition = context.validation_definitions.add(gx.ValidationDefinition(
                name=f"{name}-{engine}", data=batch_definition, suite=context.suites.add(suite)))
            checkpoint = context.checkpoints.add(gx.Checkpoint(
                name=f"gate-{name}-{engine}", validation_definitions=[definition], result_format=result_format,
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["scenelake"])]))
            result = next(iter(checkpoint.run(batch_parameters=parameters).run_results.values()))
            prune_results(docs_dir.joinpath(RESULTS_FOLDER, *f"{name}-{engine}".split(".")))  # layer/table-engine
        outcomes = []
        for res in result.results:
            config = res.expectation_config
            assert config is not None and config.meta is not None, "GE dropped a result's configuration"
            index = int(config.meta["check"])
            check = checks[index]
            if database is not None and (res.exception_info or {}).get("raised_exception"):
                continue  # SQLite could not run the translated query: validate() runs it on Spark
            details = res.result or {}
            unexpected = details.get("unexpected_count")
            samples = _sample_keys(details, keys, shown)
            if check.expectation == "unexpected_rows_expectation":
                unexpected = details.get("observed_value")
                if not res.success and database is not None:
                    rows = database.rows(queries[index][0], SAMPLE_KEYS)
                    samples = _sample_keys({"details": {"unexpected_rows": rows}}, keys, shown)
                elif not res.success:
                    samples = _unexpected_rows(df, check, keys, shown)
            outcomes.append(CheckResult(check, bool(res.success), unexpected, _plain(details.get("observed_value")),
                                        samples))
        return outcomes


class _SqliteBatch:
    """A batch's rows in a private in-memory SQLite database (shared-cache, so that GE's own connections
    see it), alive while the `with` block holds its first connection: nothing is written to disk."""

    table = "gate_batch"

    def __init__(self, head: Any, columns: list[str]):
        self.head, self.columns = head, columns
        self.name = f"scenelake-gate-{uuid.uuid4().hex}"
        self.url = f"sqlite:///file:{self.name}?mode=memory&cache=shared&uri=true"

    def __enter__(self) -> _SqliteBatch:
        import sqlite3

        self.connection = sqlite3.connect(f"file:{self.name}?mode=memory&cache=shared", uri=True)
        self.head[self.columns or list(self.head.columns[:1])].to_sql(self.table, self.connection, index=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()

    def rows(self, query: str, limit: int) -> list[dict[str, Any]]:
        query = query.replace(BATCH, self.table)
        width = len(self.connection.execute(f"SELECT * FROM ({query}) LIMIT 0").description)
        cursor = self.connection.execute(first_rows(query, width, limit))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _plain(value: Any) -> Any:
    """numpy scalars (pandas engine) as the Python numbers the Spark engine reports."""
    import numpy as np

    return value.item() if isinstance(value, np.number | np.bool_) else value


def data_docs_dir(run: GateRun) -> Path | None:
    """Where the Data Docs site lives: <state_dir>/data_docs (the state dir is a local folder);
    None when the profile turns the site off (`data_docs = false`)."""
    return Path(run.settings.state_dir) / "data_docs" if run.settings.data_docs else None


def last_published(run: GateRun, name: str) -> dict[str, float]:
    """Each check's observed value in the newest published (or accepted) batch of the table."""
    from scenelake import delta_io

    if not delta_io.table_exists(run.spark, run.settings, RESULTS):
        return {}
    rows = (delta_io.read_table(run.spark, run.settings, RESULTS)
            .where((F.col("table_name") == name) & F.col("outcome").isin("published", "accepted")
                   & F.col("observed_value").isNotNull())
            .orderBy(F.col("checked_at").desc()).select("expectation", "observed_value").collect())
    out: dict[str, float] = {}
    for row in rows:
        try:
            out.setdefault(row["expectation"], float(json.loads(row["observed_value"])))
        except (TypeError, ValueError):
            continue
    return out


def accepted(run: GateRun, name: str) -> bool:
    from scenelake import delta_io

    if not delta_io.table_exists(run.spark, run.settings, ACCEPTANCES):
        return False
    return delta_io.read_table(run.spark, run.settings, ACCEPTANCES).where(
        (F.col("table_name") == name) & (F.col("batch_key") == run.batch_key)).limit(1).count() > 0


def failed(outcomes: list[CheckResult]) -> list[CheckResult]:
    """The failed `fail` checks among a gate's outcomes: what stops its batch."""
    return [o for o in outcomes if not o.success and o.check.severity == "fail"]


def _rows(run: GateRun, name: str, outcomes: list[CheckResult], outcome: str, at: datetime) -> list[tuple[Any, ...]]:
    """ops.quality_results rows of one gate's outcomes."""
    checks = checks_for(name)
    return [(run.gate_run_id, run.job, name, run.batch_key, checks.index(o.check), o.check.label,
             o.check.severity, o.check.why or None, o.success,
             None if o.observed is None else json.dumps(o.observed, default=str),
             None if o.unexpected_count is None else int(o.unexpected_count), list(o.sample_keys) or None,
             outcome, at) for o in outcomes]


def gate(df: DataFrame, name: str, run: GateRun | None = None) -> list[CheckResult]:
    """Validate a batch; raise QualityGateFailed when a `fail` check fails (unless accepted), else return all.

    With `run`, the results are appended to ops.quality_results whatever happens (sample keys with
    their PII masked, `sample_key_mask`), and history checks compare with the table's last published batch.
    """
    # Only suites with a history check read the table's last published results.
    history = last_published(run, name) if run and any(c.history for c in checks_for(name)) else None
    outcomes = validate(df, name, history, data_docs_dir(run) if run else None,
                        sample_key_mask(run.settings, name) if run else None)
    failures = failed(outcomes)
    let_through = bool(failures) and run is not None and accepted(run, name)
    stopped = bool(failures) and not let_through
    if run is not None:
        # A copy: callers add other gates' outcomes to the list they get back.
        run.judged.append((name, list(outcomes), "stopped" if stopped else "accepted" if failures else "published",
                           datetime.now(UTC)))
        if run.depth:  # the block's end records the results and raises for every stopped table
            return outcomes
        run.flush()
    if stopped:
        raise QualityGateFailed(name, failures, run.batch_key if run else None)
    return outcomes


def accept(spark: SparkSession, settings: Settings, name: str, batch_key: str, reason: str, by: str) -> None:
    """Record an operator's acceptance of a stopped batch (the next run publishes it)."""
    from scenelake import delta_io

    if not reason.strip():
        raise ValueError("an acceptance needs a reason")
    contract(name)  # an unknown table fails here with the file to add
    table = contract(ACCEPTANCES)
    row = spark.createDataFrame([(name, batch_key, reason, by, datetime.now(UTC))], table.spark_schema())
    delta_io.merge(spark, settings, ACCEPTANCES, row)
