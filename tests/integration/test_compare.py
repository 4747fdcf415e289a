"""The comparison job, its CLI, the notebooks and the report on the real Spark, Delta Lake and Trino.

One lake for the module: the generator's two runs on 200 captures (seed 1), matched in numpy
and written as the four tables a comparison reads (ingestion has its own tests, and would take
minutes here). The job writes gold.slice_comparisons; Trino serves it, the evaluation views,
and the notebooks' queries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import jobs.compare as compare_job
from scenelake import comparison, delta_io, report, views
from scenelake.contracts import all_contracts
from scenelake.settings import Settings
from scenelake.trino_client import connect, register_tables
from tests.generated_records import generate_matches, write_lake

pytestmark = pytest.mark.integration
PLANTED = ("lighting,motion", "dark,running")


@pytest.fixture(scope="module")
def lake(spark, trino: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("compare")
    lake = trino.with_overrides(lake_root=str(root / "lake"), landing_root=str(root / "landing"))
    write_lake(spark, lake, generate_matches(seed=1, captures=200))
    return lake


@pytest.fixture(scope="module")
def job(spark, lake: Settings) -> tuple[compare_job.ComparisonReport, list[str]]:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    done = compare_job.run(spark, lake, progress=lines.append)
    names = [n for n in all_contracts() if delta_io.table_exists(spark, lake, n)]
    register_tables(lake, [tuple(n.split(".")) for n in names])  # type: ignore[misc]
    views.deploy(lake)
    return done, lines


def trino_frame(settings: Settings, sql: str) -> pd.DataFrame:
    cur = connect(settings).cursor()
    cur.execute(sql)
    rows = cur.fetchall()
    return pd.DataFrame(rows, columns=[d[0] for d in cur.description])


def test_newest_run_compared_with_its_predecessor_planted_regression_first(lake, job) -> None:  # type: ignore[no-untyped-def]
    done, lines = job
    assert done.pairs == [("person-v1", "person-v2")] and not done.skipped
    rows = trino_frame(lake, "select * from delta.gold.slice_comparisons")
    assert set(rows["comparison_id"]) == {"person-v1..person-v2"}
    assert not rows.duplicated(["slice_by", "slice_value", "metric"]).any()
    assert set(rows["metric"]) == set(comparison.DETECTION_METRICS)
    assert set(rows["resamples"]) == {1000} and set(rows["seed"]) == {0}
    first = comparison.ranked(rows, "regression").iloc[0]
    assert (first["slice_by"], first["slice_value"]) == PLANTED
    own = rows[rows["same_as"].isna()]
    assert (own.loc[own["flag"] == "regression", "slice_value"] == "dark,running").all()
    assert (rows["flag"] == "improvement").sum() > 10  # person-v2 is the better model elsewhere
    table_start = next(i for i, line in enumerate(lines) if "top regressions" in line)
    assert lines[table_start + 3].startswith("lighting,motion=dark,running")


def test_point_estimates_equal_the_trino_slice_view(lake, job) -> None:  # type: ignore[no-untyped-def]
    """Two independent computations of the same numbers: numpy in the job, SQL in sql/gold/."""
    rows = trino_frame(lake, "select * from delta.gold.slice_comparisons where same_as is null")
    view = pd.concat([
        trino_frame(lake, "select * from delta.gold.detection_slice_metrics where slice_by in ('all', 'lighting')"),
        trino_frame(lake, views.slice_query(["lighting", "motion"])),
    ])
    checked = 0
    for (by, value), part in rows.groupby(["slice_by", "slice_value"]):
        for side, run_id in (("baseline", "person-v1"), ("candidate", "person-v2")):
            match = view[(view["slice_by"] == by) & (view["slice_value"] == value) & (view["run_id"] == run_id)]
            if not len(match):
                continue
            got = part.set_index("metric")[side]
            for metric in comparison.DETECTION_METRICS:
                assert got[metric] == pytest.approx(match.iloc[0][metric], abs=1e-9), (by, value, run_id, metric)
            checked += 1
    assert checked >= 2 * (1 + 4 + 10)


def test_a_rerun_with_unchanged_inputs_is_a_no_op(spark, lake, job) -> None:  # type: ignore[no-untyped-def]
    version = delta_io.table_version(spark, lake, compare_job.COMPARISONS)
    again = compare_job.run(spark, lake, progress=lambda _line: None)
    assert again.skipped and delta_io.table_version(spark, lake, compare_job.COMPARISONS) == version
    assert again.regressions == job[0].regressions > 0


def test_cli_prints_the_summary_writes_the_chart_and_fails_on_regression(  # type: ignore[no-untyped-def]
        lake, job, tmp_path: Path) -> None:
    chart = tmp_path / "delta.png"
    env = {**os.environ, "SCENELAKE_LAKE_ROOT": lake.lake_root, "SCENELAKE_LANDING_ROOT": lake.landing_root}
    done = subprocess.run([sys.executable, "-m", "scenelake.cli", "compare", "--baseline", "person-v1",
                           "--candidate", "person-v2", "--fail-on-regression", "--plot", str(chart)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == compare_job.REGRESSION_EXIT, done.stderr[-2000:]
    assert "regression(s) flagged (--fail-on-regression)" in done.stderr
    out = done.stdout.splitlines()
    start = next(i for i, line in enumerate(out) if "top regressions" in line)
    assert out[start + 1].split("|")[0].strip() == "slice"
    assert out[start + 3].startswith("lighting,motion=dark,running")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


def test_notebooks_execute_against_trino_and_the_report_embeds_their_figures(  # type: ignore[no-untyped-def]
        lake, job, tmp_path: Path) -> None:
    rendered = report.render(tmp_path / "report")
    assert {r.notebook.name for r in rendered} == {"slice_evaluation.ipynb", "data_coverage.ipynb"}
    for item in rendered:
        text = item.html.read_text()
        assert item.figures >= 3, item.notebook.name
        assert text.count('src="data:image/png;base64,') >= item.figures
    assert (tmp_path / "report" / "index.html").exists()
    for path in report.notebooks():  # stored without outputs
        assert '"outputs": []' in path.read_text() and '"output_type"' not in path.read_text()
