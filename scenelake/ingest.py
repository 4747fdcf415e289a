"""What every landing -> bronze -> silver job shares: new-file detection, raw records, quarantine.

The shape of a job: list the landing folder and read only the files bronze has not seen (path,
size and modification time, then path + digest), split them into
raw records, append those to bronze in one commit; then judge the bronze batches added since the
version the job's marker on its silver table records (all of bronze on a first build), send
every record that breaks a rule (or loses deduplication) to ops.quarantine, gate and merge the
rest. A crash anywhere leaves tables at a committed version, and a rerun converges.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import reduce
from typing import Any, NamedTuple

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from scenelake import consent, contracts, delta_io, erasure, maintenance
from scenelake.settings import Settings

QUARANTINE = "ops.quarantine"
Progress = Callable[[str], None]

RECORD = T.StructType([
    T.StructField("section", T.StringType()),
    T.StructField("record_no", T.LongType()),
    T.StructField("payload", T.StringType()),
])


def new_batch_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def path_meta(relative_path: Column) -> Column:
    """`key=value` folders of a landing path as a map (run_id=r1/capture_id=c -> {run_id: r1, ...})."""
    segments = F.filter(F.split(relative_path, "/"), lambda s: s.contains("="))
    return F.map_from_entries(F.transform(segments, lambda s: F.struct(
        F.substring_index(s, "=", 1).alias("key"),
        F.regexp_extract(s, "^[^=]*=(.*)$", 1).alias("value"))))


FILE_META = "source_file string, value string, source_size long, source_modified_at timestamp"


def read_files(spark: SparkSession, settings: Settings, subdir: str, glob: str,
               binary: bool = False, landed: LandedFiles | None = None,
               progress: Callable[[str], None] | None = None) -> DataFrame:
    """Landed files under landing/<subdir> (recursively) as (source_file, value=content,
    source_size, source_modified_at).

    `source_file` is relative to the landing root. A missing folder is no files, not an error.
    With `landed` (a bronze table's LandedFiles), files whose path, size and modification time it
    knows are left out before any content is read: the folder is listed (no bytes read), and only
    new or changed files are read, so a run costs what landed since, not the landing zone; the
    files read are noted in `landed` for its next save. A file touched without a change is read
    again once and then skipped by its digest (`unseen`). With a landing window
    (`settings.landed_before`, the jobs' --landed-before), files modified at or after its end are left
    for a later run. Spark's file sources skip 0-byte files altogether, so one is never seen here
    (`scenelake import` refuses it).

    Erased subjects and captures (ops.erasures, scenelake.consent.Erased) are not admitted again: a
    file whose path names one is left out (reported on `progress` by count; the ids are not shown),
    and in a text file outside a capture's folder (a manifest) the lines that name one are blanked as
    the erasure blanked them, so a manifest landed again has the digest of the rewritten one.
    """
    folder = f"{settings.landing_root.rstrip('/')}/{subdir}"
    jvm_path = spark._jvm.org.apache.hadoop.fs.Path(folder)  # type: ignore[union-attr]
    if not jvm_path.getFileSystem(spark._jsc.hadoopConfiguration()).exists(jvm_path):  # type: ignore[union-attr]
        return spark.createDataFrame([], FILE_META)
    try:
        # binaryFile reads a file's bytes only when `content` is selected: this is a listing.
        listing = (spark.read.format("binaryFile").option("pathGlobFilter", glob)
                   .option("recursiveFileLookup", "true").load(folder)
                   .select("path", "_metadata.file_path", F.col("length").alias("source_size"),
                           F.col("modificationTime").alias("source_modified_at")))
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" not in str(exc):
            raise
        return spark.createDataFrame([], FILE_META)
    # A text file is named by its URI as the text reader gives it (`_metadata.file_path`, percent-encoded:
    # `a%20b.jsonl`), a binary one by its path (`a b.parquet`), as bronze has always named them.
    name = F.col("path") if binary else F.col("file_path")
    listing = listing.withColumn("source_file", _relative(settings, name))
    found = listing.collect()
    if landed is not None:
        found = [r for r in found if not landed.knows(r.source_file, r.source_size, r.source_modified_at)]
    if settings.landed_before is not None:
        # A backfill's window (--landed-before): later files are not noted, so a later run reads them.
        # (A listed time is a naive local datetime, as pyspark converts it: .timestamp() reads it so.)
        before = settings.landed_before.timestamp()
        inside = [r for r in found if r.source_modified_at.timestamp() < before]
        if len(inside) < len(found):
            (progress or silent)(f"[ingest] {len(found) - len(inside)} landed file(s) under {subdir} are from "
                                 f"{settings.landed_before.isoformat()} or later: left for a later run")
        found = inside
    guard = consent.erased(spark, settings) if found else None
    if guard is not None:
        kept = [r for r in found if not guard.refuses(r.source_file)]
        if len(kept) < len(found):
            (progress or silent)(f"[ingest] {len(found) - len(kept)} landed file(s) under {subdir} name an "
                                 "erased subject or capture (ops.erasures) and are not loaded: remove them "
                                 "from the landing zone")
        found = kept
    if landed is not None:
        landed.note((r.source_file, r.source_size, r.source_modified_at) for r in found)
    if not found:
        return spark.createDataFrame([], FILE_META)
    paths = [_literal_path(r.path) for r in found]
    if binary:
        raw = spark.read.format("binaryFile").load(paths).select(
            F.col("path"), F.col("content").cast("string").alias("value"))
    else:
        raw = spark.read.text(paths, wholetext=True).select(F.col("_metadata.file_path").alias("path"), "value")
        if guard is not None:
            # Files in a capture's folder were judged by their path; a line file outside one (a
            # manifest) mixes captures. A JSON document outside one is not cut (see README "Consent").
            blanked, path = F.udf(guard.blanked, "string", useArrow=False), F.lower(F.col("path"))
            mixed = ~path.contains("capture_id=") & reduce(
                lambda a, b: a | b, [path.endswith(ext) for ext in sorted(erasure.LINE_FILES)])
            # A manifest left with no line is gone, as the erasure deleted it; any other blank file
            # still reaches its job (an annotation export of blanks is quarantined by name).
            raw = (raw.withColumn("value", F.when(mixed, blanked("value")).otherwise(F.col("value")))
                   .where(~mixed | (F.length(F.trim("value")) > 0)))
    meta = spark.createDataFrame([(r.source_file, r.source_size, r.source_modified_at) for r in found],
                                 "source_file string, source_size long, source_modified_at timestamp")
    return raw.select(_relative(settings, F.col("path")).alias("source_file"), "value").join(
        F.broadcast(meta), "source_file")


def _relative(settings: Settings, path: Column) -> Column:
    """A file's URI (file:/..., s3a://bucket/...) as a path relative to the landing root."""
    root = settings.landing_root.rstrip("/").split("://")[-1]
    return F.regexp_replace(F.regexp_replace(path, "^[a-z0-9]+:", ""), "^/*" + re.escape(root.lstrip("/")) + "/", "")


def _literal_path(uri: str) -> str:
    """A listed file's URI as a path Spark will not expand as a glob (a name may hold [ ] { } * ?)."""
    return re.sub(r"([\\\[\]{}*?])", r"\\\1", uri)


LANDED_FOLDER = "_landed"


def _stamp(modified: datetime) -> str:
    """A listed file's modification time as the ledger keeps it (as Spark's session reports it)."""
    return modified.isoformat()


@dataclass(frozen=True)
class Landed:
    """The landed files a bronze table has read, as of one commit of it: every (size, modification
    time) each path had when it was read, and the digest (sha256 of the bytes) of the newest version
    of each path bronze holds (a path delivered again with other bytes supersedes its earlier
    version, see `newest`). Pure data; `LandedFiles` reads and writes it."""

    version: int
    committed_ms: int
    files: dict[str, frozenset[tuple[int, str]]]
    newest: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        files = {f: sorted([size, at] for size, at in seen) for f, seen in sorted(self.files.items())}
        return json.dumps({"version": self.version, "committed_ms": self.committed_ms, "files": files,
                           "newest": dict(sorted(self.newest.items()))}, sort_keys=True)

    @staticmethod
    def parse(text: str) -> Landed | None:
        """The ledger in `text`, or None when it is not one (then bronze is read instead; so is it for a
        ledger written before ledgers held each path's newest digest)."""
        try:
            doc = json.loads(text)
            newest = doc["newest"]
            if not all(isinstance(d, str) for d in newest.values()):
                return None
            return Landed(int(doc["version"]), int(doc["committed_ms"]),
                          {str(f): frozenset((int(size), str(at)) for size, at in seen)
                           for f, seen in doc["files"].items()},
                          {str(f): d for f, d in newest.items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def plus(self, version: int, committed_ms: int, read: Iterable[tuple[str, int, str]],
             loaded: Iterable[tuple[str, str]] = ()) -> Landed:
        files, newest = dict(self.files), dict(self.newest)
        for name, size, at in read:
            files[name] = files.get(name, frozenset()) | {(size, at)}
        newest.update(loaded)
        return Landed(version, committed_ms, files, newest)


class LandedFiles:
    """Which landed files a bronze table already holds, for its job's listing (`read_files`) and
    digest check (`unseen`).

    The answer is kept in a ledger next to the lake (`<lake>/_landed/<layer>.<table>.json`, through
    Hadoop's file system, so on s3a too), written after each bronze append: a listing and the new
    files' digests are compared with it rather than with bronze's rows, so a run costs the number of
    landed files, not of records.
    The ledger is trusted only while bronze's newest commit is the one it names (version and commit
    time, from one listing of `_delta_log`): after any other commit (compaction, an erasure's
    rewrite, a job that crashed after its append, a table recreated) the files are read from bronze
    once, as before the ledger existed, and `save` writes the ledger anew. It holds paths, sizes,
    times and digests only: no record and no payload."""

    def __init__(self, spark: SparkSession, settings: Settings, bronze: str):
        self.spark, self.settings, self.bronze = spark, settings, bronze
        layer, table = bronze.split(".")
        self.path = settings.table_path(layer, table)
        self.location = f"{settings.lake_root.rstrip('/')}/{LANDED_FOLDER}/{bronze}.json"
        self.read: list[tuple[str, int, str]] = []
        self.loaded: list[tuple[str, str]] = []
        head = self._head()
        ledger = None
        if head is not None:
            text = maintenance.read_text(spark, self.location)
            ledger = Landed.parse(text) if text is not None else None
        if ledger is not None and (ledger.version, ledger.committed_ms) == head:
            self.ledger, self.trusted = ledger, True
        else:
            self.ledger, self.trusted = self._from_bronze() if head else Landed(-1, 0, {}), head is None

    def _head(self) -> tuple[int, int] | None:
        if not delta_io.table_exists(self.spark, self.settings, self.bronze):
            return None
        commits = maintenance.log_commits(self.spark, self.path)
        return commits[-1] if commits else None

    def _from_bronze(self) -> Landed:
        held = delta_io.read_table(self.spark, self.settings, self.bronze)
        timed = "source_modified_at" in held.columns  # a table from before these columns: every file is read
        columns = ["source_file", "source_sha256", "loaded_at",
                   *(["source_size", "source_modified_at"] if timed else [])]
        files: dict[str, set[tuple[int, str]]] = {}
        newest: dict[str, tuple[datetime, str]] = {}
        for r in held.select(*columns).distinct().collect():
            if r.source_file not in newest or newest[r.source_file][0] < r.loaded_at:
                newest[r.source_file] = (r.loaded_at, r.source_sha256)
            if timed and r.source_size is not None and r.source_modified_at is not None:
                files.setdefault(r.source_file, set()).add((int(r.source_size), _stamp(r.source_modified_at)))
        return Landed(-1, 0, {f: frozenset(seen) for f, seen in files.items()},
                      {f: digest for f, (_, digest) in newest.items()})

    def knows(self, source_file: str, size: int, modified: datetime) -> bool:
        return (int(size), _stamp(modified)) in self.ledger.files.get(source_file, frozenset())

    def holds(self, source_file: str, digest: str) -> bool:
        """These bytes are the newest version of this path bronze holds (bytes of an earlier version
        landed again are a new delivery: they supersede the version after them)."""
        return self.ledger.newest.get(source_file) == digest

    def note(self, read: Iterable[tuple[str, int, datetime]]) -> None:
        """Files `read_files` read this run (the next run need not read them again)."""
        self.read += [(name, int(size), _stamp(at)) for name, size, at in read]

    def note_loaded(self, loaded: Iterable[tuple[str, str]]) -> None:
        """(path, digest) of the files this run appends to bronze (`unseen` found them new)."""
        self.loaded += list(loaded)

    def replaces(self) -> bool:
        """Some file this run loads is a new version of a path bronze holds already."""
        return any(name in self.ledger.newest for name, _ in self.loaded)

    def save(self) -> None:
        """After the job's bronze append (or with nothing appended): the ledger as of bronze's newest
        commit. Nothing is written when nothing was read and the ledger was already current."""
        if self.trusted and not self.read and not self.loaded:
            return
        head = self._head()
        if head is None:
            return
        maintenance.write_text(self.spark, self.location, self.ledger.plus(*head, self.read, self.loaded).text())


def unseen(spark: SparkSession, files: DataFrame, landed: LandedFiles) -> DataFrame:
    """Files whose bytes are not the newest version of their path bronze holds, with their
    `source_sha256` (the same bytes landed again under the same name, or touched without a change, are
    skipped; other bytes, even those of an earlier version, are a new version that supersedes the one
    before it); the new ones are noted in `landed` for its save after the bronze append.

    The digests are compared with the ledger's (one collect of a row per file), not with bronze's rows.
    The files are cached: their bytes are read once for the digest and the records."""
    files = files.withColumn("source_sha256", F.sha2("value", 256)).cache()
    pairs = [(r.source_file, r.source_sha256) for r in files.select("source_file", "source_sha256").collect()]
    new = [(name, digest) for name, digest in pairs if not landed.holds(name, digest)]
    landed.note_loaded(new)
    if len(new) == len(pairs):
        return files
    wanted = spark.createDataFrame(new, "source_file string, source_sha256 string")
    return files.join(F.broadcast(wanted), ["source_file", "source_sha256"], "left_semi")


def lines(value: Column) -> Column:
    """A text's non-empty lines as records (section `rows`, 1-based line numbers)."""
    numbered = F.transform(F.split(value, "\r?\n"), lambda line, i: F.struct(
        F.lit("rows").alias("section"), (i + 1).cast("long").alias("record_no"),
        line.alias("payload")))
    return F.filter(numbered, lambda r: F.length(F.trim(r["payload"])) > 0)


@F.udf(returnType=T.ArrayType(RECORD))
def json_document_records(text):  # type: ignore[no-untyped-def]
    """A JSON document's records: each element of its top-level arrays (or of the array itself).

    A document that does not parse (truncated, not JSON) is one record of section `file` whose
    payload is the whole text, so the file is quarantined by name and nothing is lost.
    Written as a Python UDF because a COCO file is
    one JSON value: it must be parsed whole, which Spark's JSON reader cannot do with error
    recovery per file. No type hints: with them pyspark takes the function for a pandas UDF.
    """
    try:
        doc = json.loads(text or "")
    except ValueError:
        return [("file", 1, text or "")]
    if isinstance(doc, list):
        return [("results", i + 1, json.dumps(item)) for i, item in enumerate(doc)]
    if not isinstance(doc, dict):
        return [("file", 1, text or "")]
    out = []
    for section in ("images", "annotations", "categories"):
        for i, item in enumerate(doc.get(section) or []):
            out.append((section, i + 1, json.dumps(item)))
    return out


def to_bronze(records: DataFrame, batch_id: str, files: DataFrame) -> DataFrame:
    """Records as bronze rows of batch `batch_id`, with their file's size and modification time
    (from `files`, as `read_files` gives them) for the next run's listing."""
    sizes = files.select("source_file", "source_size", "source_modified_at")
    return (records.join(F.broadcast(sizes), "source_file", "left").withColumn("batch_id", F.lit(batch_id))
            .withColumn("loaded_at", F.lit(datetime.now(UTC)).cast("timestamp")))


FIRST_VERSIONS = ";first-versions"


def batch_metadata(batch_id: str, landed: LandedFiles) -> str:
    """The userMetadata of a bronze append: its batch, and whether every file it loads is the first
    version of its path bronze holds (then `increment` need not look the paths' versions up)."""
    return f"batch={batch_id}{FIRST_VERSIONS if not landed.replaces() else ''}"


def batches_since(commits: list[tuple[int, str, str | None]], since: int, upto: int) -> list[tuple[str, bool]]:
    """The batches of the bronze appends among `commits` (a table's history) in versions (since, upto],
    each with whether it loaded only first versions of paths (`batch_metadata`; False when the commit
    does not say). Compaction and other maintenance commits carry no batch, so they add nothing."""
    return sorted((metadata.removeprefix("batch=").split(";")[0], metadata.endswith(FIRST_VERSIONS))
                  for version, _, metadata in commits
                  if since < version <= upto and metadata and metadata.startswith("batch="))


def newest(records: DataFrame, versions: DataFrame | None = None) -> DataFrame:
    """The bronze records of each path's newest delivery: a path delivered again with other bytes (a
    corrected export under the same name) supersedes every earlier version of it, whose records then
    count for nothing, as if the earlier bytes had never landed. `versions` holds every version of
    the paths (default: `records` do); the newest is the one loaded last."""
    latest = (records if versions is None else versions).groupBy("source_file").agg(
        F.max_by("batch_id", "loaded_at").alias("batch_id"))
    return records.join(F.broadcast(latest) if versions is not None else latest, ["source_file", "batch_id"],
                        "left_semi")


@dataclass(frozen=True)
class Increment:
    """What one run of an ingest job judges: the bronze records added since the job's marker (all of
    bronze on a first build or after a contract change), newest versions only (see `newest`), and
    what the new marker will say."""

    records: DataFrame
    catalog: DataFrame  # every bronze record up to `bronze_version`, every version (see `files`)
    full: bool
    marker: dict[str, Any]
    previous: dict[str, Any] | None
    batches: tuple[str, ...] = ()
    # Paths of the increment whose earlier version bronze held before it: what that version put in
    # silver and in the quarantine is judged again (`refresh`, `reconcile`).
    replaced: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # every path of `records` (not on a full build)

    def describe(self) -> str:
        if self.full:
            return "all of bronze (first build, or the contracts changed)"
        again = f", {len(self.replaced)} of them replacing an earlier version" if self.replaced else ""
        return f"{len(self.batches)} new bronze batch(es){again}"

    def files(self, names: Iterable[str]) -> DataFrame:
        """The records of these landed files as bronze holds them now (each path's newest version)."""
        return newest(self.catalog.where(F.col("source_file").isin(sorted(set(names)))))

    def finished(self, spark: SparkSession, settings: Settings) -> dict[str, Any]:
        """The marker of a run past its quarantine write: the quarantine as it leaves it, from which the
        next run's `refresh` (and the predictions' re-checks) read the records it holds then."""
        return {**self.marker, "quarantine": delta_io.table_version(spark, settings, QUARANTINE)}


def versions_of(catalog: DataFrame, paths: DataFrame) -> DataFrame:
    """Every version bronze (`catalog`) holds of the `paths` (a `source_file` column of a few files)."""
    return catalog.join(F.broadcast(paths.select("source_file").distinct()), "source_file", "left_semi")


def increment(spark: SparkSession, settings: Settings, job: str, bronze: str, silver: str,
              contracts_fingerprint: str, inputs: dict[str, Any] | None = None) -> Increment | None:
    """The records a run must judge, or None when nothing is new: no bronze batch since the
    job's last marker on `silver` and no input in `inputs` (other tables' data versions) moved.

    The marker is JSON in the userMetadata of the job's last commit on `silver`; commits of
    maintenance (OPTIMIZE, VACUUM, properties) are skipped when looking for it and never count as
    new data. The versions of the new batches' paths are looked up by path (Delta skips the bronze
    files whose statistics exclude them), so the look-up costs the increment's files."""
    commits = delta_io.history(spark, settings, bronze)  # read once: versions, data version, batches
    bronze_version = delta_io.data_version_of(commits)
    if bronze_version is None:
        return None
    marker = {"job": job, "bronze": bronze_version, "contracts": contracts_fingerprint, **(inputs or {})}
    previous = delta_io.last_marker(spark, settings, silver, job)
    full = previous is None or previous.get("contracts") != contracts_fingerprint
    landed = [] if full else batches_since(commits, int(previous["bronze"]), bronze_version)  # type: ignore[index]
    batches = [batch for batch, _ in landed]
    moved = any((previous or {}).get(name) != version for name, version in (inputs or {}).items())
    if not full and not batches and not moved:
        return None
    catalog = delta_io.read_table(spark, settings, bronze, version=commits[0][0])
    if full:
        return Increment(newest(catalog), catalog, True, marker, previous)
    if not batches:
        return Increment(catalog.limit(0), catalog, False, marker, previous)
    added = catalog.where(F.col("batch_id").isin(batches))
    if all(first for _, first in landed):
        # Batches of first versions only: no path of theirs has another version, nothing to look up.
        return Increment(added, catalog, False, marker, previous, tuple(batches))
    paths = sorted(r[0] for r in added.select("source_file").distinct().collect())
    held = (catalog.where(F.col("source_file").isin(paths)).groupBy("source_file")
            .agg(F.max_by("batch_id", "loaded_at").alias("batch_id"), F.count_distinct("batch_id").alias("versions"))
            .collect())
    latest = spark.createDataFrame([(r.source_file, r.batch_id) for r in held], "source_file string, batch_id string")
    records = added.join(F.broadcast(latest), ["source_file", "batch_id"], "left_semi")
    replaced = tuple(sorted(r.source_file for r in held if r.versions > 1))
    return Increment(records, catalog, False, marker, previous, tuple(batches), replaced, tuple(paths))


def refresh(spark: SparkSession, settings: Settings, step: Increment,
            targets: Iterable[str]) -> tuple[list[str], DataFrame | None]:
    """What a replaced file (`step.replaced`) reopens besides itself: the files whose records lost a
    key to a record of its earlier version (quarantined as duplicate_of:<that file>:<record>, for
    one of `targets`), to be judged again whole, since the key may be theirs again; and the
    quarantine keys of the replaced and reopened files' records, each of which the run quarantines
    again or releases (`released`). Nothing to do (no file replaced): ([], None).

    The losers are read from the quarantine as the job's last finished run left it (the version its
    marker names, `quarantine`), so a run that crashed after releasing them is repeated whole."""
    if not step.replaced or not delta_io.table_exists(spark, settings, QUARANTINE):
        return [], None
    now = delta_io.table_version(spark, settings, QUARANTINE)
    left = (step.previous or {}).get("quarantine")

    def mine(version: int | None) -> DataFrame:
        return delta_io.read_table(spark, settings, QUARANTINE, version=version).where(
            F.col("target_table").isin(*targets))

    lost = reduce(lambda a, b: a | b, [F.col("rule").startswith(f"duplicate_of:{name}:") for name in step.replaced])
    reopened = sorted(r[0] for r in mine(now if left is None else int(left)).where(lost)
                      .select("source_file").distinct().collect() if r[0] not in step.replaced)
    stale = mine(now).where(F.col("source_file").isin(*step.replaced, *reopened)).select(*QUARANTINE_KEY)
    return reopened, stale


QUARANTINE_KEY = ["target_table", "source_file", "section", "record_no"]


def released(stale: DataFrame | None, quarantined: DataFrame) -> DataFrame | None:
    """The `stale` quarantine keys (from `refresh`) this run does not quarantine again."""
    return None if stale is None else stale.join(quarantined.select(*QUARANTINE_KEY), QUARANTINE_KEY, "left_anti")


def with_reopened(step: Increment, reopened: list[str]) -> DataFrame:
    """The increment's records and those of the `reopened` files (from `refresh`), each file once (the
    increment holds whole files: the newest versions of its paths)."""
    more = [name for name in reopened if name not in step.paths]
    return step.records.unionByName(step.files(more).select(*step.records.columns)) if more else step.records


class Reconciled(NamedTuple):
    kept: DataFrame  # the winners to merge, one per key
    rejected: DataFrame  # every rejected row, with its rule
    gone: DataFrame | None  # keys of silver rows to delete (None: none to look for)
    fresh: bool  # no silver row holds a key of `kept` (and none is to go): the merge may append them


def reconcile(spark: SparkSession, settings: Settings, silver: str, candidates: DataFrame, key: list[str],
              columns: list[str], reparse: Callable[[list[str]], DataFrame], full: bool,
              narrow: tuple[str, ...] | None = None,
              replaced: tuple[str, ...] = ()) -> Reconciled:
    """Judge new candidate rows (with `rule`) against the silver table: the winners to merge (one
    per key, `columns` kept), every rejected row (with its rule), and the keys of silver rows to
    delete (None when there are none to look for): rows an earlier version of a `replaced` file put
    there whose key no candidate wins now (the candidates hold the replaced files' newest versions
    and the files that lost a key to them, see `refresh`). `fresh` says that the look-up found no
    silver row with any of the candidates' keys (new captures, a new run: the usual increment), so
    that `delta_io.merge(..., insert_only=True)` appends the winners instead of joining them with
    the table.

    The rule is the full rebuild's, "latest delivery wins": the good rows of the increment compete
    with the records that won each of their keys so far. Those are found through silver's
    `source_file`: `reparse(files)` parses those earlier files again (the same transforms), and
    their rows for the increment's keys join the competition, so an earlier winner that loses is
    quarantined naming its successor, exactly as a rebuild would.

    `narrow` names silver columns whose value a row's key fixes (default: the contract's
    `lookup_columns`, key columns the table is laid out by; or one the key is built from, such as
    the capture of an annotation id): only silver rows with values the good candidates have there
    can share a key with them, so the look-up reads those alone. On a partition or Z-order column,
    Delta skips every other file: the look-up costs what the increment touches (its runs, its
    captures), not the whole table."""
    good = candidates.where(F.col("rule").isNull()).drop("rule")
    pool = good
    files: list[str] | None = None
    if not full and delta_io.table_exists(spark, settings, silver):
        keys = good.select(*key).distinct()
        laid_out = contracts.contract(silver).lookup_columns if narrow is None else narrow
        target = delta_io.read_table(spark, settings, silver).where(delta_io.lookup_condition(good, laid_out))
        files = sorted(r[0] for r in target.join(keys, key, "left_semi").select("source_file").distinct().collect())
        if files:
            # Records already among the candidates (a file judged again in part) compete once.
            record: list[str] = [c for c in ("source_file", "section", "record_no") if c in candidates.columns]
            earlier = (reparse(files).where(F.col("rule").isNull()).drop("rule").join(keys, key, "left_semi")
                       .join(candidates.select(*record), record, "left_anti"))
            pool = good.unionByName(earlier.select(*good.columns))
    winners, losers = latest_wins(pool, key)
    rejected = candidates.where(F.col("rule").isNotNull()).unionByName(losers)
    kept = winners.select(*columns)
    gone = None
    if replaced and not full and delta_io.table_exists(spark, settings, silver):
        # Built on `kept`, so that once the job caches it this look-up reads the cache (`materialized`).
        gone = (delta_io.read_table(spark, settings, silver).where(F.col("source_file").isin(*replaced))
                .select(*key).join(kept.select(*key), key, "left_anti"))
    return Reconciled(kept, rejected, gone, files == [] and gone is None)


def materialized(spark: SparkSession, rows: DataFrame | None) -> DataFrame | None:
    """A small result (keys to delete) computed once, so the merge that uses it (which reads its source
    more than once) does not run its plan again: None stays None."""
    return None if rows is None else spark_materialized(rows)


def spark_materialized(rows: DataFrame) -> DataFrame:
    """`rows` (a small result) collected once and held by the driver: later plans use the rows, not
    the plan that computed them."""
    return rows.sparkSession.createDataFrame(rows.collect(), rows.schema)


def first_failed_rule(*rules: tuple[str, Column]) -> Column:
    """The name of the first rule whose condition holds (the record breaks it), else null."""
    out: Column = F.lit(None).cast("string")
    for name, broken in reversed(rules):
        out = F.when(F.coalesce(broken, F.lit(True)), F.lit(name)).otherwise(out)
    return out


def latest_wins(df: DataFrame, key: list[str]) -> tuple[DataFrame, DataFrame]:
    """Split rows into one winner per key (loaded last, then later file, then later record) and
    the losing copies, which are returned with a `rule` naming their winner."""
    order = Window.partitionBy(*key).orderBy(
        F.col("loaded_at").desc(), F.col("source_file").desc(), F.col("record_no").desc())
    # Most keys have one copy: rank only the keys that have more, so the common case skips the window.
    counted = df.withColumn("_copies", F.count(F.lit(1)).over(Window.partitionBy(*key)))
    single = counted.where("_copies = 1").drop("_copies")
    ranked = (counted.where("_copies > 1").drop("_copies")
              .withColumn("_rank", F.row_number().over(order))
              .withColumn("_winner", F.first(F.concat_ws(":", "source_file", "record_no")).over(order)))
    winners = single.unionByName(ranked.where("_rank = 1").drop("_rank", "_winner"))
    losers = ranked.where("_rank > 1").withColumn(
        "rule", F.concat(F.lit("duplicate_of:"), F.col("_winner"))).drop("_rank", "_winner")
    return winners, losers


def quarantine_rows(rejected: DataFrame, target: str, batch_id: str) -> DataFrame:
    """Rejected bronze records (with a `rule` column) in ops.quarantine's shape."""
    section = F.col("section") if "section" in rejected.columns else F.lit("rows")
    return rejected.select(
        F.lit(target).alias("target_table"), "source_file", section.alias("section"),
        "record_no", "rule", "payload", F.lit(batch_id).alias("batch_id"))


def write_quarantine(spark: SparkSession, settings: Settings, rows: DataFrame, count: int,
                     release: DataFrame | None = None) -> None:
    """Merge rejected records into ops.quarantine, and delete the `release`d ones (records judged
    again that now reach silver), in one commit; with nothing to do, only make sure it exists."""
    release = materialized(spark, release)
    if count == 0 and (release is None or release.isEmpty()) and delta_io.table_exists(spark, settings, QUARANTINE):
        return
    delta_io.merge(spark, settings, QUARANTINE, rows.dropDuplicates(
        ["target_table", "source_file", "section", "record_no"]), delete=release)


def field_rules(payload: Column, parsed: Column, fields: list[str]) -> list[tuple[str, Column]]:
    """missing:<f> when the JSON lacks a required field, type:<f> when it has the wrong type."""
    return path_rules(payload, {name: parsed[name] for name in fields}, required=fields)


def path_rules(payload: Column, typed: dict[str, Column], required: Iterable[str]) -> list[tuple[str, Column]]:
    """For each JSON path (`device.model`) and its typed value: missing:<path> when a required
    path is absent or null, type:<path> when a value is there but did not parse as its type."""
    rules = []
    for path, value in typed.items():
        raw = F.get_json_object(payload, f"$.{path}")
        if path in required:
            rules.append((f"missing:{path}", raw.isNull()))
        rules.append((f"type:{path}", raw.isNotNull() & value.isNull()))
    return rules


def value_checks(column: contracts.Column) -> list[tuple[str, Callable[[Column], Column]]]:
    """The contract's allowed values and bounds of a column as quarantine rules: each a name and
    a test that holds when a (non-null) value breaks it. Names follow the hand-written rules:
    range:<c>_allowed, range:<c>_in_<min>_<max>, range:<c>>=<min>, range:<c><=<max>."""
    checks: list[tuple[str, Callable[[Column], Column]]] = []
    name, low, high, allowed = column.name, column.minimum, column.maximum, column.allowed
    if allowed is not None:
        checks.append((f"range:{name}_allowed", lambda v: v.isNotNull() & ~v.isin(*allowed)))
    if low is not None and high is not None:
        checks.append((f"range:{name}_in_{low:g}_{high:g}", lambda v: (v < low) | (v > high)))
    elif low is not None:
        checks.append((f"range:{name}>={low:g}", lambda v: v < low))
    elif high is not None:
        checks.append((f"range:{name}<={high:g}", lambda v: v > high))
    return [(rule, _null_is_fine(test)) for rule, test in checks]


def _null_is_fine(test: Callable[[Column], Column]) -> Callable[[Column], Column]:
    """A null value is a missing:/type: matter, never a range one (first_failed_rule treats an
    unknown outcome as broken)."""
    return lambda v: F.coalesce(test(v), F.lit(False))


def range_rules(table: contracts.Contract, values: dict[str, Column]) -> list[tuple[str, Column]]:
    """range:<rule> for every allowed-values list and bound the contract gives these columns."""
    return [(rule, test(value)) for name, value in values.items()
            for rule, test in value_checks(table.column(name))]


def extra_fields(payload: Column, known: Iterable[str]) -> Column:
    """The top-level fields of a JSON object that are not in `known`, as {field: JSON text of its
    value}; null when there are none (or the record is not an object).

    The cheap key listing runs on every record; the values are parsed only for the few records
    that carry an unknown field. Values go through VARIANT so a string keeps its quotes and a
    nested object its structure: `{"a": "1", "b": 1}` -> {a: '"1"', b: '1'}. Numbers are written
    as VARIANT writes them (10.0 as 10): the same JSON value, not always the same characters."""
    names = list(known)
    has_unknown = F.exists(F.json_object_keys(payload), lambda k: ~k.isin(*names))
    fields = F.from_json(payload, "map<string,variant>")
    unknown = F.map_filter(fields, lambda k, _v: ~k.isin(*names))
    return F.when(has_unknown, F.transform_values(unknown, lambda _k, v: F.to_json(v)))


def malformed(payload: Column) -> Column:
    """The record is not a JSON object at all."""
    return F.from_json(payload, "map<string,string>").isNull()


def blank(text: Column) -> Column:
    """The text holds nothing but whitespace (or is null)."""
    return F.regexp_replace(F.coalesce(text, F.lit("")), r"\s+", "") == ""


def file_failures(records: DataFrame) -> DataFrame:
    """Whole files that could not be read: one quarantine record each, named by file."""
    return records.where(F.col("section") == "file").withColumn(
        "rule", F.when(blank(F.col("payload")), F.lit("empty_file")).otherwise(F.lit("malformed_json")))


def redelivered(records: DataFrame, scope: Column, catalog: DataFrame | None = None) -> DataFrame:
    """(source_file, original_file) for every file whose bytes were already delivered under another
    name in the same `scope` (the folder's key=value metadata, e.g. run and capture).

    The original is the copy loaded first, then the first by name. A re-delivered file adds
    nothing: each of its records is a duplicate of the original's record with the same number.
    A version a path no longer has (superseded by newer bytes under its name, see `newest`) is no
    original: only each path's newest version in `catalog` counts.
    """
    delivered = records
    if catalog is not None:
        # Only the files of `records` can be copies, and only catalog files with the same bytes can be
        # their originals: the other bronze records are left out before anything is grouped.
        shas = records.select("source_sha256").distinct()
        delivered = catalog.join(F.broadcast(shas), "source_sha256", "left_semi")
    versioned = [] if catalog is None else ["batch_id"]
    files = delivered.groupBy("source_file", "source_sha256", *versioned, scope.alias("_scope")).agg(
        F.min("loaded_at").alias("loaded_at"))
    if catalog is not None:
        files = newest(files, versions_of(catalog, files))  # each path's newest version only
    files = files.withColumnRenamed("loaded_at", "_loaded_at")
    order = Window.partitionBy("source_sha256", "_scope").orderBy("_loaded_at", "source_file")
    return (files.withColumn("original_file", F.first("source_file").over(order))
            .where(F.col("source_file") != F.col("original_file"))
            .select("source_file", "original_file"))


def split_redeliveries(records: DataFrame, scope: Column,
                       catalog: DataFrame | None = None) -> tuple[DataFrame, DataFrame]:
    """Records of original files, and the records of re-delivered copies with their rule
    duplicate_of:<original file>:<record>, which come before any other rule: the original's
    record has already been judged. `catalog` is every record delivered so far (bronze), when
    `records` is only the newest batches: their files are compared with every earlier delivery."""
    # One row per re-delivered file: computed once here, so the many uses of the split below (gates,
    # counts, merges) do not run the look-up in bronze again.
    copies = spark_materialized(redelivered(records, scope, catalog))
    marked = records.join(F.broadcast(copies), ["source_file"], "left")
    rule = F.concat(F.lit("duplicate_of:"), F.col("original_file"), F.lit(":"), F.col("record_no"))
    originals = marked.where(F.col("original_file").isNull()).drop("original_file")
    duplicates = marked.where(F.col("original_file").isNotNull()).withColumn("rule", rule).drop("original_file")
    return originals, duplicates


def split_good(df: DataFrame, key: list[str], columns: list[str]) -> tuple[DataFrame, DataFrame]:
    """Good rows deduplicated on the key (only `columns` kept), and every rejected row."""
    good = df.where(F.col("rule").isNull())
    winners, losers = latest_wins(good.drop("rule"), key)
    rejected = df.where(F.col("rule").isNotNull()).unionByName(losers)
    return winners.select(*columns), rejected


def mot_rows(records: DataFrame) -> DataFrame:
    """MOTChallenge lines (frame,id,x,y,w,h,conf,...: gt.txt or tracker output) typed, with their rule."""
    df = records.withColumn("f", F.split("payload", ","))
    # try_*: Spark 4 runs ANSI SQL, where a short line or a bad number would fail the whole job.
    typed = {name: F.expr(f"try_cast(trim(try_element_at(f, {i + 1})) as double)")
             for i, name in enumerate(["frame", "id", "x", "y", "w", "h", "conf"])}
    df = df.select("*", *[v.alias(k) for k, v in typed.items()])
    # MOTChallenge 16/17/20 ground truth has 9 columns: ...,consider,class,visibility. MOT15 files and tracker
    # output have 10 (world coordinates, -1) and no class. (Ground truth checks the class: ingest_annotations.)
    classed = F.size("f") == 9
    df = df.select("*", F.when(classed, F.expr("try_cast(trim(try_element_at(f, 8)) as int)")).alias("object_class"),
                   F.when(classed, F.expr("try_cast(trim(try_element_at(f, 9)) as double)")).alias("visibility"))
    rule = first_failed_rule(
        ("malformed_csv", F.size("f") < 6),
        *[(f"type:{k}", F.col(k).isNull()) for k in ["frame", "id", "x", "y", "w", "h"]],
        ("type:frame", F.col("frame") != F.floor("frame")),
        ("range:frame>=1", F.col("frame") < 1),
        ("range:w>=0", F.col("w") < 0),
        ("range:h>=0", F.col("h") < 0),
    )
    return df.withColumn("rule", rule)


def crash_point(name: str) -> None:
    """Fault injection for the crash-safety tests: die here, as a kill -9 would, when
    SCENELAKE_CRASH_AT names this point. Costs one environment lookup in production."""
    if os.environ.get("SCENELAKE_CRASH_AT") == name:
        os._exit(99)


class Stopwatch:
    """Progress lines with the time each stage took, for long jobs."""

    def __init__(self, progress: Progress, job: str):
        self.progress, self.job, self.last = progress, job, time.monotonic()

    def lap(self, what: str) -> None:
        now = time.monotonic()
        self.progress(f"[{self.job}] {what} ({now - self.last:.1f}s)")
        self.last = now


def silent(_message: str) -> None:
    """A progress callback that prints nothing (tests)."""


def with_file_totals(quarantine: DataFrame, records: DataFrame) -> DataFrame:
    """Quarantine rows with the number of records read from their source file (for the quarantine-share gate)."""
    totals = records.groupBy("source_file").agg(F.count(F.lit(1)).alias("file_records"))
    return quarantine.join(totals, "source_file", "left")
