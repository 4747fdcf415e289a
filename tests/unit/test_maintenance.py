"""The pure pieces of table maintenance: which partitions to compact, the statements, safe retention."""

from __future__ import annotations

import pytest

from scenelake.contracts import contract
from scenelake.maintenance import (
    DataFile,
    MaintenanceError,
    check_retention,
    optimize_sql,
    partition_of,
    partitions_to_compact,
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
