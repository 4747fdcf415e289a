"""The generated access rules (pure parts): shape, order, masks, groups, bad PII flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenelake import access
from scenelake.contracts import ContractError, all_contracts, load_contract_file
from scenelake.settings import load_settings

pytestmark = pytest.mark.unit


def first_rule(rules: dict, group: str, schema: str, table: str) -> dict | None:  # type: ignore[type-arg]
    """The first rule Trino would apply to `group` reading schema.table (rules are first-match), or None
    (Trino denies a table no rule matches)."""
    import re

    for rule in rules["tables"]:
        if all(re.fullmatch(rule.get(k, ".*"), v) for k, v in
               (("group", group), ("catalog", "delta"), ("schema", schema), ("table", table))):
            return rule  # type: ignore[no-any-return]
    return None


def table_rule(rules: dict, group: str, schema: str, table: str) -> dict:  # type: ignore[type-arg]
    rule = first_rule(rules, group, schema, table)
    assert rule is not None, f"no rule for {group} on {schema}.{table}"
    return rule


def privileges(rules: dict, group: str, schema: str, table: str) -> list[str]:  # type: ignore[type-arg]
    rule = first_rule(rules, group, schema, table)
    return [] if rule is None else list(rule["privileges"])


def test_rules_follow_the_pii_flags_with_the_first_matching_rule() -> None:
    rules = access.rules("delta")
    analyst_subjects = table_rule(rules, "analyst", "silver", "subjects")
    assert analyst_subjects["privileges"] == ["SELECT"]
    (mask,) = analyst_subjects["columns"]
    assert mask["name"] == "subject_id" and mask["mask_environment"] == {"user": "pipeline"}
    key = '(select key_bytes from "delta"."ops"."mask_keys")'
    assert f'hmac_sha256(to_utf8("subject_id"), {key})' in mask["mask"]
    assert table_rule(rules, "analyst", "ops", "mask_keys")["privileges"] == []
    assert table_rule(rules, "ml_engineer", "ops", "mask_keys")["privileges"] == []
    assert table_rule(rules, "analyst", "ops", "quarantine")["columns"] == [{"name": "payload", "allow": False}]
    assert table_rule(rules, "analyst", "bronze", "captures")["privileges"] == []
    assert table_rule(rules, "analyst", "gold", "detection_metrics") == {
        "group": "analyst", "catalog": "delta", "schema": "silver|gold|ops", "table": "[^$]*", "privileges": ["SELECT"]}
    ml = table_rule(rules, "ml_engineer", "silver", "captures")
    assert ml["privileges"] == ["SELECT"] and "device_serial" not in {c["name"] for c in ml["columns"]}
    assert table_rule(rules, "ml_engineer", "ops", "quarantine")["columns"] == [
        {"name": "payload", "mask": "CAST(NULL AS varchar)", "mask_environment": {"user": "pipeline"}}]
    # Unknown fields and undeclared tags are raw records: ML engineers read NULL, analysts nothing.
    assert table_rule(rules, "analyst", "silver", "predictions")["columns"] == [{"name": "extra", "allow": False}]
    assert [c["name"] for c in table_rule(rules, "ml_engineer", "silver", "captures")["columns"]] == ["tags", "extra"]
    assert "OWNERSHIP" in table_rule(rules, "pipeline", "bronze", "captures")["privileges"]
    assert rules["catalogs"][-1] == {"allow": "none"}  # anyone outside the groups reads nothing


def test_every_pii_column_of_every_contract_gets_a_rule_for_every_reader() -> None:
    rules = access.rules("delta")
    for table in all_contracts().values():
        for col in (c for c in table.columns if c.pii):
            for role in ("analyst", "ml_engineer"):
                rule = table_rule(rules, role, table.layer, table.table)
                named = [c["name"] for c in rule.get("columns", [])]
                expected = access.column_access(access.ROLES[role], table, col.name)
                assert (col.name in named) == (expected in (access.MASK, access.DENY)) or not rule["privileges"]


def test_masked_value_matches_the_sql_mask_format() -> None:
    assert access.masked_value(None, "00") is None
    value = access.masked_value("subject-1", "00" * 32)
    assert value is not None and value.startswith("masked:") and len(value) == len("masked:") + 16
    assert access.mask_expression("n", "bigint", "subject", "00") == "CAST(NULL AS bigint)"


def test_groups_add_members_and_reject_unknown_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings().with_overrides(access_groups={"ml_engineer": ["carol"]})
    monkeypatch.setenv("SCENELAKE_ACCESS_GROUPS", "analyst=alice, bob")
    groups = access.groups(settings)
    assert groups["analyst"] == ["analyst", "alice", "bob"] and groups["ml_engineer"] == ["ml_engineer", "carol"]
    monkeypatch.setenv("SCENELAKE_ACCESS_GROUPS", "analysts=alice")
    with pytest.raises(access.AccessError, match="unknown group 'analysts'"):
        access.groups(settings)


def test_a_pii_flag_must_name_a_kind(tmp_path: Path) -> None:
    path = tmp_path / "silver" / "x.yaml"
    path.parent.mkdir()
    path.write_text("table: x\nlayer: silver\ngrain: g\ndescription: d\nprimary_key: [a]\ncolumns:\n"
                    "  - {name: a, type: string, nullable: false, pii: true, description: d}\n")
    with pytest.raises(ContractError, match="pii: True; expected one of subject"):
        load_contract_file(path)


@pytest.mark.parametrize("hidden", ["history", "transactions", "properties", "partitions"])
def test_hidden_tables_are_readable_only_where_the_whole_table_is(hidden: str) -> None:
    rules = access.rules("delta")
    for group in ("analyst", "ml_engineer"):
        # Tables with a masked or denied column, and tables of a layer the group does not read: denied.
        for schema, table in (("silver", "subjects"), ("silver", "captures"), ("ops", "quarantine"),
                              ("silver", "predictions"), ("bronze", "captures")):
            assert privileges(rules, group, schema, f"{table}${hidden}") == [], (group, table)
        # Tables it reads whole: allowed, like the table.
        for schema, table in (("gold", "detection_metrics"), ("silver", "frames"), ("ops", "quality_results")):
            assert privileges(rules, group, schema, f"{table}${hidden}") == ["SELECT"], (group, table)
        # The key table and its log: nobody but the writers.
        assert privileges(rules, group, "ops", f"mask_keys${hidden}") == []
    assert privileges(rules, "pipeline", "ops", f"mask_keys${hidden}") != []


def test_a_hidden_table_nobody_listed_is_denied() -> None:
    """A hidden table a later Trino adds ($files), or one of a table without a contract, matches no rule."""
    rules = access.rules("delta")
    for group in ("analyst", "ml_engineer"):
        assert first_rule(rules, group, "gold", "detection_metrics$files") is None
        assert first_rule(rules, group, "gold", "uncontracted$history") is None
        assert privileges(rules, group, "gold", "uncontracted") == ["SELECT"]  # the table itself: by layer
    assert "files" not in access.METADATA_TABLES


def test_a_raw_map_with_safe_keys_keeps_only_those_keys() -> None:
    assert access.mask_expression("tags", "map(varchar, varchar)", "raw", "delta", ("occlusion", "crowd")) == (
        "CASE WHEN cardinality(map_filter(\"tags\", (k, v) -> k IN ('occlusion', 'crowd'))) > 0 "
        "THEN map_filter(\"tags\", (k, v) -> k IN ('occlusion', 'crowd')) END")
    assert access.mask_expression("extra", "map(varchar, varchar)", "raw", "delta") == (
        "CAST(NULL AS map(varchar, varchar))")
    captures = all_contracts()["silver.captures"]
    # The scenario tags are columns now (`scenario: true`): what is left in `tags` nobody declared.
    assert access.column_access(access.ROLES["analyst"], captures, "tags") == access.DENY
    assert access.column_access(access.ROLES["analyst"], captures, "occlusion") == access.ALLOW
    assert access.column_access(access.ROLES["analyst"], captures, "extra") == access.DENY


def test_the_matrix_lists_hidden_tables_maps_and_the_key_table() -> None:
    rows = {(g, t, c): (a, how) for g, t, c, a, how in access.matrix()}
    assert rows[("analyst", "silver.subjects$transactions", "*")] == ("denied", "masked or denied columns")
    assert rows[("analyst", "gold.detection_metrics$history", "*")] == ("allowed", "")
    assert rows[("analyst", "gold.detection_metrics$*", "*")] == ("denied", "hidden tables not listed")
    assert rows[("ml_engineer", "ops.mask_keys$*", "*")] == ("denied", "the masking key")
    assert rows[("pipeline", "ops.mask_keys$*", "*")] == ("allowed", "")
    assert rows[("analyst", "silver.captures", "tags")] == ("denied", "")
    assert rows[("analyst", "silver.captures", "extra")] == ("denied", "")
    assert rows[("ml_engineer", "silver.annotations", "extra")] == ("masked", "NULL")
    assert rows[("analyst", "silver.subjects", "subject_id")] == ("masked", "keyed hash")
