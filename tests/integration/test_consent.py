"""The consent policy (scenelake/consent.py) through the jobs: a capture leaves gold when one of its
subjects' consent becomes pending and comes back when it is granted again, in incremental evaluations.

On a copy of the session's faulty lake (tests/conftest.py: 8 generated captures with planted faults,
ingested and evaluated; one capture held out as pending and one as withdrawn from the start).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pyspark.sql import functions as F

import jobs.evaluate as evaluate_job
import jobs.ingest_captures as captures_job
from scenelake import delta_io, ingest
from scenelake.settings import Settings
from tests.conftest import copy_lake

pytestmark = pytest.mark.integration


def matched_captures(spark, lake: Settings) -> set[str]:  # type: ignore[no-untyped-def]
    return {r[0] for r in delta_io.read_table(spark, lake, "gold.detection_matches").select("capture_id")
            .distinct().collect()}


def manifest_lines(lake: Settings) -> dict[str, dict[str, object]]:
    """The generated manifest line of every capture that has exactly one line, all of it readable
    (the faulty lake's generator damaged or duplicated some lines), by capture id."""
    lines: dict[str, list[dict[str, object] | None]] = {}
    for path in sorted((Path(lake.landing_root) / "manifests").glob("*.jsonl")):
        for text in path.read_text().splitlines():
            try:
                record = json.loads(text)
            except ValueError:
                record = None
            named = record.get("capture_id") if isinstance(record, dict) else None
            for capture in [named] if isinstance(named, str) else re.findall(r"gen-\d{5}", text):
                lines.setdefault(capture, []).append(record if isinstance(record, dict) else None)
    return {c: rows[0] for c, rows in lines.items() if len(rows) == 1 and rows[0] is not None}


def deliver(lake: Settings, name: str, line: dict[str, object], consent: str) -> None:
    """A corrected manifest line for one capture: its first subject's consent set to `consent`."""
    people = line["subjects"]
    record = dict(line, subjects=[dict(people[0], consent=consent), *people[1:]])  # type: ignore[index]
    (Path(lake.landing_root) / "manifests" / f"{name}.jsonl").write_text(json.dumps(record, sort_keys=True) + "\n")


def metrics(spark, lake: Settings) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    """Every run's COCO numbers per class, sorted."""
    columns = ["run_id", "category_id", "ap", "ap50", "ap75", "ar100"]
    return sorted((tuple(r) for r in delta_io.read_table(spark, lake, "gold.detection_metrics").select(*columns)
                   .collect()), key=repr)


def test_consent_changes_move_captures_out_of_and_into_gold(spark, faulty_lake, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lake = copy_lake(faulty_lake[0], tmp_path)
    before, numbers = matched_captures(spark, lake), metrics(spark, lake)
    lines = manifest_lines(lake)
    capture = sorted(c for c in before if c in lines and lines[c]["subjects"])[0]
    groups = delta_io.read_table(spark, lake, "silver.predictions").where(
        F.col("capture_id") == capture).select("run_id", "capture_id").distinct().count()
    assert groups

    # One subject's consent becomes pending: the capture leaves every gold table, it stays in silver.
    deliver(lake, "consent-pending", lines[capture], "pending")
    captures_job.run(spark, lake, progress=ingest.silent)
    said: list[str] = []
    evaluate_job.run(spark, lake, progress=said.append)
    assert matched_captures(spark, lake) == before - {capture}
    # Incremental: only that capture's (run, capture) groups were matched again.
    assert f"[evaluate] {groups} changed (run, capture) group(s) in" in " ".join(said), said
    tracking = {r[0] for r in delta_io.read_table(spark, lake, "gold.tracking_metrics").select("capture_id")
                .distinct().collect()}
    assert capture not in tracking
    held = delta_io.read_table(spark, lake, "silver.subjects").where(
        (F.col("capture_id") == capture) & (F.col("consent") == "pending")).count()
    assert held == 1
    assert metrics(spark, lake) != numbers

    # Granted again: the capture comes back, and every metric is what it was before.
    deliver(lake, "consent-granted", lines[capture], "granted")
    captures_job.run(spark, lake, progress=ingest.silent)
    evaluate_job.run(spark, lake, progress=ingest.silent)
    assert matched_captures(spark, lake) == before
    assert metrics(spark, lake) == numbers
