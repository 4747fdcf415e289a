"""MOTChallenge tracking metrics (CLEAR-MOT and identity) for one sequence, as the devkit and TrackEval compute them.

2D box protocol: boxes are (x, y, w, h) with (x, y) the top-left corner, and a ground-truth box and a tracker box
can be matched when their IoU is at least 0.5 (less one float64 epsilon, as TrackEval). Pure numpy/scipy, so a
Spark grouped pandas UDF can call `evaluate_sequence` once per capture, `sum_counts` over captures, and `ratios` on
either.

Counts returned by `evaluate_sequence` (all ints except `motp_sum`; every one of them sums across sequences):
    gt_ids      distinct ground-truth track ids (the devkit's GT)
    gt_dets     ground-truth boxes (TP + FN)
    tr_dets     tracker boxes (TP + FP)
    tp          CLEAR matches
    fp          tracker boxes left unmatched
    fn          ground-truth boxes left unmatched
    idsw        matches whose tracker id differs from the one that gt id was last matched to, in any earlier frame
    frag        fragmentations: gaps between a gt id's first and last matched frame (FM)
    mt          gt ids matched in more than 80% of their frames (mostly tracked)
    pt          gt ids matched in at least 20% and at most 80% of their frames (partially tracked)
    ml          gt ids matched in less than 20% of their frames (mostly lost)
    motp_sum    sum of (1 - IoU) over the CLEAR matches
    idtp        boxes on the best global one-to-one pairing of gt ids with tracker ids (IoU >= 0.5 frames)
    idfp        tracker boxes off that pairing (tr_dets - idtp)
    idfn        ground-truth boxes off that pairing (gt_dets - idtp)
    dup_rows    input rows dropped because their (frame, track_id) repeats on the same side
    hota_*      HOTA's additive parts, one value per localisation threshold alpha (HOTA_ALPHAS, 0.05 ... 0.95):
                hota_tp, hota_fn, hota_fp (detections), hota_assa_sum, hota_assre_sum, hota_asspr_sum (the
                TP-weighted association scores) and hota_loca_sum (IoU summed over the matches); `hota_ratios`
                turns them, for one sequence or summed over many, into TrackEval's HOTA, DetA, AssA, ...

MOTChallenge 16/17/20 ground truth (`preprocess`): rows may carry `consider` (column 7; 0 = not evaluated) and
`object_class` (column 8: 1 pedestrian, 2 person on vehicle, ... 7 static person, 8 distractor, 12 reflection;
null for MOT15 files, which have no class). As the official evaluation (TrackEval's MotChallenge2DBox) does,
in each frame the tracker boxes are matched one to one with all ground truth (IoU >= 0.5, the largest total
IoU) and those matched to a distractor class are removed; then only pedestrians (or rows without a class)
with consider != 0 are kept as ground truth.

Per-frame CLEAR matching follows the devkit: the previous frame's (frame - 1) pairings that are still valid are
kept, then the remaining boxes get a maximum-cardinality, minimum total (1 - IoU) assignment. Ratios of a zero
denominator are NaN.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

MATCH_IOU = 0.5
_EPS = float(np.finfo(np.float64).eps)
MT_ABOVE = 0.8
ML_BELOW = 0.2

COLUMNS = ("frame", "track_id", "x", "y", "w", "h")
# HOTA's localisation thresholds, as TrackEval: np.arange(0.05, 0.99, 0.05).
HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)
HOTA_KEYS = ("hota_tp", "hota_fn", "hota_fp", "hota_assa_sum", "hota_assre_sum", "hota_asspr_sum", "hota_loca_sum")
COUNT_KEYS = ("gt_ids", "gt_dets", "tr_dets", "tp", "fp", "fn", "idsw", "frag", "mt", "pt", "ml",
              "motp_sum", "idtp", "idfp", "idfn", "dup_rows", *HOTA_KEYS)
RATIO_KEYS = ("mota", "motp_distance", "recall", "precision", "idf1", "idp", "idr")
HOTA_RATIO_KEYS = ("hota", "deta", "assa", "detre", "detpr", "assre", "asspr", "loca")
# MOTChallenge classes (TrackEval's ids): the one evaluated, and those whose matched tracker boxes are removed.
PEDESTRIAN = 1
DISTRACTORS = (2, 7, 8, 12)  # person on vehicle, static person, distractor, reflection

Boxes = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class FrameBoxes:
    """One frame: sorted gt and tracker ids and their pairwise IoU (rows gt, columns tracker)."""

    frame: int
    gt_ids: np.ndarray
    tr_ids: np.ndarray
    iou: np.ndarray

    @property
    def matchable(self) -> np.ndarray:
        return self.iou >= MATCH_IOU - _EPS


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every (x, y, w, h) box in `a` with every box in `b`, in float64; 0 where the union is empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax0, ay0, aw, ah = (a[:, k, None] for k in range(4))
    bx0, by0, bw, bh = (b[None, :, k] for k in range(4))
    iw = np.clip(np.minimum(ax0 + aw, bx0 + bw) - np.maximum(ax0, bx0), 0.0, None)
    ih = np.clip(np.minimum(ay0 + ah, by0 + bh) - np.maximum(ay0, by0), 0.0, None)
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0.0, inter / union, 0.0)


def _clean(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The six columns typed and sorted by (frame, track_id); a repeated (frame, track_id) keeps its last row.

    Ground truth also keeps `consider` (default 1) and `object_class` (default null) when it has them."""
    data = pd.DataFrame({c: df[c] for c in COLUMNS}).astype(
        {"frame": "int64", "track_id": "int64", "x": "float64", "y": "float64", "w": "float64", "h": "float64"})
    for column, default in (("consider", 1), ("object_class", None)):
        if column in df.columns:
            data[column] = pd.array(df[column], dtype="Int64")
        elif default is None:
            data[column] = pd.array([pd.NA] * len(data), dtype="Int64")
        else:
            data[column] = default
    kept = data.drop_duplicates(["frame", "track_id"], keep="last")
    return kept.sort_values(["frame", "track_id"], kind="stable"), len(data) - len(kept)


