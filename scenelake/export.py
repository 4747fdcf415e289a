"""Export a slice's failures as COCO files, for relabelling or training on the hard cases.

`export_failures` asks Trino (so the access rules of the user who exports apply) which labelled frames
of one model run, among those whose capture passes a filter on the scenario attributes, hold a failure
of the kind asked for at one IoU threshold (area range all, the 100 best detections per frame and class,
as COCOeval):

    false_negatives   a ground-truth object no detection found (crowd objects are never failures)
    false_positives   a detection that matched nothing and was not ignored
    all               either

and writes, into the output folder:

    ground_truth.json  a COCO instances file: those frames as images (ids 1..N; each keeps its
                       capture_id and frame_index), every ground-truth object evaluated on them (in the
                       lake's order, crowd flags and areas as evaluated), their categories
    results.json       a COCO results file: every detection of the run on those frames with its score
                       (in the run's file order, so ties rank as in the lake), the failing ones among them
    export.json        what was exported: run, filter, kind, threshold, the Delta version of every table
                       read, and the counts

Each annotation and result also says its `outcome` (missed / found / ignored, and false_positive /
true_positive / ignored / not_ranked for detections ranked 100 or lower) and its id in the lake. The two
COCO files load in pycocotools as they are and import back with `scenelake import coco`, where the
evaluation gives pycocotools' numbers on them (tests/integration/test_evaluation_slices.py).

Every query reads the table versions fixed when the export starts (`FOR VERSION AS OF`), so the files
agree with each other however the lake moves meanwhile; `versions=` (the `export.json` of an earlier
export) reads those versions again and reproduces that export, while VACUUM keeps their files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from scenelake.contracts import scenario_attributes
from scenelake.settings import Settings

KINDS = ("false_negatives", "false_positives", "all")
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * t, 2) for t in range(10))  # bit t of tp_all / ig_all
TABLES = ("gold.detection_matches", "silver.captures", "silver.frames", "silver.annotations", "silver.predictions")
# What a filter may name besides the scenario attributes: frame-level columns only (which frames).
FRAME_COLUMNS = ("capture_id", "frame_index")


class ExportError(Exception):
    """The export cannot run as asked: a bad filter, kind or threshold, or a version that is gone."""


@dataclass(frozen=True)
class Exported:
    folder: Path
    images: int
    annotations: int
    results: int
    missed: int
    false_positives: int
    versions: dict[str, int]


def condition(where: str | None) -> exp.Expr:
    """The filter as a Trino condition over the capture's scenario attributes (table `c`) and the
    frame's capture_id and frame_index (table `m`). Anything else (another column, a subquery, a
    table) is refused with the columns it may name."""
    if not where or not where.strip():
        return exp.true()
    try:
        tree = sqlglot.parse_one(where, read="trino", into=exp.Condition)
    except sqlglot.errors.ParseError as exc:
        raise ExportError(f"--where {where!r} does not parse as a Trino condition, e.g. "
                          "\"lighting = 'dark' and motion = 'running'\"") from exc
    if any(tree.find_all(exp.Query, exp.Table, exp.Subquery)) or isinstance(tree, exp.Query):
        raise ExportError("--where may not hold a query or a table: compare columns with values")
    allowed = {*scenario_attributes(), *FRAME_COLUMNS}
    for column in tree.find_all(exp.Column):
        if column.table or column.name not in allowed:
            raise ExportError(f"--where names {column.sql('trino')}: it may name the scenario attributes "
                              f"({', '.join(scenario_attributes())}) and {', '.join(FRAME_COLUMNS)}")
        column.set("table", exp.to_identifier("m" if column.name in FRAME_COLUMNS else "c"))
    return tree


def _bit(iou: float) -> int:
    if round(iou, 2) not in IOU_THRESHOLDS:
        raise ExportError(f"--iou {iou}: one of the COCO thresholds {', '.join(f'{t:.2f}' for t in IOU_THRESHOLDS)}")
    return 1 << IOU_THRESHOLDS.index(round(iou, 2))


def _table(name: str, version: int, alias: str) -> exp.Table:
    table = exp.to_table(name)
    table.set("version", exp.Version(this="VERSION", kind="AS OF", expression=exp.Literal.number(version)))
    return table.as_(alias)  # type: ignore[return-value]


def outcome_sql(bit: int) -> tuple[str, str, str]:
    """(missed, false positive, outcome) as Trino expressions over a match row `m` at the threshold's bit."""
    missed = f"(m.kind = 'ground_truth' AND m.ig_all = 0 AND bitwise_and(m.tp_all, {bit}) = 0)"
    false_positive = (f"(m.kind = 'prediction' AND m.rank < 100 AND bitwise_and(m.tp_all, {bit}) = 0 "
                      f"AND bitwise_and(m.ig_all, {bit}) = 0)")
    outcome = (f"CASE WHEN m.kind = 'ground_truth' THEN (CASE WHEN m.ig_all <> 0 THEN 'ignored' "
               f"WHEN bitwise_and(m.tp_all, {bit}) <> 0 THEN 'found' ELSE 'missed' END) "
               f"WHEN m.rank >= 100 THEN 'not_ranked' WHEN bitwise_and(m.tp_all, {bit}) <> 0 THEN 'true_positive' "
               f"WHEN bitwise_and(m.ig_all, {bit}) <> 0 THEN 'ignored' ELSE 'false_positive' END")
    return missed, false_positive, outcome


