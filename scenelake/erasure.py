"""Erasing a subject who withdrew consent, from every table, file and table version, with a proof.

The policy: a subject's withdrawal (`scenelake forget --subject ID`) erases every capture session
the subject appears in, whole (a recording shows everyone in it; a capture without one of its
people is not a capture any more), and everything derived from those captures. The pieces here:

  identifiers   the subject id and the ids of the captures removed; `pattern` matches them as
                whole identifiers in any text (a JSON payload, a sample key, a file line)
  tables        rows of the removed captures are deleted from every table with a `capture_id`;
                bronze records and quarantined payloads that mention an identifier are deleted
                (they are raw records of those captures); in every other table a text value that
                mentions one is kept with the identifier replaced by `[erased]` (quality sample keys)
  landing       files of the removed captures (a `capture_id=...` folder) are deleted; a line file
                (a device manifest) that mentions an identifier is rewritten with those lines
                blanked, so the other lines keep their line numbers, and a JSON document without the
                records (list elements) that mention one; bronze learns the file's new digest, size
                and time so the next run does not take it for a new delivery. Any other file that
                mentions one is left and reported (`LandingChange.uncut`), and the proof fails on it
  history       `purge_history`: the table's unreferenced files are vacuumed with no retention and
                its log before the purge is removed (a checkpoint first), so no earlier version, no
                change-feed file and no statistic in the log still holds a removed row. Time travel on a
                purged table starts at the erasure; the other tables keep theirs
  proof         `scan` reads every file under the given folders (names, bytes, and the values of
                every Parquet file, whose pages are compressed) for the identifiers

Where this is written by hand: Delta has no "drop history before version N" command (VACUUM removes
data files, log cleanup only removes log entries older than `delta.logRetentionDuration`, 30 days),
so `purge_history` writes a checkpoint with Delta's own `DeltaLog.checkpoint()` and then deletes the
log entries older than it, which is what Delta's log cleanup does once they expire.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import reduce
from pathlib import Path
from typing import Any
from urllib.parse import quote

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from scenelake import delta_io

ERASED = "[erased]"
# A text file whose records are lines: a line that mentions an identifier can be blanked alone.
LINE_FILES = frozenset({".jsonl", ".ndjson", ".txt", ".csv"})
# Tables whose rows are raw records: a row that mentions an identifier is a record of an erased capture.
RAW_RECORD_TABLES = ("bronze.", "ops.quarantine")
PURGE_JOB = "erasure"


# What an id is made of: a whole id is a run of these (the ingestion guard splits text into such runs).
ID_CHARS = "A-Za-z0-9_-"


def pattern(identifiers: Iterable[str]) -> str:
    """A regular expression (Java's and Python's) matching any of `identifiers` as a whole id: not inside a
    longer id, so erasing capture `gen-0001` leaves `gen-00010` alone."""
    ids = sorted({i for i in identifiers if i}, key=len, reverse=True)
    if not ids:
        return "(?!)"
    return rf"(?<![{ID_CHARS}])(?:" + "|".join(re.escape(i) for i in ids) + rf")(?![{ID_CHARS}])"


def blank_lines(text: str, names: Callable[[str], Any]) -> str:
    """`text` with every line for which `names(line)` holds blanked, its line break kept (so the other
    lines keep their numbers): how a line file loses the records of an erasure."""
    return "".join(("\n" if line.endswith("\n") else "") if names(line) else line
                   for line in text.splitlines(keepends=True))


def _as_text(column: Column, dtype: T.DataType) -> Column | None:
    if isinstance(dtype, T.StringType):
        return column
    if isinstance(dtype, T.ArrayType | T.MapType | T.StructType):
        return F.to_json(column)
    return None


def mentions(df: DataFrame, regex: str) -> Column:
    """True for the rows of `df` in which some text value (nested ones included) matches `regex`."""
    tests = [F.coalesce(text.rlike(regex), F.lit(False)) for f in df.schema.fields
             if (text := _as_text(F.col(f"`{f.name}`"), f.dataType)) is not None]
    return reduce(lambda a, b: a | b, tests, F.lit(False))


def scrubbed_columns(df: DataFrame, regex: str) -> dict[str, Column]:
    """New values for the text columns of `df` with every identifier replaced by ERASED (strings, arrays
    of strings, map values of strings). Other nested text is left as it is: the proof scan reports it."""
    out: dict[str, Column] = {}
    for f in df.schema.fields:
        col = F.col(f"`{f.name}`")
        if isinstance(f.dataType, T.StringType):
            out[f.name] = F.regexp_replace(col, regex, ERASED)
        elif isinstance(f.dataType, T.ArrayType) and isinstance(f.dataType.elementType, T.StringType):
            out[f.name] = F.transform(col, lambda x: F.regexp_replace(x, regex, ERASED))
        elif isinstance(f.dataType, T.MapType) and isinstance(f.dataType.valueType, T.StringType):
            out[f.name] = F.transform_values(col, lambda _k, v: F.regexp_replace(v, regex, ERASED))
    return out


@dataclass(frozen=True)
class TableChange:
    name: str
    removed: int = 0
    scrubbed: int = 0


def erase_rows(spark: SparkSession, path: str, name: str, captures: list[str], regex: str) -> TableChange:
    """Delete the removed captures' rows of the table at `path` and the raw records that mention an
    identifier; scrub the identifiers out of the text of its other rows. Counts what it did; commits
    nothing when the table holds none of them."""
    table = DeltaTable.forPath(spark, path)
    df = table.toDF()
    gone = F.lit(False)
    if "capture_id" in df.columns and captures:
        gone = F.col("capture_id").isin(captures)
    raw = name.startswith(RAW_RECORD_TABLES)
    said = mentions(df, regex)
    if raw:
        gone = gone | said
    removed = df.where(gone).count()
    if removed:
        table.delete(gone)
    scrubbed = 0
    if not raw:
        df = table.toDF()
        scrubbed = df.where(said).count()
        if scrubbed:
            table.update(said, scrubbed_columns(df, regex))  # type: ignore[arg-type]
    return TableChange(name, removed, scrubbed)


@dataclass
class LandingChange:
    removed: list[str] = field(default_factory=list)
    # relative path -> (SHA-256 of the text, size in bytes, modification time) after the rewrite
    rewritten: dict[str, tuple[str, int, datetime]] = field(default_factory=dict)
    uncut: list[str] = field(default_factory=list)  # documents that mention an identifier but are not line files


def _identity(path: Path, text: str) -> tuple[str, int, datetime]:
    stat = path.stat()
    # Hadoop's local file system reports milliseconds, as bronze stores them.
    modified = datetime.fromtimestamp(stat.st_mtime_ns // 1_000_000 / 1000, UTC)
    return hashlib.sha256(text.encode()).hexdigest(), stat.st_size, modified


def scrub_landing(root: Path, captures: Iterable[str], regex: str) -> LandingChange:
    """Delete the landed files of the removed captures and blank the lines that mention an identifier in
    the other line files; a file left with no line is deleted. Writes are atomic (write, then rename)."""
    change = LandingChange()
    if not root.exists():
        return change
    folders = {f"capture_id={c}" for c in captures}
    rx = re.compile(regex)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if folders & set(path.relative_to(root).parts[:-1]) or rx.search(path.name):
            path.unlink()
            change.removed.append(rel)
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        if not rx.search(text):
            continue
        if path.suffix.lower() in LINE_FILES:
            kept = blank_lines(text, rx.search)
        elif path.suffix.lower() == ".json" and (pruned := _pruned_document(text, rx)) is not None:
            kept = pruned
        else:
            change.uncut.append(rel)
            continue
        if not kept.strip():
            path.unlink()
            change.removed.append(rel)
            continue
        tmp = path.with_name(f".{path.name}.erasure")
        tmp.write_text(kept)
        os.utime(tmp, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
        tmp.replace(path)
        change.rewritten[rel] = _identity(path, kept)
    _remove_empty_folders(root)
    return change


def _remove_empty_folders(root: Path, itself: bool = False) -> None:
    """Remove the folders under `root` (and `root` itself with `itself`) that hold no file, deepest first."""
    folders = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for folder in [*folders, *([root] if itself else [])]:
        if not any(folder.iterdir()):
            folder.rmdir()


def _pruned(value: Any, rx: re.Pattern[str]) -> Any:
    """A JSON value without what mentions an identifier: list elements (records) that do are dropped,
    object keys that are one are dropped, strings that hold one have it replaced by ERASED."""
    if isinstance(value, list):
        return [_pruned(v, rx) for v in value if not rx.search(json.dumps(v))]
    if isinstance(value, dict):
        return {k: _pruned(v, rx) for k, v in value.items() if not rx.search(k)}
    if isinstance(value, str):
        return rx.sub(ERASED, value)
    return value


def _pruned_document(text: str, rx: re.Pattern[str]) -> str | None:
    """A JSON document (a COCO export, a dataset description) without the records that mention an
    identifier, the others kept; None when the text is not JSON."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return json.dumps(_pruned(document, rx), indent=1) + "\n"


