-- One row per scenario combination of capture sessions (every scenario attribute of silver.captures,
-- `scenario_columns`: source, device model, sensor, region, environment, lighting, motion, ...): how
-- many captures and hours of video were recorded in it, how many of their frames the lake knows
-- (labelled or predicted on) and how many were labelled, the ground-truth objects in those, and the
-- subjects recorded (counted once per capture they appear in; no subject id is exposed), and the
-- captures the consent policy holds out of evaluation (scenelake/consent.py): held_out_captures, of
-- which held_out_withdrawn have a withdrawn subject awaiting erasure and the rest a pending one. Every count
-- adds up across rows, so any coarser grouping is a sum. Captures the lake has frames of but no
-- published manifest line for (imported datasets, or a manifest line in quarantine) count in the row
-- whose attributes are all null, with null hours.
with
captures as (
  select
    capture_id,
    scenario_columns(),
    duration_s
  from silver.captures
),

frames as (
  select
    capture_id,
    count(*) as frames,
    count_if(labelled) as labelled_frames
  from silver.frames
  group by capture_id
),

objects as (
  select
    capture_id,
    count(*) as ground_truth_objects
  from silver.annotations
  group by capture_id
),

subjects as (
  select
    capture_id,
    count(*) as subjects,
    count_if(consent = 'granted') as consented_subjects,
    count_if(consent = 'withdrawn') as withdrawn_subjects
  from silver.subjects
  group by capture_id
),

every_capture as (
  select capture_id from captures
  union
  select capture_id from frames
)

select
  scenario_columns(c),
  count(*) as captures,
  sum(c.duration_s) / 3600 as hours,
  coalesce(sum(f.frames), 0) as frames,
  coalesce(sum(f.labelled_frames), 0) as labelled_frames,
  coalesce(sum(o.ground_truth_objects), 0) as ground_truth_objects,
  coalesce(sum(s.subjects), 0) as subjects,
  coalesce(sum(s.consented_subjects), 0) as consented_subjects,
  count_if(s.consented_subjects < s.subjects) as held_out_captures,
  count_if(s.withdrawn_subjects > 0) as held_out_withdrawn
from every_capture as e
left join captures as c
  on c.capture_id = e.capture_id
left join frames as f
  on f.capture_id = e.capture_id
left join objects as o
  on o.capture_id = e.capture_id
left join subjects as s
  on s.capture_id = e.capture_id
group by
  scenario_columns(c)
