-- One row per (model run, slice): a slice is one scenario attribute and one of its values
-- (slice_by = 'lighting', slice_value = 'dark') or the whole run (slice_by = 'all'). The numbers are
-- COCO's, computed from the slice's frames alone exactly as pycocotools would on those frames: ap is
-- AP@[.50:.95], ap50 and ap75 at one IoU threshold, ar100 the mean recall over thresholds (area all, 100
-- detections per frame and class); recall50 and precision50 are the recall and precision at IoU .50 over
-- all detections. Each is the mean over the classes that have ground truth in the slice. Other groupings
-- (pairs, any combination): `scenelake slice --by lighting,motion` runs this query grouped your way.
-- A capture without a value for an attribute (or without a silver.captures row) is in the NULL slice.
WITH records AS (
  -- Each record once per slice it belongs to (every scenario attribute, and 'all'): one scan of the base.
  SELECT s.slice_by, s.slice_value, e.*
  FROM gold.detection_evaluation AS e
  CROSS JOIN UNNEST(scenario_slices(e)) AS s(slice_by, slice_value)
),
thresholds AS (
  SELECT CAST(t AS INTEGER) AS t FROM UNNEST(sequence(0, 9)) AS x(t)
),
positives AS (
  SELECT run_id, slice_by, slice_value, category_id, count_if(ig_all = 0) AS npig
  FROM records
  WHERE kind = 'ground_truth'
  GROUP BY run_id, slice_by, slice_value, category_id
),
outcomes AS (
  SELECT
    r.run_id, r.slice_by, r.slice_value, r.category_id, th.t, r.score, r.capture_id, r.frame_index, r.rank,
    bitwise_and(bitwise_right_shift(r.tp_all, th.t), 1) AS tp,
    1 - bitwise_and(bitwise_right_shift(bitwise_or(r.tp_all, r.ig_all), th.t), 1) AS fp
  FROM records AS r
  CROSS JOIN thresholds AS th
  WHERE r.kind = 'prediction'
),
cumulative AS (
  SELECT
    run_id, slice_by, slice_value, category_id, t,
    sum(tp) OVER ranked AS tp_cum,
    sum(fp) OVER ranked AS fp_cum,
    count(*) OVER ranked AS position
  FROM outcomes
  WINDOW ranked AS (
    PARTITION BY run_id, slice_by, slice_value, category_id, t
    ORDER BY score DESC, capture_id, frame_index, rank
    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
points AS (
  SELECT
    c.run_id, c.slice_by, c.slice_value, c.category_id, c.t, c.tp_cum, c.fp_cum, c.position,
    CAST(c.tp_cum AS DOUBLE) / p.npig AS rc,
    CAST(c.tp_cum AS DOUBLE) / (c.fp_cum + c.tp_cum + 2.220446049250313E-16) AS pr
  FROM cumulative AS c
  JOIN positives AS p
    ON p.run_id = c.run_id AND p.slice_by = c.slice_by AND p.slice_value IS NOT DISTINCT FROM c.slice_value
    AND p.category_id = c.category_id
  WHERE p.npig > 0
),
levels AS (
  SELECT run_id, slice_by, slice_value, category_id, t, rc, max(pr) AS pr
  FROM points
  GROUP BY run_id, slice_by, slice_value, category_id, t, rc
),
envelope AS (
  -- q(r) of the 101 recall thresholds r_k = k * 0.01 is the best precision at recall >= r_k; a level rc
  -- serves the thresholds above the previous level and up to itself (counted in the exact floats).
  SELECT
    run_id, slice_by, slice_value, category_id, t, rc,
    max(pr) OVER (PARTITION BY run_id, slice_by, slice_value, category_id, t ORDER BY rc DESC
                  ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS q,
    least(100, CAST(floor(rc * 100) AS INTEGER)) AS k0
  FROM levels
),
served AS (
  SELECT
    run_id, slice_by, slice_value, category_id, t, rc, q,
    1 + CASE
      WHEN k0 < 100 AND (k0 + 1) * 1E-2 <= rc THEN k0 + 1
      WHEN k0 * 1E-2 > rc THEN k0 - 1
      ELSE k0
    END AS covered
  FROM envelope
),
curves AS (
  SELECT
    run_id, slice_by, slice_value, category_id, t,
    sum(q * (covered - coalesce(previous, 0))) / 101 AS ap,
    max(rc) AS recall
  FROM (
    SELECT s.*, lag(covered) OVER (PARTITION BY run_id, slice_by, slice_value, category_id, t ORDER BY rc) AS previous
    FROM served AS s
  ) AS x
  GROUP BY run_id, slice_by, slice_value, category_id, t
),
totals AS (
  SELECT
    run_id, slice_by, slice_value, category_id, t,
    max(tp_cum) AS tp,
    max(fp_cum) AS fp
  FROM cumulative
  GROUP BY run_id, slice_by, slice_value, category_id, t
),
per_class AS (
  SELECT
    p.run_id, p.slice_by, p.slice_value, p.category_id, th.t, p.npig,
    coalesce(c.ap, 0) AS ap,
    coalesce(c.recall, 0) AS recall,
    CAST(o.tp AS DOUBLE) / nullif(o.tp + o.fp, 0) AS precision
  FROM positives AS p
  CROSS JOIN thresholds AS th
  LEFT JOIN curves AS c
    ON c.run_id = p.run_id AND c.slice_by = p.slice_by AND c.slice_value IS NOT DISTINCT FROM p.slice_value
    AND c.category_id = p.category_id AND c.t = th.t
  LEFT JOIN totals AS o
    ON o.run_id = p.run_id AND o.slice_by = p.slice_by AND o.slice_value IS NOT DISTINCT FROM p.slice_value
    AND o.category_id = p.category_id AND o.t = th.t
  WHERE p.npig > 0
),
support AS (
  SELECT
    run_id, slice_by, slice_value,
    count(DISTINCT capture_id) AS num_captures,
    count(DISTINCT ROW(capture_id, frame_index)) AS num_frames,
    count_if(kind = 'ground_truth' AND ig_all = 0) AS num_ground_truth,
    count_if(kind = 'prediction') AS num_predictions
  FROM records
  GROUP BY run_id, slice_by, slice_value
)
SELECT
  s.run_id,
  s.slice_by,
  s.slice_value,
  avg(k.ap) AS ap,
  avg(k.ap) FILTER (WHERE k.t = 0) AS ap50,
  avg(k.ap) FILTER (WHERE k.t = 5) AS ap75,
  avg(k.recall) AS ar100,
  avg(k.recall) FILTER (WHERE k.t = 0) AS recall50,
  avg(k.precision) FILTER (WHERE k.t = 0) AS precision50,
  s.num_captures,
  s.num_frames,
  s.num_ground_truth,
  s.num_predictions
FROM support AS s
LEFT JOIN per_class AS k
  ON k.run_id = s.run_id AND k.slice_by = s.slice_by AND k.slice_value IS NOT DISTINCT FROM s.slice_value
GROUP BY s.run_id, s.slice_by, s.slice_value, s.num_captures, s.num_frames, s.num_ground_truth, s.num_predictions
