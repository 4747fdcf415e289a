"""The curated views (coverage, leaderboard, tracking slices, data health, quality history) in the real Trino.

The session's small generated lake with planted faults (`faulty_lake`: 8 captures, ingested and
evaluated by the jobs, shared with the conservation tests), so the quarantine and the gates have
something to report. Every view is compared with the same numbers computed in pandas from the
tables it reads, as Spark reads them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from scenelake import delta_io, quality, views
from scenelake.contracts import all_contracts, scenario_attributes
from scenelake.settings import Settings
from scenelake.trino_client import connect, register_tables

pytestmark = pytest.mark.integration
ATTRIBUTES = scenario_attributes()


@pytest.fixture(scope="module")
def lake(spark, faulty_lake, trino: Settings) -> Settings:  # type: ignore[no-untyped-def]
    """The shared faulty lake (tests/conftest.py), its tables registered and every view deployed."""
    lake, _ = faulty_lake
    # The lake's gates all passed: one more gate run stops a batch of silver.model_runs that has a run
    # twice (the contract's key check), so the history has a failure to count. Only
    # ops.quality_results changes, which the conservation tests do not read.
    runs = delta_io.read_table(spark, lake, "silver.model_runs")
    with pytest.raises(quality.QualityGateFailed):
        quality.gate(runs.unionByName(runs.limit(1)), "silver.model_runs",
                     quality.GateRun(spark, lake, "test_curated_views", "a-run-twice"))
    names = [n for n in all_contracts() if delta_io.table_exists(spark, lake, n)]
    register_tables(lake, [tuple(n.split(".")) for n in names])  # type: ignore[misc]
    deployed = views.deploy(lake)
    assert sorted(deployed) == sorted(v.name for v in views.all_views())
    return lake


@pytest.fixture(scope="module")
def tables(spark, lake: Settings) -> dict[str, pd.DataFrame]:  # type: ignore[no-untyped-def]
    names = ["silver.captures", "silver.frames", "silver.annotations", "silver.subjects", "silver.model_runs",
             "gold.detection_metrics", "gold.tracking_metrics", "ops.quarantine", "ops.quality_results"]
    out = {}
    for name in names:
        df = delta_io.read_table(spark, lake, name)
        # toPandas cannot carry maps and arrays through Arrow; the tests need neither.
        keep = [f.name for f in df.schema.fields if f.dataType.typeName() not in ("map", "array")]
        out[name] = df.select(*keep).toPandas()
    return out


def trino_frame(settings: Settings, sql: str) -> pd.DataFrame:
    conn = connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = cur.fetchall()
        return pd.DataFrame(rows, columns=[d[0] for d in cur.description])
    finally:
        conn.close()


def keyed(df: pd.DataFrame, key: list[str]) -> dict[tuple[object, ...], dict[str, object]]:
    """Rows by key, nulls (None or NaN) as None, so that pandas and Trino rows compare."""
    records = df.astype(object).where(df.notna(), None).to_dict("records")
    return {tuple(r[k] for k in key): r for r in records}


def assert_rows_equal(got: pd.DataFrame, want: pd.DataFrame, key: list[str]) -> None:
    """Same keys; integers exact, floats to 1e-9."""
    got_rows, want_rows = keyed(got, key), keyed(want, key)
    assert sorted(got_rows, key=repr) == sorted(want_rows, key=repr)
    for k, expected in want_rows.items():
        for column, value in expected.items():
            actual = got_rows[k][column]
            if isinstance(value, float):
                assert actual == pytest.approx(value, abs=1e-9), (k, column)
            else:
                assert actual == value, (k, column)


def test_capture_coverage_counts_every_combination(lake, tables) -> None:  # type: ignore[no-untyped-def]
    captures, frames = tables["silver.captures"], tables["silver.frames"]
    per_capture = pd.DataFrame({"capture_id": sorted(set(captures["capture_id"]) | set(frames["capture_id"]))})
    per_capture = per_capture.merge(captures[["capture_id", *ATTRIBUTES, "duration_s"]], how="left")
    counts = {
        "frames": frames.groupby("capture_id").size(),
        "labelled_frames": frames[frames["labelled"]].groupby("capture_id").size(),
        "ground_truth_objects": tables["silver.annotations"].groupby("capture_id").size(),
        "subjects": tables["silver.subjects"].groupby("capture_id").size(),
        "consented_subjects": tables["silver.subjects"].query("consent == 'granted'").groupby("capture_id").size(),
        # one per capture the consent policy holds out, and of those the ones awaiting an erasure
        "held_out_captures": tables["silver.subjects"].query("consent != 'granted'").groupby("capture_id").size()
        .clip(upper=1),
        "held_out_withdrawn": tables["silver.subjects"].query("consent == 'withdrawn'").groupby("capture_id").size()
        .clip(upper=1),
    }
    for column, series in counts.items():
        per_capture[column] = per_capture["capture_id"].map(series).fillna(0).astype(int)
    want = (per_capture.groupby(list(ATTRIBUTES), dropna=False)
            .agg(captures=("capture_id", "size"), hours=("duration_s", lambda h: h.sum(min_count=1)),
                 **{c: (c, "sum") for c in counts})
            .reset_index())
    want["hours"] = want["hours"] / 3600
    got = trino_frame(lake, "select * from delta.gold.capture_coverage")
    assert list(got.columns) == [*ATTRIBUTES, "captures", "hours", *counts]
    assert_rows_equal(got, want, list(ATTRIBUTES))
    assert got["captures"].sum() == len(per_capture) and got["labelled_frames"].sum() == frames["labelled"].sum()
    assert got["labelled_frames"].sum() > 0 and len(got) > 1
    assert got["held_out_withdrawn"].sum() > 0 and got["held_out_captures"].sum() > got["held_out_withdrawn"].sum()


def test_held_out_captures_are_in_silver_and_in_no_gold_table(spark, lake, tables) -> None:  # type: ignore[no-untyped-def]
    """The consent policy: a capture with a pending or withdrawn subject keeps its silver rows and
    reaches no gold table; every other evaluated capture does."""
    subjects = tables["silver.subjects"]
    held_out = set(subjects[subjects["consent"] != "granted"]["capture_id"])
    predicted = {r[0] for r in delta_io.read_table(spark, lake, "silver.predictions").select("capture_id")
                 .distinct().collect()}
    labelled = set(tables["silver.frames"].query("labelled")["capture_id"])
    assert held_out & predicted & labelled, "the lake should have held-out captures with predictions"
    assert held_out <= set(tables["silver.captures"]["capture_id"])
    for name in ("gold.detection_matches", "gold.tracking_metrics"):
        got = {r[0] for r in trino_frame(lake, f"select distinct capture_id from delta.{name}").itertuples(index=False)}
        assert not got & held_out, name
    matched = {r[0] for r in trino_frame(lake, "select distinct capture_id from delta.gold.detection_matches")
               .itertuples(index=False)}
    assert matched == (predicted & labelled) - held_out


def test_leaderboard_equals_the_metrics_tables(lake, tables) -> None:  # type: ignore[no-untyped-def]
    detection = tables["gold.detection_metrics"].query("category == 'all'")
    tracking = tables["gold.tracking_metrics"].query("capture_id == 'all'")
    want = (tables["silver.model_runs"][["run_id", "model_name", "model_version"]]
            .merge(detection[["run_id", "ap", "ap50", "ap75", "ar100", "num_frames", "num_ground_truth",
                              "num_predictions"]], how="left")
            .merge(tracking[["run_id", "mota", "motp_distance", "idf1"]], how="left"))
    ap = want["ap"].fillna(-1.0)
    want["rank_overall"] = ap.rank(method="min", ascending=False).astype(int)
    want["rank_in_model"] = ap.groupby(want["model_name"]).rank(method="min", ascending=False).astype(int)
    got = trino_frame(lake, "select * from delta.gold.model_leaderboard")
    assert_rows_equal(got[list(want.columns)], want, ["run_id"])
    assert sorted(got["run_id"]) == ["person-v1", "person-v2"] and got["mota"].notna().all()
    # person-v2 is the better model overall (the generator's planted regression is one slice).
    assert got.set_index("run_id")["rank_overall"].to_dict() == {"person-v2": 1, "person-v1": 2}


def tracking_numbers(sums: pd.DataFrame) -> pd.DataFrame:
    """The devkit's ratios from summed counts (Python floats, the order of operations of the devkit)."""
    def ratio(num: pd.Series, den: pd.Series) -> pd.Series:
        return pd.Series([n / d if d else None for n, d in zip(num, den, strict=True)], index=num.index,
                         dtype=object)

    out = sums.copy()
    out["mota"] = [1 - (fn + fp + sw) / gt if gt else None
                   for fn, fp, sw, gt in zip(sums["fn"], sums["fp"], sums["idsw"], sums["gt_dets"], strict=True)]
    out["motp_distance"] = ratio(sums["motp_sum"], sums["tp"])
    out["idf1"] = ratio(2 * sums["idtp"], sums["gt_dets"] + sums["tr_dets"])
    out["idp"] = ratio(sums["idtp"], sums["idtp"] + sums["idfp"])
    out["idr"] = ratio(sums["idtp"], sums["idtp"] + sums["idfn"])
    out["recall"] = ratio(sums["tp"], sums["gt_dets"])
    out["precision"] = ratio(sums["tp"], sums["tp"] + sums["fp"])
    return out.drop(columns="motp_sum")


