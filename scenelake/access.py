"""Who may read what in Trino: a declared policy, turned into Trino's file-based access control.

The policy is small and lives here, in one place: four groups (`admin`, `pipeline`,
`ml_engineer`, `analyst`), the layers each may read, whether it may write, and what each kind of
PII column looks like to it (allowed, masked or denied). Which columns are PII, and of which kind,
comes only from the contracts (`pii: subject | device | raw` on a column in `schemas/`), so a new
PII column is protected by the next rules generation (every `scenelake trino up`, every job's
registration step, or `scenelake access rules`), with no other edit.

Masks keep a value's identity without revealing it: an identifier (subject id, device serial) is
replaced by a keyed hash (HMAC-SHA256, first 16 hex digits) so analysts can still count and join
distinct subjects; a raw record (`raw`) becomes NULL, and a raw map with `safe_keys` in its contract
keeps only those keys. The key is not in the rules: Trino prints a mask's constants
in EXPLAIN, so a key written into the expression would be readable by the very users it hides
values from. It lives in the table `ops.mask_keys` (one random row, created by `ensure_key_table`
when the server starts or by `scenelake access init` on a cluster), which only the writers may read;
each mask reads it through a subquery evaluated as the `pipeline` user (`mask_environment`). Without
that table, masked reads fail: access fails closed. The key is a varbinary, because the Delta writer
keeps no min/max statistics of binary columns: a varchar key would be copied in clear into the
statistics of the table's log.

Metadata follows the data: the hidden tables the Delta connector puts beside each table (`t$history`,
`t$transactions`, ...) show what the data files hold (their min/max statistics, partition values),
so a reader reads them only for a table whose every column it reads unmasked. They are allowed one
by one (METADATA_TABLES); any other hidden table, such as one a later Trino adds, matches no rule
and is denied. Nobody but the writers reads `ops.mask_keys` or any of its hidden tables.

Views are created SECURITY INVOKER (scenelake.views.deploy), so a view over a masked column
is evaluated with the reader's masks and does not reveal it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenelake.contracts import PII_KINDS, SCHEMAS_DIR, Contract, all_contracts
from scenelake.settings import LAYERS, Settings
from scenelake.trino_client import literal, quote

ALLOW, MASK, DENY = "allowed", "masked", "denied"


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    reads: tuple[str, ...]  # layers whose tables and views it may SELECT
    writes: bool  # owns schemas, tables and views; runs procedures (register_table, ...)
    pii: Mapping[str, str]  # PII kind -> ALLOW | MASK | DENY


POLICY: tuple[Role, ...] = (
    Role("admin", "operators of the lakehouse", LAYERS, True, dict.fromkeys(PII_KINDS, ALLOW)),
    Role("pipeline", "the scheduled jobs (register tables, deploy views)", LAYERS, True,
         dict.fromkeys(PII_KINDS, ALLOW)),
    Role("ml_engineer", "reads every table; subject PII and raw records masked", LAYERS, False,
         {"subject": MASK, "device": ALLOW, "raw": MASK}),
    Role("analyst", "reads silver and gold (and ops health); PII masked, raw payloads denied",
         ("silver", "gold", "ops"), False, {"subject": MASK, "device": MASK, "raw": DENY}),
)
ROLES = {role.name: role for role in POLICY}


class AccessError(Exception):
    """The policy or the contracts cannot be turned into rules."""


def column_access(role: Role, table: Contract, column: str) -> str:
    """How `role` sees `table.column`: ALLOW, MASK or DENY (DENY also when the table is not readable).
    A raw map with safe keys is masked (to those keys) for a role that would be denied raw records."""
    if not readable(role, table):
        return DENY
    col = table.column(column)
    if not col.pii:
        return ALLOW
    access = role.pii[col.pii]
    return MASK if access == DENY and col.safe_keys else access


def readable(role: Role, table: Contract) -> bool:
    """Whether `role` may read `table` at all: its layer, and the table's own `readers` when it names them."""
    if role.writes:
        return True
    return table.layer in role.reads and (not table.readers or role.name in table.readers)


# The Delta connector's hidden tables (Trino 476) a reader may read where it reads the whole table.
METADATA_TABLES = ("history", "transactions", "properties", "partitions")


