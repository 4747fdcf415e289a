"""Table contracts: `schemas/<layer>/<table>.yaml` is the truth about every table.

Spark schemas, Trino column types, generated quality expectations and docs are derived from
these files, never written again by hand. The type grammar is Spark's DDL subset we use:
string, int, long, double, boolean, date, timestamp, array<T>, map<K,V>, struct<a:T,...>.
The parser is hand-written (about 40 lines) because pyspark's own DDL parser needs a running
JVM, and contracts are read by tools that never start one (docs, SQL checks).

Two rules follow from a column's PII flag, so no contract repeats them:
- PII columns never get Delta statistics (`Contract.stats_columns` feeds the table property
  `delta.dataSkippingStatsColumns`). A PII identifier gains nothing from data skipping (nobody
  filters a scan by a subject id range), and a file's min/max values are copied into every commit
  and checkpoint of the log, where they outlive the rows and any mask on the column. For the same
  reason a PII column cannot partition or Z-order a table.
- A map of fields the contract does not know (`extra`, `tags`) is `pii: raw`: an unknown field is
  PII until proven otherwise. Keys known to be safe are listed in the column's `safe_keys`; readers
  who may not see raw records see the map with those keys only.

The scenario attributes (what ML engineers slice evaluation results by: lighting, motion, device, ...)
are the columns of `silver.captures` flagged `scenario: true`. `scenario_attributes()` is the only list
of them: the slice views (through the `scenario_*` macros of scenelake.views), `scenelake slice`,
`scenelake compare`, the coverage view, the notebooks and the tests all read it, so a new attribute is
one new flagged column in the contract.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import types as T

from scenelake.settings import LAYERS, PROJECT_ROOT

SCHEMAS_DIR = PROJECT_ROOT / "schemas"
# The one table whose columns may be scenario attributes (`scenario: true`).
SCENARIO_TABLE = "silver.captures"

PRIMITIVES: dict[str, tuple[T.DataType, str]] = {
    "string": (T.StringType(), "varchar"),
    "int": (T.IntegerType(), "integer"),
    "long": (T.LongType(), "bigint"),
    "double": (T.DoubleType(), "double"),
    "boolean": (T.BooleanType(), "boolean"),
    "date": (T.DateType(), "date"),
    # Delta timestamps are instants; Trino's Delta connector reads them at millisecond precision.
    "timestamp": (T.TimestampType(), "timestamp(3) with time zone"),
}

# Types Delta keeps min/max statistics of (it refuses booleans, maps and arrays as statistics columns).
STATS_TYPES = {"string", "int", "long", "double", "date", "timestamp"}

# The kinds of PII a column can hold (`pii:` in a contract); scenelake.access decides who sees each.
PII_KINDS = {
    "subject": "identifies a person (pseudonymous subject id)",
    "device": "identifies a device or its owner (serial number)",
    "raw": "a raw record as delivered, which may hold any PII",
}


class ContractError(Exception):
    """A contract file is malformed, or data does not match its contract."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    description: str
    pii: str | None = None  # one of PII_KINDS, or None
    allowed: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    # Keys of a `pii: raw` map that readers may see (scenelake.access keeps only these for them).
    safe_keys: tuple[str, ...] = ()
    # A scenario attribute (`scenario: true`): evaluation results are sliced by its values.
    scenario: bool = False


