-- One row per quality-gate validation of one batch of one table (gate run and table of
-- ops.quality_results): when and by which job it ran, the batch, how many expectations it evaluated,
-- how many passed, how many failed at severity fail (these stop a batch) and at severity warn (recorded
-- only), the rows that broke them, and what the gate did with the batch (published, stopped, or accepted:
-- published although fail expectations failed, because an operator accepted it). day is the UTC day it
-- ran, for trends over time.
with
results as (
  select
    gate_run_id,
    job,
    table_name,
    batch_key,
    severity,
    success,
    unexpected_count,
    outcome,
    checked_at
  from ops.quality_results
)

select
  cast(checked_at as date) as day,
  checked_at,
  job,
  table_name,
  gate_run_id,
  batch_key,
  outcome,
  count(*) as expectations,
  count_if(success) as passed,
  count_if(not success and severity = 'fail') as failed,
  count_if(not success and severity = 'warn') as warned,
  coalesce(sum(unexpected_count) filter (where not success), 0) as unexpected_rows
from results
group by checked_at, job, table_name, gate_run_id, batch_key, outcome