def preprocess(gt: pd.DataFrame, tr: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MOTChallenge's evaluation rules (see the module docstring) on cleaned input: (ground truth, tracker) kept."""
    classes = gt["object_class"]
    if len(tr) and (classes.isin(DISTRACTORS)).any():
        drop: list[int] = []
        gt_frames = {f: part for f, part in gt.groupby("frame", sort=False)}
        for frame, boxes in tr.groupby("frame", sort=False):
            truth = gt_frames.get(frame)
            if truth is None or not truth["object_class"].isin(DISTRACTORS).any():
                continue
            scores = iou_matrix(truth[["x", "y", "w", "h"]].to_numpy(), boxes[["x", "y", "w", "h"]].to_numpy())
            scores[scores < MATCH_IOU - _EPS] = 0.0
            rows, cols = linear_sum_assignment(-scores)
            matched = scores[rows, cols] > _EPS
            distractor = truth["object_class"].to_numpy(dtype=float, na_value=np.nan)[rows[matched]]
            drop += boxes.index[cols[matched][np.isin(distractor, DISTRACTORS)]].tolist()
        tr = tr.drop(index=drop)
    keep = (gt["consider"] != 0) & (classes.isna() | (classes == PEDESTRIAN))
    return gt[keep.to_numpy(dtype=bool)], tr


def _by_frame(df: pd.DataFrame) -> dict[int, Boxes]:
    if df.empty:
        return {}
    frames = df["frame"].to_numpy()
    ids = df["track_id"].to_numpy()
    boxes = df[["x", "y", "w", "h"]].to_numpy(dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, frames[1:] != frames[:-1]])
    ends = np.r_[starts[1:], len(frames)]
    return {int(frames[s]): (ids[s:e], boxes[s:e]) for s, e in zip(starts, ends, strict=True)}


