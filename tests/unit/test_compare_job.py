"""The compare job's pure parts: which runs it compares by default, and the summary it prints."""

from __future__ import annotations

import pandas as pd
import pytest

import jobs.compare as compare_job
from scenelake import comparison
from tests.unit.test_comparison import synthetic_pair

pytestmark = pytest.mark.unit


def test_each_model_newest_run_is_compared_with_the_one_before() -> None:
    runs = pd.DataFrame([
        ("det-v1", "det", "v1", "2026-11-01 00:00:00"), ("det-v3", "det", "v3", "2026-11-03 00:00:00"),
        ("det-v2", "det", "v2", "2026-11-02 00:00:00"), ("det-v4", "det", "v4", "2026-11-04 00:00:00"),
        ("trk-a", "tracker", "a", None), ("trk-b", "tracker", "b", None),  # no start time: by version
        ("solo", "other", "1", "2026-11-01 00:00:00"),
    ], columns=["run_id", "model_name", "model_version", "started_at"])
    evaluated = {"det-v1", "det-v2", "det-v3", "trk-a", "trk-b", "solo"}  # det-v4 is not evaluated yet
    assert compare_job.latest_pairs(runs, evaluated) == [("det-v2", "det-v3"), ("trk-a", "trk-b")]


def test_summary_prints_flag_counts_and_the_regression_table_first() -> None:
    a, b, attrs = synthetic_pair(1, captures=45, effect=0.4)
    options = comparison.Options(resamples=200)
    table = comparison.compare(a, b, attrs, options)
    lines = compare_job.summary("a..b", table, options, top=3)
    assert lines[0].startswith("[compare] a..b: ") and "200 capture resamples (seed 0)" in lines[0]
    regressions = len(comparison.ranked(table, "regression"))
    assert f"{regressions} regression(s), 0 improvement(s)" in lines[0]
    assert lines[1].startswith("[compare] top regressions")
    assert [c.strip() for c in lines[2].split("|")] == ["slice", "metric", "support", "baseline", "candidate",
                                                      "delta", "q"]
    first = lines[4].split("|")
    assert first[0].strip() == "lighting=dark" and first[5].strip().startswith("-")
    assert len(lines) == 2 + 2 + min(3, regressions)
