"""An erasure killed at its commit boundaries, then asked again, completes: the proof passes, no remaining
version of any table shows the subject or the capture, the request is audited, and a third request changes
nothing.

A small generated lake (4 captures, two model runs, run through the pipeline) with a planted subject
(consent granted) in one capture; `scenelake forget` runs in its own process and dies at the crash point
(as a kill -9 would), then the request is made again in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from delta.tables import DeltaTable

import jobs.forget as forget_job
from jobs import pipeline
from scenelake import delta_io, erasure, ingest
from scenelake.contracts import all_contracts
from scenelake.generator import generate
from scenelake.settings import PROJECT_ROOT, Settings

pytestmark = [pytest.mark.integration, pytest.mark.long]
SUBJECT = "subj-crash-3"


def plant(landing: Path) -> str:
    manifest = sorted((landing / "manifests").glob("*.jsonl"))[0]
    lines = manifest.read_text().splitlines()
    record = json.loads(lines[0])
    record["subjects"].append({"subject_id": SUBJECT, "consent": "granted"})
    lines[0] = json.dumps(record)
    manifest.write_text("\n".join(lines) + "\n")
    return str(record["capture_id"])


def kill_forget_at(lake: Settings, point: str) -> None:
    env = {**os.environ, "SCENELAKE_LAKE_ROOT": lake.lake_root, "SCENELAKE_LANDING_ROOT": lake.landing_root,
           "SCENELAKE_STATE_DIR": str(lake.state_dir), "SCENELAKE_CRASH_AT": point}
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "jobs" / "forget.py"), "--no-register",
                           "--subject", SUBJECT], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 99, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize("point", ["forget:after_rows", "forget:after_recompute", "forget:after_purge"])
def test_a_killed_erasure_completes_when_asked_again(spark, trino: Settings, tmp_path: Path, point: str) -> None:  # type: ignore[no-untyped-def]
    lake = trino.with_overrides(lake_root=str(tmp_path / "lake"), landing_root=str(tmp_path / "landing"),
                                state_dir=tmp_path / "state")
    generate(Path(lake.landing_root), captures=4, seed=7, defect_rate=0.0)
    capture = plant(Path(lake.landing_root))
    pipeline.run(spark, lake, ingest.silent)
    kill_forget_at(lake, point)

    said: list[str] = []
    report = forget_job.run(spark, lake, said.append, subject=SUBJECT, reason="ticket 7", by="dpo")
    assert report.proof_passed, report.hits
    areas = {"lake": Path(lake.lake_root), "landing": Path(lake.landing_root), "state": Path(lake.state_dir)}
    assert erasure.scan(areas, [SUBJECT, capture]) == []
    regex = erasure.pattern([SUBJECT, capture])
    for name in all_contracts():
        if not delta_io.table_exists(spark, lake, name):
            continue
        layer, table = name.split(".")
        log = DeltaTable.forPath(spark, lake.table_path(layer, table)).history()
        for (version,) in log.select("version").collect():
            df = delta_io.read_table(spark, lake, name, version=version)
            assert df.where(erasure.mentions(df, regex)).count() == 0, (name, version)
    audited = delta_io.read_table(spark, lake, forget_job.AUDIT).where("requested_by = 'dpo'").collect()
    assert [(r.subject_hash, r.proof_passed) for r in audited] == [(report.subject_hash, True)]

    versions = {n: delta_io.table_version(spark, lake, n) for n in all_contracts()}
    again = forget_job.run(spark, lake, ingest.silent, subject=SUBJECT, reason="ticket 7 again", by="dpo")
    assert again.nothing_left and again.proof_passed
    assert {n: delta_io.table_version(spark, lake, n) for n in all_contracts()} == versions