def frames_of(gt: pd.DataFrame, tr: pd.DataFrame) -> Iterator[FrameBoxes]:
    """Every frame that has a box on either side, in frame order (inputs already cleaned)."""
    gt_frames, tr_frames = _by_frame(gt), _by_frame(tr)
    empty: Boxes = (np.empty(0, dtype=np.int64), np.empty((0, 4)))
    for frame in sorted(gt_frames.keys() | tr_frames.keys()):
        gt_ids, gt_boxes = gt_frames.get(frame, empty)
        tr_ids, tr_boxes = tr_frames.get(frame, empty)
        yield FrameBoxes(frame, gt_ids, tr_ids, iou_matrix(gt_boxes, tr_boxes))


def match_frame(boxes: FrameBoxes, previous: Mapping[int, int]) -> list[tuple[int, int]]:
    """CLEAR matches of one frame as (gt row, tracker row): still-valid previous pairings first, then the rest."""
    allowed = boxes.matchable
    gt_row = {int(g): i for i, g in enumerate(boxes.gt_ids)}
    tr_row = {int(t): j for j, t in enumerate(boxes.tr_ids)}
    kept = [(gt_row[g], tr_row[t]) for g, t in previous.items()
            if g in gt_row and t in tr_row and allowed[gt_row[g], tr_row[t]]]
    free_gt = np.setdiff1d(np.arange(len(gt_row)), [i for i, _ in kept])
    free_tr = np.setdiff1d(np.arange(len(tr_row)), [j for _, j in kept])
    sub_allowed = allowed[np.ix_(free_gt, free_tr)]
    if not sub_allowed.any():
        return kept
    forbidden = float(min(len(free_gt), len(free_tr)) + 1)
    cost = np.where(sub_allowed, 1.0 - boxes.iou[np.ix_(free_gt, free_tr)], forbidden)
    rows, cols = linear_sum_assignment(cost)
    return kept + [(int(free_gt[r]), int(free_tr[c])) for r, c in zip(rows, cols, strict=True) if sub_allowed[r, c]]


def _track_class(matched: int, present: int) -> str:
    ratio = matched / present
    if ratio > MT_ABOVE:
        return "mt"
    return "ml" if ratio < ML_BELOW else "pt"


def clear_counts(frames: Iterable[FrameBoxes]) -> dict[str, float]:
    """CLEAR-MOT counts over a sequence's frames (frame order)."""
    counts: Counter[str] = Counter()
    motp_sum = 0.0
    present: Counter[int] = Counter()
    matched: Counter[int] = Counter()
    last_tracker: dict[int, int] = {}
    last_matched_frame: dict[int, int] = {}
    previous: dict[int, int] = {}
    previous_frame: int | None = None
    for boxes in frames:
        pairs = match_frame(boxes, previous if previous_frame == boxes.frame - 1 else {})
        current = {int(boxes.gt_ids[i]): int(boxes.tr_ids[j]) for i, j in pairs}
        for g, t in current.items():
            counts["idsw"] += g in last_tracker and last_tracker[g] != t
            counts["frag"] += g in last_matched_frame and boxes.frame - last_matched_frame[g] > 1
            last_tracker[g] = t
            last_matched_frame[g] = boxes.frame
        motp_sum += float(sum(1.0 - boxes.iou[i, j] for i, j in pairs))
        present.update(int(g) for g in boxes.gt_ids)
        matched.update(current.keys())
        counts["tp"] += len(pairs)
        counts["fn"] += len(boxes.gt_ids) - len(pairs)
        counts["fp"] += len(boxes.tr_ids) - len(pairs)
        previous, previous_frame = current, boxes.frame
    classes = Counter(_track_class(matched[g], n) for g, n in present.items())
    return {"gt_ids": len(present), "gt_dets": sum(present.values()), "tr_dets": counts["tp"] + counts["fp"],
            "tp": counts["tp"], "fp": counts["fp"], "fn": counts["fn"], "idsw": counts["idsw"],
            "frag": counts["frag"], "mt": classes["mt"], "pt": classes["pt"], "ml": classes["ml"],
            "motp_sum": motp_sum}


