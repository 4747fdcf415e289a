"""Put standard files into the landing zone, laid out so the ingestion jobs know what they are.

The folder names carry the import metadata as key=value segments (label_batch=..., capture_id=...,
run_id=...), which the jobs read back with `scenelake.ingest.path_meta`. Files are copied
unchanged: bronze must hold what was delivered, byte for byte.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from scenelake.settings import Settings

SAFE = re.compile(r"^[A-Za-z0-9._-]+$")


class LandingError(Exception):
    """An import cannot be placed: bad name, missing file, remote landing zone."""


def _folder(settings: Settings, *parts: str) -> Path:
    if "://" in settings.landing_root:
        raise LandingError(f"the landing zone {settings.landing_root} is remote: upload with your "
                           "object-store tools to the same layout (see scenelake/landing.py)")
    for part in parts:
        value = part.split("=", 1)[-1]
        if not SAFE.match(value):
            raise LandingError(f"{value!r} may only contain letters, digits, '.', '_' and '-'")
    folder = Path(settings.landing_root).joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _blank(source: Path) -> bool:
    """The file holds nothing but whitespace (read until the first other byte)."""
    with source.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return False
    return True


def _copy(source: Path, folder: Path, name: str | None = None, refuse_blank: bool = True) -> Path:
    """Copy an export into the landing zone. A blank export is refused by name (`refuse_blank`; an
    empty file of detections or tracks can mean that the model found nobody, so those pass)."""
    if not source.is_file():
        raise LandingError(f"{source} is not a file")
    if refuse_blank and _blank(source):
        raise LandingError(f"{source} is empty (nothing but whitespace): nothing was imported; export it again")
    target = folder / (name or source.name)
    shutil.copyfile(source, target)
    return target


def coco_annotations(settings: Settings, path: Path, dataset: str, label_batch: str) -> Path:
    """A COCO instances file: its images become frames of capture `dataset`."""
    return _copy(path, _folder(settings, "annotations", "coco", f"label_batch={label_batch}",
                               f"capture_id={dataset}"))


def mot_ground_truth(settings: Settings, path: Path, sequence: str, label_batch: str) -> Path:
    """A MOTChallenge gt.txt (or a sequence folder holding gt/gt.txt or gt.txt)."""
    if path.is_dir():
        candidates = [path / "gt" / "gt.txt", path / "gt.txt"]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    return _copy(path, _folder(settings, "annotations", "mot", f"label_batch={label_batch}",
                               f"capture_id={sequence}"), "gt.txt")


def model_run(settings: Settings, run_id: str, model_name: str, model_version: str,
              code_commit: str | None = None, params: dict[str, str] | None = None) -> Path:
    """The run.json that describes a model run; written once, kept if it already exists."""
    target = _folder(settings, "predictions", f"run_id={run_id}") / "run.json"
    if not target.exists():
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        target.write_text(json.dumps({
            "run_id": run_id, "model_name": model_name, "model_version": model_version,
            "code_commit": code_commit, "params": params or {}, "started_at": now,
            "finished_at": now}, sort_keys=True) + "\n")
    return target


def predictions(settings: Settings, path: Path, run_id: str, capture_id: str, fmt: str) -> Path:
    """A prediction file of a run, for one capture (COCO results, MOT tracker output, JSONL, Parquet)."""
    suffix = {"coco_results": ".json", "mot": ".txt", "jsonl": ".jsonl", "parquet": ".parquet"}[fmt]
    name = path.name if path.name.endswith(suffix) else path.name + suffix
    return _copy(path, _folder(settings, "predictions", f"run_id={run_id}", f"capture_id={capture_id}"), name,
                 refuse_blank=fmt in ("coco_results", "parquet"))