@dataclass(frozen=True)
class Contract:
    layer: str
    table: str
    grain: str
    description: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    partition_by: tuple[str, ...] = ()
    # Columns OPTIMIZE clusters the files of each partition by (Z-order), for point lookups.
    zorder_by: tuple[str, ...] = ()
    # Delta's Change Data Feed on the table (`change_feed: true`): the jobs downstream read what
    # changed since they last ran (inserted, updated and deleted rows) instead of the whole table.
    change_feed: bool = False
    # Who may read the table besides the writers (`readers: [admin]`): empty means every role that reads
    # its layer. A table that holds what only operators may see (ops.erasures) names its readers.
    readers: tuple[str, ...] = ()
    path: Path = field(default=Path(), compare=False)

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.table}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise ContractError(f"{self.name}: no column {name!r} in {self.path}")

    def spark_schema(self) -> T.StructType:
        return T.StructType([T.StructField(c.name, spark_type(c.type), c.nullable)
                             for c in self.columns])

    @property
    def stats_columns(self) -> list[str]:
        """Columns the Delta writer collects min/max statistics on: every non-PII column of a type Delta
        keeps statistics for, but partition columns (their value is the file's partition, not a statistic).
        PII columns never get statistics (module docstring)."""
        return [c.name for c in self.columns
                if not c.pii and c.type in STATS_TYPES and c.name not in self.partition_by]

    @property
    def lookup_columns(self) -> tuple[str, ...]:
        """Key columns the table's files are laid out by (its partition columns and its first Z-order
        column): a look-up of given keys that also filters on their values there reads only the files
        that can hold them. (A later Z-order column, such as a frame index, would only lengthen the
        filter: few files hold one capture.)"""
        laid_out = (*self.partition_by, *self.zorder_by[:1])
        return tuple(c for c in laid_out if c in self.primary_key)

    def trino_columns(self) -> list[tuple[str, str]]:
        return [(c.name, trino_type(c.type)) for c in self.columns]

    def check_dataframe_schema(self, schema: T.StructType) -> None:
        """Raise unless a DataFrame about to be written has exactly the contract's columns."""
        got = {f.name: f.dataType for f in schema.fields}
        want = {c.name: spark_type(c.type) for c in self.columns}
        extra = sorted(set(got) - set(want))
        missing = sorted(set(want) - set(got))
        if extra or missing:
            raise ContractError(f"{self.name}: columns not in the contract {extra}, "
                                f"contract columns missing {missing} ({self.path})")
        for name, dtype in want.items():
            if got[name].simpleString() != dtype.simpleString():  # nullability inside aside
                raise ContractError(f"{self.name}.{name}: type {got[name].simpleString()} "
                                    f"but the contract says {dtype.simpleString()}")


def _split_top(text: str, sep: str = ",") -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _parse(type_text: str) -> tuple[T.DataType, str]:
    text = type_text.strip()
    if text in PRIMITIVES:
        return PRIMITIVES[text]
    head, _, rest = text.partition("<")
    if not rest.endswith(">"):
        raise ContractError(f"unknown type {type_text!r}")
    inner = rest[:-1]
    if head == "array":
        spark, trino = _parse(inner)
        return T.ArrayType(spark, True), f"array({trino})"
    if head == "map":
        key, value = (_parse(p) for p in _split_top(inner))
        return T.MapType(key[0], value[0], True), f"map({key[1]}, {value[1]})"
    if head == "struct":
        fields, trino_fields = [], []
        for part in _split_top(inner):
            fname, _, ftype = part.partition(":")
            spark, trino = _parse(ftype)
            fields.append(T.StructField(fname.strip(), spark, True))
            trino_fields.append(f"{fname.strip()} {trino}")
        return T.StructType(fields), f"row({', '.join(trino_fields)})"
    raise ContractError(f"unknown type {type_text!r}")


def spark_type(type_text: str) -> T.DataType:
    return _parse(type_text)[0]


def trino_type(type_text: str) -> str:
    return _parse(type_text)[1]


def _column(raw: dict[str, Any], where: Path) -> Column:
    missing = [k for k in ("name", "type", "nullable", "description") if k not in raw]
    if missing:
        raise ContractError(f"{where}: column {raw.get('name', '?')!r} lacks {missing}")
    spark_type(raw["type"])  # validate now, not at first use
    pii = raw.get("pii")
    if pii is not None and pii not in PII_KINDS:
        raise ContractError(f"{where}: column {raw['name']!r} has pii: {pii!r}; expected one of "
                            + ", ".join(f"{k} ({v})" for k, v in PII_KINDS.items()))
    safe_keys = tuple(raw.get("safe_keys") or ())
    if safe_keys and (pii != "raw" or not raw["type"].startswith("map<string,")):
        raise ContractError(f"{where}: column {raw['name']!r} has safe_keys; only a `pii: raw` map<string,...> "
                            "column can list the keys readers may see")
    scenario = raw.get("scenario", False)
    if scenario not in (True, False):
        raise ContractError(f"{where}: column {raw['name']!r} has scenario: {scenario!r}; expected true or false")
    if scenario and (raw["type"] not in PRIMITIVES or pii is not None):
        raise ContractError(f"{where}: column {raw['name']!r} has scenario: true; a scenario attribute is sliced "
                            "by its values, so it must be of a primitive type and not PII")
    return Column(
        name=raw["name"], type=raw["type"], nullable=bool(raw["nullable"]),
        description=raw["description"], pii=pii,
        allowed=tuple(raw["allowed"]) if "allowed" in raw else None,
        minimum=raw.get("min"), maximum=raw.get("max"), safe_keys=safe_keys, scenario=scenario,
    )