def frames_query(run_id: str, where: exp.Expr, kind: str, bit: int, versions: Mapping[str, int]) -> exp.Select:
    """(capture_id, frame_index, missed, false_positives) of the run's frames with a failure of `kind`."""
    if kind not in KINDS:
        raise ExportError(f"--kind {kind}: one of {', '.join(KINDS)}")
    missed, false_positive, _ = outcome_sql(bit)
    # Trino's HAVING cannot name the select list's aliases: the counts are written out.
    having = {"false_negatives": f"count_if({missed}) > 0", "false_positives": f"count_if({false_positive}) > 0",
              "all": f"count_if({missed} OR {false_positive}) > 0"}[kind]
    return (exp.select("m.capture_id", "m.frame_index", f"count_if({missed}) AS missed",
                       f"count_if({false_positive}) AS false_positives")
            .from_(_table("gold.detection_matches", versions["gold.detection_matches"], "m"))
            .join(_table("silver.captures", versions["silver.captures"], "c"), on="c.capture_id = m.capture_id",
                  join_type="left")
            .where(exp.column("run_id", "m").eq(exp.Literal.string(run_id)))
            .where(where)
            .group_by("m.capture_id", "m.frame_index")
            .having(having))


def records_query(run_id: str, frames: exp.Select, bit: int, versions: Mapping[str, int]) -> str:
    """Every match row of the run on those frames with its box, outcome and order in the lake."""
    _, _, outcome = outcome_sql(bit)
    box = "coalesce(a.{0}, p.{0})"
    query = (exp.select("m.kind", "m.capture_id", "m.frame_index", "m.object_id", "m.category_id", "m.category",
                        "m.score", "m.area", "m.is_crowd", *(f"{box.format(c)} AS {c}" for c in "xywh"),
                        f"{outcome} AS outcome", f"{box.format('source_file')} AS source_file",
                        f"{box.format('record_no')} AS record_no")
             .from_(_table("gold.detection_matches", versions["gold.detection_matches"], "m"))
             .join(frames.subquery("f"),
                   on="f.capture_id = m.capture_id AND f.frame_index = m.frame_index")
             .join(_table("silver.annotations", versions["silver.annotations"], "a"),
                   on="m.kind = 'ground_truth' AND a.annotation_id = m.object_id", join_type="left")
             .join(_table("silver.predictions", versions["silver.predictions"], "p"),
                   on="m.kind = 'prediction' AND p.run_id = m.run_id AND p.prediction_id = m.object_id",
                   join_type="left")
             .where(exp.column("run_id", "m").eq(exp.Literal.string(run_id)))
             .order_by("m.kind", "source_file", "record_no"))
    return query.sql(dialect="trino")


def images_query(frames: exp.Select, versions: Mapping[str, int]) -> str:
    return (exp.select("f.capture_id", "f.frame_index", "f.missed", "f.false_positives", "s.width", "s.height",
                       "s.file_name")
            .from_(frames.subquery("f"))
            .join(_table("silver.frames", versions["silver.frames"], "s"),
                  on="s.capture_id = f.capture_id AND s.frame_index = f.frame_index", join_type="left")
            .order_by("f.capture_id", "f.frame_index")).sql(dialect="trino")


def current_versions(settings: Settings, user: str | None = None) -> dict[str, int]:
    """The newest Delta version of every table an export reads, from Trino's `$history` tables."""
    from scenelake.trino_client import query

    parts = [f"SELECT '{name}', max(version) FROM {name.split('.')[0]}.\"{name.split('.')[1]}$history\""
             for name in TABLES]
    return {str(name): int(version) for name, version in query(settings, " UNION ALL ".join(parts), user=user)}