def identity_counts(frames: Iterable[FrameBoxes]) -> dict[str, int]:
    """IDTP/IDFP/IDFN from the one-to-one gt id to tracker id pairing that maximises frames with IoU >= 0.5."""
    overlaps: Counter[tuple[int, int]] = Counter()
    gt_dets = tr_dets = 0
    for boxes in frames:
        gt_dets += len(boxes.gt_ids)
        tr_dets += len(boxes.tr_ids)
        rows, cols = np.nonzero(boxes.matchable)
        overlaps.update(zip(boxes.gt_ids[rows].tolist(), boxes.tr_ids[cols].tolist(), strict=True))
    idtp = 0
    if overlaps:
        gt_index = {g: i for i, g in enumerate(sorted({g for g, _ in overlaps}))}
        tr_index = {t: j for j, t in enumerate(sorted({t for _, t in overlaps}))}
        weight = np.zeros((len(gt_index), len(tr_index)))
        for (g, t), n in overlaps.items():
            weight[gt_index[g], tr_index[t]] = n
        rows, cols = linear_sum_assignment(weight, maximize=True)
        idtp = int(weight[rows, cols].sum())
    return {"idtp": idtp, "idfp": tr_dets - idtp, "idfn": gt_dets - idtp}


def hota_counts(frames: Sequence[FrameBoxes]) -> dict[str, np.ndarray]:
    """HOTA's additive parts per alpha (HOTA_KEYS), as TrackEval's HOTA.eval_sequence computes them."""
    n_alpha = len(HOTA_ALPHAS)
    out = {k: np.zeros(n_alpha) for k in HOTA_KEYS}
    gt_index = {g: i for i, g in enumerate(sorted({int(g) for b in frames for g in b.gt_ids}))}
    tr_index = {t: j for j, t in enumerate(sorted({int(t) for b in frames for t in b.tr_ids}))}
    if not gt_index or not tr_index:
        out["hota_fn"][:] = sum(len(b.gt_ids) for b in frames)
        out["hota_fp"][:] = sum(len(b.tr_ids) for b in frames)
        return out
    rows_of = [np.array([gt_index[int(g)] for g in b.gt_ids], dtype=np.int64) for b in frames]
    cols_of = [np.array([tr_index[int(t)] for t in b.tr_ids], dtype=np.int64) for b in frames]
    potential = np.zeros((len(gt_index), len(tr_index)))
    gt_count = np.zeros((len(gt_index), 1))
    tr_count = np.zeros((1, len(tr_index)))
    for boxes, g, t in zip(frames, rows_of, cols_of, strict=True):
        sim = boxes.iou
        denom = sim.sum(0)[np.newaxis, :] + sim.sum(1)[:, np.newaxis] - sim
        sim_iou = np.zeros_like(sim)
        mask = denom > _EPS
        sim_iou[mask] = sim[mask] / denom[mask]
        potential[g[:, np.newaxis], t[np.newaxis, :]] += sim_iou
        gt_count[g] += 1
        tr_count[0, t] += 1
    alignment = potential / (gt_count + tr_count - potential)
    matches = np.zeros((n_alpha, len(gt_index), len(tr_index)))
    for boxes, g, t in zip(frames, rows_of, cols_of, strict=True):
        if not len(g) or not len(t):
            out["hota_fp"] += len(t)
            out["hota_fn"] += len(g)
            continue
        sim = boxes.iou
        rows, cols = linear_sum_assignment(-(alignment[g[:, np.newaxis], t[np.newaxis, :]] * sim))
        matched_sim = sim[rows, cols]
        for a, alpha in enumerate(HOTA_ALPHAS):
            ok = matched_sim >= alpha - _EPS
            n = int(ok.sum())
            out["hota_tp"][a] += n
            out["hota_fn"][a] += len(g) - n
            out["hota_fp"][a] += len(t) - n
            if n:
                out["hota_loca_sum"][a] += sum(matched_sim[ok])
                matches[a, g[rows[ok]], t[cols[ok]]] += 1
    for a in range(n_alpha):
        m = matches[a]
        out["hota_assa_sum"][a] = np.sum(m * (m / np.maximum(1, gt_count + tr_count - m)))
        out["hota_assre_sum"][a] = np.sum(m * (m / np.maximum(1, gt_count)))
        out["hota_asspr_sum"][a] = np.sum(m * (m / np.maximum(1, tr_count)))
    return out