def load_contract_file(path: Path) -> Contract:
    raw = yaml.safe_load(path.read_text())
    for key in ("table", "layer", "grain", "description", "primary_key", "columns"):
        if key not in raw:
            raise ContractError(f"{path}: missing {key!r}")
    if raw["layer"] not in LAYERS or path.parent.name != raw["layer"] or path.stem != raw["table"]:
        raise ContractError(f"{path}: layer/table must match the file's place "
                            f"(schemas/{raw['layer']}/{raw['table']}.yaml)")
    contract = Contract(
        layer=raw["layer"], table=raw["table"], grain=raw["grain"],
        description=raw["description"], primary_key=tuple(raw["primary_key"]),
        columns=tuple(_column(c, path) for c in raw["columns"]),
        partition_by=tuple(raw.get("partition_by") or []), zorder_by=tuple(raw.get("zorder_by") or []),
        change_feed=bool(raw.get("change_feed", False)), readers=tuple(raw.get("readers") or []), path=path,
    )
    unknown = [k for k in (*contract.primary_key, *contract.partition_by, *contract.zorder_by)
               if k not in contract.column_names]
    if unknown:
        raise ContractError(f"{path}: key, partition or zorder columns {unknown} are not columns")
    # Delta refuses to Z-order by a partition column (each file holds one value of it anyway).
    both = sorted(set(contract.partition_by) & set(contract.zorder_by))
    if both:
        raise ContractError(f"{path}: zorder_by column(s) {both} are partition columns; a file holds one "
                            "value of a partition column, so Z-ordering by it does nothing")
    nested = [c.name for c in map(contract.column, (*contract.partition_by, *contract.zorder_by))
              if c.type not in PRIMITIVES]
    if nested:
        raise ContractError(f"{path}: partition and zorder columns must be of a primitive type, not {nested}")
    # Partition values are written into file paths and the log; Z-ordering needs statistics.
    pii = [c.name for c in map(contract.column, (*contract.partition_by, *contract.zorder_by)) if c.pii]
    if pii:
        raise ContractError(f"{path}: PII column(s) {pii} cannot partition or Z-order a table: partition values "
                            "are in file paths and the Delta log, and PII columns have no statistics to Z-order by")
    flagged = [c.name for c in contract.columns if c.scenario]
    if flagged and contract.name != SCENARIO_TABLE:
        raise ContractError(f"{path}: column(s) {flagged} have scenario: true; scenario attributes are columns "
                            f"of {SCENARIO_TABLE} (the views join every record to its capture's attributes)")
    return contract


@cache
def all_contracts(root: Path = SCHEMAS_DIR) -> dict[str, Contract]:
    contracts = {}
    for path in sorted(root.glob("*/*.yaml")):
        contract = load_contract_file(path)
        contracts[contract.name] = contract
    return contracts


def contract(name: str, root: Path = SCHEMAS_DIR) -> Contract:
    """The contract of `layer.table`; a job that writes a table without one fails here."""
    contracts = all_contracts(root)
    if name not in contracts:
        raise ContractError(f"no contract for table {name!r}: add schemas/"
                            f"{name.replace('.', '/')}.yaml")
    return contracts[name]


def scenario_attributes(root: Path = SCHEMAS_DIR) -> tuple[str, ...]:
    """The scenario attributes, in contract order: the columns of silver.captures flagged `scenario: true`."""
    names = tuple(c.name for c in contract(SCENARIO_TABLE, root).columns if c.scenario)
    if not names:
        raise ContractError(f"{contract(SCENARIO_TABLE, root).path}: no column has scenario: true")
    return names


def fingerprint(*names: str, root: Path = SCHEMAS_DIR) -> str:
    """A short digest of these tables' columns, types and partitioning. A job records it with the
    inputs it built silver from, so a contract change (a new column, a new partitioning) rebuilds
    silver once. Z-order columns are left out: they change how OPTIMIZE lays out files, not the rows."""
    def text_of(name: str) -> str:
        table = contract(name, root)
        # Unpartitioned tables keep the digest they had before partitioning was part of it.
        layout = f"/partition_by={','.join(table.partition_by)}" if table.partition_by else ""
        return f"{name}:{table.spark_schema().simpleString()}{layout}"

    text = ";".join(text_of(name) for name in names)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
