"""COCO detection evaluation (pycocotools COCOeval, iouType bbox) in vectorised numpy.

Two steps, the same split as the reference evaluator:

* `match` takes every ground-truth object and detection of some frames (one Spark group, e.g.
  one capture of one model run) and decides, per frame and class, at each of the 10 IoU
  thresholds and each of the 4 area ranges, whether a detection is a true positive, a false
  positive or ignored, and whether an object was found or is ignored. Outcomes are bit masks:
  bit t stands for IoU threshold IOU_THRESHOLDS[t] (.50, .55, ... .95).
* `accumulate` turns the match records of one class (of one model run, or of any slice of its
  frames) into the 101-point interpolated precision and the recall at each threshold, area
  range and maxDets; `summarize` averages those into the 12 standard numbers. The 101-point
  interpolation is `interpolated_ap`, batched over any leading axes (IoU thresholds here, bootstrap
  replicates in scenelake.comparison): the only Python form of it (the SQL form is the slice view).

Semantics reproduced exactly (and tested against pycocotools on random data): detections are
ranked by score with a stable sort (ties keep file order) and cut at 100 per frame and class;
each detection takes the unmatched ground truth of highest IoU (>= the threshold; the last one
on ties), preferring objects that are not ignored; crowd objects match any number of
detections and their IoU divides by the detection's area; crowd objects and objects whose
`area` is outside the range are ignored, and so are unmatched detections whose box area is
outside it. Across frames, detections are ranked by score, ties in frame order
(capture_id, frame_index), then by rank within the frame.

A vectorised implementation is hand-written here (rather than calling pycocotools) because the
reference loops over every detection and object in Python; this one loops only over the rank
of a detection within its frame (at most 100 steps) with all frames of a group at once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5 ** 2), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2), "large": (96.0 ** 2, 1e5 ** 2)}
ALL_BITS = (1 << len(IOU_THRESHOLDS)) - 1
EPS = np.spacing(1)

GROUP = ["frame_index", "category_id"]
GT_IN = [*GROUP, "order", "x", "y", "w", "h", "area", "is_crowd", "id"]
DT_IN = [*GROUP, "order", "x", "y", "w", "h", "score", "id"]
# What the 12 numbers are, in pycocotools' order: (name, AP or AR, IoU threshold index, area, maxDets).
STATS: tuple[tuple[str, str, int | None, str, int], ...] = (
    ("ap", "precision", None, "all", 100), ("ap50", "precision", 0, "all", 100),
    ("ap75", "precision", 5, "all", 100), ("ap_small", "precision", None, "small", 100),
    ("ap_medium", "precision", None, "medium", 100), ("ap_large", "precision", None, "large", 100),
    ("ar1", "recall", None, "all", 1), ("ar10", "recall", None, "all", 10),
    ("ar100", "recall", None, "all", 100), ("ar_small", "recall", None, "small", 100),
    ("ar_medium", "recall", None, "medium", 100), ("ar_large", "recall", None, "large", 100),
)


def mask_columns(prefix: str) -> list[str]:
    return [f"{prefix}_{area}" for area in AREA_RANGES]


def _bits(flags: np.ndarray) -> np.ndarray:
    """[n, T] booleans -> n integers with bit t set where flags[:, t]."""
    return (flags.astype(np.int64) << np.arange(flags.shape[1], dtype=np.int64)).sum(axis=1)


def box_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of boxes (x, y, w, h) broadcast against each other, with pycocotools' arithmetic."""
    dx, dy, dw, dh = (d[..., i] for i in range(4))
    gx, gy, gw, gh = (g[..., i] for i in range(4))
    iw = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    ih = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = iw * ih
    da = dw * dh
    union = np.where(crowd, da, da + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((iw > 0) & (ih > 0), inter / union, 0.0)


def _ranked(dt: pd.DataFrame, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order of detections by (group, score desc, file order), and each one's rank in its group."""
    order = np.lexsort((dt["order"].to_numpy(), -dt["score"].to_numpy(), group))
    g_sorted = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g_sorted)) + 1]
    rank_sorted = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = rank_sorted
    return order, rank