def metadata_access(role: Role, table: Contract) -> str:
    """How `role` sees the hidden tables of `table`: ALLOW only when it reads every column unmasked."""
    whole = all(column_access(role, table, c.name) == ALLOW for c in table.columns)
    return ALLOW if readable(role, table) and whole else DENY


KEY_TABLE = ("ops", "mask_keys")
KEY_COLUMN = "key_bytes"
KEY_USER = "pipeline"  # the user masks read the key as


def key_table(catalog: str) -> str:
    return ".".join(quote(p) for p in (catalog, *KEY_TABLE))


def ensure_key_table(settings: Settings) -> str:
    """Create ops.mask_keys with one random key unless it exists; returns the key (hex).

    Idempotent; runs as the pipeline user. The key stays as long as the table does: dropping the
    table changes every masked value (and so breaks joins across saved masked extracts)."""
    from scenelake.trino_client import query

    table = key_table(settings.trino_catalog)
    query(settings, f"create schema if not exists {quote(settings.trino_catalog)}.{quote(KEY_TABLE[0])}",
          user=KEY_USER)
    location = settings.trino_location(*KEY_TABLE)
    # One statement creates the table with its key (a no-op when it exists): nothing can leave
    # an empty key table behind.
    create = (f"create table if not exists {table} with (location = '{location}') as "
              f"select from_hex('{secrets.token_hex(32)}') as {KEY_COLUMN}")
    query(settings, create, user=KEY_USER)
    columns = _key_columns(settings)
    log = Path(settings.table_path(*KEY_TABLE).removeprefix("file://")) / "_delta_log"
    if not columns and settings.is_local_lake and not log.is_dir():
        # Registered, but its lake folder is gone (deleted to start over), and the key with it: a new one
        # is made (masked values change, as the lake did). Only where the folder is seen to be gone: an
        # unreadable log on object storage must not silently change every masked value.
        print(f"[trino] {table} was registered at {location}, which no longer holds its table (the lake "
              "folder was deleted or moved): a new masking key is created there", file=sys.stderr)
        query(settings, f"call {quote(settings.trino_catalog)}.system.unregister_table("
                        f"schema_name => '{KEY_TABLE[0]}', table_name => '{KEY_TABLE[1]}')", user=KEY_USER)
        query(settings, create, user=KEY_USER)
        columns = _key_columns(settings)
    if columns != [KEY_COLUMN]:
        raise AccessError(f"{table} has columns {columns}, not [{KEY_COLUMN}]: it predates keys kept "
                          "out of the Delta statistics, so its log holds the key in clear. Unregister it "
                          f"(call {quote(settings.trino_catalog)}.system.unregister_table('ops', 'mask_keys')), delete "
                          f"{location} and start again; the new key changes every masked value")
    rows = query(settings, _key_sql(settings), user=KEY_USER)
    if len(rows) != 1:
        raise AccessError(f"{table} must hold exactly one key, it holds {len(rows)}: keep one row")
    return str(rows[0][0])


def _key_columns(settings: Settings) -> list[str]:
    from scenelake.trino_client import query

    return [c[0] for c in query(
        settings, f"select column_name from {quote(settings.trino_catalog)}.information_schema.columns "
                  f"where table_schema = '{KEY_TABLE[0]}' and table_name = '{KEY_TABLE[1]}'", user=KEY_USER)]


def _key_sql(settings: Settings) -> str:
    return f"select lower(to_hex({KEY_COLUMN})) from {key_table(settings.trino_catalog)}"


def read_key(settings: Settings) -> str:
    """The masking key (hex), read through Trino as the pipeline user (jobs mask with it what they
    write for readers, e.g. quality sample keys). AccessError when Trino or the key is unavailable."""
    import trino

    from scenelake.trino_client import query

    try:
        rows = query(settings, _key_sql(settings), user=KEY_USER)
    except (OSError, trino.exceptions.Error, trino.exceptions.HttpError) as exc:
        raise AccessError(f"cannot read the masking key from {key_table(settings.trino_catalog)}: {exc}") from exc
    if len(rows) != 1:
        raise AccessError(f"{key_table(settings.trino_catalog)} must hold exactly one key, it holds {len(rows)}")
    return str(rows[0][0])


