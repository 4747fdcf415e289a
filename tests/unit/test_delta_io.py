"""Writes go through the contracts: no table without one, no column it lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenelake import delta_io
from scenelake.contracts import ContractError, all_contracts, contract, fingerprint
from scenelake.settings import Settings

pytestmark = pytest.mark.unit


def test_a_table_without_contract_cannot_be_written(spark, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lake = settings.with_overrides(lake_root=str(tmp_path))
    df = spark.createDataFrame([(1,)], "id long")
    with pytest.raises(ContractError, match=r"no contract for table 'silver.mystery': add schemas/silver/mystery.yaml"):
        delta_io.append(spark, lake, "silver.mystery", df)
    assert not (tmp_path / "silver" / "mystery").exists()


def test_a_column_the_contract_lacks_is_refused(spark, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lake = settings.with_overrides(lake_root=str(tmp_path))
    df = spark.createDataFrame([("r1", "m", "v", "x.json", "surprise")],
                               "run_id string, model_name string, model_version string, source_file string, "
                               "extra string")
    with pytest.raises(ContractError, match=r"silver.model_runs: columns not in the contract \['extra'\], "
                                            r"contract columns missing \['code_commit', 'finished_at', "
                                            r"'params', 'started_at'\]"):
        delta_io.merge(spark, lake, "silver.model_runs", df)
    assert not (tmp_path / "silver" / "model_runs").exists()


def test_columns_a_contract_gained_are_added_to_an_existing_table(spark, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lake = settings.with_overrides(lake_root=str(tmp_path))
    # silver.subjects as an older contract had it: no consent column yet.
    older = spark.createDataFrame([("cap-1", "subj-1", "m.jsonl", 1, "b1"), ("cap-2", "subj-2", "m.jsonl", 2, "b1")],
                                  "capture_id string, subject_id string, source_file string, line_number long, "
                                  "batch_id string")
    older.write.format("delta").save(lake.table_path("silver", "subjects"))
    now = spark.createDataFrame([("cap-1", "subj-1", "withdrawn", "m.jsonl", 1, "b1")],
                                contract("silver.subjects").spark_schema())
    delta_io.merge(spark, lake, "silver.subjects", now, commit_metadata="built")
    table = delta_io.read_table(spark, lake, "silver.subjects")
    assert table.columns == contract("silver.subjects").column_names
    assert sorted(tuple(r) for r in table.collect()) == [
        ("cap-1", "subj-1", "withdrawn", "m.jsonl", 1, "b1"), ("cap-2", "subj-2", None, "m.jsonl", 2, "b1")]
    assert delta_io.last_commit_metadata(spark, lake, "silver.subjects") == "built"


def test_the_contract_fingerprint_changes_with_a_column(tmp_path: Path) -> None:
    (tmp_path / "silver").mkdir()
    path = tmp_path / "silver" / "things.yaml"
    head = "table: things\nlayer: silver\ngrain: one row per thing\ndescription: x\nprimary_key: [id]\ncolumns:\n"
    path.write_text(head + "  - {name: id, type: string, nullable: false, description: d}\n")
    before = fingerprint("silver.things", root=tmp_path)
    assert fingerprint("silver.things", root=tmp_path) == before and len(before) == 12
    path.write_text(head + "  - {name: id, type: string, nullable: false, description: d}\n"
                    "  - {name: extra, type: \"map<string,string>\", nullable: true, description: e}\n")
    all_contracts.cache_clear()  # the contracts of a root are read once per process
    assert fingerprint("silver.things", root=tmp_path) != before


def _file_stats(path: Path) -> list[dict]:  # type: ignore[type-arg]
    """The statistics of every file a table's log adds, commit after commit."""
    import json

    return [json.loads(json.loads(line)["add"]["stats"]) for log in sorted((path / "_delta_log").glob("*.json"))
            for line in log.read_text().splitlines() if '"add"' in line and json.loads(line).get("add")]


