"""The consent policy, in one place: what each subject consent state lets the lake do with a capture.

A recording shows everyone in it, so the unit is the capture session: it may be used only when every
subject recorded in it (silver.subjects) has consent `granted`.

- `granted`: usable everywhere (evaluation, slices, comparisons, exports).
- `pending` (consent not yet given): the capture is kept in bronze and silver, but held out of
  everything derived from it: no row of gold.detection_matches or gold.tracking_metrics, so no
  metric, slice view, comparison or export counts it. When every subject's consent becomes
  `granted` (a later manifest line), the next evaluation takes it in.
- `withdrawn`: the subject is erased (the pipeline's `withdrawals` step for a withdrawal in a manifest
  upload, or `scenelake forget`; jobs/forget.py); until the erasure runs, the capture is held out like
  a pending one.

A capture with no subject list (imported public datasets, manifests without people) holds no
subject's data and is usable. gold.capture_coverage counts the held-out captures and why.

Erased is final: what ops.erasures names (keyed hashes of the subjects and their captures) is not
admitted again when a device or a script lands the same files once more (`Erased`, applied by
scenelake.ingest.read_files to every landed file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from scenelake import access, delta_io, erasure
from scenelake.settings import Settings

USABLE = "granted"
HELD_OUT = "pending"
ERASED = "withdrawn"
SUBJECTS = "silver.subjects"


def held_out(subjects: DataFrame) -> DataFrame:
    """capture_id of every capture that records a subject whose consent is not `granted`."""
    return subjects.where(F.col("consent") != USABLE).select("capture_id").distinct()


def usable(frames: DataFrame, subjects: DataFrame | None) -> DataFrame:
    """The rows of `frames` (any table with capture_id) of captures the policy lets the lake evaluate."""
    if subjects is None:
        return frames
    return frames.join(held_out(subjects), "capture_id", "left_anti")


# --- erased subjects are not admitted again ---------------------------------------------
ERASURES = "ops.erasures"
# A whole id, as scenelake.erasure.pattern matches one.
TOKEN = re.compile(f"[{erasure.ID_CHARS}]+")


@dataclass(frozen=True)
class Erased:
    """The keyed hashes of every subject and capture that `forget` erased (ops.erasures).

    A device or a script that lands the same files again must not bring them back: ingestion leaves
    out the files in an erased capture's folder and blanks the lines that name an erased subject or
    capture, exactly as the erasure rewrote them, so a re-delivered manifest reads as the rewritten
    one (same digest: nothing new). Only hashes are kept, so matching hashes each candidate id."""

    key: str
    hashes: frozenset[str]

    def named(self, identifier: str) -> bool:
        return access.masked_value(identifier, self.key) in self.hashes

    def refuses(self, relative_path: str) -> bool:
        """A landed file whose path names an erased id: in an erased capture's folder
        (.../capture_id=<id>/...) or named after one, as the erasure deleted them."""
        return any(self.named(token) for token in set(TOKEN.findall(relative_path)))

    def blanked(self, text: str | None) -> str | None:
        """`text` with every line that names an erased id blanked (its line break kept), as
        scenelake.erasure.scrub_landing rewrites a line file."""
        if text is None:
            return None
        seen: dict[str, bool] = {}

        def names(line: str) -> bool:
            for token in TOKEN.findall(line):
                if token not in seen:
                    seen[token] = self.named(token)
                if seen[token]:
                    return True
            return False

        return erasure.blank_lines(text, names)


def erased(spark: SparkSession, settings: Settings) -> Erased | None:
    """What ops.erasures says must not come back; None when nothing was ever erased."""
    if not delta_io.table_exists(spark, settings, ERASURES):
        return None
    table = delta_io.read_table(spark, settings, ERASURES)
    captures = F.col("capture_hashes") if "capture_hashes" in table.columns else F.lit(None).cast("array<string>")
    hashes: set[str] = set()
    for subject, removed in table.select("subject_hash", captures).collect():
        hashes.add(subject)
        hashes.update(removed or [])
    if not hashes:
        return None
    return Erased(access.read_key(settings), frozenset(hashes))
