"""The SparkSession factory every job and the test suite use: Delta on, jars from the local cache.

Jars are resolved by `make setup` with Maven into .cache/jars and handed to Spark as files, so
nothing is downloaded when a job starts. Under spark-submit the session already exists and its
configuration (including --jars) wins; see `scenelake submit-args`.
"""

from __future__ import annotations

import os
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
    conf = {**DELTA_CONF, **settings.spark_conf, **(extra_conf or {})}
    conf.setdefault("spark.jars", ",".join(str(j) for j in delta_jars(settings)))
    if settings.spark_master.startswith("local"):
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
    for key, value in {**DELTA_CONF, **settings.spark_conf}.items():
        args += ["--conf", f"{key}={value}"]
    return args
