"""Two model runs compared slice by slice, with capture-bootstrap intervals and false-discovery control.

A slice is a set of captures chosen by scenario attributes (lighting=dark, or lighting=dark and
motion=running). For both runs, every metric of a slice comes from the same per-record match
outcomes as gold.detection_metrics, restricted to the slice's frames, so the point estimates are
pycocotools' numbers on those frames: `ap` (AP@[.50:.95]), `ap50`, `recall50` and `precision50`
(recall and precision at IoU .50 over every evaluated detection), each the mean over the classes
that have ground truth in the slice, and `mota`/`idf1` from the per-capture CLEAR-MOT and identity
counts where both runs track.

Uncertainty. Frames of one capture are correlated, so the sampling unit is the capture. Each
replicate draws the slice's n captures with replacement (multinomial counts, the same draw for
both runs, so the difference is paired) and recomputes every metric with each record weighted by
its capture's count, which is what copying the capture's frames that many times would give,
without materialising the copies: records are ranked once per run and class, and a replicate
only changes the weights in the cumulative sums. For AP the ranked detections of a slice are cut
into blocks (see `block_of`: equal blocks, and growing ones from the first detection, because
AP's precision at recall 0 is that of the best point anywhere, often among the first few), and a
replicate's precision envelope is read at the block ends; with no more than 2 x `blocks`
detections every detection is its own block and the replicates are exact. Blocked replicates
are shifted by the difference between the exact point estimate and the blocked curve on the
unresampled slice: at a million detections a replicate's AP is then within 1e-4 of the exact one,
and the 95% bounds of AP and AP50 move by at most 3% of the bootstrap standard deviation
(bench/compare_runs.py prints the replicate error). Intervals are percentile intervals of the
replicates; a slice of one capture has none. AP is a step function of the final recall (101 recall
thresholds), so its replicates are lumpy and its interval need not be centred on the estimate. Each slice's draws
come from a generator seeded by (seed, slice name), so adding a slice does not change another's
interval; a small slice has few distinct draws (35 for 4 captures), each computed once.

Testing. A (slice, metric) is tested when the slice has at least `min_captures` captures and
`min_ground_truth` ground-truth objects and both runs have a value. Its p-value is two-sided,
from Student's t with (captures - 1) degrees of freedom on delta / se, where se is the bootstrap
standard deviation of the difference inflated by sqrt(n / (n - 1)) (the bootstrap's plug-in
variance is that much too small): a normal reference on a slice of five captures makes p-values
far too small, and with hundreds of tests p-values below 1/resamples matter, which counting
replicates cannot give. Benjamini-Hochberg at level `fdr` over every tested row selects the
flagged ones: a regression when the candidate is worse, an improvement when better. The reported
adjusted interval is the false-coverage-rate interval of Benjamini and Yekutieli (2005),
delta +- t(1 - R fdr / 2m) se with R flagged out of m tested; it excludes zero exactly for the
flagged rows. A slice whose captures are exactly those of a simpler slice (sensor=rgb when every
capture is rgb) repeats that slice's numbers, says so in `same_as`, and is not tested twice.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits

from scenelake import coco_eval
from scenelake.contracts import scenario_attributes

# The columns of silver.captures its contract flags `scenario: true`, in contract order.
SCENARIO_ATTRIBUTES = scenario_attributes()
DETECTION_METRICS = ("ap", "ap50", "recall50", "precision50")
TRACKING_METRICS = ("mota", "idf1")
METRICS = DETECTION_METRICS + TRACKING_METRICS
TRACKING_COUNTS = ("gt_dets", "tr_dets", "fp", "fn", "idsw", "idtp", "num_frames")
N_IOU = len(coco_eval.IOU_THRESHOLDS)
RECORD_COLUMNS = ["capture_id", "frame_index", "category_id", "kind", "score", "rank", "tp_all", "ig_all"]


@dataclass(frozen=True)
class Options:
    """How a comparison is computed; every field is recorded with its results."""

    resamples: int = 1000
    seed: int = 0
    fdr: float = 0.05
    confidence: float = 0.95
    min_captures: int = 5
    min_ground_truth: int = 25
    blocks: int = 32


@dataclass(frozen=True)
class Slice:
    """Captures (indices into the comparison's sorted capture ids) chosen by attribute values."""

    by: tuple[str, ...]
    values: tuple[str, ...]
    members: np.ndarray = field(compare=False)

    @property
    def slice_by(self) -> str:
        return ",".join(self.by) if self.by else "all"

    @property
    def slice_value(self) -> str:
        return ",".join(self.values) if self.by else "all"

    @property
    def name(self) -> str:
        return f"{self.slice_by}={self.slice_value}"


@dataclass
class ClassRecords:
    """One run's evaluated detections of one class in ranking order, and its ground truth per capture."""

    category_id: int
    capture: np.ndarray  # [n] capture index of each ranked detection
    tp: np.ndarray  # [n, 10] bool: true positive at IoU threshold t
    fp: np.ndarray  # [n, 10] bool: false positive (neither matched nor ignored)
    npig: np.ndarray  # [C] ground-truth objects that count (not ignored), per capture
    tp50: np.ndarray  # [C] true positives at IoU .50, per capture
    fp50: np.ndarray  # [C] false positives at IoU .50, per capture


@dataclass
class RunRecords:
    classes: list[ClassRecords]
    predictions: np.ndarray  # [C] evaluated predictions per capture
    tracking: np.ndarray | None  # [C, len(TRACKING_COUNTS)], nan where the run did not track the capture


def _bits(masks: np.ndarray) -> np.ndarray:
    return ((masks.astype(np.int64)[:, None] >> np.arange(N_IOU)) & 1).astype(bool)


def prepare(records: pd.DataFrame, captures: Sequence[str], tracking: pd.DataFrame | None = None) -> RunRecords:
    """Index one run's match records (columns RECORD_COLUMNS, area range all) by `captures` (sorted ids).

    Records of other captures are dropped. Detections are ranked as COCOeval.accumulate ranks
    them: score descending, ties in frame order (capture_id, frame_index), then rank in frame.
    `tracking` has capture_id and the TRACKING_COUNTS columns (gold.tracking_metrics rows).
    """
    index = pd.Index(captures)
    cap = index.get_indexer(records["capture_id"])
    records = records.loc[cap >= 0]
    cap = cap[cap >= 0]
    rank = records["rank"].astype(np.float64).to_numpy()  # null for ground truth
    is_dt = (records["kind"] == "prediction").to_numpy() & (np.nan_to_num(rank, nan=np.inf) < 100)
    is_gt = (records["kind"] == "ground_truth").to_numpy()
    n_caps = len(index)
    frame = records["frame_index"].to_numpy(np.int64)
    image = cap.astype(np.int64) * (int(frame.max(initial=0)) + 1) + frame
    classes = []
    category = records["category_id"].to_numpy(np.int64)
    for cid in sorted(set(category[is_dt | is_gt])):
        d = np.flatnonzero(is_dt & (category == cid))
        order = np.lexsort((rank[d], image[d],
                            -records["score"].to_numpy(np.float64)[d]))
        d = d[order]
        tp = _bits(records["tp_all"].to_numpy()[d])
        fp = ~tp & ~_bits(records["ig_all"].to_numpy()[d])
        g = np.flatnonzero(is_gt & (category == cid))
        counted = g[records["ig_all"].to_numpy()[g] == 0]
        classes.append(ClassRecords(
            category_id=int(cid), capture=cap[d], tp=tp, fp=fp,
            npig=np.bincount(cap[counted], minlength=n_caps).astype(np.float64),
            tp50=np.bincount(cap[d], weights=tp[:, 0], minlength=n_caps),
            fp50=np.bincount(cap[d], weights=fp[:, 0], minlength=n_caps)))
    predictions = np.bincount(cap[is_dt], minlength=n_caps).astype(np.float64)
    counts = None
    if tracking is not None and len(tracking):
        counts = np.full((n_caps, len(TRACKING_COUNTS)), np.nan)
        t_cap = index.get_indexer(tracking["capture_id"])
        keep = t_cap >= 0
        counts[t_cap[keep]] = tracking.loc[keep, list(TRACKING_COUNTS)].to_numpy(np.float64)
    return RunRecords(classes, predictions, counts)


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over the classes that count; nan where none does (no warning)."""
    valid = ~np.isnan(values)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    n = valid.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


@dataclass
class Estimates:
    """A metric of one run on one slice: its exact value, the value of the curve the replicates use, the replicates."""

    exact: float
    approx: float
    replicates: np.ndarray


def detection_estimates(run: RunRecords, members: np.ndarray, weights: np.ndarray,
                        blocks: int) -> dict[str, Estimates]:
    """The detection metrics of a slice (`members`: capture indices) and their bootstrap replicates.

    `weights` [B, len(members)] is how often each member capture is drawn in each replicate.
    """
    local = np.full(len(run.predictions), -1)
    local[members] = np.arange(len(members))
    rows = np.vstack([np.ones((1, len(members))), weights])  # row 0: the slice as it is
    per_class: dict[str, list[np.ndarray]] = {m: [] for m in DETECTION_METRICS}
    exact = []
    for cls in run.classes:
        npig, tp50, fp50 = (rows @ v[members] for v in (cls.npig, cls.tp50, cls.fp50))
        picked = np.flatnonzero(local[cls.capture] >= 0)
        tp, fp = cls.tp[picked], cls.fp[picked]
        exact.append(coco_eval.interpolated_ap(np.cumsum(tp, axis=0).T, np.cumsum(fp, axis=0).T, npig[0]))
        curve = _blocked_ap(local[cls.capture[picked]], tp, fp, rows, npig, blocks)
        per_class["ap"].append(_nanmean(curve, axis=1))
        per_class["ap50"].append(curve[:, 0])
        per_class["recall50"].append(_ratio(tp50, npig))
        per_class["precision50"].append(np.where(npig > 0, _ratio(tp50, tp50 + fp50), np.nan))
    values = {m: _nanmean(np.stack(v, axis=1), axis=1) if v else np.full(len(rows), np.nan)
              for m, v in per_class.items()}
    out = {m: Estimates(float(v[0]), float(v[0]), v[1:]) for m, v in values.items()}
    if exact:
        per_threshold = np.array(exact)  # [classes, thresholds], nan rows for classes without objects
        out["ap"].exact = float(_nanmean(_nanmean(per_threshold, axis=1)[None], axis=1)[0])
        out["ap50"].exact = float(_nanmean(per_threshold[None, :, 0], axis=1)[0])
    return out


def _blocked_ap(capture: np.ndarray, tp: np.ndarray, fp: np.ndarray, rows: np.ndarray, npig: np.ndarray,
                blocks: int) -> np.ndarray:
    """AP per row of `rows` (capture weights) and IoU threshold [R, T] from ranked detections cut into blocks.

    Each capture's cumulative counts at the block ends are computed once; a row's are then one matrix
    product, laid out [block, threshold, row] so that interpolated_ap steps along the blocks over
    whole rows of memory. float32 is exact while every sum stays below 2^24: no sum exceeds the
    largest weight times the detections.
    """
    n, n_members = len(capture), rows.shape[1]
    if not n:  # no detection: AP 0 where the class has objects
        return np.where(npig[:, None] > 0, 0.0, np.nan) * np.ones((1, N_IOU))
    block = block_of(n, blocks)
    bins = int(block[-1]) + 1
    hit_row, hit_col = np.nonzero(np.hstack([tp, fp]))
    cell = (capture[hit_row] * bins + block[hit_row]) * (2 * N_IOU) + hit_col
    counts = np.bincount(cell, minlength=n_members * bins * 2 * N_IOU).reshape(n_members, bins, 2 * N_IOU)
    per_capture = np.cumsum(counts, axis=1).reshape(n_members, bins * 2 * N_IOU)
    dtype = np.float32 if rows.max(initial=0) * n < 2 ** 24 else np.float64
    cum = (per_capture.T.astype(dtype) @ rows.T.astype(dtype)).reshape(bins, 2 * N_IOU, len(rows))
    curves = coco_eval.interpolated_ap(cum[:, :N_IOU].transpose(1, 2, 0), cum[:, N_IOU:].transpose(1, 2, 0),
                                       npig[None, :])
    return curves.T


def block_of(n: int, blocks: int) -> np.ndarray:
    """The block of each of n ranked detections: about `blocks` equal blocks, and geometric ones at the head.

    The head needs its own resolution: AP's precision at recall 0 is the best precision anywhere on
    the curve, often that of the first few detections (the first one alone at IoU .95), so it
    changes from one resample to the next with whichever captures come first. Blocks end at
    about `blocks` geometrically spaced positions (1, 2, 3, ... growing by a constant factor) and
    at `blocks` equally spaced ones; with n <= 2 x `blocks` every detection is its own block (exact).
    """
    positions = np.arange(n)
    if n <= 2 * blocks:
        return positions
    ends = np.unique(np.r_[np.round(np.geomspace(1, n, blocks)), np.round(np.linspace(0, n, blocks + 1)[1:])]
                     .astype(np.int64))
    return np.searchsorted(ends, positions, side="right")


def tracking_estimates(run: RunRecords, members: np.ndarray, weights: np.ndarray) -> dict[str, Estimates]:
    """MOTA and IDF1 of the slice's tracked captures (`members` all tracked by the run), with replicates."""
    assert run.tracking is not None
    counts = run.tracking[members]
    both = np.concatenate([np.ones((1, len(members))), weights.astype(np.float64)])
    summed = both @ counts
    col = {name: summed[:, i] for i, name in enumerate(TRACKING_COUNTS)}
    mota = 1.0 - _ratio(col["fn"] + col["fp"] + col["idsw"], col["gt_dets"])
    idf1 = _ratio(2 * col["idtp"], col["gt_dets"] + col["tr_dets"])
    return {name: Estimates(float(v[0]), float(v[0]), v[1:]) for name, v in (("mota", mota), ("idf1", idf1))}


def enumerate_slices(attributes: pd.DataFrame, combinations: Iterable[Sequence[str]] = ()) -> list[Slice]:
    """The whole set, every single attribute and every pair, then the named combinations.

    `attributes` has one row per capture of the comparison (in its order) and one string column
    per attribute (null shows as 'null'). Slices come out in that order, values sorted.
    """
    values = attributes.astype("string").fillna("null")
    groupings: list[tuple[str, ...]] = [(a,) for a in values.columns]
    groupings += list(itertools.combinations(values.columns, 2))
    for combo in combinations:
        if tuple(combo) not in groupings:
            groupings.append(tuple(combo))
    slices = [Slice((), (), np.arange(len(values)))]
    for by in groupings:
        keys = values[list(by)].agg(tuple, axis=1) if len(values) else pd.Series([], dtype=object)
        for key in sorted(set(keys)):
            slices.append(Slice(by, tuple(key), np.flatnonzero((keys == key).to_numpy())))
    return slices


def replicate_weights(n: int, options: Options, name: str) -> np.ndarray:
    """[resamples, n] multinomial draw counts of a slice's n captures, from a generator seeded by (seed, name)."""
    rng = np.random.default_rng([options.seed, zlib.crc32(name.encode())])
    return rng.multinomial(n, np.full(n, 1.0 / n), size=options.resamples) if n else np.zeros((options.resamples, 0))


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (q-values): the smallest FDR level at which each test would be selected."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if not m:
        return p
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def _interval(est: Estimates, shift: float, confidence: float) -> tuple[float, float]:
    reps = est.replicates[~np.isnan(est.replicates)]
    if not len(reps) or np.isnan(est.exact):
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail])
    return float(low + shift), float(high + shift)


