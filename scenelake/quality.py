"""Quality gates with Great Expectations: a batch with a failed `fail` check is not published.

A table's suite is its contract's checks (not-null, allowed values, ranges, key uniqueness;
severity `fail`) plus the hand-written domain checks in `quality/<layer>/<table>.yaml`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# No usage statistics: this machine (and many clusters) cannot reach the vendor anyway.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
import yaml  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402

from scenelake.contracts import Contract, contract
from scenelake.settings import PROJECT_ROOT

QUALITY_DIR = PROJECT_ROOT / "quality"
SEVERITIES = ("fail", "warn")


class QualityGateFailed(Exception):
    """A batch failed at least one `fail` expectation; it was not published."""

    def __init__(self, table: str, failures: list[CheckResult]):
        self.table = table
        self.failures = failures
        lines = "; ".join(f.summary() for f in failures)
        super().__init__(f"quality gate stopped the {table} batch: {lines}")


@dataclass(frozen=True)
class Check:
    expectation: str
    kwargs: dict[str, Any]
    severity: str
    why: str

    @property
    def label(self) -> str:
        target = self.kwargs.get("column") or self.kwargs.get("column_list") or ""
        return f"{self.expectation}({target})" if target else self.expectation


@dataclass(frozen=True)
class CheckResult:
    check: Check
    success: bool
    unexpected_count: int | None
    observed: Any

    def summary(self) -> str:
        count = f", {self.unexpected_count} unexpected" if self.unexpected_count else ""
        return f"{self.check.label} [{self.check.severity}]{count}"


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
                            item.get("why", "")))
    return checks


def checks_for(name: str) -> list[Check]:
    return contract_checks(contract(name)) + hand_checks(name)


def _expectation(check: Check, index: int) -> gx.expectations.Expectation:
    class_name = "".join(part.capitalize() for part in check.expectation.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None:
        raise ValueError(f"unknown Great Expectations expectation {check.expectation!r}")
    return cls(**check.kwargs, meta={"severity": check.severity, "why": check.why, "check": index})


def validate(df: DataFrame, name: str) -> list[CheckResult]:
    """Run the table's suite on one batch with Great Expectations on Spark."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    checks = checks_for(name)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_spark(name="scenelake")
    asset = source.add_dataframe_asset(name=name)
    batch = asset.add_batch_definition_whole_dataframe("batch").get_batch(
        batch_parameters={"dataframe": df})
    suite = gx.ExpectationSuite(name=name)
    for index, check in enumerate(checks):
        suite.add_expectation(_expectation(check, index))
    result = batch.validate(suite, result_format="SUMMARY")
    outcomes = []
    for res in result.results:
        config = res.expectation_config
        assert config is not None and config.meta is not None, "GE dropped a result's configuration"
        check = checks[int(config.meta["check"])]
        details = res.result or {}
        outcomes.append(CheckResult(check, bool(res.success), details.get("unexpected_count"),
                                    details.get("observed_value")))
    return sorted(outcomes, key=lambda o: checks.index(o.check))


def gate(df: DataFrame, name: str) -> list[CheckResult]:
    """Validate a batch; raise QualityGateFailed when a `fail` check fails, else return all."""
    outcomes = validate(df, name)
    failures = [o for o in outcomes if not o.success and o.check.severity == "fail"]
    if failures:
        raise QualityGateFailed(name, failures)
    return outcomes
