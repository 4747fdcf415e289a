"""The curated Trino views in `sql/<layer>/<view>.sql`: discovery, dependency order, deployment.

Each file holds one SELECT in the Trino dialect, tables named `layer.table` without a catalog
(the view is created in the configured catalog, so the same files serve every environment), and
a first comment that says what one row means. sqlglot parses them; nothing is string-spliced.

The scenario attributes are written in no view: two macros stand for the list the captures contract
declares (`scenario: true`, scenelake.contracts.scenario_attributes), expanded by sqlglot on parse:
- `scenario_columns(c)` in a select list or a GROUP BY is `c.source, c.device_model, ...` (each
  attribute as a column of `c`; `scenario_columns()` names them without a table);
- `UNNEST(scenario_slices(c))` is `UNNEST(ARRAY['all', 'source', ...], ARRAY['all', CAST(c.source AS
  varchar), ...])`: each row once per slice it belongs to (slice_by, slice_value), the whole run as 'all'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import sqlglot
from sqlglot import exp

from scenelake.settings import LAYERS, PROJECT_ROOT, Settings

SQL_DIR = PROJECT_ROOT / "sql"
SLICE_VIEW = "gold.detection_slice_metrics"
SLICE_BASE = "gold.detection_evaluation"


class ViewError(Exception):
    """A view file is malformed or cannot be deployed."""


@dataclass(frozen=True)
class View:
    name: str
    path: Path
    sql: str

    @property
    def tree(self) -> exp.Expr:
        return parse(self.sql, self.path)

    @property
    def row_meaning(self) -> str:
        lines = []
        for line in self.sql.splitlines():
            if not line.startswith("--"):
                break
            lines.append(line[2:].strip())
        return " ".join(lines)

    def references(self) -> set[str]:
        """layer.table names the view reads (its own CTE names excluded)."""
        return table_references(self.tree)


def parse(sql: str, where: Path | str = "<sql>") -> exp.Expr:
    """A view's tree with the scenario macros expanded (module docstring)."""
    try:
        tree = sqlglot.parse_one(sql, read="trino")
    except sqlglot.errors.ParseError as exc:
        raise ViewError(f"{where}: does not parse as Trino SQL: {exc}") from exc
    if tree is None:
        raise ViewError(f"{where}: empty")
    return expand_scenarios(tree, where)


SCENARIO_COLUMNS = "scenario_columns"
SCENARIO_SLICES = "scenario_slices"


def _macro_table(call: exp.Anonymous, where: Path | str) -> str | None:
    args = call.expressions
    if not args:
        return None
    if len(args) == 1 and isinstance(args[0], exp.Column) and not args[0].table:
        return args[0].name
    raise ViewError(f"{where}: {call.sql(dialect='trino')}: the argument is a table alias (or nothing)")


def expand_scenarios(tree: exp.Expr, where: Path | str = "<sql>") -> exp.Expr:
    """`tree` with every scenario_columns(...) and scenario_slices(...) macro replaced (module docstring)."""
    from scenelake.contracts import scenario_attributes

    names = scenario_attributes()
    calls = [c for c in tree.find_all(exp.Anonymous) if c.name.lower() in (SCENARIO_COLUMNS, SCENARIO_SLICES)]
    for call in calls:
        table = _macro_table(call, where)
        parent, key = call.parent, call.arg_key
        if call.name.lower() == SCENARIO_COLUMNS:
            if not isinstance(parent, exp.Select | exp.Group) or key != "expressions":
                raise ViewError(f"{where}: {SCENARIO_COLUMNS}(...) belongs in a select list or a GROUP BY")
            items = parent.args[key]
            at = next(i for i, item in enumerate(items) if item is call)
            parent.set(key, [*items[:at], *(exp.column(n, table=table) for n in names), *items[at + 1:]])
        else:
            if not isinstance(parent, exp.Unnest) or len(parent.expressions) != 1:
                raise ViewError(f"{where}: {SCENARIO_SLICES}(...) is the one argument of an UNNEST")
            labels = exp.Array(expressions=[exp.Literal.string(v) for v in ("all", *names)])
            values = exp.Array(expressions=[exp.Literal.string("all"),
                                            *(exp.cast(exp.column(n, table=table), "varchar") for n in names)])
            parent.set("expressions", [labels, values])
    return tree


