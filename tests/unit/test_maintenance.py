"""The pure pieces of table maintenance: which partitions to compact, the statements, safe retention."""

from __future__ import annotations

import pytest

from scenelake.contracts import contract
from scenelake.maintenance import (
    HOUR_MS,
    DataFile,
    Ledger,
    MaintenanceError,
    Plan,
    check_retention,
    commits_in_log,
    next_ledger,
    optimize_sql,
    partition_of,
    partitions_to_compact,
    plan,
    retention_property,
    vacuum_sql,
)

pytestmark = pytest.mark.unit
MB = 2**20


def test_partition_values_come_from_the_hive_style_path() -> None:
    assert partition_of("run_id=person-v1/part-0000.parquet") == (("run_id", "person-v1"),)
    assert partition_of("run_id=a%3Ab/day=2026-11-01/part-0.parquet") == (("run_id", "a:b"), ("day", "2026-11-01"))
    assert partition_of("run_id=__HIVE_DEFAULT_PARTITION__/p.parquet") == (("run_id", None),)
    assert partition_of("part-0000.parquet") == ()


def test_only_partitions_with_enough_small_files_are_compacted() -> None:
    a, b, c = (("run_id", "a"),), (("run_id", "b"),), (("run_id", "c"),)
    files = ([DataFile(a, MB)] * 5 + [DataFile(b, MB)] * 4 + [DataFile(c, MB)] * 3 + [DataFile(c, 100 * MB)] * 3)
    assert partitions_to_compact(files, min_small_files=5, small_file_bytes=64 * MB) == [a]
    assert partitions_to_compact(files, min_small_files=3, small_file_bytes=64 * MB) == [a, b, c]
    assert partitions_to_compact([DataFile((), MB)] * 5, 5, 64 * MB) == [()]
    assert partitions_to_compact([DataFile(a, 100 * MB)] * 9, 5, 64 * MB) == []
    with pytest.raises(MaintenanceError, match="at least 2"):
        partitions_to_compact(files, min_small_files=1, small_file_bytes=MB)


def test_optimize_names_the_partitions_and_the_contracts_zorder_columns() -> None:
    predictions = contract("silver.predictions")
    assert optimize_sql("/lake/silver/predictions", predictions, [(("run_id", "a"),), (("run_id", "it's"),)]) == (
        "optimize delta.`/lake/silver/predictions` where (`run_id` = 'a') or (`run_id` = 'it\\'s') "
        "zorder by (`capture_id`, `frame_index`)")
    assert optimize_sql("/l/c", contract("silver.captures"), [()]) == "optimize delta.`/l/c` zorder by (`capture_id`)"
    assert optimize_sql("/l/q", contract("ops.quarantine"), [()]) == "optimize delta.`/l/q`"
    with pytest.raises(MaintenanceError, match="nothing to compact"):
        optimize_sql("/l/p", predictions, [])


def test_a_retention_below_a_week_is_refused_unless_allowed() -> None:
    check_retention(168)
    check_retention(720)
    with pytest.raises(MaintenanceError, match=r"24 hours is shorter than Delta's safe minimum of 168 hours.*"
                                               r"--allow-unsafe-retention"):
        check_retention(24)
    check_retention(24, allow_unsafe=True)
    with pytest.raises(MaintenanceError, match="must not be negative"):
        check_retention(-1, allow_unsafe=True)


def test_the_retention_property_is_set_only_when_it_differs() -> None:
    assert retention_property(None, 168) is None  # Delta's default is a week
    assert retention_property(None, 720) == "interval 720 hours"
    assert retention_property("interval 720 hours", 720) is None
    assert retention_property("interval 1 weeks", 168) == "interval 168 hours"
    assert vacuum_sql("/l/t", dry_run=True) == "vacuum delta.`/l/t` dry run"


def test_files_read_are_the_scan_operators_drivers_in_trinos_query_record() -> None:
    from scenelake.trino_client import scan_splits

    info = {"queryStats": {"operatorSummaries": [
        {"operatorType": "ScanFilterAndProjectOperator", "totalDrivers": 3},
        {"operatorType": "TableScanOperator", "totalDrivers": 2},
        {"operatorType": "HashAggregationOperator", "totalDrivers": 7},
        {"operatorType": "ExchangeOperator", "totalDrivers": 4},
    ]}}
    assert scan_splits(info) == 5


