"""The SparkSession factory every job and the test suite use: Delta on, jars from the local cache.

Jars are resolved by `make setup` with Maven into .cache/jars and handed to Spark as files, so
nothing is downloaded when a job starts. Under spark-submit the session already exists and its
configuration (including --jars) wins; see `scenelake submit-args`.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from scenelake.settings import Settings, load_settings, read_versions

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Timestamps are instants: Spark and Trino must agree on the zone they print them in.
    "spark.sql.session.timeZone": "UTC",
    # Readable by Trino: no deletion vectors (Trino reads them, but keep the protocol small).
    "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
    # Constraint propagation is exponential in the aliases of one predicate's sub-expressions: a
    # filter on a contract's rule column (which reads every typed column) made the optimizer run
    # out of heap. It only infers extra filters, so the plans stay correct without it.
    "spark.sql.constraintPropagation.enabled": "false",
}


class SparkSetupError(Exception):
    """Spark cannot start as configured; the message says what to run or set."""


def delta_jars(settings: Settings) -> list[Path]:
    jars = sorted((settings.cache_dir / "jars").glob("*.jar"))
    if not any(j.name.startswith("delta-spark_") for j in jars):
        raise SparkSetupError(
            f"no Delta Lake jars in {settings.cache_dir / 'jars'}: run `make setup` first")
    return jars


def uses_s3(settings: Settings) -> bool:
    return any(root.startswith("s3a://") for root in (settings.lake_root, settings.landing_root))


def s3_jars(settings: Settings) -> list[Path]:
    """S3A (hadoop-aws of Spark's Hadoop and the AWS SDK), resolved by `make setup-cluster`."""
    jars = sorted((settings.cache_dir / "s3-jars").glob("*.jar"))
    if not any(j.name.startswith("hadoop-aws-") for j in jars):
        raise SparkSetupError(f"the lake or landing zone is on S3 ({settings.lake_root}) but there are no S3A "
                              f"jars in {settings.cache_dir / 's3-jars'}: run `make setup-cluster` first")
    return jars


def s3_conf(settings: Settings) -> dict[str, str]:
    """Spark's S3A settings for the profile's object store (none when nothing is on S3).

    The AWS SDK jar is 640 MB: it is put on the class path of the driver and of every executor from
    the same folder (a cluster's image holds it at that path), never shipped to executors per job.
    Credentials are not configuration: S3A's default chain reads AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY (the local cluster's workers are started with them) or an instance role.
    """
    if not uses_s3(settings):
        return {}
    classpath = str(settings.cache_dir / "s3-jars" / "*")
    s3_jars(settings)
    conf = {"spark.driver.extraClassPath": classpath, "spark.executor.extraClassPath": classpath,
            "spark.hadoop.fs.s3a.endpoint.region": settings.s3_region}
    if settings.s3_endpoint:
        tls = str(settings.s3_endpoint.startswith("https:")).lower()
        conf.update({"spark.hadoop.fs.s3a.endpoint": settings.s3_endpoint,
                     # A store of our own has no virtual-host bucket names (bucket.host).
                     "spark.hadoop.fs.s3a.path.style.access": "true",
                     "spark.hadoop.fs.s3a.connection.ssl.enabled": tls})
    return conf


def metastore_conf(settings: Settings) -> dict[str, str]:
    """Spark's catalog in the shared Hive metastore (none without one: tables are paths, as embedded).

    Spark's built-in Hive client (2.3) talks to it; the jobs register the tables they write there
    (delta_io.register_in_metastore) and Trino reads them from it."""
    if not settings.metastore_uri:
        return {}
    return {"spark.sql.catalogImplementation": "hive",
            "spark.hadoop.hive.metastore.uris": settings.metastore_uri,
            # Where a schema created without a location would go; the jobs give every one its layer's folder.
            "spark.sql.warehouse.dir": f"{settings.lake_root.rstrip('/')}/_warehouse"}


def on_this_machine(master: str) -> bool:
    """Spark's executors run here: local mode, or a standalone master on loopback (the local cluster)."""
    return master.startswith("local") or bool(re.match(r"spark://(127\.0\.0\.1|localhost)[:/]", master))


def spark_java_home() -> str | None:
    return os.environ.get("SCENELAKE_SPARK_JAVA_HOME") or read_versions().get("SPARK_JAVA_HOME") or None


def get_spark(app_name: str = "scenelake", settings: Settings | None = None,
              extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Return the active session, or build one for the configured environment."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = settings or load_settings()
    java_home = spark_java_home()
    if java_home:
        os.environ["JAVA_HOME"] = java_home
    builder = SparkSession.builder.appName(app_name).master(settings.spark_master)
    if uses_s3(settings):
        from scenelake.objectstore import export_credentials

        export_credentials(settings)
    conf = {**DELTA_CONF, **s3_conf(settings), **metastore_conf(settings), **settings.spark_conf, **(extra_conf or {})}
    conf.setdefault("spark.jars", ",".join(str(j) for j in delta_jars(settings)))
    if settings.spark_master.startswith("spark://") and on_this_machine(settings.spark_master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the local cluster talks over loopback only
    if on_this_machine(settings.spark_master):
        # Python workers run this interpreter (with numpy, pandas and pyarrow), not whatever python3 is first
        # on PATH. pyspark's SparkContext reads PYSPARK_PYTHON; the conf key only reaches spark-submit.
        conf.setdefault("spark.pyspark.python", sys.executable)
        os.environ.setdefault("PYSPARK_PYTHON", conf["spark.pyspark.python"])
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SCENELAKE_SPARK_LOG_LEVEL", "WARN"))
    return spark


def submit_args(settings: Settings | None = None) -> list[str]:
    """The spark-submit arguments that give a job the same Spark as `scenelake run`."""
    settings = settings or load_settings()
    args = ["--master", settings.spark_master,
            "--jars", ",".join(str(j) for j in delta_jars(settings))]
    if on_this_machine(settings.spark_master):
        args += ["--conf", f"spark.pyspark.python={sys.executable}"]
    for key, value in {**DELTA_CONF, **s3_conf(settings), **metastore_conf(settings), **settings.spark_conf}.items():
        args += ["--conf", f"{key}={value}"]
    return args
