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


def _pii_contract(root: Path, columns: str, layout: str = "") -> Path:
    (root / "silver").mkdir(exist_ok=True)
    path = root / "silver" / "people.yaml"
    path.write_text("table: people\nlayer: silver\ngrain: one row per person\ndescription: x\nprimary_key: [id]\n"
                    f"{layout}columns:\n  - {{name: id, type: string, nullable: false, description: the id}}\n"
                    "  - {name: who, type: string, nullable: false, pii: subject, description: a subject id}\n"
                    + columns)
    return path


def test_pii_columns_get_no_statistics_and_cannot_lay_out_a_table(tmp_path: Path) -> None:
    maps = "  - {name: extra, type: 'map<string,string>', nullable: true, pii: raw, description: unknown}\n"
    people = contracts.load_contract_file(_pii_contract(tmp_path, maps + "  - {name: n, type: long, nullable: true, "
                                                                         "description: a count}\n"
                                                           "  - {name: ok, type: boolean, nullable: true, "
                                                           "description: a flag}\n"))
    assert people.stats_columns == ["id", "n"]  # not the subject; not the map or boolean (Delta refuses them)
    for layout in ("partition_by: [who]\n", "zorder_by: [who]\n"):
        with pytest.raises(ContractError, match=r"PII column\(s\) \['who'\] cannot partition or Z-order"):
            contracts.load_contract_file(_pii_contract(tmp_path, "", layout))
    assert all_contracts()["silver.subjects"].stats_columns == ["capture_id", "consent", "source_file", "line_number",
                                                                 "batch_id"]


def test_safe_keys_belong_to_raw_maps_only(tmp_path: Path) -> None:
    raw = "  - {name: tags, type: 'map<string,string>', nullable: true, pii: raw, safe_keys: [crowd], description: t}\n"
    assert contracts.load_contract_file(_pii_contract(tmp_path, raw)).column("tags").safe_keys == ("crowd",)
    for bad in ("  - {name: tags, type: 'map<string,string>', nullable: true, safe_keys: [crowd], description: t}\n",
                "  - {name: note, type: string, nullable: true, pii: raw, safe_keys: [crowd], description: t}\n"):
        with pytest.raises(ContractError, match=r"column '(tags|note)' has safe_keys; only a `pii: raw` map"):
            contracts.load_contract_file(_pii_contract(tmp_path, bad))


def test_maps_of_unknown_fields_are_raw_pii() -> None:
    """`extra` and `tags` hold whatever a delivery carried that no contract names: PII until proven otherwise."""
    maps = [(t.name, c) for t in all_contracts().values() for c in t.columns if c.name in ("extra", "tags")]
    assert {name for name, _ in maps} >= {"silver.captures", "silver.annotations", "silver.predictions"}
    assert all(c.pii == "raw" for _, c in maps), [(n, c.name) for n, c in maps if c.pii != "raw"]
    tags = all_contracts()["silver.captures"].column("tags")
    assert tags.safe_keys == ()  # the scenario tags the views read are columns; what is left is undeclared


def test_scenario_attributes_are_flagged_primitive_non_pii_columns_of_the_captures(tmp_path: Path) -> None:
    assert contracts.scenario_attributes() == ("source", "device_model", "sensor", "region", "environment",
                                               "lighting", "motion", "occlusion", "crowd")
    captures = all_contracts()["silver.captures"]
    assert not captures.column("capture_id").scenario and not captures.column("tags").scenario
    for bad, message in (
            ("  - {name: k, type: 'map<string,string>', nullable: true, scenario: true, description: t}\n",
             "must be of a primitive type and not PII"),
            ("  - {name: k, type: string, nullable: true, pii: device, scenario: true, description: t}\n",
             "must be of a primitive type and not PII"),
            ("  - {name: k, type: string, nullable: true, scenario: yes please, description: t}\n",
             "expected true or false"),
            ("  - {name: k, type: string, nullable: true, scenario: true, description: t}\n",
             "scenario attributes are columns of silver.captures")):
        with pytest.raises(ContractError, match=message):
            contracts.load_contract_file(_pii_contract(tmp_path, bad))