def compare(baseline: pd.DataFrame, candidate: pd.DataFrame, attributes: pd.DataFrame,
            options: Options = Options(), combinations: Iterable[Sequence[str]] = (),
            baseline_tracking: pd.DataFrame | None = None, candidate_tracking: pd.DataFrame | None = None,
            ) -> pd.DataFrame:
    """One row per (slice, metric) comparing two runs' match records (see the module docstring).

    `baseline`/`candidate` hold RECORD_COLUMNS; `attributes` is indexed by capture_id with one
    column per scenario attribute. Only captures evaluated for both runs are compared.
    """
    with threadpool_limits(1, user_api="blas"):
        return _compare(baseline, candidate, attributes, options, combinations, baseline_tracking,
                        candidate_tracking)


def _compare(baseline: pd.DataFrame, candidate: pd.DataFrame, attributes: pd.DataFrame, options: Options,
             combinations: Iterable[Sequence[str]], baseline_tracking: pd.DataFrame | None,
             candidate_tracking: pd.DataFrame | None) -> pd.DataFrame:
    captures = sorted(set(baseline["capture_id"]) & set(candidate["capture_id"]))
    attrs = attributes.reindex(captures)
    base = prepare(baseline, captures, baseline_tracking)
    cand = prepare(candidate, captures, candidate_tracking)
    frames = pd.concat([baseline, candidate])[["capture_id", "frame_index"]].drop_duplicates()
    frames_per_capture = frames["capture_id"].value_counts().reindex(captures, fill_value=0).to_numpy(np.float64)
    npig = sum((c.npig for c in base.classes), np.zeros(len(captures)))
    tracked = np.zeros(len(captures), dtype=bool)
    if base.tracking is not None and cand.tracking is not None:
        tracked = ~np.isnan(base.tracking[:, 0]) & ~np.isnan(cand.tracking[:, 0])

    rows: list[dict[str, object]] = []
    seen: dict[bytes, str] = {}
    for sl in enumerate_slices(attrs, combinations):
        key = sl.members.tobytes()
        if key in seen:
            rows.extend(_repeat(rows, seen[key], sl))
            continue
        seen[key] = sl.name
        # A small slice has few distinct resamples (35 for 4 captures): each is evaluated once.
        weights, inverse = np.unique(replicate_weights(len(sl.members), options, sl.name), axis=0,
                                     return_inverse=True)
        inverse = inverse.reshape(-1)
        b = _expand(detection_estimates(base, sl.members, weights, options.blocks), inverse)
        c = _expand(detection_estimates(cand, sl.members, weights, options.blocks), inverse)
        support = {"num_captures": len(sl.members), "num_frames": int(frames_per_capture[sl.members].sum()),
                   "num_ground_truth": int(npig[sl.members].sum())}
        predictions = {"num_predictions_baseline": int(base.predictions[sl.members].sum()),
                       "num_predictions_candidate": int(cand.predictions[sl.members].sum())}
        for metric in DETECTION_METRICS:
            rows.append(_row(sl, metric, b[metric], c[metric], options, {**support, **predictions}))
        on_tracks = tracked[sl.members]
        if on_tracks.any():
            members = sl.members[on_tracks]
            assert base.tracking is not None and cand.tracking is not None
            gt_column, tr_column, frame_column = (TRACKING_COUNTS.index(c)
                                                  for c in ("gt_dets", "tr_dets", "num_frames"))
            tr_support = {"num_captures": len(members),
                          "num_frames": int(base.tracking[members, frame_column].sum()),
                          "num_ground_truth": int(base.tracking[members, gt_column].sum()),
                          "num_predictions_baseline": int(base.tracking[members, tr_column].sum()),
                          "num_predictions_candidate": int(cand.tracking[members, tr_column].sum())}
            tb = _expand(tracking_estimates(base, members, weights[:, on_tracks]), inverse)
            tc = _expand(tracking_estimates(cand, members, weights[:, on_tracks]), inverse)
            for metric in TRACKING_METRICS:
                rows.append(_row(sl, metric, tb[metric], tc[metric], options, tr_support))
    table = pd.DataFrame(rows)
    return _test(table, options)


