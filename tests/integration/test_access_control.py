"""Access control through the real Trino: every user x table x column x hidden table behaves as declared.

One row per contract table is written (every column filled, PII strings distinct per column) to a
lake of its own; then each user reads each table and its hidden tables ($history, ...). The
expected behaviour is declared here, from the issues, independently of scenelake.access: only the
contracts' PII flags (and the safe keys of raw maps) say which columns are PII. At the end the
module unregisters its tables, so later tests register their own (and it unregisters what earlier
modules left under the same names). The attacker's probe over a
pipeline-built lake with planted identifiers is tests/integration/test_access_probe.py.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trino
from pyspark.sql import types as T

from scenelake import access, views
from scenelake.contracts import Contract, all_contracts
from scenelake.settings import LAYERS, Settings
from scenelake.trino_client import query, quote
from scenelake.trino_server import TrinoServer

pytestmark = pytest.mark.integration

# The declared policy (issue 6): layers each user reads, and how each kind of PII looks to them. A raw
# map's safe keys (issue 13) are read by every reader who may not read the raw map.
EVERY = set(LAYERS)
DECLARED: dict[str, dict[str, Any]] = {
    "admin": {"reads": EVERY, "subject": "allowed", "device": "allowed", "raw": "allowed"},
    "pipeline": {"reads": EVERY, "subject": "allowed", "device": "allowed", "raw": "allowed"},
    "ml_engineer": {"reads": EVERY, "subject": "masked", "device": "allowed", "raw": "masked"},
    "analyst": {"reads": {"silver", "gold", "ops"}, "subject": "masked", "device": "masked", "raw": "denied"},
    "mallory": {"reads": set(), "subject": "denied", "device": "denied", "raw": "denied"},  # not in any group
}
# Tables only the operators read, whatever layer they are in (issue 17: who withdrew consent).
OPERATORS_ONLY = {"ops.erasures": {"admin", "pipeline"}}


def reads_table(user: str, table: Contract) -> bool:
    return table.layer in DECLARED[user]["reads"] and user in OPERATORS_ONLY.get(table.name, {user})


# The hidden tables of Trino 476's Delta connector (issue 13): readable only with the whole table.
HIDDEN = ("history", "transactions", "properties", "partitions")


def expected(user: str, table: Contract, column: str) -> str:
    declared = DECLARED[user]
    if not reads_table(user, table):
        return "denied"
    col = table.column(column)
    if not col.pii:
        return "allowed"
    return "masked" if declared[col.pii] == "denied" and col.safe_keys else str(declared[col.pii])


def literal(dtype: T.DataType, label: str, keys: tuple[str, ...] = ()) -> str:
    """A non-null Trino literal of `dtype`; strings carry their column's name so every PII value differs.
    A map has an entry named after the column, plus one per key in `keys` (a raw map's safe keys)."""
    if isinstance(dtype, T.StringType):
        return f"'{label}-value'"
    if isinstance(dtype, T.BooleanType):
        return "true"
    if isinstance(dtype, (T.IntegerType, T.LongType, T.ShortType)):
        return "7"
    if isinstance(dtype, (T.DoubleType, T.FloatType)):
        return "0.5e0"
    if isinstance(dtype, T.TimestampType):
        return "TIMESTAMP '2026-01-02 03:04:05.000 UTC'"
    if isinstance(dtype, T.DateType):
        return "DATE '2026-01-02'"
    if isinstance(dtype, T.ArrayType):
        return f"ARRAY[{literal(dtype.elementType, label)}]"
    if isinstance(dtype, T.MapType):
        names = [literal(dtype.keyType, label), *(f"'{k}'" for k in keys)]
        values = [literal(dtype.valueType, f"{label}.{k}") for k in ("", *keys)]
        return f"MAP(ARRAY[{', '.join(names)}], ARRAY[{', '.join(values)}])"
    if isinstance(dtype, T.StructType):
        return f"ROW({', '.join(literal(f.dataType, f'{label}.{f.name}') for f in dtype.fields)})"
    raise AssertionError(f"no literal for {dtype}")


def select(settings: Settings, user: str, sql: str) -> list[list[Any]]:
    return query(settings, sql, user=user)


def denied(settings: Settings, user: str, sql: str) -> str:
    with pytest.raises(trino.exceptions.TrinoUserError) as info:
        select(settings, user, sql)
    assert "Access Denied" in str(info.value), info.value
    return str(info.value)


def mask_key(settings: Settings) -> str:
    key_table = access.key_table(settings.trino_catalog)
    return str(select(settings, "pipeline", f"select lower(to_hex(key_bytes)) from {key_table}")[0][0])


def name_of(settings: Settings, table: Contract) -> str:
    return f"{quote(settings.trino_catalog)}.{quote(table.layer)}.{quote(table.table)}"


def wait_for(check, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Trino re-reads rules every 2 s: poll until `check()` holds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except (AssertionError, trino.exceptions.TrinoUserError):
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout:.0f} s: {what}") from None
            time.sleep(0.5)


@pytest.fixture(scope="module")
def access_lake(trino: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Every contract table with one row, written by Trino itself (as `pipeline`) into a lake of
    its own: the access rules are about Trino, and Trino writes 19 one-row tables in seconds."""
    lake = trino.with_overrides(lake_root=str(tmp_path_factory.mktemp("access") / "lake"))
    tables = list(all_contracts().values())
    catalog = quote(lake.trino_catalog)
    # Modules that ran earlier in this test process left their lakes' tables registered under the
    # same names (each registers what it reads): those registrations go, their files stay.
    registered = {(r[0], r[1]) for r in select(lake, "pipeline", f"select table_schema, table_name from "
                                                                 f"{catalog}.information_schema.tables")}
    for table in tables:
        if (table.layer, table.table) in registered:
            unregister(lake, table)
        types = dict(table.trino_columns())
        values = ", ".join(f"CAST({literal(f.dataType, f'{table.name}.{f.name}', table.column(f.name).safe_keys)} "
                           f"AS {types[f.name]}) AS {quote(f.name)}" for f in table.spark_schema().fields)
        select(lake, "pipeline", f"create schema if not exists {quote(lake.trino_catalog)}.{quote(table.layer)}")
        select(lake, "pipeline", f"create table {name_of(lake, table)} with (location = "
                                 f"'{lake.trino_location(table.layer, table.table)}') as select {values}")
    yield lake
    for table in tables:
        unregister(lake, table)


def unregister(lake: Settings, table: Contract) -> None:
    """Drop Trino's registration of `table`; its files stay."""
    select(lake, "pipeline", f"call {quote(lake.trino_catalog)}.system.unregister_table(schema_name => "
                             f"'{table.layer}', table_name => '{table.table}')")


def test_every_user_table_and_column_behaves_as_declared(access_lake: Settings) -> None:
    key = mask_key(access_lake)
    checked = {"allowed": 0, "masked": 0, "denied": 0, "table denied": 0}
    for table in all_contracts().values():
        columns = table.column_names
        truth = select(access_lake, "admin",
                       f"select {', '.join(map(quote, columns))} from {name_of(access_lake, table)}")
        assert len(truth) == 1
        row = dict(zip(columns, truth[0], strict=True))
        for column in columns:
            if table.column(column).type == "string":
                assert row[column] == f"{table.name}.{column}-value"
        for user in DECLARED:
            if not reads_table(user, table):
                denied(access_lake, user, f"select count(*) from {name_of(access_lake, table)}")
                checked["table denied"] += 1
                continue
            expect = {c: expected(user, table, c) for c in columns}
            readable = [c for c in columns if expect[c] != "denied"]
            got = dict(zip(readable, select(access_lake, user, f"select {', '.join(map(quote, readable))} "
                                                                f"from {name_of(access_lake, table)}")[0], strict=True))
            for column in columns:
                where = f"{user} reading {table.name}.{column}"
                if expect[column] == "allowed":
                    assert got[column] == row[column], where
                elif expect[column] == "masked":
                    col = table.column(column)
                    want = ({k: row[column][k] for k in col.safe_keys} if col.safe_keys else
                            None if col.pii == "raw" else access.masked_value(row[column], key))
                    assert got[column] == want and got[column] != row[column], where
                else:
                    denied(access_lake, user, f"select {quote(column)} from {name_of(access_lake, table)}")
                    if len(columns) > 1:  # SELECT * names the denied column too
                        denied(access_lake, user, f"select * from {name_of(access_lake, table)}")
                checked[expect[column]] += 1
    # The matrix really covered every kind of outcome, and every PII column of every layer.
    pii_columns = [(t.name, c.name) for t in all_contracts().values() for c in t.columns if c.pii]
    assert {t for t, _ in pii_columns} >= {"bronze.captures", "silver.subjects", "ops.quarantine", "silver.captures"}
    assert len(pii_columns) >= 10 and all(checked.values()), checked


def test_hidden_tables_are_readable_only_with_the_whole_table(access_lake: Settings) -> None:
    """A table's hidden tables show its files' statistics and partition values: a user reads them only
    for a table whose every column it reads unmasked; the writers read all of them."""
    seen = {"allowed": 0, "denied": 0}
    for table in all_contracts().values():
        for user in DECLARED:
            whole = all(expected(user, table, c) == "allowed" for c in table.column_names)
            for hidden in HIDDEN:
                sql = f'select count(*) from {name_of(access_lake, table)[:-1]}${hidden}"'
                if whole:
                    assert select(access_lake, user, sql)[0][0] >= 0
                else:
                    denied(access_lake, user, sql)
                seen["allowed" if whole else "denied"] += 1
    # Both outcomes for readers: some tables are read whole (gold), some are not (silver.subjects).
    assert seen["allowed"] > 2 * len(HIDDEN) * len(all_contracts()) and seen["denied"] > 0, seen


def test_masked_identifiers_still_count_and_the_key_stays_hidden(access_lake: Settings) -> None:
    """The mask is a keyed hash: equal ids stay equal (counts and joins work), the id never shows,
    and neither does the key (EXPLAIN prints a mask's constants, which is why the key is a table)."""
    table = f"{quote(access_lake.trino_catalog)}.silver.subjects"
    for user in ("analyst", "ml_engineer"):
        rows = select(access_lake, user, f"select count(distinct subject_id), min(subject_id) from {table}")
        assert rows == [[1, access.masked_value("silver.subjects.subject_id-value", mask_key(access_lake))]]
        # The key stays hidden: not readable, nor its table's hidden tables, nor in the plan a reader can print.
        denied(access_lake, user, f"select * from {access.key_table(access_lake.trino_catalog)}")
        for hidden in HIDDEN:
            denied(access_lake, user, f'select * from {access.key_table(access_lake.trino_catalog)[:-1]}${hidden}"')
        plan = "\n".join(r[0] for r in select(access_lake, user, f"explain select subject_id from {table}"))
        assert "hmac_sha256" in plan and mask_key(access_lake) not in plan.lower()
    # Nor in the key table's own log, which the writers read: a binary column has no min/max statistics.
    key = mask_key(access_lake)
    log = " ".join(str(r[1]) for r in select(
        access_lake, "pipeline", f'select * from {access.key_table(access_lake.trino_catalog)[:-1]}$transactions"'))
    assert '"stats"' in log and "key_bytes" in log and not any(key[i:i + 16] in log.lower() for i in range(49))


def test_a_view_over_a_masked_column_does_not_reveal_it(access_lake: Settings, tmp_path: Path) -> None:
    (tmp_path / "silver").mkdir()
    # The fixture rows' capture ids differ between the two tables: a cross join pairs them.
    (tmp_path / "silver" / "subject_probe.sql").write_text(
        "-- one row per subject (a probe view for the access test)\n"
        "SELECT s.subject_id, c.device_serial FROM silver.subjects AS s CROSS JOIN silver.captures AS c\n")
    assert views.deploy(access_lake, root=tmp_path) == ["silver.subject_probe"]
    probe = f"{quote(access_lake.trino_catalog)}.silver.subject_probe"
    key = mask_key(access_lake)
    try:
        assert select(access_lake, "pipeline", f"select * from {probe}") == [
            ["silver.subjects.subject_id-value", "silver.captures.device_serial-value"]]
        assert select(access_lake, "analyst", f"select * from {probe}") == [
            [access.masked_value("silver.subjects.subject_id-value", key),
             access.masked_value("silver.captures.device_serial-value", key)]]
        assert select(access_lake, "ml_engineer", f"select * from {probe}") == [
            [access.masked_value("silver.subjects.subject_id-value", key), "silver.captures.device_serial-value"]]
        denied(access_lake, "mallory", f"select * from {probe}")
    finally:
        select(access_lake, "pipeline", f"drop view if exists {probe}")


def test_only_pipeline_and_admin_write(access_lake: Settings) -> None:
    catalog = quote(access_lake.trino_catalog)
    for user in ("analyst", "ml_engineer", "mallory"):
        denied(access_lake, user, f"create view {catalog}.gold.probe security invoker as select 1 as x")
        denied(access_lake, user, f"call {catalog}.system.flush_metadata_cache()")
        denied(access_lake, user, f"insert into {catalog}.ops.quality_acceptances select * from "
                                  f"{catalog}.ops.quality_acceptances")
    for user in ("pipeline", "admin"):
        select(access_lake, user, f"create or replace view {catalog}.gold.probe security invoker as select 1 as x")
        assert select(access_lake, "analyst", f"select x from {catalog}.gold.probe") == [[1]]
        select(access_lake, user, f"drop view {catalog}.gold.probe")
        select(access_lake, user, f"call {catalog}.system.flush_metadata_cache()")


def test_a_new_pii_column_in_a_contract_is_protected_after_regeneration(access_lake: Settings, tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(Path(views.PROJECT_ROOT) / "schemas", schemas)
    (schemas / "silver" / "badges.yaml").write_text(
        "table: badges\nlayer: silver\ngrain: one row per badge scan\n"
        "description: A fixture table with a new PII column.\nprimary_key: [scan_id]\ncolumns:\n"
        "  - {name: scan_id, type: string, nullable: false, description: Scan}\n"
        "  - {name: badge_holder, type: string, nullable: false, pii: subject, description: Who}\n")
    select(access_lake, "pipeline", f"create table {quote(access_lake.trino_catalog)}.silver.badges with (location = "
                                    f"'{access_lake.trino_location('silver', 'badges')}') as "
                                    "select 'scan-1' as scan_id, 'holder-42' as badge_holder")
    etc = TrinoServer(access_lake).etc_dir
    table = f"{quote(access_lake.trino_catalog)}.silver.badges"
    key = mask_key(access_lake)
    try:
        # Before: the table is readable by layer, unmasked (no contract says otherwise yet).
        assert select(access_lake, "analyst", f"select * from {table}") == [["scan-1", "holder-42"]]
        access.write(access_lake, etc, schemas=schemas)

        def masked() -> None:
            assert select(access_lake, "analyst", f"select * from {table}") == [
                ["scan-1", access.masked_value("holder-42", key)]]
        wait_for(masked, "the regenerated rules mask silver.badges.badge_holder")
        assert select(access_lake, "ml_engineer", f"select badge_holder from {table}") == [
            [access.masked_value("holder-42", key)]]
        assert select(access_lake, "pipeline", f"select badge_holder from {table}") == [["holder-42"]]
    finally:
        access.write(access_lake, etc)
        select(access_lake, "pipeline", f"call {quote(access_lake.trino_catalog)}.system.unregister_table("
                                        "schema_name => 'silver', table_name => 'badges')")


def test_cli_jar_python_client_and_sqlalchemy_each_query_as_analyst(access_lake: Settings) -> None:
    """The three clients of the README run the same query and see the same masked row."""
    import os
    import subprocess
    import sys

    import sqlalchemy

    sql = "select capture_id, subject_id from silver.subjects"
    want = ["silver.subjects.capture_id-value",
            access.masked_value("silver.subjects.subject_id-value", mask_key(access_lake))]
    assert select(access_lake, "analyst", sql.replace("silver.", f"{access_lake.trino_catalog}.silver.")) == [want]

    engine = sqlalchemy.create_engine(f"trino://analyst@{access_lake.trino_host}:{access_lake.trino_port}/"
                                      f"{access_lake.trino_catalog}")
    try:
        with engine.connect() as conn:
            assert [list(r) for r in conn.execute(sqlalchemy.text(sql))] == [want]
            assert "subjects" in sqlalchemy.inspect(conn).get_table_names(schema="silver")
    finally:
        engine.dispose()

    done = subprocess.run([sys.executable, "-m", "scenelake.cli", "sql", "--user", "analyst",
                           "--execute", sql, "--output-format", "CSV_UNQUOTED"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [",".join(want)]
    denied_run = subprocess.run([sys.executable, "-m", "scenelake.cli", "sql", "--user", "analyst",
                                 "--execute", "select payload from ops.quarantine"],
                                capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert denied_run.returncode != 0 and "Access Denied" in denied_run.stderr


def test_readers_can_read_every_curated_view(access_lake: Settings) -> None:
    """Every view in sql/ deploys over the one-row tables and answers analysts and ML engineers
    (SECURITY INVOKER: they read only what their own rules allow); outsiders are denied."""
    deployed = views.deploy(access_lake)
    assert sorted(deployed) == sorted(v.name for v in views.all_views())
    for name in deployed:
        target = f"{quote(access_lake.trino_catalog)}.{name}"
        counts = {user: select(access_lake, user, f"select count(*) from {target}") for user in
                  ("pipeline", "analyst", "ml_engineer")}
        assert counts["analyst"] == counts["ml_engineer"] == counts["pipeline"], (name, counts)
        denied(access_lake, "mallory", f"select count(*) from {target}")