def test_pii_columns_get_no_statistics_in_the_log(spark, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lake = settings.with_overrides(lake_root=str(tmp_path))
    subjects = contract("silver.subjects")
    rows = spark.createDataFrame([("cap-1", "jane.doe@example.com", "granted", "m.jsonl", 1, "b1")],
                                 subjects.spark_schema())
    delta_io.merge(spark, lake, "silver.subjects", rows)
    (stats,) = _file_stats(tmp_path / "silver" / "subjects")
    assert set(stats["minValues"]) == set(stats["maxValues"]) == {"capture_id", "consent", "source_file",
                                                                   "line_number", "batch_id"}
    assert "jane.doe" not in str(stats)

    # A table created before the rule (every column with statistics) stops collecting them on the next write.
    older = tmp_path / "silver" / "subjects_before"
    rows.write.format("delta").save(str(older))
    assert "jane.doe" in str(_file_stats(older))
    assert delta_io.conform_stats_columns(spark, str(older), subjects)
    assert not delta_io.conform_stats_columns(spark, str(older), subjects)  # in line: no second commit
    rows.write.format("delta").mode("append").save(str(older))
    assert "jane.doe" not in str(_file_stats(older)[-1])


def test_delta_accepts_the_statistics_columns_of_every_contract(spark, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Delta refuses some columns as statistics columns (booleans, maps, partition columns): every table
    can be created with its contract's."""
    lake = settings.with_overrides(lake_root=str(tmp_path))
    for name, table in all_contracts().items():
        delta_io.append(spark, lake, name, spark.createDataFrame([], table.spark_schema()))
        properties = spark.sql(f"describe detail delta.`{lake.table_path(table.layer, table.table)}`").first()
        assert properties["properties"][delta_io.STATS_PROPERTY] == ",".join(table.stats_columns), name  # type: ignore[index]


def test_lookup_columns_are_the_key_columns_a_table_is_laid_out_by() -> None:
    assert contract("silver.predictions").lookup_columns == ("run_id",)  # partitioned by run
    assert contract("silver.frames").lookup_columns == ("capture_id",)  # Z-ordered by capture, then frame
    assert contract("silver.subjects").lookup_columns == ("capture_id",)
    assert contract("silver.annotations").lookup_columns == ()  # Z-ordered by capture, keyed by annotation id
    assert contract("ops.quarantine").lookup_columns == ()


def test_a_merge_narrowed_to_the_source_runs_reads_only_their_partition(spark, settings: Settings,  # type: ignore[no-untyped-def]
                                                                        tmp_path: Path) -> None:
    """silver.predictions is merged on (run_id, prediction_id) restricted to the batch's runs: run r1's
    file is moved away during a merge of run r2 (any read of it would fail), and the rows come out
    as an unrestricted upsert gives them."""
    lake = settings.with_overrides(lake_root=str(tmp_path))
    table = contract("silver.predictions")

    def rows(*items: tuple[str, str, float]):  # type: ignore[no-untyped-def]
        return spark.createDataFrame(
            [(run, pid, "cap-1", 1, "person", 1, 1.0, 2.0, 3.0, 4.0, score, None, None, None, "f.jsonl", 1)
             for run, pid, score in items], table.spark_schema())

    delta_io.merge(spark, lake, "silver.predictions", rows(("r1", "p1", 0.1), ("r2", "p1", 0.2)))
    (r1_file,) = (tmp_path / "silver" / "predictions" / "run_id=r1").glob("*.parquet")
    aside = tmp_path / "aside.parquet"
    r1_file.rename(aside)
    delta_io.merge(spark, lake, "silver.predictions", rows(("r2", "p1", 0.5), ("r2", "p2", 0.6)))
    aside.rename(r1_file)
    got = sorted((r.run_id, r.prediction_id, r.score) for r in delta_io.read_table(spark, lake, "silver.predictions")
                 .collect())
    assert got == [("r1", "p1", 0.1), ("r2", "p1", 0.5), ("r2", "p2", 0.6)]


def test_the_metadata_a_write_reads_is_describe_details_after_every_kind_of_commit(  # type: ignore[no-untyped-def]
        spark, settings: Settings, tmp_path: Path) -> None:
    """Writes read the metadata from the transaction log (`log_metadata`) instead of DESCRIBE DETAIL
    (which counts the files): the two agree on columns, partition columns and properties, on a new
    table and after a column, a property and a layout change."""
    from delta.tables import DeltaTable

    path = str(tmp_path / "t")

    def both() -> tuple[delta_io.TableMetadata, delta_io.TableMetadata]:
        detail = DeltaTable.forPath(spark, path).detail().first()
        described = delta_io.TableMetadata(spark.read.format("delta").load(path).columns,
                                           list(detail["partitionColumns"]), dict(detail["properties"]))
        return delta_io.log_metadata(spark, path), described

    spark.createDataFrame([("a", 1)], "k string, v long").write.format("delta").partitionBy("k").save(path)
    log, described = both()
    assert log == described
    cdf = "delta.enableChangeDataFeed"
    assert (log.columns, log.partition_columns, log.properties.get(cdf)) == (["k", "v"], ["k"], None)
    spark.sql(f"alter table delta.`{path}` add columns (w double)")
    spark.sql(f"alter table delta.`{path}` set tblproperties ('delta.enableChangeDataFeed' = 'true')")
    log, described = both()
    assert log == described
    assert (log.columns, log.partition_columns, log.properties.get(cdf)) == (["k", "v", "w"], ["k"], "true")
    (spark.read.format("delta").load(path).write.format("delta").mode("overwrite").option("overwriteSchema", "true")
     .partitionBy("v").save(path))
    log, described = both()
    assert log == described and log.partition_columns == ["v"]