COUNTS = ["tp", "fp", "fn", "idsw", "frag", "mt", "pt", "ml", "idtp", "idfp", "idfn", "num_frames", "gt_ids",
          "gt_dets", "tr_dets"]
RATIOS = ["mota", "motp_distance", "idf1", "idp", "idr", "recall", "precision"]


def test_tracking_slices_sum_counts_over_the_slice_captures(lake, tables) -> None:  # type: ignore[no-untyped-def]
    metrics = tables["gold.tracking_metrics"]
    sequences = metrics[metrics["capture_id"] != "all"].merge(
        tables["silver.captures"][["capture_id", *ATTRIBUTES]], how="left")
    expected = []
    for attribute in ("all", *ATTRIBUTES):
        value = pd.Series("all", index=sequences.index) if attribute == "all" else sequences[attribute]
        sums = (sequences.assign(slice_by=attribute, slice_value=value)
                .groupby(["run_id", "slice_by", "slice_value"], dropna=False)
                .agg(num_captures=("capture_id", "size"), **{c: (c, "sum") for c in [*COUNTS, "motp_sum"]})
                .reset_index())
        expected.append(tracking_numbers(sums))
    want = pd.concat(expected, ignore_index=True)
    got = trino_frame(lake, "select * from delta.gold.tracking_slice_metrics")
    assert set(got.columns) == {*want.columns}
    assert_rows_equal(got[list(want.columns)], want, ["run_id", "slice_by", "slice_value"])
    assert len(got[got["slice_by"] == "lighting"]) >= 2

    # The whole-run slice is the run's OVERALL row of gold.tracking_metrics, every number of it.
    overall = metrics[metrics["capture_id"] == "all"].assign(slice_by="all", slice_value="all")
    whole = got[got["slice_by"] == "all"]
    assert sorted(whole["run_id"]) == sorted(overall["run_id"]) == ["person-v1", "person-v2"]
    assert_rows_equal(whole[["run_id", "slice_by", "slice_value", *COUNTS, *RATIOS]],
                      overall[["run_id", "slice_by", "slice_value", *COUNTS, *RATIOS]], ["run_id"])