def table_references(tree: exp.Expr) -> set[str]:
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    names = set()
    for table in tree.find_all(exp.Table):
        if table.name in ctes and not table.db:
            continue
        if table.name:  # UNNEST(...) AS x(t) is a table without a name
            names.add(f"{table.db}.{table.name}" if table.db else table.name)
    return names


def output_columns(tree: exp.Expr) -> list[str]:
    """The column names a SELECT returns."""
    return [e.alias_or_name for e in tree.selects] if isinstance(tree, exp.Query) else []


@cache
def all_views(root: Path = SQL_DIR) -> tuple[View, ...]:
    """Every view, in an order where each comes after the views it reads."""
    found = {}
    for path in sorted(root.glob("*/*.sql")):
        if path.parent.name not in LAYERS:
            raise ViewError(f"{path}: the folder must be a layer ({', '.join(LAYERS)})")
        name = f"{path.parent.name}.{path.stem}"
        found[name] = View(name, path, path.read_text())
    ordered: list[View] = []
    visiting: set[str] = set()

    def visit(view: View) -> None:
        if view in ordered:
            return
        if view.name in visiting:
            raise ViewError(f"{view.path}: views read each other in a cycle")
        visiting.add(view.name)
        for ref in sorted(view.references()):
            if ref in found:
                visit(found[ref])
        ordered.append(view)

    for view in found.values():
        visit(view)
    return tuple(ordered)


def deployable(tables: Iterable[str], root: Path = SQL_DIR) -> list[View]:
    """The views whose every input exists (as one of `tables` or an earlier view)."""
    available = set(tables)
    out = []
    for view in all_views(root):
        if view.references() <= available:
            out.append(view)
            available.add(view.name)
    return out


def deploy(settings: Settings, root: Path = SQL_DIR) -> list[str]:
    """CREATE OR REPLACE every view whose input tables are registered in Trino; returns their names."""
    from scenelake.trino_client import connect, quote

    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(f"select table_schema || '.' || table_name from {quote(settings.trino_catalog)}"
                    ".information_schema.tables where table_type = 'BASE TABLE'")
        views = deployable((r[0] for r in cur.fetchall()), root)
        for view in views:
            layer, name = view.name.split(".")
            cur.execute(f"create schema if not exists {quote(settings.trino_catalog)}.{quote(layer)}")
            cur.fetchall()
            target = f"{quote(settings.trino_catalog)}.{quote(layer)}.{quote(name)}"
            # SECURITY INVOKER: the reader's own column masks and grants apply to the tables the
            # view reads (scenelake.access), so no view reveals a column its reader may not see.
            cur.execute(f"create or replace view {target} security invoker as\n"
                        f"{view.tree.sql(dialect='trino', pretty=True)}")
            cur.fetchall()
    finally:
        conn.close()
    return [v.name for v in views]


def slice_query(by: list[str], runs: list[str] | None = None) -> str:
    """The slice view's query grouped by any combination of attributes of gold.detection_evaluation.

    `by = ["lighting", "motion"]` gives slice_by 'lighting,motion' and values like 'dark,running'
    (a missing attribute shows as 'null'); an empty `by` gives the whole run.
    """
    known = {v.name: v for v in all_views()}
    columns = output_columns(known[SLICE_BASE].tree)
    unknown = [c for c in by if c not in columns]
    if unknown:
        raise ViewError(f"cannot slice by {', '.join(unknown)}: not a column of {SLICE_BASE} "
                        f"(choose from {', '.join(columns)})")
    tree = known[SLICE_VIEW].tree.copy()
    if by:
        parts = [exp.func("coalesce", exp.cast(exp.column(c, table="e"), "varchar"), exp.Literal.string("null"))
                 for c in by]
        value: exp.Expr = parts[0]
        for part in parts[1:]:
            value = exp.DPipe(this=exp.DPipe(this=value, expression=exp.Literal.string(",")), expression=part)
        label = exp.Literal.string(",".join(by))
    else:
        value, label = exp.Literal.string("all"), exp.Literal.string("all")
    records = (exp.select(label.as_("slice_by"), value.as_("slice_value"), "e.*")
               .from_(exp.to_table(SLICE_BASE).as_("e")))
    if runs:
        records = records.where(exp.column("run_id", table="e").isin(*runs))
    cte = next(c for c in tree.find_all(exp.CTE) if c.alias_or_name == "records")
    cte.set("this", records)
    return tree.sql(dialect="trino", pretty=True)