def _expand(estimates: dict[str, Estimates], inverse: np.ndarray) -> dict[str, Estimates]:
    return {m: Estimates(e.exact, e.approx, e.replicates[inverse]) for m, e in estimates.items()}


def _row(sl: Slice, metric: str, b: Estimates, c: Estimates, options: Options,
         support: Mapping[str, int]) -> dict[str, object]:
    delta = Estimates(c.exact - b.exact, c.approx - b.approx, c.replicates - b.replicates)
    intervals = {}
    resampled = support["num_captures"] >= 2  # one capture has no capture-to-capture variation to resample
    for name, est in (("baseline", b), ("candidate", c), ("delta", delta)):
        intervals[name] = _interval(est, est.exact - est.approx, options.confidence) if resampled else (np.nan,) * 2
    valid = delta.replicates[~np.isnan(delta.replicates)]
    std_error = float(np.std(valid, ddof=1)) if len(valid) > 1 and resampled else float("nan")
    return {
        "slice_by": sl.slice_by, "slice_value": sl.slice_value, "num_attributes": len(sl.by), "metric": metric,
        **support,
        "baseline": b.exact, "baseline_low": intervals["baseline"][0], "baseline_high": intervals["baseline"][1],
        "candidate": c.exact, "candidate_low": intervals["candidate"][0],
        "candidate_high": intervals["candidate"][1],
        "delta": delta.exact, "delta_low": intervals["delta"][0], "delta_high": intervals["delta"][1],
        "std_error": std_error, "same_as": None,
    }


