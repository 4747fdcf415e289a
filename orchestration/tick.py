"""One cycle of the scheduler, as Dagster's daemon runs it, in this process: evaluate the sensor (or
the schedule) once on the instance in DAGSTER_HOME (its cursor and run history persist there),
run what it asks for, and print a JSON summary (the run's status, its assets, its checks).

    .venv-dagster/bin/python -m orchestration.tick sensor      # a run if the landing zone changed
    .venv-dagster/bin/python -m orchestration.tick schedule    # the hourly schedule's run, now
"""

from __future__ import annotations

import argparse
import json
import sys

import dagster as dg

from orchestration.definitions import defs


def tick(kind: str, instance: dg.DagsterInstance) -> dict[str, object]:
    job = defs.resolve_job_def("pipeline")
    if kind == "sensor":
        sensor = defs.resolve_sensor_def("new_landing_files")
        cursor_key = "scenelake/new_landing_files/cursor"
        stored = instance.run_storage.get_cursor_values({cursor_key}).get(cursor_key)
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=stored))
        requests = result.run_requests or []
        if result.cursor is not None:
            instance.run_storage.set_cursor_values({cursor_key: result.cursor})
        skipped = result.skip_message
    else:
        schedule = defs.resolve_schedule_def("pipeline_hourly")
        data = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
        requests, skipped = data.run_requests or [], data.skip_message
    runs = []
    for request in requests:
        done = job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
        checks, materialized = {}, set()
        for event in done.all_events:
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                materialized.add(event.asset_key.to_user_string())  # type: ignore[union-attr]
            elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                evaluation = event.event_specific_data
                checks[evaluation.asset_key.to_user_string()] = evaluation.passed  # type: ignore[union-attr]
        runs.append({"run_id": done.run_id, "success": done.success, "materialized": sorted(materialized),
                     "checks": checks})
    return {"kind": kind, "skipped": skipped, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["sensor", "schedule"])
    args = parser.parse_args(argv)
    with dg.DagsterInstance.get() as instance:
        summary = tick(args.kind, instance)
    print(json.dumps(summary))
    return 0 if all(run["success"] for run in summary["runs"]) else 1  # type: ignore[attr-defined,index]


if __name__ == "__main__":
    sys.exit(main())