def contract_schema() -> dict[str, dict[str, dict[str, str]]]:
    """{layer: {table: {column: trino type}}} of every contract, the schema sqlglot checks views against."""
    from scenelake.contracts import all_contracts

    schema: dict[str, dict[str, dict[str, str]]] = {}
    for table in all_contracts().values():
        schema.setdefault(table.layer, {})[table.table] = dict(table.trino_columns())
    return schema


def _where(view: View, node: exp.Expr | None) -> str:
    meta = node.this.meta if node is not None and isinstance(node.this, exp.Expr) else {}
    return f"{view.path}:{meta.get('line', 1)}:{meta.get('col', 1)}"


def check(root: Path = SQL_DIR) -> list[str]:
    """Problems of every view file, as 'file:line:column: message' (empty when all is well).

    Each file must parse as Trino SQL, read only tables that have a contract or are views, and
    name only columns those have (sqlglot qualifies every column against the contracts).
    """
    from sqlglot.errors import OptimizeError, ParseError
    from sqlglot.optimizer.qualify import qualify

    schema = contract_schema()
    problems: list[str] = []
    failed: set[str] = set()  # views with problems: what reads them is not checked again
    try:
        ordered = all_views(root)
    except (ViewError, ParseError) as exc:
        return [str(exc)]
    for view in ordered:
        try:
            tree = view.tree
        except ViewError as exc:
            problems.append(str(exc))
            failed.add(view.name)
            continue
        if view.references() & failed:
            failed.add(view.name)
            continue
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        unknown = [t for t in tree.find_all(exp.Table) if t.name and t.name not in ctes
                   and not (t.db in schema and t.name in schema[t.db])]
        for table in unknown:
            problems.append(f"{_where(view, table)}: unknown table {table.db}.{table.name} "
                            "(no contract in schemas/ and no view in sql/)")
        if unknown:
            failed.add(view.name)
            continue
        try:
            qualified = qualify(tree.copy(), schema=dict(schema), dialect="trino", validate_qualify_columns=True)
        except OptimizeError as exc:
            name = str(exc).rsplit(":", 1)[-1].strip().strip('"')
            column = next((c for c in tree.find_all(exp.Column) if c.name == name), None)
            problems.append(f"{_where(view, column)}: {exc}")
            failed.add(view.name)
            continue
        layer, name = view.name.split(".")
        schema.setdefault(layer, {})[name] = {c: "varchar" for c in output_columns(qualified)}
    return problems


def lineage(view_name: str, column: str | None = None) -> dict[str, list[str]]:
    """Column-level lineage of a view: each output column -> the layer.table.column it reads.

    Computed by sqlglot through other views (so a view over a view reaches tables). Columns
    used only to order rows (window ORDER BY) do not count as sources, as in sqlglot.
    """
    from sqlglot.lineage import lineage as column_lineage
    from sqlglot.optimizer.qualify import qualify

    known = {v.name: v for v in all_views()}
    if view_name not in known:
        raise ViewError(f"no view {view_name!r}; views: {', '.join(known)}")
    view = known[view_name]
    schema: dict[str, object] = dict(contract_schema())
    sources = {name: v.tree.sql(dialect="trino") for name, v in known.items() if name != view_name}
    with_views: dict[str, object] = dict(schema_with_views(contract_schema()))
    columns = [column] if column else output_columns(qualify(view.tree.copy(), schema=with_views, dialect="trino"))
    out = {}
    for name in columns:
        try:
            node = column_lineage(name, view.tree.sql(dialect="trino"), schema=schema, sources=sources,
                                  dialect="trino")
        except sqlglot.errors.SqlglotError as exc:
            raise ViewError(f"{view.path}: no lineage for column {name!r}: {exc}") from exc
        leaves = {f"{n.expression.db}.{n.expression.name}.{n.name.split('.')[-1]}"
                  for n in node.walk() if isinstance(n.expression, exp.Table)}
        out[name] = sorted(leaves)
    return out


def schema_with_views(schema: dict[str, dict[str, dict[str, str]]]) -> dict[str, dict[str, dict[str, str]]]:
    """The contract schema plus every view's output columns (for star expansion over views)."""
    from sqlglot.optimizer.qualify import qualify

    merged = {layer: dict(tables) for layer, tables in schema.items()}
    for view in all_views():
        layer, name = view.name.split(".")
        as_schema: dict[str, object] = dict(merged)
        columns = output_columns(qualify(view.tree.copy(), schema=as_schema, dialect="trino"))
        merged.setdefault(layer, {})[name] = {c: "varchar" for c in columns}
    return merged
