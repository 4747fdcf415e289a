-- One row per (tracking model run, slice): a slice is one scenario attribute and one of its values
-- (slice_by = 'lighting', slice_value = 'dark') or the whole run (slice_by = 'all'). The CLEAR-MOT and
-- identity numbers are recomputed from the per-capture counts of gold.tracking_metrics summed over the
-- slice's captures (never averaged ratios), as the MOTChallenge devkit does for its OVERALL row, so the
-- 'all' slice equals the run's capture_id = 'all' row: mota = 1 - (fn + fp + idsw) / gt_dets,
-- motp_distance = the mean 1 - IoU of matched boxes, idf1 = 2 idtp / (2 idtp + idfp + idfn). Support:
-- captures, labelled frames, ground-truth identities and boxes. Ratios are null where their denominator
-- is 0; captures without a manifest (imported sequences) have null attributes.
with
sequences as (
  select
    t.run_id,
    t.capture_id,
    t.num_frames,
    t.gt_ids,
    t.gt_dets,
    t.tr_dets,
    t.tp,
    t.fp,
    t.fn,
    t.idsw,
    t.frag,
    t.mt,
    t.pt,
    t.ml,
    t.idtp,
    t.idfp,
    t.idfn,
    t.motp_sum,
    scenario_columns(c)
  from gold.tracking_metrics as t
  left join silver.captures as c
    on c.capture_id = t.capture_id
  where t.capture_id <> 'all'
),

records as (
  -- Each capture once per slice it belongs to (every scenario attribute, and 'all'): one scan.
  select u.slice_by, u.slice_value, s.*
  from sequences as s
  cross join unnest(scenario_slices(s)) as u(slice_by, slice_value)
),

summed as (
  select
    run_id,
    slice_by,
    slice_value,
    count(*) as num_captures,
    sum(num_frames) as num_frames,
    sum(gt_ids) as gt_ids,
    sum(gt_dets) as gt_dets,
    sum(tr_dets) as tr_dets,
    sum(tp) as tp,
    sum(fp) as fp,
    sum(fn) as fn,
    sum(idsw) as idsw,
    sum(frag) as frag,
    sum(mt) as mt,
    sum(pt) as pt,
    sum(ml) as ml,
    sum(idtp) as idtp,
    sum(idfp) as idfp,
    sum(idfn) as idfn,
    sum(motp_sum) as motp_sum
  from records
  group by run_id, slice_by, slice_value
)

select
  run_id,
  slice_by,
  slice_value,
  1 - cast(fn + fp + idsw as double) / nullif(gt_dets, 0) as mota,
  motp_sum / nullif(tp, 0) as motp_distance,
  2 * cast(idtp as double) / nullif(2 * idtp + idfp + idfn, 0) as idf1,
  cast(idtp as double) / nullif(idtp + idfp, 0) as idp,
  cast(idtp as double) / nullif(idtp + idfn, 0) as idr,
  cast(tp as double) / nullif(gt_dets, 0) as recall,
  cast(tp as double) / nullif(tp + fp, 0) as precision,
  tp,
  fp,
  fn,
  idsw,
  frag,
  mt,
  pt,
  ml,
  idtp,
  idfp,
  idfn,
  num_captures,
  num_frames,
  gt_ids,
  gt_dets,
  tr_dets
from summed