def update_file_identity(spark: SparkSession, path: str, rewritten: dict[str, tuple[str, int, datetime]]) -> int:
    """Tell a bronze table the new digest, size and time of the landed files rewritten, so its job's next
    listing knows them (and does not load them again as a new delivery). Returns the rows updated."""
    if not rewritten:
        return 0
    rows = [(name, *identity) for rel, identity in rewritten.items()
            for name in {rel, quote(rel, safe="/=")}]
    source = spark.createDataFrame(rows, "source_file string, source_sha256 string, source_size long, "
                                         "source_modified_at timestamp")
    table = DeltaTable.forPath(spark, path)
    held = table.toDF().join(source.select("source_file"), "source_file", "left_semi").count()
    if held:
        (table.alias("t").merge(source.alias("s"), "t.source_file = s.source_file")
         .whenMatchedUpdate(set={c: F.col(f"s.{c}") for c in ("source_sha256", "source_size", "source_modified_at")})
         .execute())
    return held


def _log_version(name: str) -> int | None:
    match = re.match(r"^\.?(\d{20})\.", name)
    return int(match.group(1)) if match else None


def purge_history(spark: SparkSession, path: str, data_version: int | None,
                  markers: Iterable[dict[str, Any]], record: Any) -> int:
    """Remove every earlier version of the table at `path` (a local folder): vacuum its unreferenced files
    with no retention, checkpoint, delete the log before the checkpoint, then commit the jobs' `markers`
    again (`record(marker)`) so incremental jobs carry on. The first kept commit carries `data_version`
    (delta_io.data_version_of reads it). Returns the first version time travel can reach."""
    quoted = f"delta.`{path}`"
    properties = {r[0]: r[1] for r in spark.sql(f"show tblproperties {quoted}").collect()}
    retention = properties.get("delta.deletedFileRetentionDuration")
    check = "spark.databricks.delta.retentionDurationCheck.enabled"
    was = spark.conf.get(check, "true")
    spark.sql(f"alter table {quoted} set tblproperties ('delta.deletedFileRetentionDuration' = 'interval 0 hours')")
    spark.conf.set(check, "false")
    try:
        spark.sql(f"vacuum {quoted}").collect()
    finally:
        spark.conf.set(check, str(was))
    jvm = spark._jvm  # type: ignore[attr-defined]
    delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)  # type: ignore[union-attr]
    delta_log.checkpoint()  # retention is 0 here: the checkpoint keeps no tombstone of a removed file
    log_dir = Path(path) / "_delta_log"
    first = int(json.loads((log_dir / "_last_checkpoint").read_text())["version"])
    for item in log_dir.iterdir():
        version = _log_version(item.name)
        if item.is_file() and version is not None and version < first:
            item.unlink()
    # The change feed's folder, emptied by the vacuum: left there, the next VACUUM would remove it (a commit).
    cdc = Path(path) / "_change_data"
    if cdc.is_dir():
        _remove_empty_folders(cdc, itself=True)
    jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # type: ignore[union-attr]
    spark.conf.set("spark.databricks.delta.commitInfo.userMetadata",
                   delta_io.marker_text({"job": PURGE_JOB, "data_version": data_version}))
    try:
        if retention is None:
            spark.sql(f"alter table {quoted} unset tblproperties ('delta.deletedFileRetentionDuration')")
        else:
            spark.sql(f"alter table {quoted} set tblproperties ('delta.deletedFileRetentionDuration' = '{retention}')")
    finally:
        spark.conf.unset("spark.databricks.delta.commitInfo.userMetadata")
    for marker in markers:
        record(marker)
    return first


