"""TrackEval (the MOTChallenge's official Python evaluation, `trackeval` on PyPI) as the tracking tests' oracle.

`evaluate` writes ground truth and tracker output in MOTChallenge text files, in the folder layout TrackEval
reads, runs its MotChallenge2DBox dataset with the HOTA, CLEAR and Identity metrics, and returns TrackEval's
numbers per sequence and combined ('COMBINED_SEQ'), array fields averaged over the alphas as TrackEval
reports them. A test dependency only, like pycocotools.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

HOTA_FIELDS = {"hota": "HOTA", "deta": "DetA", "assa": "AssA", "detre": "DetRe", "detpr": "DetPr",
               "assre": "AssRe", "asspr": "AssPr", "loca": "LocA"}
# Not Frag: TrackEval skips a frame in which one side has no box at all, so a tracker silent for a frame does not
# interrupt its tracks there; scenelake counts fragmentations as the MOTChallenge devkit does (by frame number).
CLEAR_FIELDS = {"mota": "MOTA", "fp": "CLR_FP", "fn": "CLR_FN", "idsw": "IDSW", "tp": "CLR_TP"}
IDENTITY_FIELDS = {"idf1": "IDF1", "idp": "IDP", "idr": "IDR", "idtp": "IDTP"}


def write_mot(path: Path, rows: pd.DataFrame, columns: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(",".join(str(v) for v in row) + "\n" for row in rows[columns].itertuples(index=False)))


def evaluate(folder: Path, sequences: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], benchmark: str = "MOT17",
             ) -> dict[str, dict[str, float]]:
    """TrackEval's numbers for {sequence: (gt, tracker)}.

    gt needs frame, track_id, x, y, w, h, consider, object_class, visibility (MOT16/17/20 gt.txt columns);
    tracker needs frame, track_id, x, y, w, h (written with conf 1 and world coordinates -1, as trackers do).
    """
    import trackeval

    lengths = {}
    for seq, (gt, tr) in sequences.items():
        write_mot(folder / "gt" / seq / "gt" / "gt.txt", gt,
                  ["frame", "track_id", "x", "y", "w", "h", "consider", "object_class", "visibility"])
        out = tr.assign(conf=1, wx=-1, wy=-1, wz=-1)
        write_mot(folder / "trackers" / "tracker" / "data" / f"{seq}.txt", out,
                  ["frame", "track_id", "x", "y", "w", "h", "conf", "wx", "wy", "wz"])
        lengths[seq] = int(max(gt["frame"].max() if len(gt) else 1, tr["frame"].max() if len(tr) else 1))
    config = {"GT_FOLDER": str(folder / "gt"), "TRACKERS_FOLDER": str(folder / "trackers"),
              "OUTPUT_FOLDER": str(folder / "out"), "BENCHMARK": benchmark, "SKIP_SPLIT_FOL": True,
              "SEQ_INFO": lengths, "PRINT_CONFIG": False}
    evaluator = trackeval.Evaluator({"PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
                                     "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False,
                                     "LOG_ON_ERROR": None})
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]
    with contextlib.redirect_stdout(io.StringIO()):
        results, _ = evaluator.evaluate([trackeval.datasets.MotChallenge2DBox(config)], metrics)
    per_seq = results["MotChallenge2DBox"]["tracker"]
    out: dict[str, dict[str, float]] = {}
    for seq, by_class in per_seq.items():
        res = by_class["pedestrian"]
        numbers = {ours: float(np.mean(res["HOTA"][theirs])) for ours, theirs in HOTA_FIELDS.items()}
        numbers.update({ours: float(res["CLEAR"][theirs]) for ours, theirs in CLEAR_FIELDS.items()})
        numbers.update({ours: float(res["Identity"][theirs]) for ours, theirs in IDENTITY_FIELDS.items()})
        out[seq] = numbers
    return out