def _repeat(rows: list[dict[str, object]], original: str, sl: Slice) -> list[dict[str, object]]:
    """The rows of the slice with the same captures, under this slice's name."""
    return [{**r, "slice_by": sl.slice_by, "slice_value": sl.slice_value, "num_attributes": len(sl.by),
             "same_as": original} for r in rows if f"{r['slice_by']}={r['slice_value']}" == original
            and r["same_as"] is None]


def _test(table: pd.DataFrame, options: Options) -> pd.DataFrame:
    """p-values, BH q-values, flags and adjusted intervals (see the module docstring)."""
    if table.empty:
        return table
    delta, se = table["delta"].to_numpy(np.float64), table["std_error"].to_numpy(np.float64)
    tested = ((table["same_as"].isna()) & (table["num_captures"] >= options.min_captures)
              & (table["num_ground_truth"] >= options.min_ground_truth)
              & np.isfinite(delta) & np.isfinite(se)).to_numpy()
    n = table["num_captures"].to_numpy(np.float64)
    dof = np.maximum(n - 1, 1)
    scale = np.where(se > 0, se * np.sqrt(n / dof), np.nan)  # the bootstrap's plug-in variance is (n-1)/n too small
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, np.abs(delta) / scale, np.where(delta == 0, 0.0, np.inf))
    p = np.minimum(2 * stats.t.sf(t, dof), 1.0)
    q = np.full(len(table), np.nan)
    q[tested] = benjamini_hochberg(p[tested])
    flagged = tested & (q <= options.fdr) & (delta != 0)
    m, selected = int(tested.sum()), int(flagged.sum())
    half = stats.t.isf(max(selected, 1) * options.fdr / max(m, 1) / 2, dof) * np.nan_to_num(scale)
    table = table.assign(
        tested=tested, p_value=np.where(tested, p, np.nan), q_value=q,
        flag=np.where(flagged, np.where(delta < 0, "regression", "improvement"), "none"),
        delta_adjusted_low=np.where(tested, delta - half, np.nan),
        delta_adjusted_high=np.where(tested, delta + half, np.nan))
    # A repeated slice carries its original's test.
    original = table[table["same_as"].isna()].set_index(["slice_by", "slice_value", "metric"])
    for i in np.flatnonzero(table["same_as"].notna().to_numpy()):
        by, value = str(table.at[i, "same_as"]).split("=", 1)
        src = original.loc[(by, value, table.at[i, "metric"])]
        for col in ("p_value", "q_value", "flag", "delta_adjusted_low", "delta_adjusted_high"):
            table.at[i, col] = src[col]
    return table


def slice_label(slice_by: str, slice_value: str) -> str:
    """How a slice is named to people: lighting,motion=dark,running (or 'all captures')."""
    return "all captures" if slice_by == "all" else f"{slice_by}={slice_value}"


def ranked(table: pd.DataFrame, flag: str) -> pd.DataFrame:
    """Flagged rows of one kind, most certain harm (or gain) first: by the 95% bound nearest zero."""
    rows = table[(table["flag"] == flag) & table["same_as"].isna()]
    bound = rows["delta_high"] if flag == "regression" else -rows["delta_low"]
    return rows.assign(_bound=bound).sort_values(["_bound", "delta"], ascending=[True, flag == "regression"]) \
        .drop(columns="_bound")


def tracking_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """gold.tracking_metrics rows of one run -> capture_id and TRACKING_COUNTS (the 'all' row dropped)."""
    per = rows[rows["capture_id"] != "all"]
    return per[["capture_id", *TRACKING_COUNTS]].reset_index(drop=True)

