"""The consent policy, in one place: what each subject consent state lets the lake do with a capture.

A recording shows everyone in it, so the unit is the capture session: it may be used only when every
subject recorded in it (silver.subjects) has consent `granted`.

- `granted`: usable everywhere (evaluation, slices, comparisons, exports).
- `pending` (consent not yet given): the capture is kept in bronze and silver, but held out of
  everything derived from it: no row of gold.detection_matches or gold.tracking_metrics, so no
  metric, slice view, comparison or export counts it. When every subject's consent becomes
  `granted` (a later manifest line), the next evaluation takes it in.
- `withdrawn`: the subject is erased (`scenelake forget`, jobs/forget.py); until the erasure runs,
  the capture is held out like a pending one.

A capture with no subject list (imported public datasets, manifests without people) holds no
subject's data and is usable. gold.capture_coverage counts the held-out captures and why.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

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
