-- One row per model run: its model name and version, when it ran, and its headline numbers as
-- gold.detection_metrics (class 'all': COCO AP@[.50:.95], AP50, AP75, AR100) and gold.tracking_metrics
-- (capture 'all': MOTA, MOTP distance, IDF1) publish them, with the evaluated frames, ground truth and
-- predictions behind them. rank_overall ranks every run by AP (1 = best; ties share a rank; runs
-- without AP come last), rank_in_model ranks the runs of one model name the same way. A run that
-- predicted on no labelled frame (not evaluated) has null numbers; one without track ids has null
-- tracking numbers.
with
runs as (
  select
    run_id,
    model_name,
    model_version,
    code_commit,
    started_at,
    finished_at
  from silver.model_runs
),

detection as (
  select
    run_id,
    ap,
    ap50,
    ap75,
    ar100,
    num_frames,
    num_ground_truth,
    num_predictions
  from gold.detection_metrics
  where category = 'all'
),

tracking as (
  select
    run_id,
    mota,
    motp_distance,
    idf1
  from gold.tracking_metrics
  where capture_id = 'all'
)

select
  r.run_id,
  r.model_name,
  r.model_version,
  r.code_commit,
  r.started_at,
  r.finished_at,
  d.ap,
  d.ap50,
  d.ap75,
  d.ar100,
  t.mota,
  t.motp_distance,
  t.idf1,
  d.num_frames,
  d.num_ground_truth,
  d.num_predictions,
  rank() over (order by d.ap desc nulls last) as rank_overall,
  rank() over (partition by r.model_name order by d.ap desc nulls last) as rank_in_model
from runs as r
left join detection as d
  on d.run_id = r.run_id
left join tracking as t
  on t.run_id = r.run_id
