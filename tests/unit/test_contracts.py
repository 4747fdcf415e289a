"""Contracts parse, map to exact Spark and Trino types, and stay in step with jobs and suites."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
from pyspark.sql import types as T

import jobs
from scenelake import contracts
from scenelake.contracts import ContractError, all_contracts, spark_type, trino_type
from scenelake.quality import suite_file

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "spark", "trino"), [
    ("string", T.StringType(), "varchar"),
    ("long", T.LongType(), "bigint"),
    ("int", T.IntegerType(), "integer"),
    ("double", T.DoubleType(), "double"),
    ("boolean", T.BooleanType(), "boolean"),
    ("date", T.DateType(), "date"),
    ("timestamp", T.TimestampType(), "timestamp(3) with time zone"),
    ("array<double>", T.ArrayType(T.DoubleType(), True), "array(double)"),
    ("map<string,string>", T.MapType(T.StringType(), T.StringType(), True), "map(varchar, varchar)"),
    ("struct<x:double, ys:array<struct<k:string,v:long>>>",
     T.StructType([T.StructField("x", T.DoubleType()),
                   T.StructField("ys", T.ArrayType(T.StructType([
                       T.StructField("k", T.StringType()), T.StructField("v", T.LongType())])))]),
     "row(x double, ys array(row(k varchar, v bigint)))"),
])
def test_type_grammar_maps_to_spark_and_trino(text: str, spark: T.DataType, trino: str) -> None:
    assert spark_type(text) == spark
    assert trino_type(text) == trino


def test_unknown_type_is_rejected() -> None:
    with pytest.raises(ContractError, match="unknown type 'decimal'"):
        spark_type("decimal")


def test_every_contract_states_grain_and_describes_every_column() -> None:
    found = all_contracts()
    assert {"bronze.captures", "silver.captures"} <= set(found)
    for contract in found.values():
        assert contract.grain.startswith("one row per"), contract.name
        assert all(c.description.strip() for c in contract.columns), contract.name


def test_a_malformed_contract_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "silver").mkdir()
    bad = tmp_path / "silver" / "things.yaml"
    bad.write_text("table: things\nlayer: silver\ngrain: one row per thing\ndescription: x\n"
                   "primary_key: [id]\ncolumns:\n  - {name: id, type: string, nullable: false}\n")
    with pytest.raises(ContractError, match=r"things.yaml: column 'id' lacks \['description'\]"):
        contracts.load_contract_file(bad)


def written_tables() -> set[str]:
    """Every table a job declares it writes (module constants BRONZE/SILVER/GOLD/...)."""
    names = set()
    for info in pkgutil.iter_modules(jobs.__path__):
        module = importlib.import_module(f"jobs.{info.name}")
        names |= {v for k, v in vars(module).items()
                  if k.isupper() and isinstance(v, str) and v.count(".") == 1
                  and v.split(".")[0] in ("bronze", "silver", "gold", "ops")}
    from scenelake import quality

    return names | {quality.RESULTS, quality.ACCEPTANCES}  # written by every job's quality gate


def test_every_written_table_has_a_contract_and_silver_and_gold_have_a_suite() -> None:
    tables = written_tables()
    assert "silver.captures" in tables
    for name in tables:
        assert name in all_contracts(), f"{name} is written by a job but has no contract"
        if name.split(".")[0] in ("silver", "gold"):
            assert suite_file(name).exists(), f"{name} has no quality suite {suite_file(name)}"


def test_every_contract_is_written_by_a_job() -> None:
    assert set(all_contracts()) <= written_tables()
