"""Erase a subject who withdrew consent: every capture they appear in, from every table, file and version.

  scenelake forget --subject ID [--reason TEXT] [--by NAME]
  scenelake forget --verify ID      the proof alone: reads every file, changes nothing

The pipeline runs the same erasure for every subject a manifest upload marks `withdrawn`
(`withdrawals`, the step after ingest_captures), all of them in one pass, by `pipeline`.

A recording shows everyone in it, so the unit of erasure is the capture session: every capture the
subject appears in (in silver.subjects, or in a manifest line bronze or the quarantine holds) is
removed whole, with its frames, annotations, predictions, matches and tracking rows, its raw bronze
records and quarantined payloads, and its landed files; a device manifest that also lists other
captures is rewritten with the subject's lines blanked (the other lines keep their numbers). Text
elsewhere that names the subject or a removed capture (quality sample keys, Data Docs pages) is
scrubbed or removed. Then the pipeline's steps run (ingestion, evaluation, comparison), so the
metrics of every affected model run are computed again without the erased captures, in this job.

No way back: every table that changed is purged (scenelake.erasure.purge_history): its unreferenced
files are vacuumed with no retention and its log before the erasure is removed, so no earlier
version, change-feed file or log statistic holds a removed row. Time travel on those tables starts
at the erasure; tables the erasure did not touch keep their history. The tables are registered in
Trino again afterwards, which flushes its metadata cache.

Proof and audit: the last step scans every file under the lake root, the landing zone and the state
folder (Trino's, the Data Docs) for the subject id and the removed capture ids (file names, bytes,
and every Parquet file's values) and appends the request to ops.erasures (admin only): a keyed hash
of the subject id, never the id, with the rows removed per table, the files removed and rewritten,
the tables purged and the proof's result. Exit code 4 when the proof finds something. A request for
a subject with nothing left changes nothing and says so.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs import compare, evaluate, ingest_annotations, ingest_captures, ingest_predictions
from scenelake import access, consent, delta_io, erasure, ingest
from scenelake.contracts import all_contracts
from scenelake.job import job_main, releases_cache
from scenelake.settings import Settings

AUDIT = "ops.erasures"
# The pipeline's steps an erasure runs again (in its order), so everything the removed captures fed is
# recomputed: every step but the withdrawals (this job) and maintenance.
DERIVE = (ingest_captures, ingest_annotations, ingest_predictions, evaluate, compare)
BRONZE = ("bronze.captures", "bronze.annotations", "bronze.predictions")


class ErasureError(Exception):
    """The request cannot be carried out as asked; the message says what to do."""


@dataclass
class ErasureReport:
    erasure_id: str
    subject_hashes: list[str]
    captures: list[str] = field(default_factory=list)
    # The keyed hash of every removed capture id (ops.erasures.capture_hashes: never admitted again).
    capture_hashes: list[str] = field(default_factory=list)
    tables: list[erasure.TableChange] = field(default_factory=list)
    landing: erasure.LandingChange = field(default_factory=erasure.LandingChange)
    purged: list[str] = field(default_factory=list)
    hits: list[erasure.Hit] = field(default_factory=list)
    nothing_left: bool = False

    @property
    def proof_passed(self) -> bool:
        return not self.hits

    @property
    def subject_hash(self) -> str:
        return self.subject_hashes[0]


def subject_captures(spark: SparkSession, settings: Settings, subject: str) -> list[str]:
    """Every capture the subject appears in: in silver.subjects, and in any manifest line that bronze or
    the quarantine still holds (a line that lost to a later copy, or one that broke the contract)."""
    regex = erasure.pattern([subject])
    found: set[str] = set()
    if delta_io.table_exists(spark, settings, "silver.subjects"):
        found |= {r[0] for r in delta_io.read_table(spark, settings, "silver.subjects")
                  .where(F.col("subject_id") == subject).select("capture_id").distinct().collect()}
    for name in ("bronze.captures", "ops.quarantine"):
        if delta_io.table_exists(spark, settings, name):
            rows = (delta_io.read_table(spark, settings, name).where(F.col("payload").rlike(regex))
                    .select(F.get_json_object("payload", "$.capture_id")).distinct().collect())
            found |= {r[0] for r in rows if r[0]}
    return sorted(found)


def interrupted_captures(spark: SparkSession, settings: Settings, subject: str) -> list[str]:
    """The captures of `subject` that an interrupted erasure already deleted (gone from silver.captures) but
    whose history it had not purged yet: silver.subjects still shows them in the version before each
    DELETE left in its log. The erasure purges silver.subjects last, so until it is done they are found."""
    name = consent.SUBJECTS
    commits = delta_io.history(spark, settings, name)
    versions = {version for version, _, _ in commits}
    found: set[str] = set()
    for version, operation, _ in commits:
        if operation == "DELETE" and version - 1 in versions:
            found |= {r[0] for r in delta_io.read_table(spark, settings, name, version=version - 1)
                      .where(F.col("subject_id") == subject).select("capture_id").distinct().collect()}
    if not found or not delta_io.table_exists(spark, settings, "silver.captures"):
        return sorted(found)
    present = {r[0] for r in delta_io.read_table(spark, settings, "silver.captures")
               .where(F.col("capture_id").isin(sorted(found))).select("capture_id").collect()}
    return sorted(found - present)


def proof(settings: Settings, identifiers: list[str]) -> list[erasure.Hit]:
    areas = {"lake": Path(settings.lake_root), "landing": Path(settings.landing_root),
             "state": Path(settings.state_dir)}
    return erasure.scan(areas, identifiers)


def _require_local(settings: Settings) -> None:
    if not settings.is_local_lake or "://" in settings.landing_root:
        raise ErasureError("forget rewrites files and purges table logs on a local lake and landing folder; "
                           f"this profile keeps them at {settings.lake_root} and {settings.landing_root}. "
                           "Run it where the lake is mounted as a folder (object storage is not supported yet)")


@releases_cache
def run(spark: SparkSession, settings: Settings, progress=print, subject: str | None = None,  # type: ignore[no-untyped-def]
        reason: str | None = None, by: str | None = None, verify: str | None = None,
        subjects: list[str] | None = None) -> ErasureReport:
    """Erase `subject` (or every one of `subjects`, in one pass), or with `verify` only scan for it."""
    people = sorted({*(subjects or []), *([subject] if subject else [])})
    if bool(people) == bool(verify):
        raise ErasureError("give --subject ID (erase) or --verify ID (check), one of the two")
    _require_local(settings)
    people = people or [str(verify)]
    started = datetime.now(UTC)
    key = access.read_key(settings)
    report = ErasureReport(ingest.new_batch_id(), [str(access.masked_value(p, key)) for p in people])
    per_subject = {p: subject_captures(spark, settings, p) for p in people}
    # A rerun after a crash: what the first run deleted is still in the history it had not purged.
    leftover = {p: sorted(set(interrupted_captures(spark, settings, p)) - set(per_subject[p])) for p in people}
    resumed = any(leftover.values())
    per_subject = {p: sorted({*per_subject[p], *leftover[p]}) for p in people}
    report.captures = sorted({c for found in per_subject.values() for c in found})
    report.capture_hashes = sorted(str(access.masked_value(c, key)) for c in report.captures)
    identifiers = [*people, *report.captures]
    if verify:
        report.hits = proof(settings, identifiers)
        _show_proof(report, progress)
        return report

    regex = erasure.pattern(identifiers)
    watch = ingest.Stopwatch(progress, "forget")
    whom = f"subject {report.subject_hash}" if len(people) == 1 else f"{len(people)} subjects"
    progress(f"[forget] {whom}: {len(report.captures)} capture(s) to erase")
    if resumed:
        progress("[forget] resuming an interrupted erasure: some captures are gone from the tables but still in "
                 "their history; every table is purged")
    names = [n for n in delta_io.existing_tables(spark, settings) if n != AUDIT]
    before = {n: delta_io.table_version(spark, settings, n) for n in names}
    contracts = all_contracts()
    for name in names:
        table = contracts[name]
        change = erasure.erase_rows(spark, settings.table_path(table.layer, table.table), name,
                                    report.captures, regex)
        if change.removed or change.scrubbed:
            progress(f"[forget] {name}: {change.removed} row(s) removed, {change.scrubbed} scrubbed")
            report.tables.append(change)
    ingest.crash_point("forget:after_rows")
    watch.lap("table rows erased")
    report.landing = erasure.scrub_landing(Path(settings.landing_root), report.captures, regex)
    for name in BRONZE:
        if name in before:
            layer, table_name = name.split(".")
            erasure.update_file_identity(spark, settings.table_path(layer, table_name), report.landing.rewritten)
    # A validation page that shows an erased value is a generated report: it goes. So does a landed-file
    # ledger that names an erased capture's files (the next ingest compares with bronze once instead).
    docs = erasure.remove_mentioning(Path(settings.state_dir) / "data_docs", identifiers)
    erasure.remove_mentioning(Path(settings.lake_root) / ingest.LANDED_FOLDER, identifiers)
    progress(f"[forget] landing zone: {len(report.landing.removed)} file(s) removed, "
             f"{len(report.landing.rewritten)} rewritten; {docs} Data Docs page(s) removed")
    watch.lap("landing zone scrubbed")

    if not report.tables and not report.landing.removed and not report.landing.rewritten and not resumed:
        report.nothing_left = True
        report.hits = proof(settings, identifiers)
        earlier = _earlier(spark, settings, report.subject_hash)
        progress("[forget] nothing of this subject is in the lake or the landing zone: nothing changed" + earlier)
        _show_proof(report, progress)
        if not earlier:
            # Never recorded (never in the lake, or a run that died after its purge): the request is.
            _audit(spark, settings, report, per_subject, reason, by or getpass.getuser(), started)
        return report

    # The metrics of every affected run, without the erased captures (each step is incremental: it
    # sees the deletions in the change feed and re-computes the (run, capture) groups they touch).
    for step in DERIVE:
        step.run(spark, settings, ingest.silent)
    watch.lap("pipeline steps re-run (metrics recomputed)")
    ingest.crash_point("forget:after_recompute")

    # silver.subjects last: until it is purged a rerun can find what an interrupted run deleted.
    for name in sorted(names, key=lambda n: n == consent.SUBJECTS):
        if delta_io.table_version(spark, settings, name) == before[name] and not resumed:
            continue
        commits = delta_io.history(spark, settings, name)
        layer, table_name = name.split(".")
        erasure.purge_history(spark, settings.table_path(layer, table_name), delta_io.data_version_of(commits),
                              erasure.newest_markers(commits),
                              lambda marker, name=name: delta_io.record_marker(spark, settings, name, marker))
        report.purged.append(name)
    progress(f"[forget] {len(report.purged)} table(s) purged of their earlier versions: {', '.join(report.purged)}")
    watch.lap("history purged")
    ingest.crash_point("forget:after_purge")

    report.hits = proof(settings, identifiers)
    _show_proof(report, progress)
    _audit(spark, settings, report, per_subject, reason, by or getpass.getuser(), started)
    return report


def _earlier(spark: SparkSession, settings: Settings, subject_hash: str) -> str:
    if not delta_io.table_exists(spark, settings, AUDIT):
        return ""
    rows = (delta_io.read_table(spark, settings, AUDIT).where(F.col("subject_hash") == subject_hash)
            .orderBy(F.col("completed_at").desc()).select("erasure_id", "completed_at").limit(1).collect())
    return f" (erased by request {rows[0][0]} at {rows[0][1]:%Y-%m-%d %H:%M} UTC)" if rows else ""


def _show_proof(report: ErasureReport, progress) -> None:  # type: ignore[no-untyped-def]
    if report.proof_passed:
        people = len(report.subject_hashes)
        whom = "subject or its" if people == 1 else f"{people} subjects or their"
        progress("[forget] proof passed: no file under the lake, the landing zone or the state folder holds the "
                 f"{whom} {len(report.captures)} capture id(s)")
        return
    progress(f"[forget] proof FAILED: {len(report.hits)} file(s) still hold the subject or a removed capture:")
    for hit in report.hits[:50]:
        progress(f"  {hit.area}/{hit.file} ({hit.how})")


def _audit(spark: SparkSession, settings: Settings, report: ErasureReport, per_subject: dict[str, list[str]],
           reason: str | None, by: str, started: datetime) -> None:
    """One row per subject: its own captures; the rows, files and tables of the whole pass (shared
    when several subjects were erased together)."""
    from scenelake.contracts import contract

    done = datetime.now(UTC)
    hashes = dict(zip(report.captures, report.capture_hashes, strict=True))
    rows = []
    for i, (person, subject_hash) in enumerate(zip(sorted(per_subject), report.subject_hashes, strict=True)):
        erasure_id = report.erasure_id if len(per_subject) == 1 else f"{report.erasure_id}-{i + 1}"
        rows.append((erasure_id, subject_hash, by, reason, started, done, len(per_subject[person]),
                     {t.name: t.removed for t in report.tables if t.removed},
                     {t.name: t.scrubbed for t in report.tables if t.scrubbed},
                     len(report.landing.removed), len(report.landing.rewritten), report.purged, report.proof_passed,
                     len({(h.area, h.file) for h in report.hits}), sorted(hashes[c] for c in per_subject[person])))
    delta_io.append(spark, settings, AUDIT, spark.createDataFrame(rows, contract(AUDIT).spark_schema()))


def withdrawn(spark: SparkSession, settings: Settings) -> list[str]:
    """The subjects silver.subjects holds as `withdrawn` (a manifest upload withdrew their consent)."""
    if not delta_io.table_exists(spark, settings, consent.SUBJECTS):
        return []
    return sorted(r[0] for r in delta_io.read_table(spark, settings, consent.SUBJECTS)
                  .where(F.col("consent") == consent.ERASED).select("subject_id").distinct().collect())


def run_withdrawals(spark: SparkSession, settings: Settings, progress=print) -> ErasureReport | None:  # type: ignore[no-untyped-def]
    """The pipeline's step: erase every subject whose consent a manifest upload withdrew, in one pass
    (nothing when there is none: one read of silver.subjects)."""
    people = withdrawn(spark, settings)
    if not people:
        progress("[withdrawals] no subject's consent withdrawn")
        return None
    try:
        _require_local(settings)
    except ErasureError as exc:
        progress(f"[withdrawals] warning: {len(people)} subject(s) withdrew consent, but {exc}. Their captures "
                 "stay held out of gold (scenelake/consent.py) until they are erased")
        return None
    progress(f"[withdrawals] {len(people)} subject(s) withdrew consent in a manifest upload: erasing them")
    return run(spark, settings, progress, subjects=people, reason="consent withdrawn in a manifest upload",
               by="pipeline")


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subject", metavar="ID", help="the subject id (as in the device manifests) to erase")
    parser.add_argument("--reason", metavar="TEXT", help="why (recorded in ops.erasures; e.g. the ticket)")
    parser.add_argument("--by", metavar="NAME", help="who asked (recorded; default: $USER)")
    parser.add_argument("--verify", metavar="ID", help="only scan for the subject id and report, change nothing")


def main(argv: list[str] | None = None) -> int:
    holder: dict[str, ErasureReport] = {}

    def job(spark: SparkSession, settings: Settings, **kwargs: object) -> ErasureReport:
        holder["report"] = run(spark, settings, **kwargs)
        return holder["report"]

    try:
        status = job_main("forget", __doc__, job, delta_io.existing_tables, argv, options)
    except (ErasureError, access.AccessError) as exc:
        print(f"[forget] error: {exc}", file=sys.stderr)
        return 2
    report = holder.get("report")
    return 4 if status == 0 and report is not None and not report.proof_passed else status


if __name__ == "__main__":
    sys.exit(main())
