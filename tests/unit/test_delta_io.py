"""Writes go through the contracts: no table without one, no column it lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenelake import delta_io
from scenelake.contracts import ContractError
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