def hota_ratios(counts: Mapping[str, object]) -> dict[str, float]:
    """HOTA, DetA, AssA, DetRe, DetPr, AssRe, AssPr and LocA (means over the alphas, as TrackEval reports them)."""
    tp, fn, fp = (np.asarray(counts[k], dtype=float) for k in ("hota_tp", "hota_fn", "hota_fp"))
    assa, assre, asspr = (np.asarray(counts[k], dtype=float) / np.maximum(1, tp)
                          for k in ("hota_assa_sum", "hota_assre_sum", "hota_asspr_sum"))
    deta = tp / np.maximum(1, tp + fn + fp)
    loca = np.maximum(1e-10, np.asarray(counts["hota_loca_sum"], dtype=float)) / np.maximum(1e-10, tp)
    per_alpha = {"hota": np.sqrt(deta * assa), "deta": deta, "assa": assa, "detre": tp / np.maximum(1, tp + fn),
                 "detpr": tp / np.maximum(1, tp + fp), "assre": assre, "asspr": asspr, "loca": loca}
    return {k: float(np.mean(v)) for k, v in per_alpha.items()}


def evaluate_sequence(gt: pd.DataFrame, tr: pd.DataFrame) -> dict[str, Any]:
    """All counts (see the module docstring) of tracker boxes `tr` against ground truth `gt` for one sequence.

    Both DataFrames need columns frame, track_id, x, y, w, h; ground truth may also have consider and
    object_class (MOTChallenge 16/17/20, see `preprocess`); other columns are ignored.
    """
    gt_clean, gt_dups = _clean(gt)
    tr_clean, tr_dups = _clean(tr)
    gt_kept, tr_kept = preprocess(gt_clean, tr_clean)
    frames = list(frames_of(gt_kept, tr_kept))
    return {**clear_counts(frames), **identity_counts(frames), "dup_rows": gt_dups + tr_dups,
            **hota_counts(frames)}


def sum_counts(per_sequence: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts summed key by key over sequences (keys of COUNT_KEYS; a missing key counts as 0; HOTA's
    parts are summed alpha by alpha)."""
    rows = list(per_sequence)
    total: dict[str, Any] = {}
    for k in COUNT_KEYS:
        total[k] = 0
        for row in rows:
            if k in row:
                total[k] = total[k] + (np.asarray(row[k], dtype=float) if k in HOTA_KEYS else row[k])
    return total


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def ratios(counts: Mapping[str, float]) -> dict[str, float]:
    """MOTA, MOTP distance, recall, precision, IDF1, IDP and IDR from (possibly summed) counts."""
    gt_dets, tp = counts["gt_dets"], counts["tp"]
    errors = counts["fn"] + counts["fp"] + counts["idsw"]
    return {
        "mota": 1.0 - _ratio(errors, gt_dets),
        "motp_distance": _ratio(counts["motp_sum"], tp),
        "recall": _ratio(tp, gt_dets),
        "precision": _ratio(tp, tp + counts["fp"]),
        "idf1": _ratio(2 * counts["idtp"], gt_dets + counts["tr_dets"]),
        "idp": _ratio(counts["idtp"], counts["idtp"] + counts["idfp"]),
        "idr": _ratio(counts["idtp"], counts["idtp"] + counts["idfn"]),
    }
