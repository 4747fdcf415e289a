-- One row per evaluated record of gold.detection_matches (a prediction ranked below 100 in its frame
-- and class, or a ground-truth object) with the scenario attributes of its capture and the model of its
-- run: the base for slicing detection metrics by anything. `scenario_columns(c)` is every scenario
-- attribute of silver.captures (the columns its contract flags `scenario: true`; scenelake.views expands
-- it). Captures without a manifest (imported datasets) have null attributes.
SELECT
  m.run_id,
  r.model_name,
  r.model_version,
  m.capture_id,
  m.frame_index,
  m.category_id,
  m.category,
  m.kind,
  m.object_id,
  m.score,
  m.rank,
  m.area,
  m.is_crowd,
  m.tp_all,
  m.ig_all,
  scenario_columns(c)
FROM gold.detection_matches AS m
LEFT JOIN silver.captures AS c
  ON c.capture_id = m.capture_id
LEFT JOIN silver.model_runs AS r
  ON r.run_id = m.run_id
WHERE m.kind = 'ground_truth' OR m.rank < 100
