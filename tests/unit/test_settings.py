"""The environment is chosen in one place: profiles plus SCENELAKE_<KEY> overrides."""

from __future__ import annotations

import pytest

from scenelake.settings import PROJECT_ROOT, SettingsError, load_settings

pytestmark = pytest.mark.unit


def test_embedded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("LAKE_ROOT", "LANDING_ROOT", "STATE_DIR", "TRINO_PORT", "SPARK_MASTER"):
        monkeypatch.delenv(f"SCENELAKE_{key}", raising=False)
    settings = load_settings("embedded")
    assert settings.spark_master == "local[*]"
    assert settings.lake_root == str(PROJECT_ROOT / "lake")
    assert settings.trino_port == 8080
    assert settings.table_path("silver", "captures") == f"{PROJECT_ROOT}/lake/silver/captures"
    assert settings.trino_location("silver", "captures") == f"local://{PROJECT_ROOT}/lake/silver/captures"


def test_cluster_is_configuration_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCENELAKE_LAKE_ROOT", raising=False)
    monkeypatch.setenv("SCENELAKE_SPARK_MASTER", "spark://head:7077")
    settings = load_settings("cluster")
    assert settings.spark_master == "spark://head:7077"
    assert settings.table_path("gold", "x") == "s3a://scenelake-lake/lake/gold/x"
    assert settings.trino_location("gold", "x") == "s3://scenelake-lake/lake/gold/x"
    assert not settings.is_local_lake


def test_unknown_environment_names_the_known_ones() -> None:
    with pytest.raises(SettingsError, match="known: cluster, cluster-local, embedded"):
        load_settings("staging")


def test_unknown_layer_is_an_error() -> None:
    with pytest.raises(SettingsError, match="unknown layer 'platinum'"):
        load_settings("embedded").table_path("platinum", "t")
