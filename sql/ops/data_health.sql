-- One row per day, target table, source file and rule of ops.quarantine: how many records of that file
-- were quarantined for that rule by the batches of that day, and by how many batches. The day is the
-- UTC day of the quarantining batch (a batch id starts with its UTC start time, yyyymmddThhmmss);
-- source_kind is the landing folder (manifests, annotations, predictions) and file_format the file's
-- extension. A rule naming the earlier copy of a record (duplicate_of:<file>:<record>) counts as
-- duplicate_of; rule_kind is the rule's family (missing, type, range, ...). The raw payload (PII) is not
-- read.
with
quarantined as (
  select
    target_table,
    source_file,
    rule,
    batch_id,
    try(cast(date_parse(substr(batch_id, 1, 15), '%Y%m%dT%H%i%s') as date)) as day
  from ops.quarantine
),

classified as (
  select
    day,
    target_table,
    split_part(source_file, '/', 1) as source_kind,
    lower(regexp_extract(source_file, '\.([^./]+)$', 1)) as file_format,
    source_file,
    case when rule like 'duplicate_of:%' then 'duplicate_of' else rule end as rule,
    split_part(rule, ':', 1) as rule_kind,
    batch_id
  from quarantined
)

select
  day,
  target_table,
  source_kind,
  file_format,
  source_file,
  rule,
  rule_kind,
  count(*) as records,
  count(distinct batch_id) as batches
from classified
group by day, target_table, source_kind, file_format, source_file, rule, rule_kind
