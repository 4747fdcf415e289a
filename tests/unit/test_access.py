"""The generated access rules (pure parts): shape, order, masks, groups, bad PII flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenelake import access
from scenelake.contracts import ContractError, all_contracts, load_contract_file
from scenelake.settings import load_settings

pytestmark = pytest.mark.unit


def table_rule(rules: dict, group: str, schema: str, table: str) -> dict:  # type: ignore[type-arg]
    """The first rule Trino would apply to `group` reading schema.table (rules are first-match)."""
    import re

    for rule in rules["tables"]:
        if all(re.fullmatch(rule.get(k, ".*"), v) for k, v in
               (("group", group), ("catalog", "delta"), ("schema", schema), ("table", table))):
            return rule  # type: ignore[no-any-return]
    raise AssertionError(f"no rule for {group} on {schema}.{table}")


def test_rules_follow_the_pii_flags_with_the_first_matching_rule() -> None:
    rules = access.rules("delta")
    analyst_subjects = table_rule(rules, "analyst", "silver", "subjects")
    assert analyst_subjects["privileges"] == ["SELECT"]
    (mask,) = analyst_subjects["columns"]
    assert mask["name"] == "subject_id" and mask["mask_environment"] == {"user": "pipeline"}
    key = 'from_hex((select key_hex from "delta"."ops"."mask_keys"))'
    assert f'hmac_sha256(to_utf8("subject_id"), {key})' in mask["mask"]
    assert table_rule(rules, "analyst", "ops", "mask_keys")["privileges"] == []
    assert table_rule(rules, "ml_engineer", "ops", "mask_keys")["privileges"] == []
    assert table_rule(rules, "analyst", "ops", "quarantine")["columns"] == [{"name": "payload", "allow": False}]
    assert table_rule(rules, "analyst", "bronze", "captures")["privileges"] == []
    assert table_rule(rules, "analyst", "gold", "detection_metrics") == {
        "group": "analyst", "catalog": "delta", "schema": "silver|gold|ops", "privileges": ["SELECT"]}
    ml = table_rule(rules, "ml_engineer", "silver", "captures")
    assert ml["privileges"] == ["SELECT"] and ml["columns"] == []  # device serials: allowed
    assert table_rule(rules, "ml_engineer", "ops", "quarantine")["columns"] == [
        {"name": "payload", "mask": "CAST(NULL AS varchar)", "mask_environment": {"user": "pipeline"}}]
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