def newest_markers(commits: list[tuple[int, str, str | None]]) -> list[dict[str, Any]]:
    """The newest marker of each job in a table's history (newest first), the purge's own left out."""
    found: dict[str, dict[str, Any]] = {}
    for _, _, metadata in commits:
        marker = delta_io.parse_marker(metadata)
        if marker and "job" in marker and marker["job"] != PURGE_JOB:
            found.setdefault(str(marker["job"]), marker)
    return list(reversed(found.values()))


def remove_mentioning(root: Path, identifiers: Iterable[str]) -> int:
    """Delete the files under `root` whose name or text holds one of `identifiers` (generated reports such
    as Data Docs pages, which the next validation writes again); returns how many."""
    ids = [i.encode() for i in identifiers if i]
    removed = 0
    for path in [p for p in _files(root) if p.is_file()]:
        if any(i in path.name.encode() or i in path.read_bytes() for i in ids):
            path.unlink()
            removed += 1
    return removed


@dataclass(frozen=True)
class Hit:
    area: str
    file: str  # relative to the area's folder, identifiers replaced by ERASED
    how: str  # name, bytes or parquet


def _files(root: Path) -> Iterator[Path]:
    if root.exists():
        yield from sorted(p for p in root.rglob("*") if not p.is_symlink())


def scan(areas: dict[str, Path], identifiers: Iterable[str]) -> list[Hit]:
    """Every file (and folder name) under `areas` that still holds one of `identifiers`: in its name, in its
    bytes, or in the values of a Parquet file (compressed pages hide text from a byte scan)."""
    import pyarrow.parquet as pq

    ids = sorted({i for i in identifiers if i})
    needles = [i.encode() for i in ids]
    redact = re.compile("|".join(re.escape(i) for i in ids)) if ids else None
    hits: list[Hit] = []
    if not ids:
        return hits
    for area, root in areas.items():
        for path in _files(root):
            rel = path.relative_to(root).as_posix()
            shown = redact.sub(ERASED, rel) if redact else rel

            def hit(how: str, area: str = area, shown: str = shown) -> None:
                hits.append(Hit(area, shown, how))

            if any(i in rel for i in ids):
                hit("name")
                continue
            if not path.is_file():
                continue
            data = path.read_bytes()
            if any(n in data for n in needles):
                hit("bytes")
            elif path.suffix == ".parquet" and data[:4] == b"PAR1":
                values = str(pq.read_table(path).to_pylist())
                if any(i in values for i in ids):
                    hit("parquet")
    return hits