def test_data_health_counts_quarantine_by_day_file_and_rule(lake, tables) -> None:  # type: ignore[no-untyped-def]
    quarantine = tables["ops.quarantine"]
    days = {b: datetime.strptime(b.split("-")[0], "%Y%m%dT%H%M%S").date() for b in set(quarantine["batch_id"])}
    rows = quarantine.assign(
        day=quarantine["batch_id"].map(days),
        source_kind=[f.split("/")[0] for f in quarantine["source_file"]],
        file_format=[Path(f).suffix.lstrip(".").lower() for f in quarantine["source_file"]],
        rule=["duplicate_of" if r.startswith("duplicate_of:") else r for r in quarantine["rule"]],
        rule_kind=[r.split(":")[0] for r in quarantine["rule"]])
    key = ["day", "target_table", "source_kind", "file_format", "source_file", "rule", "rule_kind"]
    want = rows.groupby(key).agg(records=("record_no", "size"), batches=("batch_id", "nunique")).reset_index()
    got = trino_frame(lake, "select * from delta.ops.data_health")
    assert list(got.columns) == [*key, "records", "batches"]  # never the payload
    assert_rows_equal(got, want, key)
    assert got["records"].sum() == len(quarantine) > 0
    assert {"duplicate_of", "malformed_json"} <= set(got["rule"])


def test_quality_history_summarises_each_gate_run(lake, tables) -> None:  # type: ignore[no-untyped-def]
    results = tables["ops.quality_results"]
    failed = ~results["success"]
    rows = results.assign(
        day=results["checked_at"].dt.date,
        failed=failed & (results["severity"] == "fail"),
        warned=failed & (results["severity"] == "warn"),
        unexpected_rows=results["unexpected_count"].where(failed, 0).fillna(0).astype(int))
    key = ["checked_at", "job", "table_name", "gate_run_id", "batch_key", "outcome"]
    want = (rows.groupby(key).agg(day=("day", "first"), expectations=("expectation_id", "size"),
                                  passed=("success", "sum"), failed=("failed", "sum"), warned=("warned", "sum"),
                                  unexpected_rows=("unexpected_rows", "sum"))
            .reset_index())
    got = trino_frame(lake, "select * from delta.ops.quality_history")
    # Trino reads Delta timestamps as timestamp(3) with time zone; Spark's session time zone is UTC.
    want["checked_at"] = want["checked_at"].dt.floor("ms").dt.tz_localize("UTC")
    assert_rows_equal(got[list(want.columns)], want, ["gate_run_id", "table_name", "checked_at"])
    assert set(got["table_name"]) >= {"silver.captures", "silver.predictions", "gold.detection_metrics"}
    stopped = got[got["outcome"] == "stopped"]
    assert stopped[["job", "table_name", "failed"]].values.tolist() == [["test_curated_views", "silver.model_runs", 1]]
    assert stopped["unexpected_rows"].iloc[0] == 2


def test_readme_queries_of_the_curated_views_run(lake) -> None:  # type: ignore[no-untyped-def]
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("Curated views", 1)[1].split("```sql\n", 1)[1].split("```", 1)[0]
    statements = [s.strip() for s in block.split(";") if s.strip()]
    assert len(statements) == 3
    for sql in statements:
        assert len(trino_frame(lake, sql)) > 0, sql
