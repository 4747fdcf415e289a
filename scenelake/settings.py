"""The one place that decides the environment: which Spark, which lake root, which Trino.

A profile file `conf/<SCENELAKE_ENV>.toml` (default `embedded`) gives every value; an
environment variable `SCENELAKE_<KEY>` overrides one. Nothing else in scenelake reads the
environment to find data, so a job runs the same locally and under spark-submit on a cluster.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("SCENELAKE_HOME", Path(__file__).resolve().parent.parent))
LAYERS = ("bronze", "silver", "gold", "ops")


class SettingsError(Exception):
    """The configuration is missing or inconsistent; the message names the key to fix."""


def read_versions(path: Path = PROJECT_ROOT / "versions.env") -> dict[str, str]:
    """The pins in versions.env (also read by provision/setup.py with the same rules)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key.strip()] = value.strip()
    return pins


@dataclass(frozen=True)
class Settings:
    env: str
    spark_master: str
    lake_root: str
    landing_root: str
    state_dir: Path
    trino_host: str
    trino_port: int
    trino_user: str
    trino_catalog: str
    trino_heap: str
    trino_query_max_memory_per_node: str
    spark_conf: dict[str, str] = field(default_factory=dict)
    # Extra members of the access groups (scenelake.access): {"analyst": ["alice"], ...}.
    access_groups: dict[str, list[str]] = field(default_factory=dict)
    # Table maintenance (jobs/maintain.py): VACUUM keeps files a reader may need for this long, and
    # a partition is compacted once it holds this many files smaller than this size.
    vacuum_retention_hours: int = 168
    compact_min_small_files: int = 5
    compact_small_file_mb: int = 64
    compact_target_file_mb: int = 128
    # Render each gate's result into the Great Expectations Data Docs site (state_dir/data_docs).
    # The results are in ops.quality_results either way; the test session turns the HTML off.
    data_docs: bool = True
    # Extra JVM options for the embedded Trino server, one per whitespace-separated word (appended to
    # its jvm.config). The test session runs Trino with the quick JIT tier only (see tests/conftest.py).
    trino_jvm_options: str = ""
    # An S3-compatible object store other than AWS (the local cluster's, a vendor's): its URL, e.g.
    # http://127.0.0.1:18333. Empty: AWS itself, found by region. Spark (S3A), Trino (its native S3
    # file system) and uploads (scenelake.objectstore) all take it from here.
    s3_endpoint: str = ""
    s3_region: str = "us-east-1"
    # Whether `scenelake trino up` runs a Trino server on this machine for this profile (embedded and
    # the local cluster); a cluster's Trino is run by its own deployment.
    trino_local: bool = True
    # A Hive metastore (thrift://host:port) that Spark and Trino share: Spark registers each table it
    # writes there and Trino reads them from it. Empty: no shared metastore; Trino keeps its own file
    # metastore and the pipeline registers the tables in it (CALL register_table), as embedded does.
    metastore_uri: str = ""
    # A run's landing window (the jobs' --landed-before, for a backfill by date): only landing files
    # last modified before this instant are read; later ones wait for a later run. None: every file.
    # Set per run, never in a profile.
    landed_before: datetime | None = None

    @property
    def is_local_lake(self) -> bool:
        return "://" not in self.lake_root or self.lake_root.startswith("file://")

    @property
    def cache_dir(self) -> Path:
        return Path(os.environ.get("SCENELAKE_CACHE", PROJECT_ROOT / ".cache"))

    def table_path(self, layer: str, table: str) -> str:
        """Where Spark reads and writes a table."""
        if layer not in LAYERS:
            raise SettingsError(f"unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")
        return f"{self.lake_root.rstrip('/')}/{layer}/{table}"

    def trino_location(self, layer: str, table: str) -> str:
        """The same table as Trino's file systems name it (local:// or s3://)."""
        return self.trino_uri(self.table_path(layer, table))

    def trino_uri(self, path: str) -> str:
        """A location in the lake as Trino's file systems name it (Spark's s3a:// is Trino's s3://)."""
        if self.is_local_lake:
            return "local://" + path.removeprefix("file://")
        return "s3://" + path.split("://", 1)[1] if path.startswith("s3a://") else path

    def with_overrides(self, **values: object) -> Settings:
        return replace(self, **values)  # type: ignore[arg-type]


def parse_instant(text: str) -> datetime:
    """An instant as a person writes it for a landing window: ISO 8601, `Z` or an offset, UTC when it
    has none; a date alone is its midnight (UTC)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise SettingsError(f"{text!r} is not an instant: write e.g. 2026-12-01 or 2026-12-01T06:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _resolve(location: str) -> str:
    """A URI stays as it is; a relative local path is taken from the project root."""
    return location if "://" in location else str((PROJECT_ROOT / location).resolve())


def _flag(value: object, key: str) -> bool:
    """A boolean key: true/false in the profile, or 1/0/true/false/on/off in SCENELAKE_<KEY>."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{key} must be true or false, got {value!r}")


def load_settings(env: str | None = None) -> Settings:
    env = env or os.environ.get("SCENELAKE_ENV", "embedded")
    profile = PROJECT_ROOT / "conf" / f"{env}.toml"
    if not profile.exists():
        known = ", ".join(sorted(p.stem for p in (PROJECT_ROOT / "conf").glob("*.toml")))
        raise SettingsError(f"SCENELAKE_ENV={env!r} has no profile {profile}; known: {known}")
    raw = tomllib.loads(profile.read_text())
    spark_conf = {str(k): str(v) for k, v in raw.pop("spark_conf", {}).items()}
    access_groups = {str(k): [str(n) for n in v] for k, v in raw.pop("access_groups", {}).items()}
    for key in list(raw):
        override = os.environ.get(f"SCENELAKE_{key.upper()}")
        if override is not None:
            raw[key] = override
    try:
        lake_root = _resolve(str(raw["lake_root"]))
        landing_root = _resolve(str(raw["landing_root"]))
        state_dir = Path(str(raw["state_dir"]))
        if not state_dir.is_absolute():
            state_dir = (PROJECT_ROOT / state_dir).resolve()
        return Settings(
            env=env,
            spark_master=str(raw["spark_master"]),
            lake_root=lake_root,
            landing_root=landing_root,
            state_dir=state_dir,
            trino_host=str(raw["trino_host"]),
            trino_port=int(raw["trino_port"]),
            trino_user=str(raw["trino_user"]),
            trino_catalog=str(raw["trino_catalog"]),
            trino_heap=str(raw["trino_heap"]),
            trino_query_max_memory_per_node=str(raw["trino_query_max_memory_per_node"]),
            spark_conf=spark_conf,
            access_groups=access_groups,
            vacuum_retention_hours=int(raw.get("vacuum_retention_hours", 168)),
            compact_min_small_files=int(raw.get("compact_min_small_files", 5)),
            compact_small_file_mb=int(raw.get("compact_small_file_mb", 64)),
            compact_target_file_mb=int(raw.get("compact_target_file_mb", 128)),
            data_docs=_flag(raw.get("data_docs", True), "data_docs"),
            trino_jvm_options=str(raw.get("trino_jvm_options", "")),
            s3_endpoint=str(raw.get("s3_endpoint", "")),
            s3_region=str(raw.get("s3_region", "us-east-1")),
            trino_local=_flag(raw.get("trino_local", True), "trino_local"),
            metastore_uri=str(raw.get("metastore_uri", "")),
        )
    except KeyError as exc:
        raise SettingsError(f"{profile} lacks the key {exc.args[0]!r}") from exc
    except ValueError as exc:
        raise SettingsError(f"{profile}: {exc}") from exc
