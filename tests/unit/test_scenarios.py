"""A scenario attribute is one flagged column in the captures contract and nothing else.

The test copies the project's contracts, views and settings to a new home (SCENELAKE_HOME), adds a
`weather` column flagged `scenario: true` to silver.captures there, and checks in a fresh process (the
contracts are read once per process) that every consumer picked it up without any other edit: the
ingest job promotes it out of the manifest's scenario map, every slice view and the coverage view
expand to it, `scenelake slice` groups by it, and `scenelake compare` slices by it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

CHECK = r'''
import json
import pandas as pd
from click.testing import CliRunner
from pyspark.sql import SparkSession

from jobs import compare, ingest_captures
from scenelake import comparison, views
from scenelake.cli import main
from scenelake.contracts import scenario_attributes

assert scenario_attributes()[-1] == "weather", scenario_attributes()
assert comparison.SCENARIO_ATTRIBUTES == scenario_attributes()
assert ingest_captures.FIELD_PATHS["weather"] == "scenario.weather"
assert views.check() == [], views.check()  # the views still qualify against the contracts

known = {v.name: v for v in views.all_views()}
for name in ("gold.detection_evaluation", "gold.capture_coverage"):
    assert "weather" in views.output_columns(known[name].tree), name
for name, alias in (("gold.detection_slice_metrics", "e"), ("gold.tracking_slice_metrics", "s")):
    sql = known[name].tree.sql(dialect="trino")
    assert "'weather'" in sql and f"CAST({alias}.weather AS VARCHAR)" in sql, name
assert views.lineage("gold.capture_coverage", "weather") == {"weather": ["silver.captures.weather"]}

out = CliRunner().invoke(main, ["slice", "--by", "weather,lighting", "--sql"])
assert out.exit_code == 0, out.output
assert "'weather,lighting' AS slice_by" in out.output and "CAST(e.weather AS VARCHAR)" in out.output, out.output

spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
line = json.dumps({"capture_id": "cap-1", "scenario": {"lighting": "dim", "weather": "rain", "haze": "light"}})
bronze = spark.createDataFrame([("m.jsonl", 1, "b1", None, line)],
                               "source_file string, line_number long, batch_id string, loaded_at timestamp, "
                               "payload string")
row = ingest_captures.parse_captures(bronze).select("weather", "lighting", "tags").first()
assert (row.weather, row.lighting, row.tags) == ("rain", "dim", {"haze": "light"}), row
captures = spark.createDataFrame(pd.DataFrame({name: ["x"] for name in ("capture_id", *scenario_attributes())}))
attributes = compare.attributes(captures)
slices = {s.name for s in comparison.enumerate_slices(attributes)}
assert "weather=x" in slices and "lighting,weather=x,x" in slices, sorted(slices)
spark.stop()
print("weather everywhere")
'''


def test_a_new_scenario_column_reaches_every_consumer(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for folder in ("schemas", "sql", "quality", "conf"):
        if (ROOT / folder).exists():
            shutil.copytree(ROOT / folder, home / folder)
    shutil.copy(ROOT / "versions.env", home / "versions.env")
    captures = home / "schemas" / "silver" / "captures.yaml"
    text = captures.read_text()
    anchor = "  - {name: tags,"
    assert anchor in text
    captures.write_text(text.replace(anchor, "  - {name: weather, type: string, nullable: true, scenario: true, "
                                             "description: Scenario tag (weather)}\n" + anchor, 1))
    env = {**os.environ, "SCENELAKE_HOME": str(home), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("weather everywhere"), done.stderr[-3000:]
