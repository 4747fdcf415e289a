"""Talking to Trino with the `trino` client: queries, and registering Spark-written Delta tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import trino
from sqlglot import exp

from scenelake.settings import Settings


def connect(settings: Settings, user: str | None = None) -> trino.dbapi.Connection:
    return trino.dbapi.connect(
        host=settings.trino_host,
        port=settings.trino_port,
        user=user or settings.trino_user,
        catalog=settings.trino_catalog,
        http_scheme="http",
    )


def query(settings: Settings, sql: str, params: Sequence[Any] | None = None,
          user: str | None = None) -> list[list[Any]]:
    conn = connect(settings, user)
    try:
        cur = conn.cursor()
        cur.execute(sql, params) if params is not None else cur.execute(sql)
        return [list(row) for row in cur.fetchall()]
    finally:
        conn.close()


def quote(identifier: str) -> str:
    return exp.to_identifier(identifier, quoted=True).sql("trino")


def literal(value: str) -> str:
    return exp.Literal.string(value).sql("trino")


def register_tables(settings: Settings, tables: Iterable[tuple[str, str]]) -> list[str]:
    """Make each (layer, table) that Spark wrote queryable as delta.<layer>.<table>.

    They go into Trino's own metastore, idempotently: a table already registered at the same location
    is left alone (Trino reads the schema from the Delta log, so schema changes need nothing); one
    registered elsewhere is re-pointed. Returns the tables that were (re-)registered. (With a shared
    metastore Spark registers them instead: scenelake.job.register.)
    """
    catalog = settings.trino_catalog
    changed: list[str] = []
    conn = connect(settings)
    try:
        cur = conn.cursor()
        for layer, table in tables:
            location = settings.trino_location(layer, table)
            cur.execute(f"create schema if not exists {quote(catalog)}.{quote(layer)}")
            cur.fetchall()
            cur.execute(
                f"select count(*) from {quote(catalog)}.information_schema.tables "
                "where table_schema = ? and table_name = ?", [layer, table])
            exists = cur.fetchall()[0][0] > 0
            if exists:
                _flush(cur, catalog, layer, table)
                if _registered_location(cur, catalog, layer, table) == location.rstrip("/"):
                    continue
                # CALL takes no prepared-statement parameters: inline quoted literals.
                cur.execute(f"call {quote(catalog)}.system.unregister_table(schema_name => "
                            f"{literal(layer)}, table_name => {literal(table)})")
                cur.fetchall()
            cur.execute(f"call {quote(catalog)}.system.register_table(schema_name => "
                        f"{literal(layer)}, table_name => {literal(table)}, "
                        f"table_location => {literal(location)})")
            cur.fetchall()
            changed.append(f"{layer}.{table}")
    finally:
        conn.close()
    return changed


def flush_caches(settings: Settings, tables: Iterable[tuple[str, str]]) -> None:
    """Make Trino forget its cached snapshots of these tables."""
    conn = connect(settings)
    try:
        cur = conn.cursor()
        for layer, table in tables:
            _flush(cur, settings.trino_catalog, layer, table)
    finally:
        conn.close()


def _flush(cur: Any, catalog: str, layer: str, table: str) -> None:
    # A table rewritten from scratch (version 0 again) must not be served from Trino's cached
    # snapshot of the old one.
    cur.execute(f"call {quote(catalog)}.system.flush_metadata_cache(schema_name => "
                f"{literal(layer)}, table_name => {literal(table)})")
    cur.fetchall()


def _registered_location(cur: Any, catalog: str, layer: str, table: str) -> str:
    """Where Trino reads the table from; "" when it cannot read it there any more (its transaction log
    is gone: a lake folder deleted or moved since), so that it is registered again rather than stuck."""
    try:
        cur.execute(f"show create table {quote(catalog)}.{quote(layer)}.{quote(table)}")
        ddl = cur.fetchall()[0][0]
    except trino.exceptions.TrinoExternalError as exc:
        if exc.error_name != "DELTA_LAKE_INVALID_SCHEMA":
            raise
        return ""
    for line in ddl.splitlines():
        line = line.strip()
        if line.startswith("location ="):
            return str(line.split("'", 2)[1].rstrip("/"))
    return ""


def row_counts(settings: Settings) -> list[list[Any]]:
    """[layer.table, rows] for every table registered in the catalog, sorted by name."""
    catalog = quote(settings.trino_catalog)
    tables = query(settings, f"select table_schema, table_name from {catalog}.information_schema.tables "
                             "where table_schema <> 'information_schema' and table_type = 'BASE TABLE' "
                             "order by 1, 2")
    return [[f"{layer}.{table}",
             query(settings, f"select count(*) from {catalog}.{quote(layer)}.{quote(table)}")[0][0]]
            for layer, table in tables]


SCAN_OPERATORS = ("TableScanOperator", "ScanFilterAndProjectOperator")


def query_info(settings: Settings, query_id: str) -> dict[str, Any]:
    """Trino's record of a finished query (`/v1/query/<id>`): its plan, stages and statistics."""
    import json
    import urllib.request

    url = f"http://{settings.trino_host}:{settings.trino_port}/v1/query/{query_id}"
    request = urllib.request.Request(url, headers={"X-Trino-User": settings.trino_user})
    with urllib.request.urlopen(request, timeout=30) as response:
        info: dict[str, Any] = json.load(response)
    return info


def scan_splits(info: dict[str, Any]) -> int:
    """How many splits the query's table scans processed: one driver per split. A Delta file smaller
    than the connector's split size (32 MB for the first splits, 64 MB then) is one split."""
    return sum(int(op["totalDrivers"]) for op in info["queryStats"]["operatorSummaries"]
               if op["operatorType"] in SCAN_OPERATORS)


def query_with_info(settings: Settings, sql: str) -> tuple[list[list[Any]], dict[str, Any]]:
    """Run a query and return its rows and Trino's record of it (see `query_info`)."""
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = [list(row) for row in cur.fetchall()]
        query_id = cur.query_id
    finally:
        conn.close()
    if query_id is None:
        raise RuntimeError(f"Trino gave no query id for: {sql}")
    return rows, query_info(settings, query_id)
