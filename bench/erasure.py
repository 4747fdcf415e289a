"""Erasure cost: one subject who appears in several captures, forgotten from a lake of N predictions.

Builds the same lake as bench/incremental.py (capture manifests, COCO ground truth per capture, RUNS
model runs as JSON lines) with one more subject in SHARED captures, runs the pipeline's steps and the
maintenance step on it (so the erasure meets compacted tables, as in production), then
`scenelake forget --subject` for that subject in the same Spark session, and prints the time of each
of the erasure's phases and its share:

  rows erased      every table's rows of the subject's captures deleted (files rewritten, no deletion vectors)
  landing zone     the captures' landed files removed, shared manifests rewritten with their lines blanked
  recompute        the pipeline's steps again: the affected runs' metrics without the erased captures
  purge            vacuum with no retention and the log before the erasure removed, per changed table
  proof            every file under the lake, the landing zone and the state folder scanned for the ids
  audit            the request appended to ops.erasures

Needs the embedded Trino (`scenelake trino up`): the erasure reads the masking key through it. Usage:

  .venv/bin/python bench/erasure.py --predictions 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.incremental import generate_lake, lake_options  # noqa: E402
from jobs import forget, maintain, pipeline  # noqa: E402
from scenelake import access, delta_io, ingest  # noqa: E402
from scenelake.spark import get_spark  # noqa: E402

SUBJECT = "s-bench-shared"


def share_subject(landing: Path, captures: list[str]) -> None:
    """Add SUBJECT (consent granted) to the manifest lines of `captures`."""
    manifest = landing / "manifests" / "upload-000.jsonl"
    lines = []
    for text in manifest.read_text().splitlines():
        line = json.loads(text)
        if line["capture_id"] in captures:
            line["subjects"].append({"subject_id": SUBJECT, "consent": "granted"})
        lines.append(json.dumps(line))
    manifest.write_text("\n".join(lines) + "\n")


class Phases:
    """The erasure's progress lines, timed: each Stopwatch lap ("... (12.3s)") closes a phase."""

    NAMES = {"table rows erased": "rows erased", "landing zone scrubbed": "landing zone",
             "pipeline steps re-run": "recompute", "history purged": "purge"}

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.monotonic()
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        lap = re.search(r"\] (.+) \((\d+\.\d)s\)$", line)
        if lap:
            name = next((v for k, v in self.NAMES.items() if lap.group(1).startswith(k)), lap.group(1))
            self.seconds[name] = float(lap.group(2))
            self.last = time.monotonic()
        elif "proof passed" in line or "proof FAILED" in line:
            self.seconds["proof"] = time.monotonic() - self.last
            self.last = time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    lake_options(parser)
    parser.add_argument("--shared", type=int, default=3, help="captures the erased subject appears in")
    args = parser.parse_args()
    lake = generate_lake(args, random.Random(args.seed), "scenelake-erasure-")
    root, settings = lake.root, lake.settings
    try:
        access.read_key(settings)
    except access.AccessError as exc:
        sys.exit(f"bench/erasure.py needs the embedded Trino for the masking key: run `scenelake trino up` ({exc})")
    shared = lake.captures[:: max(1, args.captures // args.shared)][: args.shared]
    share_subject(Path(settings.landing_root), shared)
    print(f"{SUBJECT} is in {len(shared)} captures: {', '.join(shared)}")

    spark = get_spark("bench-erasure", settings)
    started = time.monotonic()
    for step in pipeline.STEPS:
        if step is not maintain:
            step.run(spark, settings, ingest.silent)
    built = time.monotonic() - started
    started = time.monotonic()
    maintain.run(spark, settings, ingest.silent)
    maintained = time.monotonic() - started
    before = delta_io.read_table(spark, settings, "silver.predictions").count()

    phases = Phases()
    started = time.monotonic()
    report = forget.run(spark, settings, phases, subject=SUBJECT, reason="bench", by="bench")
    erased = time.monotonic() - started
    phases.seconds["audit"] = time.monotonic() - phases.last
    after = delta_io.read_table(spark, settings, "silver.predictions").count()
    assert report.proof_passed, [f"{h.area}/{h.file}" for h in report.hits]
    assert sorted(report.captures) == sorted(shared), report.captures

    print(f"\nbuild (pipeline steps) {built:.1f}s, maintenance {maintained:.1f}s; "
          f"silver.predictions {before} -> {after} rows ({before - after} erased with {len(shared)} captures)")
    print(f"{'erasure phase':16} | {'seconds':>8} | {'share':>6}")
    for name in ("rows erased", "landing zone", "recompute", "purge", "proof", "audit"):
        seconds = phases.seconds.get(name, 0.0)
        print(f"{name:16} | {seconds:8.1f} | {100 * seconds / erased:5.1f}%")
    print(f"{'erasure':16} | {erased:8.1f} | {len(report.tables)} tables changed, {len(report.purged)} purged, "
          f"{len(report.landing.removed)} landed files removed, {len(report.landing.rewritten)} rewritten")
    print(f"erasure / build: {erased / built:.2f}")
    spark.stop()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
