"""One cycle of the scheduler, as Dagster's daemon runs it, in this process: evaluate the sensor (or
the schedule) once on the instance in DAGSTER_HOME (its cursor and run history persist there),
run what it asks for, and print a JSON summary (the run's status, its assets, its checks).

    .venv-dagster/bin/python -m orchestration.tick sensor      # a run if the landing zone changed
    .venv-dagster/bin/python -m orchestration.tick schedule    # the hourly schedule's run, now
    .venv-dagster/bin/python -m orchestration.tick backfill 2026-11-01 2026-11-03   # those landing days

A backfill runs as Dagster's backfill daemon runs a single-run backfill: one run whose partition range
is the days named (orchestration/definitions.py: each landing step once per day, in order).
"""

from __future__ import annotations

import argparse
import json
import sys

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from orchestration.definitions import defs


def tick(kind: str, instance: dg.DagsterInstance, days: tuple[str, str] | None = None,
         steps: list[str] | None = None) -> dict[str, object]:
    job = defs.resolve_job_def("pipeline")
    skipped: str | None = None
    if kind == "backfill":
        assert days is not None
        requests = [dg.RunRequest(tags={ASSET_PARTITION_RANGE_START_TAG: days[0],
                                        ASSET_PARTITION_RANGE_END_TAG: days[1],
                                        "scenelake/backfill_days": f"{days[0]}..{days[1]}"})]
    elif kind == "sensor":
        sensor = defs.resolve_sensor_def("new_landing_files")
        cursor_key = "scenelake/new_landing_files/cursor"
        stored = instance.run_storage.get_cursor_values({cursor_key}).get(cursor_key)
        result = sensor.evaluate_tick(dg.build_sensor_context(
            instance=instance, cursor=stored, repository_def=defs.get_repository_def()))
        requests = result.run_requests or []
        if result.cursor is not None:
            instance.run_storage.set_cursor_values({cursor_key: result.cursor})
        skipped = result.skip_message
    else:
        schedule = defs.resolve_schedule_def("pipeline_hourly")
        data = schedule.evaluate_tick(dg.build_schedule_context(
            instance=instance, repository_def=defs.get_repository_def()))
        requests, skipped = data.run_requests or [], data.skip_message
    # --step: only those steps' assets (and their checks), as a backfill of part of the DAG from the UI.
    selection = [key for a in (defs.assets or []) if isinstance(a, dg.AssetsDefinition)
                 and a.node_def.name in steps for key in a.keys] if steps else None
    runs = []
    for request in requests:
        done = job.execute_in_process(instance=instance, tags=request.tags, partition_key=request.partition_key,
                                      asset_selection=selection, raise_on_error=False)
        checks, materialized = {}, set()
        for event in done.all_events:
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                materialized.add(event.asset_key.to_user_string())  # type: ignore[union-attr]
            elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                evaluation = event.event_specific_data
                checks[evaluation.asset_key.to_user_string()] = evaluation.passed  # type: ignore[union-attr]
        runs.append({"run_id": done.run_id, "success": done.success, "materialized": sorted(materialized),
                     "checks": checks,
                     "partitions": request.partition_key or request.tags.get("scenelake/backfill_days")})
    return {"kind": kind, "skipped": skipped, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["sensor", "schedule", "backfill"])
    parser.add_argument("days", nargs="*", metavar="DAY", help="backfill: the first and the last landing day (UTC)")
    parser.add_argument("--step", action="append", metavar="JOB", help="only this step of the DAG (repeatable)")
    args = parser.parse_args(argv)
    if (args.kind == "backfill") != (len(args.days) == 2):
        parser.error("backfill takes the first and the last day (YYYY-MM-DD); sensor and schedule take none")
    with dg.DagsterInstance.get() as instance:
        summary = tick(args.kind, instance, tuple(args.days) if args.days else None, args.step)
    print(json.dumps(summary))
    return 0 if all(run["success"] for run in summary["runs"]) else 1  # type: ignore[attr-defined,index]


if __name__ == "__main__":
    sys.exit(main())