def coco_files(images: list[list[Any]], records: list[list[Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(instances, results) from the rows of `images_query` and `records_query`."""
    ids: dict[tuple[str, int], int] = {}
    coco_images = []
    for image_id, (capture, frame, _, _, width, height, file_name) in enumerate(images, 1):
        ids[(capture, int(frame))] = image_id
        image = {"id": image_id, "file_name": file_name or f"{capture}/{frame}", "capture_id": capture,
                 "frame_index": int(frame)}
        image.update({k: int(v) for k, v in (("width", width), ("height", height)) if v is not None})
        coco_images.append(image)
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    categories: dict[int, str] = {}
    for kind, capture, frame, object_id, category_id, category, score, area, crowd, x, y, w, h, outcome, *_ in records:
        if category is not None:
            categories.setdefault(int(category_id), category)
        base = {"image_id": ids[(capture, int(frame))], "category_id": int(category_id), "bbox": [x, y, w, h]}
        if kind == "ground_truth":
            annotations.append({"id": len(annotations) + 1, **base, "area": area, "iscrowd": int(bool(crowd)),
                                "outcome": outcome, "annotation_id": object_id})
        else:
            results.append({**base, "score": score, "outcome": outcome, "prediction_id": object_id})
    for result in results:
        categories.setdefault(result["category_id"], str(result["category_id"]))
    instances = {"info": {"description": "scenelake failure export"}, "images": coco_images,
                 "annotations": annotations,
                 "categories": [{"id": c, "name": n} for c, n in sorted(categories.items())]}
    return instances, results


def export_failures(settings: Settings, run_id: str, where: str | None, kind: str, out: Path, iou: float = 0.5,
                    versions: Mapping[str, int] | None = None, user: str | None = None,
                    progress: Any = print) -> Exported:
    """Write the run's failing frames under `where` as COCO files into `out` (module docstring)."""
    from trino.exceptions import TrinoUserError

    from scenelake.trino_client import query

    bit, filtered = _bit(iou), condition(where)
    pinned = dict(versions) if versions is not None else current_versions(settings, user)
    missing = [t for t in TABLES if t not in pinned]
    if missing:
        raise ExportError(f"the versions given lack {', '.join(missing)}")
    frames = frames_query(run_id, filtered, kind, bit, pinned)
    try:
        images = query(settings, images_query(frames, pinned), user=user)
        records = query(settings, records_query(run_id, frames, bit, pinned), user=user) if images else []
    except TrinoUserError as exc:
        raise ExportError(f"Trino refused the export's query: {exc.message}") from exc
    if not images:
        known = query(settings, "SELECT count(*) FROM gold.detection_matches WHERE run_id = "
                      + exp.Literal.string(run_id).sql("trino"), user=user)[0][0]
        if not known:
            raise ExportError(f"run {run_id!r} has no evaluated record; list the runs with: "
                              "scenelake sql \"select distinct run_id from gold.detection_metrics\"")
    instances, results = coco_files(images, records)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ground_truth.json").write_text(json.dumps(instances))
    (out / "results.json").write_text(json.dumps(results))
    done = Exported(out, len(instances["images"]), len(instances["annotations"]), len(results),
                    sum(int(r[2]) for r in images), sum(int(r[3]) for r in images), pinned)
    manifest = {"run_id": run_id, "where": where or "", "kind": kind, "iou": round(iou, 2),
                "exported_at": datetime.now(UTC).isoformat(), "versions": pinned,
                "counts": {"images": done.images, "annotations": done.annotations, "results": done.results,
                           "missed": done.missed, "false_positives": done.false_positives},
                "files": ["ground_truth.json", "results.json"]}
    (out / "export.json").write_text(json.dumps(manifest, indent=1) + "\n")
    progress(f"[export] {run_id}: {done.images} frame(s) with {kind.replace('_', ' ')} at IoU {iou:.2f} "
             f"({done.missed} missed object(s), {done.false_positives} false positive(s)); {done.annotations} "
             f"object(s) and {done.results} detection(s) written to {out}")
    return done


def recorded(path: Path) -> dict[str, Any]:
    """An earlier export's `export.json` (its folder or the file): run, filter, kind, threshold, versions."""
    file = path / "export.json" if path.is_dir() else path
    try:
        manifest = json.loads(file.read_text())
        return {k: manifest[k] for k in ("run_id", "where", "kind", "iou", "versions")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{file}: not the export.json of an export ({exc})") from exc