def mask_expression(column: str, trino_type: str, kind: str, catalog: str, safe_keys: tuple[str, ...] = ()) -> str:
    """The SQL Trino evaluates instead of the column for a masked reader."""
    name = quote(column)
    if kind != "raw" and trino_type == "varchar":
        key = f"(select {KEY_COLUMN} from {key_table(catalog)})"
        return f"'masked:' || lower(substr(to_hex(hmac_sha256(to_utf8({name}), {key})), 1, 16))"
    if safe_keys:
        # NULL, like the column, when no safe key is left: a reader cannot tell unknown fields were there.
        kept = f"map_filter({name}, (k, v) -> k IN ({', '.join(literal(k) for k in safe_keys)}))"
        return f"CASE WHEN cardinality({kept}) > 0 THEN {kept} END"
    return f"CAST(NULL AS {trino_type})"


def masked_value(value: str | None, key: str) -> str | None:
    """What a masked identifier reads as (tests and support use it to match a value)."""
    if value is None:
        return None
    return "masked:" + hmac.new(bytes.fromhex(key), value.encode(), hashlib.sha256).hexdigest()[:16]


def _column_rules(role: Role, table: Contract, catalog: str) -> list[dict[str, Any]]:
    """The column entries of `role`'s rule on `table`: its masked and denied columns."""
    types = dict(table.trino_columns())
    columns: list[dict[str, Any]] = []
    for col in table.columns:
        access = column_access(role, table, col.name)
        if access == DENY:
            columns.append({"name": col.name, "allow": False})
        elif access == MASK:
            columns.append({"name": col.name, "mask": mask_expression(col.name, types[col.name], col.pii or "",
                                                                      catalog, col.safe_keys),
                            "mask_environment": {"user": KEY_USER}})
    return columns


def rules(catalog: str, contracts: Mapping[str, Contract] | None = None) -> dict[str, Any]:
    """Trino's system access control rules (rules.json) for the policy over these contracts.

    Table rules are first-match: the writers' rule, the key table (and its hidden tables) for
    nobody else, then per reader its PII tables, the hidden tables of the tables it reads whole, and
    last its layers. The layer rule matches no name with a `$`, so a hidden table without a rule of
    its own is denied."""
    contracts = all_contracts() if contracts is None else contracts
    for table in contracts.values():
        for col in table.columns:
            if col.pii and col.pii not in PII_KINDS:
                raise AccessError(f"{table.path}: column {col.name} has pii: {col.pii}; "
                                  f"expected one of {', '.join(PII_KINDS)}")
    writers = "|".join(r.name for r in POLICY if r.writes)
    readers = [r for r in POLICY if not r.writes]
    cat = re.escape(catalog)
    hidden = r"\$(" + "|".join(METADATA_TABLES) + ")"
    tables: list[dict[str, Any]] = [
        {"group": writers, "privileges": ["SELECT", "INSERT", "DELETE", "UPDATE", "OWNERSHIP", "GRANT_SELECT"]},
        # The masking key: readers never read it (their masks do, as KEY_USER), nor its log.
        {"catalog": cat, "schema": re.escape(KEY_TABLE[0]), "table": re.escape(KEY_TABLE[1]) + r"(\$.*)?",
         "privileges": []}]
    for role in readers:
        group = re.escape(role.name)
        for table in contracts.values():
            where = {"group": group, "catalog": cat, "schema": re.escape(table.layer)}
            if any(c.pii for c in table.columns) or table.readers:
                # Before the layer rule: the first matching rule wins.
                rule: dict[str, Any] = {**where, "table": re.escape(table.table), "privileges": []}
                if readable(role, table):
                    rule.update(privileges=["SELECT"], columns=_column_rules(role, table, catalog))
                tables.append(rule)
            if metadata_access(role, table) == ALLOW:
                tables.append({**where, "table": re.escape(table.table) + hidden, "privileges": ["SELECT"]})
        tables.append({"group": group, "catalog": cat, "schema": "|".join(re.escape(layer) for layer in role.reads),
                       "table": r"[^$]*", "privileges": ["SELECT"]})
    return {
        "catalogs": [
            {"group": writers, "allow": "all"},
            *({"group": re.escape(r.name), "catalog": f"{cat}|system", "allow": "read-only"} for r in readers),
            {"allow": "none"},
        ],
        "schemas": [{"group": writers, "owner": True}, {"owner": False}],
        "tables": tables,
        "procedures": [{"group": writers, "catalog": cat, "schema": "system", "privileges": ["EXECUTE"]}],
        "queries": [{"group": "admin", "allow": ["execute", "view", "kill"]}, {"allow": ["execute"]}],
        "system_information": [{"user": "admin", "allow": ["read", "write"]}],
    }


