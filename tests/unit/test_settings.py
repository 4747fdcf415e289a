"""The environment is chosen in one place: profiles plus SCENELAKE_<KEY> overrides."""

from __future__ import annotations

from pathlib import Path

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


def cluster_local(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for key in ("LAKE_ROOT", "LANDING_ROOT", "STATE_DIR", "TRINO_PORT", "SPARK_MASTER", "S3_ENDPOINT", "METASTORE_URI"):
        monkeypatch.delenv(f"SCENELAKE_{key}", raising=False)
    return load_settings("cluster-local")


def test_the_local_cluster_derives_every_s3_setting_from_its_profile(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from scenelake.spark import SparkSetupError, on_this_machine, s3_conf
    from scenelake.trino_server import filesystem_properties

    settings = cluster_local(monkeypatch)
    assert settings.trino_location("silver", "captures") == "s3://scenelake-lake/lake/silver/captures"
    # The jars' folder as `make setup-cluster` leaves it (only the file names are read here).
    monkeypatch.setenv("SCENELAKE_CACHE", str(tmp_path))
    with pytest.raises(SparkSetupError, match="run `make setup-cluster` first"):
        s3_conf(settings)
    (tmp_path / "s3-jars").mkdir()
    (tmp_path / "s3-jars" / "hadoop-aws-3.4.2.jar").write_bytes(b"")
    jars = str(tmp_path / "s3-jars" / "*")
    assert s3_conf(settings) == {
        "spark.driver.extraClassPath": jars, "spark.executor.extraClassPath": jars,
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1", "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:18333",
        "spark.hadoop.fs.s3a.path.style.access": "true", "spark.hadoop.fs.s3a.connection.ssl.enabled": "false"}
    # The keys stay out of the catalog file: Trino reads them from its environment.
    assert filesystem_properties(settings).splitlines() == [
        "fs.native-s3.enabled=true", "s3.region=us-east-1", "s3.endpoint=http://127.0.0.1:18333",
        "s3.path-style-access=true", "s3.aws-access-key=${ENV:AWS_ACCESS_KEY_ID}",
        "s3.aws-secret-key=${ENV:AWS_SECRET_ACCESS_KEY}"]
    assert on_this_machine(settings.spark_master) and on_this_machine("local[2]")
    assert not on_this_machine("spark://spark-master:7077") and not on_this_machine("spark://127.0.0.10:7077")
    assert s3_conf(load_settings("embedded").with_overrides(lake_root="/x", landing_root="/y")) == {}


def test_an_unreachable_store_is_named_and_other_errors_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from scenelake.objectstore import unreachable

    settings = cluster_local(monkeypatch)
    refused = RuntimeError("getFileStatus on s3a://scenelake-lake/lake/bronze/_delta_log: SdkClientException: "
                           "Unable to execute HTTP request: Connect to 127.0.0.1:18333 failed: Connection refused")
    assert unreachable(settings, refused) == (
        "the object store at http://127.0.0.1:18333 cannot be reached (Unable to execute HTTP request): "
        "`scenelake cluster status` says whether it runs. Nothing half-done is published: rerun the job "
        "once the store is back and it carries on from the last commit")
    assert unreachable(settings, RuntimeError("AccessDenied: 403")) is None
    assert unreachable(load_settings("embedded").with_overrides(lake_root="/x", landing_root="/y"), refused) is None


def test_the_shared_metastore_is_one_setting_for_spark_trino_and_the_metastore(monkeypatch: pytest.MonkeyPatch,
                                                                                tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from scenelake.cluster import derby, metastore_site
    from scenelake.spark import metastore_conf
    from scenelake.trino_server import TrinoServer

    settings = cluster_local(monkeypatch).with_overrides(state_dir=tmp_path)
    assert settings.metastore_uri == "thrift://127.0.0.1:19083"
    assert metastore_conf(settings) == {
        "spark.sql.catalogImplementation": "hive", "spark.hadoop.hive.metastore.uris": "thrift://127.0.0.1:19083",
        "spark.sql.warehouse.dir": "s3a://scenelake-lake/lake/_warehouse"}
    TrinoServer(settings).render_config()
    catalog = (tmp_path / "trino" / "etc" / "catalog" / "delta.properties").read_text().splitlines()
    assert "hive.metastore=thrift" in catalog and "hive.metastore.uri=thrift://127.0.0.1:19083" in catalog
    assert not [line for line in catalog if line.startswith("hive.metastore.catalog.dir")]
    site = {p.findtext("name"): p.findtext("value")
            for p in ET.fromstring(metastore_site(settings, derby(tmp_path / "db"))).iter("property")}
    assert site["metastore.thrift.port"] == "19083"
    assert site["javax.jdo.option.ConnectionURL"] == f"jdbc:derby:;databaseName={tmp_path / 'db'};create=true"
    assert site["fs.s3a.endpoint"] == "http://127.0.0.1:18333" and site["fs.s3.impl"].endswith("S3AFileSystem")
    assert site["fs.s3a.retry.limit"] == "2"  # the profile's fail-fast S3A settings reach it too
    assert not [k for k in site if "secret" in k or "access.key" in k]  # keys come from its environment

    # Without one (embedded), Spark keeps path tables and Trino its own file metastore.
    embedded = load_settings("embedded").with_overrides(state_dir=tmp_path / "embedded")
    assert metastore_conf(embedded) == {}
    TrinoServer(embedded).render_config()
    catalog = (tmp_path / "embedded" / "trino" / "etc" / "catalog" / "delta.properties").read_text().splitlines()
    assert "hive.metastore=file" in catalog
    assert f"hive.metastore.catalog.dir=local://{tmp_path / 'embedded' / 'trino' / 'metastore'}" in catalog