def test_the_log_listing_gives_each_commit_its_json_files_time() -> None:
    names = [("00000000000000000000.json", 100), ("00000000000000000001.json", 200),
             ("00000000000000000001.checkpoint.parquet", 900), ("00000000000000000001.crc", 950),
             ("_last_checkpoint", 990), ("00000000000000000002.checkpoint.0000000001.0000000002.parquet", 700),
             ("00000000000000000002.checkpoint.0000000002.0000000002.parquet", 710),
             (".00000000000000000003.json.tmp", 5),
             ("_staged_commits", 1)]
    assert commits_in_log(names) == [(0, 100), (1, 200), (2, 710)]  # version 2's JSON was cleaned up
    assert commits_in_log([]) == []


WEEK = 168
NOW = 1000 * HOUR_MS
LEDGER = Ledger(version=5, committed_ms=NOW - 10 * HOUR_MS, vacuumed_through=2, retention_hours=WEEK,
                full_check_ms=NOW - 24 * HOUR_MS, files=4, bytes=4096)
LOG = [(2, NOW - 300 * HOUR_MS), (3, NOW - 100 * HOUR_MS), (4, NOW - 20 * HOUR_MS), (5, NOW - 10 * HOUR_MS)]


def test_a_table_nothing_was_committed_to_is_left_alone() -> None:
    assert plan(LEDGER, LOG, NOW, WEEK) == Plan(layout=False, vacuum=False, full=False)


def test_a_new_commit_means_reading_the_layout_and_an_aged_removal_means_vacuum() -> None:
    assert plan(LEDGER, LOG + [(6, NOW - HOUR_MS)], NOW, WEEK) == Plan(layout=True, vacuum=False, full=False)
    # version 3 (100 h old) passes the week's retention 68 hours later: its removed files may go
    assert plan(LEDGER, LOG, NOW + 68 * HOUR_MS, WEEK) == Plan(layout=False, vacuum=True, full=False)
    assert plan(LEDGER, LOG, NOW + 67 * HOUR_MS, WEEK) == Plan(layout=False, vacuum=False, full=False)
    # the table was recreated: same version, another commit
    assert plan(LEDGER, LOG[:-1] + [(5, NOW - HOUR_MS)], NOW, WEEK).layout


def test_everything_is_checked_without_a_ledger_once_a_retention_period_or_when_asked() -> None:
    full = Plan(layout=True, vacuum=True, full=True)
    assert plan(None, LOG, NOW, WEEK) == full
    assert plan(LEDGER, [], NOW, WEEK) == full
    assert plan(LEDGER, LOG, NOW, 720) == full  # another retention: the property and VACUUM change
    assert plan(LEDGER, LOG, LEDGER.full_check_ms + WEEK * HOUR_MS, WEEK) == full
    assert plan(LEDGER, LOG, NOW, WEEK, recheck=True) == full


def test_the_next_ledger_moves_its_vacuum_horizon_only_when_vacuum_ran() -> None:
    after = LOG + [(6, NOW + 1)]  # maintain's own OPTIMIZE
    done = Plan(layout=True, vacuum=False, full=False)
    assert next_ledger(LEDGER, done, LOG, after, NOW, WEEK, 2, 2048) == Ledger(
        6, NOW + 1, 2, WEEK, LEDGER.full_check_ms, 2, 2048)
    later = NOW + 90 * HOUR_MS
    assert next_ledger(LEDGER, Plan(False, True, False), LOG, LOG, later, WEEK, 4, 4096) == Ledger(
        5, LEDGER.committed_ms, 3, WEEK, LEDGER.full_check_ms, 4, 4096)  # 3 aged past the week, 4 not yet
    assert next_ledger(None, Plan(True, True, True), LOG, LOG, NOW, WEEK, 4, 4096) == Ledger(
        5, LEDGER.committed_ms, 2, WEEK, NOW, 4, 4096)
    assert Ledger.parse(LEDGER.text()) == LEDGER
    assert Ledger.parse("not json") is None and Ledger.parse('{"version": 1}') is None