def match(gt: pd.DataFrame, dt: pd.DataFrame, max_det: int = MAX_DETS[-1]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match detections to ground truth per (frame_index, category_id) for every IoU threshold and area range.

    Inputs have the columns GT_IN and DT_IN (`order` is the record's position in its file,
    `id` any unique key). Returns (gt, dt) with their `id` and, per area range, `tp_<area>`
    and `ig_<area>` bit masks; dt also gets `rank` (0 = highest score in its frame and class;
    ranks >= max_det are not evaluated and have null masks) and `area`; both get `matched_id`,
    the partner at IoU .50 in area range "all".
    """
    keys = pd.MultiIndex.from_frame(pd.concat([gt[GROUP], dt[GROUP]], ignore_index=True))
    codes, uniques = pd.factorize(keys)
    n_groups = len(uniques)
    g_group, d_group = codes[: len(gt)], codes[len(gt):]

    g_order = np.lexsort((gt["order"].to_numpy(), g_group))
    g_sorted = g_group[g_order]
    g_counts = np.bincount(g_sorted, minlength=n_groups)
    g_max = int(g_counts.max()) if len(gt) else 0
    g_starts = np.r_[0, np.cumsum(g_counts)[:-1]]
    g_pos = np.empty(len(gt), dtype=np.int64)
    g_pos[g_order] = np.arange(len(gt)) - g_starts[g_sorted]

    def padded(values: np.ndarray, fill: float | bool) -> np.ndarray:
        out = np.full((n_groups, max(g_max, 1)) + values.shape[1:], fill, dtype=values.dtype)
        out[g_group, g_pos] = values
        return out

    g_box = padded(gt[["x", "y", "w", "h"]].to_numpy(np.float64), 0.0)
    g_area = padded(gt["area"].to_numpy(np.float64), 0.0)
    g_crowd = padded(gt["is_crowd"].to_numpy(bool), False)
    g_valid = padded(np.ones(len(gt), dtype=bool), False)
    g_ids = gt["id"].to_numpy(object)
    g_id_padded = padded(np.arange(len(gt)), -1)

    _, rank = _ranked(dt, d_group)
    evaluated = np.flatnonzero(rank < max_det)
    ev_group = d_group[evaluated]
    ev_rank = rank[evaluated]
    d_box = dt[["x", "y", "w", "h"]].to_numpy(np.float64)[evaluated]
    d_area = d_box[:, 2] * d_box[:, 3]
    iou = box_iou(d_box[:, None, :], g_box[ev_group], g_crowd[ev_group])  # [n_ev, G]
    by_rank = [np.flatnonzero(ev_rank == r) for r in range(int(ev_rank.max()) + 1)] if len(evaluated) else []
    n_t = len(IOU_THRESHOLDS)
    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)

    gt_out = pd.DataFrame({"id": gt["id"].to_numpy()})
    dt_out = pd.DataFrame({"id": dt["id"].to_numpy(), "rank": rank,
                           "area": dt["w"].to_numpy(np.float64) * dt["h"].to_numpy(np.float64)})
    d_matched_id = np.full(len(dt), None, dtype=object)
    g_matched_id = np.full(len(gt), None, dtype=object)
    for area_name, (lo, hi) in AREA_RANGES.items():
        g_ignore = g_crowd | (g_area < lo) | (g_area > hi)
        taken = np.zeros((n_groups, n_t, max(g_max, 1)), dtype=bool)
        d_tp = np.zeros((len(evaluated), n_t), dtype=bool)
        d_ig = np.zeros((len(evaluated), n_t), dtype=bool)
        d_partner = np.full((len(evaluated), n_t), -1, dtype=np.int64)
        for step in by_rank:
            grp = ev_group[step]
            ious = np.broadcast_to(iou[step][:, None, :], (len(step), n_t, iou.shape[1]))
            ok = (g_valid[grp][:, None, :] & (~taken[grp] | g_crowd[grp][:, None, :])
                  & (ious >= thresholds[None, :, None]))
            ign = np.broadcast_to(g_ignore[grp][:, None, :], ok.shape)
            preferred = ok & ~ign
            cand = np.where(preferred.any(axis=2, keepdims=True), preferred, ok)
            found = cand.any(axis=2)
            scored = np.where(cand, ious, -np.inf)[..., ::-1]
            best = scored.shape[2] - 1 - scored.argmax(axis=2)
            rows, ts = np.nonzero(found)
            taken[grp[rows], ts, best[rows, ts]] = True
            hit_ignored = np.take_along_axis(ign, best[..., None], axis=2)[..., 0]
            d_tp[step] = found & ~hit_ignored
            d_ig[step] = found & hit_ignored
            d_partner[step] = np.where(found, g_id_padded[grp[:, None], best], -1)
        outside = (d_area < lo) | (d_area > hi)
        d_ig |= (d_partner < 0) & outside[:, None]
        tp_col = np.full(len(dt), None, dtype=object)
        ig_col = np.full(len(dt), None, dtype=object)
        tp_col[evaluated] = _bits(d_tp)
        ig_col[evaluated] = _bits(d_ig)
        dt_out[f"tp_{area_name}"] = pd.array(tp_col, dtype="Int64")
        dt_out[f"ig_{area_name}"] = pd.array(ig_col, dtype="Int64")
        g_ig = g_ignore[g_group, g_pos]
        found_bits = _bits(taken[g_group, :, g_pos]) if len(gt) else np.zeros(0, dtype=np.int64)
        gt_out[f"tp_{area_name}"] = np.where(g_ig, 0, found_bits)
        gt_out[f"ig_{area_name}"] = np.where(g_ig, ALL_BITS, 0)
        if area_name == "all":
            partner = d_partner[:, 0]
            hit = partner >= 0
            d_matched_id[evaluated[hit]] = g_ids[partner[hit]]
            crowd_hit = gt["is_crowd"].to_numpy(bool)[partner[hit]]
            g_matched_id[partner[hit][~crowd_hit]] = dt["id"].to_numpy(object)[evaluated[hit][~crowd_hit]]
    dt_out["matched_id"] = d_matched_id
    gt_out["matched_id"] = g_matched_id
    return gt_out, dt_out


def accumulate(dets: pd.DataFrame, npig: Mapping[str, int]) -> pd.DataFrame:
    """Precision and recall of one class from its match records, as COCOeval.accumulate does.

    `dets` holds the evaluated detections (rank < 100) of one class with `score`, `image`
    (an integer in frame order), `rank`, and the `tp_<area>`/`ig_<area>` masks; `npig[area]`
    is the number of ground-truth objects of the class that are not ignored in that range.
    Returns one row per (area, max_dets, iou_index) with `precision` (the mean of the 101
    interpolated points) and `recall`, both -1 where the class has no such objects.
    """
    order = np.lexsort((dets["rank"].to_numpy(), dets["image"].to_numpy(), -dets["score"].to_numpy()))
    ranked = dets.iloc[order]
    rank = ranked["rank"].to_numpy()
    rows = []
    shift = np.arange(len(IOU_THRESHOLDS))[:, None]  # bit t of the match masks is IoU threshold t
    for area in AREA_RANGES:
        n_pos = npig.get(area, 0)
        tp_bits = ranked[f"tp_{area}"].to_numpy(np.int64)
        ig_bits = ranked[f"ig_{area}"].to_numpy(np.int64)
        for max_det in MAX_DETS:
            keep = rank < max_det
            if n_pos == 0:
                rows += [(area, max_det, t, -1.0, -1.0) for t in range(len(IOU_THRESHOLDS))]
                continue
            tp = (tp_bits[keep][None, :] >> shift) & 1  # [thresholds, detections]
            fp = (1 - tp) & (1 - ((ig_bits[keep][None, :] >> shift) & 1))
            tp_cum, fp_cum = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
            precision = interpolated_ap(tp_cum, fp_cum, float(n_pos))
            recall = tp_cum[:, -1] / n_pos if tp_cum.shape[1] else np.zeros(len(IOU_THRESHOLDS))
            rows += [(area, max_det, t, float(precision[t]), float(recall[t])) for t in range(len(IOU_THRESHOLDS))]
    return pd.DataFrame(rows, columns=["area", "max_dets", "iou_index", "precision", "recall"])


def reached_thresholds(rc: np.ndarray) -> np.ndarray:
    """How many of the 101 recall thresholds each recall in [0, 1] reaches: searchsorted(..., 'right'), as floats.

    The nearest threshold is the k-th, k = rint(100 rc), and every other one is about .005 or more
    away: the recall reaches the k thresholds below it, none above it, and the k-th itself when
    RECALL_THRESHOLDS[k] <= rc. That threshold is k * .01 in floating point (np.linspace's
    arithmetic), so a few whole-array operations do it, with no search or table look-up.
    """
    count = np.multiply(rc, 100.0)
    np.rint(count, out=count)
    threshold = np.multiply(count, 0.01)
    count += np.less_equal(threshold, rc, out=threshold)  # 1.0 where the k-th threshold is reached
    return count


# interpolated_ap takes this many elements of a [points, curves] array at a time: small enough for the
# temporaries to stay in cache and be reused by the allocator rather than mapped (page faults) afresh.
_CHUNK = 2 ** 16


def interpolated_ap(tp_cum: np.ndarray, fp_cum: np.ndarray, npig: np.ndarray | float) -> np.ndarray:
    """AP from cumulative counts [..., S] in ranking order and the positives (broadcast to [...]).

    COCOeval.accumulate's 101-point interpolation: the precision envelope from the right, read
    at the first point whose recall reaches each recall threshold (0 where none does). A point
    serves the thresholds between the previous point's recall and its own, so no loop over
    thresholds is needed. nan where npig is 0 (the class does not count, as pycocotools' -1).

    The work runs on [S, curves], points first (a free view when the counts are laid out [S, ...]
    in memory, as the bootstrap's are), a chunk of curves at a time: each step along the points
    is then one operation on a contiguous row.
    """
    positives = np.broadcast_to(np.asarray(npig, dtype=np.float64), tp_cum.shape[:-1])
    n_points, n_curves = tp_cum.shape[-1], positives.size
    tp = np.moveaxis(np.asarray(tp_cum), -1, 0).reshape(n_points, n_curves)
    fp = np.moveaxis(np.asarray(fp_cum), -1, 0).reshape(n_points, n_curves)
    counted = np.where(positives > 0, positives, np.inf).reshape(n_curves)
    ap = np.empty(n_curves)
    step = max(1, _CHUNK // max(n_points, 1))
    for start in range(0, n_curves, step):
        curves = slice(start, start + step)
        # float64 copies: exact for counts, and _served_envelope works in them in place
        ap[curves] = _served_envelope(tp[:, curves].astype(np.float64), fp[:, curves].astype(np.float64),
                                      counted[curves])
    return np.where(positives > 0, ap.reshape(positives.shape) / len(RECALL_THRESHOLDS), np.nan)


def _served_envelope(tp: np.ndarray, fp: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Per curve, the sum over its points [S, n] of the precision envelope times the thresholds each serves.

    Overwrites tp and fp. np.maximum.accumulate runs one inner loop per curve: right for a few long
    curves (a class's ranking at 10 IoU thresholds), slow for the bootstrap's thousands of curves of
    a few dozen blocks, where one whole-row maximum per point is much faster.
    """
    envelope = np.add(fp, tp, out=fp)
    envelope += EPS
    np.divide(tp, envelope, out=envelope)  # precision, as tp / (fp + tp + EPS)
    if len(envelope) <= envelope.shape[1]:
        for s in range(len(envelope) - 2, -1, -1):
            np.maximum(envelope[s], envelope[s + 1], out=envelope[s])
    else:
        np.maximum.accumulate(envelope[::-1], axis=0, out=envelope[::-1])
    served = reached_thresholds(np.divide(tp, positives, out=tp))
    served[1:] -= served[:-1]  # numpy reads the overlapping operand as it was before the subtraction
    return np.einsum("sn,sn->n", envelope, served)


def summarize(curves: pd.DataFrame) -> dict[str, float]:
    """The 12 standard numbers from `accumulate` rows of one or more classes (-1 where undefined)."""
    out = {}
    for name, kind, iou_index, area, max_dets in STATS:
        sel = curves[(curves["area"] == area) & (curves["max_dets"] == max_dets)]
        if iou_index is not None:
            sel = sel[sel["iou_index"] == iou_index]
        values = sel[kind].to_numpy()
        values = values[values > -1]
        out[name] = float(values.mean()) if len(values) else -1.0
    return out

