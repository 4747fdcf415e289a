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


def _contract_file(root: Path, layout: str) -> Path:
    (root / "silver").mkdir(exist_ok=True)
    path = root / "silver" / "things.yaml"
    path.write_text("table: things\nlayer: silver\ngrain: one row per thing\ndescription: x\nprimary_key: [id]\n"
                    f"{layout}columns:\n  - {{name: id, type: string, nullable: false, description: the id}}\n"
                    "  - {name: run, type: string, nullable: false, description: the run}\n"
                    "  - {name: tags, type: 'map<string,string>', nullable: true, description: tags}\n")
    return path


def test_layout_keys_name_columns_and_zorder_avoids_partition_columns(tmp_path: Path) -> None:
    good = contracts.load_contract_file(_contract_file(tmp_path, "partition_by: [run]\nzorder_by: [id]\n"))
    assert (good.partition_by, good.zorder_by) == (("run",), ("id",))
    with pytest.raises(ContractError, match=r"zorder columns \['nope'\] are not columns"):
        contracts.load_contract_file(_contract_file(tmp_path, "zorder_by: [nope]\n"))
    with pytest.raises(ContractError, match=r"zorder_by column\(s\) \['run'\] are partition columns"):
        contracts.load_contract_file(_contract_file(tmp_path, "partition_by: [run]\nzorder_by: [run, id]\n"))
    with pytest.raises(ContractError, match=r"primitive type, not \['tags'\]"):
        contracts.load_contract_file(_contract_file(tmp_path, "zorder_by: [tags]\n"))


def test_a_new_partitioning_changes_the_fingerprint_and_a_zorder_does_not(tmp_path: Path) -> None:
    def digest(layout: str) -> str:
        _contract_file(tmp_path, layout)
        contracts.all_contracts.cache_clear()
        try:
            return contracts.fingerprint("silver.things", root=tmp_path)
        finally:
            contracts.all_contracts.cache_clear()

    plain = digest("")
    assert digest("zorder_by: [id]\n") == plain
    assert digest("partition_by: [run]\n") != plain


def test_silver_predictions_and_detection_matches_are_partitioned_by_run() -> None:
    found = all_contracts()
    for name in ("silver.predictions", "gold.detection_matches"):
        assert found[name].partition_by == ("run_id",)
        assert found[name].zorder_by[0] == "capture_id"