def groups(settings: Settings) -> dict[str, list[str]]:
    """Group -> members. Each group has a same-named user for dev mode; `access_groups` in the
    settings profile (or SCENELAKE_ACCESS_GROUPS='analyst=alice,bob;ml_engineer=carol') adds people."""
    members = {role.name: [role.name] for role in POLICY}
    extra = os.environ.get("SCENELAKE_ACCESS_GROUPS", "")
    for part in filter(None, (p.strip() for p in extra.split(";"))):
        name, _, listed = part.partition("=")
        if name.strip() not in members:
            raise AccessError(f"SCENELAKE_ACCESS_GROUPS: unknown group {name.strip()!r}; groups: {', '.join(members)}")
        members[name.strip()] += [n.strip() for n in listed.split(",") if n.strip()]
    for group, people in settings.access_groups.items():
        if group not in members:
            raise AccessError(f"access_groups: unknown group {group!r}; groups: {', '.join(members)}")
        members[group] += [n for n in people if n not in members[group]]
    return members


def write(settings: Settings, etc_dir: Path, schemas: Path = SCHEMAS_DIR, refresh: str = "2s") -> Path:
    """(Re)write rules.json, the groups file and their two properties files into Trino's etc folder.

    Trino re-reads the rules and the groups every `refresh`, so a regeneration takes effect
    while the server runs. Files are replaced atomically (write, then rename).
    """
    etc_dir.mkdir(parents=True, exist_ok=True)
    rules_file = etc_dir / "rules.json"
    groups_file = etc_dir / "groups.txt"
    _replace(rules_file, json.dumps(rules(settings.trino_catalog, all_contracts(schemas)), indent=2) + "\n")
    _replace(groups_file, "".join(f"{g}:{','.join(m)}\n" for g, m in groups(settings).items()))
    _replace(etc_dir / "access-control.properties",
             "# Generated by scenelake.access from the contracts' PII flags: do not edit.\n"
             f"access-control.name=file\nsecurity.config-file={rules_file}\nsecurity.refresh-period={refresh}\n")
    _replace(etc_dir / "group-provider.properties",
             "# Generated by scenelake.access: one group per role, see groups.txt.\n"
             f"group-provider.name=file\nfile.group-file={groups_file}\nfile.refresh-period={refresh}\n")
    return rules_file


def _replace(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def _how(role: Role, table: Contract, column: str) -> str:
    """What a reader gets of a masked column, in words."""
    col = table.column(column)
    if column_access(role, table, column) != MASK:
        return ""
    if col.safe_keys:
        return f"only keys {', '.join(col.safe_keys)}"
    return "NULL" if col.pii == "raw" or col.type != "string" else "keyed hash"


def matrix(contracts: Mapping[str, Contract] | None = None) -> list[tuple[str, str, str, str, str]]:
    """(group, layer.table, column, access, how) for every group: each table (column '*'), each PII column,
    each hidden table (`layer.table$history`, ..., and `$*` for any other), and the key table: the policy
    as people read it."""
    contracts = all_contracts() if contracts is None else contracts
    rows = []
    for role in POLICY:
        for table in contracts.values():
            rows.append((role.name, table.name, "*", ALLOW if readable(role, table) else DENY,
                         "" if readable(role, table) or not table.readers else f"readers: {', '.join(table.readers)}"))
            for col in table.columns:
                if col.pii:
                    rows.append((role.name, table.name, col.name, column_access(role, table, col.name),
                                 _how(role, table, col.name)))
            meta = ALLOW if role.writes else metadata_access(role, table)
            why = "" if meta == ALLOW else ("masked or denied columns" if readable(role, table)
                                            else "table denied")
            rows += [(role.name, f"{table.name}${m}", "*", meta, why) for m in METADATA_TABLES]
            rows.append((role.name, f"{table.name}$*", "*", ALLOW if role.writes else DENY,
                         "" if role.writes else "hidden tables not listed"))
        key = ALLOW if role.writes else DENY
        rows += [(role.name, f"{'.'.join(KEY_TABLE)}{suffix}", "*", key, "" if role.writes else "the masking key")
                 for suffix in ("", "$*")]
    return rows
