"""`scenelake import` places exports in the landing zone, and refuses one that holds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenelake import landing
from scenelake.settings import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("content", ["", " \n\t\n"])
def test_a_blank_ground_truth_or_results_file_is_refused_by_name(settings: Settings, tmp_path: Path,
                                                                 content: str) -> None:
    lake = settings.with_overrides(landing_root=str(tmp_path / "landing"))
    export = tmp_path / "instances.json"
    export.write_text(content)
    for place in (lambda: landing.coco_annotations(lake, export, "ds", "lb"),
                  lambda: landing.mot_ground_truth(lake, export, "seq", "lb"),
                  lambda: landing.predictions(lake, export, "run-1", "ds", "coco_results")):
        with pytest.raises(landing.LandingError, match=f"{export} is empty .*nothing was imported"):
            place()
    assert not list((tmp_path / "landing").rglob("*.json")) and not list((tmp_path / "landing").rglob("*.txt"))


def test_an_empty_detections_file_is_a_run_that_found_nobody(settings: Settings, tmp_path: Path) -> None:
    lake = settings.with_overrides(landing_root=str(tmp_path / "landing"))
    export = tmp_path / "detections.jsonl"
    export.write_text("")
    placed = landing.predictions(lake, export, "run-1", "cap-1", "jsonl")
    assert placed.read_text() == "" and placed.name == "detections.jsonl"
