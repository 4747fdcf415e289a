"""The SQL in sql/ is checked with sqlglot against the contracts; the slice query regroups the view."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlglot

from scenelake import views
from scenelake.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit


def test_every_view_parses_and_names_only_contract_columns() -> None:
    assert views.check() == []
    names = [v.name for v in views.all_views()]
    assert set(names) >= {"gold.detection_evaluation", "gold.detection_slice_metrics", "gold.capture_coverage",
                          "gold.model_leaderboard", "gold.tracking_slice_metrics", "ops.data_health",
                          "ops.quality_history"}
    assert names.index("gold.detection_evaluation") < names.index("gold.detection_slice_metrics")
    for view in views.all_views():
        assert view.row_meaning.lower().startswith("one row per"), view.path


def broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    root = tmp_path / "sql"
    shutil.copytree(PROJECT_ROOT / "sql", root)
    path = root / "gold" / "detection_evaluation.sql"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return root


def test_an_unknown_column_is_reported_with_file_line_and_column(tmp_path: Path) -> None:
    root = broken_copy(tmp_path, "  m.is_crowd,", "  m.is_crowded,")
    problems = views.check(root)
    line = next(i for i, text in enumerate((root / "gold" / "detection_evaluation.sql").read_text().splitlines(), 1)
                if "is_crowded" in text)
    assert problems == [f"{root}/gold/detection_evaluation.sql:{line}:{len('  m.is_crowded')}: "
                        "Unknown column: is_crowded"]


def test_an_unknown_table_is_reported(tmp_path: Path) -> None:
    root = broken_copy(tmp_path, "LEFT JOIN silver.model_runs AS r", "LEFT JOIN silver.model_run AS r")
    problems = views.check(root)
    assert len(problems) == 1 and "unknown table silver.model_run" in problems[0]
    assert problems[0].startswith(f"{root}/gold/detection_evaluation.sql:")


def test_slice_query_regroups_by_any_attributes() -> None:
    sql = views.slice_query(["lighting", "motion"], ["person-v2"])
    tree = sqlglot.parse_one(sql, read="trino")
    records = next(c for c in tree.find_all(sqlglot.exp.CTE) if c.alias_or_name == "records")
    assert records.this.sql("trino") == (
        "SELECT 'lighting,motion' AS slice_by, COALESCE(CAST(e.lighting AS VARCHAR), 'null') || ',' || "
        "COALESCE(CAST(e.motion AS VARCHAR), 'null') AS slice_value, e.* FROM gold.detection_evaluation AS e "
        "WHERE e.run_id IN ('person-v2')")
    with pytest.raises(views.ViewError, match="cannot slice by lightning"):
        views.slice_query(["lightning"])


def test_lineage_reaches_table_columns_through_views() -> None:
    evaluation = views.lineage("gold.detection_evaluation")
    assert evaluation["lighting"] == ["silver.captures.lighting"]
    assert evaluation["occlusion"] == ["silver.captures.occlusion"]
    assert evaluation["model_version"] == ["silver.model_runs.model_version"]
    sliced = views.lineage("gold.detection_slice_metrics", "num_captures")
    assert sliced == {"num_captures": ["gold.detection_matches.capture_id"]}
    assert {"gold.detection_matches.tp_all", "gold.detection_matches.ig_all"} <= set(
        views.lineage("gold.detection_slice_metrics", "ap50")["ap50"])


def test_lineage_of_the_curated_views() -> None:
    tracking = views.lineage("gold.tracking_slice_metrics", "mota")
    assert tracking == {"mota": ["gold.tracking_metrics.fn", "gold.tracking_metrics.fp",
                                 "gold.tracking_metrics.gt_dets", "gold.tracking_metrics.idsw"]}
    assert views.lineage("gold.model_leaderboard", "rank_in_model") == {
        "rank_in_model": ["gold.detection_metrics.ap", "silver.model_runs.model_name"]}
    coverage = views.lineage("gold.capture_coverage")
    assert coverage["hours"] == ["silver.captures.duration_s"]
    assert coverage["occlusion"] == ["silver.captures.occlusion"]
    assert views.lineage("ops.data_health", "day") == {"day": ["ops.quarantine.batch_id"]}


def test_no_view_column_reads_a_pii_column() -> None:
    """No view reads a PII column, but a raw map's safe keys (none is listed now that the scenario tags are columns)."""
    from sqlglot import exp

    from scenelake.contracts import all_contracts

    pii = {f"{name}.{c.name}" for name, table in all_contracts().items() for c in table.columns if c.pii}
    safe = {c.name: c.safe_keys for table in all_contracts().values() for c in table.columns if c.safe_keys}
    assert {"ops.quarantine.payload", "silver.subjects.subject_id", "silver.captures.tags"} <= pii
    assert "tags" not in safe  # the scenario tags the views slice by are columns (`scenario: true`)
    for view in views.all_views():
        for column, sources in views.lineage(view.name).items():
            unsafe = {s for s in pii & set(sources) if s.rsplit(".", 1)[1] not in safe}
            assert not unsafe, f"{view.name}.{column} reads {sorted(unsafe)}"
        for col in (c for c in view.tree.find_all(exp.Column) if c.name in safe):
            key = col.parent.expressions[0] if isinstance(col.parent, exp.Bracket) else None
            assert isinstance(key, exp.Literal) and key.this in safe[col.name], f"{view.name} reads {col.parent.sql()}"


def test_catalog_lists_every_table_and_view_with_pii_flags() -> None:
    from scenelake import catalog
    from scenelake.contracts import all_contracts

    page = catalog.markdown()
    for name in [*all_contracts(), *(v.name for v in views.all_views())]:
        assert f"## `{name}`" in page
    assert "| `device_serial` **PII (device)** |" in page
    assert "(readers: ml_engineer allowed, analyst masked) |" in page


def test_the_scenario_macros_expand_to_the_contract_attributes() -> None:
    from scenelake.contracts import scenario_attributes

    names = scenario_attributes()
    assert names == ("source", "device_model", "sensor", "region", "environment", "lighting", "motion", "occlusion",
                     "crowd")
    tree = views.parse("SELECT c.capture_id, scenario_columns(c), 1 AS n FROM silver.captures AS c "
                       "CROSS JOIN UNNEST(scenario_slices(c)) AS s(slice_by, slice_value) GROUP BY scenario_columns(c)")
    cols = ", ".join(f"c.{n}" for n in names)
    labels = ", ".join(f"'{n}'" for n in names)
    values = ", ".join(f"CAST(c.{n} AS VARCHAR)" for n in names)
    assert tree.sql(dialect="trino") == (
        f"SELECT c.capture_id, {cols}, 1 AS n FROM silver.captures AS c CROSS JOIN UNNEST(ARRAY['all', {labels}], "
        f"ARRAY['all', {values}]) AS s(slice_by, slice_value) GROUP BY {cols}")
    assert views.parse("SELECT scenario_columns() FROM silver.captures").sql(dialect="trino") == (
        f"SELECT {', '.join(names)} FROM silver.captures")
    for bad, message in (("SELECT 1 FROM t WHERE scenario_columns(c) = 1", "select list or a GROUP BY"),
                         ("SELECT scenario_slices(c) FROM t", "one argument of an UNNEST"),
                         ("SELECT scenario_columns(c.x) FROM t", "a table alias")):
        with pytest.raises(views.ViewError, match=message):
            views.parse(bad)
    # No view file names an attribute: every one is a macro (the slice views and the coverage view).
    for view in views.all_views():
        assert "element_at(" not in view.sql.lower() or "tags" not in view.sql, view.name
