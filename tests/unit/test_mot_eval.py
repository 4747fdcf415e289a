"""MOTChallenge metrics: the devkit's numbers on MOT15 TUD, tiny hand-computed sequences, and TrackEval's HOTA,
CLEAR and identity numbers on MOT15 TUD and on random MOT17-style sequences."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scenelake.mot_eval import COLUMNS, HOTA_KEYS, HOTA_RATIO_KEYS, evaluate_sequence, hota_ratios, ratios, sum_counts
from tests.oracles import ORACLES, require_oracles
from tests.trackeval_reference import evaluate as evaluate_with_trackeval

pytestmark = pytest.mark.unit

MOT15 = ORACLES / "mot15-tud"
SEQUENCES = ("TUD-Campus", "TUD-Stadtmitte")
MOT15_COLUMNS = [*COLUMNS, "conf", "wx", "wy", "wz"]
EXPECTED_COUNTS = {"GT": "gt_ids", "MT": "mt", "PT": "pt", "ML": "ml", "FP": "fp", "FN": "fn", "IDSW": "idsw",
                   "FM": "frag"}
EXPECTED_RATIOS = {"IDF1": "idf1", "IDP": "idp", "IDR": "idr", "Recall": "recall", "Precision": "precision",
                   "MOTA": "mota", "MOTP_distance": "motp_distance"}
NAN = math.nan


def read_mot(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, header=None, names=MOT15_COLUMNS)


def clear(counts: dict[str, object]) -> dict[str, object]:
    """The CLEAR-MOT and identity counts (HOTA's per-alpha parts are checked against TrackEval below)."""
    return {k: v for k, v in counts.items() if k not in HOTA_KEYS}


def boxes(*rows: tuple[int, int, float, float, float, float]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=list(COLUMNS))


@pytest.fixture(scope="module")
def oracle() -> tuple[dict[str, dict[str, float]], dict[str, object]]:
    require_oracles()
    per_sequence = {seq: evaluate_sequence(read_mot(MOT15 / seq / "gt.txt"), read_mot(MOT15 / seq / "test.txt"))
                    for seq in SEQUENCES}
    counts: dict[str, dict[str, float]] = {**per_sequence, "OVERALL": sum_counts(per_sequence.values())}
    return counts, json.loads((MOT15 / "expected.json").read_text())


@pytest.mark.parametrize("name", [*SEQUENCES, "OVERALL"])
def test_matches_the_devkit_on_mot15_tud(oracle, name: str) -> None:  # type: ignore[no-untyped-def]
    all_counts, expected_file = oracle
    counts, expected = all_counts[name], expected_file["sequences"][name]
    assert {k: counts[c] for k, c in EXPECTED_COUNTS.items()} == {k: expected[k] for k in EXPECTED_COUNTS}
    got = ratios(counts)
    assert {k: got[r] for k, r in EXPECTED_RATIOS.items()} == pytest.approx(
        {k: expected[k] for k in EXPECTED_RATIOS}, abs=expected_file["tolerance"], rel=0)
    assert counts["tp"] + counts["fn"] == counts["gt_dets"]
    assert counts["dup_rows"] == 0


def test_id_switch_is_against_the_last_match_even_across_a_miss() -> None:
    # gt 1 sits still at (0,0,10,10) in frames 1-4. Tracker 7 covers it in frames 1-2, is elsewhere in frame 3
    # (1 FP + 1 FN), and tracker 8 covers it in frame 4: 1 IDSW (8 != last match 7) and 1 FM (matched 1-2, 4).
    # Matched 3 of 4 frames = 0.75: PT. MOTA = 1 - (1 FN + 1 FP + 1 IDSW) / 4 = 0.25.
    # Identity: gt 1 overlaps tracker 7 in 2 frames and 8 in 1, so IDTP = 2, IDFP = 4 - 2, IDFN = 4 - 2.
    gt = boxes(*[(f, 1, 0, 0, 10, 10) for f in range(1, 5)])
    tr = boxes((1, 7, 0, 0, 10, 10), (2, 7, 0, 0, 10, 10), (3, 7, 100, 100, 10, 10), (4, 8, 0, 0, 10, 10))
    counts = evaluate_sequence(gt, tr)
    assert clear(counts) == dict(gt_ids=1, gt_dets=4, tr_dets=4, tp=3, fp=1, fn=1, idsw=1, frag=1, mt=0, pt=1, ml=0,
                          motp_sum=0.0, idtp=2, idfp=2, idfn=2, dup_rows=0)
    assert ratios(counts) == pytest.approx(dict(mota=0.25, motp_distance=0.0, recall=0.75, precision=0.75,
                                                idf1=0.5, idp=0.5, idr=0.5))


def test_fragmentation_counts_only_gaps_that_end_in_a_match() -> None:
    # gt 1 at (0,0,10,10) in frames 1-5; tracker 3 at (0,0,10,8) (IoU 80/100 = 0.8) in frames 1, 2 and 4 only.
    # Matched 1,2 | lost 3 | matched 4 | lost 5: one FM, the final loss is not one. 3/5 = 0.6: PT.
    # gt 2, far away in frames 1-5, is never tracked: ML. TP 3, FN 2 + 5 = 7, FP 0, MOTA = 1 - 7/10 = 0.3.
    # MOTP distance = 3 * 0.2 / 3 = 0.2. IDTP 3, IDFP 0, IDFN 7: IDF1 = 6 / 13.
    gt = boxes(*[(f, 1, 0, 0, 10, 10) for f in range(1, 6)], *[(f, 2, 50, 50, 10, 10) for f in range(1, 6)])
    tr = boxes(*[(f, 3, 0, 0, 10, 8) for f in (1, 2, 4)])
    counts = evaluate_sequence(gt, tr)
    assert clear(counts) == pytest.approx(dict(gt_ids=2, gt_dets=10, tr_dets=3, tp=3, fp=0, fn=7, idsw=0, frag=1, mt=0,
                                        pt=1, ml=1, motp_sum=0.6, idtp=3, idfp=0, idfn=7, dup_rows=0))
    assert ratios(counts) == pytest.approx(dict(mota=0.3, motp_distance=0.2, recall=0.3, precision=1.0,
                                                idf1=6 / 13, idp=1.0, idr=0.3))


def test_last_frames_pairing_wins_over_a_better_overlap() -> None:
    # Frame 1: gt 1 at (0,0,10,10) matches tracker 5 exactly; tracker 6 is far away (FP).
    # Frame 2: tracker 5 moves to (2,0,10,10), IoU 80/120 = 2/3, still >= 0.5, and tracker 6 now covers gt 1
    # exactly (IoU 1). The pairing 1-5 is kept: no IDSW, tracker 6 is an FP again. MOTP sum = 0 + 1/3.
    # MOTA = 1 - 2 FP / 2 = 0. Identity: 1-5 in 2 frames, 1-6 in 1: IDTP 2, IDFP 4 - 2, IDFN 0.
    gt = boxes((1, 1, 0, 0, 10, 10), (2, 1, 0, 0, 10, 10))
    tr = boxes((1, 5, 0, 0, 10, 10), (1, 6, 80, 80, 10, 10), (2, 5, 2, 0, 10, 10), (2, 6, 0, 0, 10, 10))
    counts = evaluate_sequence(gt, tr)
    assert clear(counts) == pytest.approx(dict(gt_ids=1, gt_dets=2, tr_dets=4, tp=2, fp=2, fn=0, idsw=0, frag=0, mt=1,
                                        pt=0, ml=0, motp_sum=1 / 3, idtp=2, idfp=2, idfn=0, dup_rows=0))
    assert ratios(counts) == pytest.approx(dict(mota=0.0, motp_distance=1 / 6, recall=1.0, precision=0.5,
                                                idf1=2 / 3, idp=0.5, idr=1.0))


def test_empty_sides_and_duplicate_ids_do_not_crash() -> None:
    # Empty tracker: gt 1 and 2 in frames 1-2 are 4 FN, both ML; precision, MOTP and IDP have no denominator.
    gt = boxes((1, 1, 0, 0, 10, 10), (1, 2, 20, 0, 10, 10), (2, 1, 0, 0, 10, 10), (2, 2, 20, 0, 10, 10))
    no_boxes = boxes()
    counts = evaluate_sequence(gt, no_boxes)
    assert clear(counts) == dict(gt_ids=2, gt_dets=4, tr_dets=0, tp=0, fp=0, fn=4, idsw=0, frag=0, mt=0, pt=0, ml=2,
                          motp_sum=0.0, idtp=0, idfp=0, idfn=4, dup_rows=0)
    assert ratios(counts) == pytest.approx(dict(mota=0.0, motp_distance=NAN, recall=0.0, precision=NAN,
                                                idf1=0.0, idp=NAN, idr=0.0), nan_ok=True)
    # Empty ground truth: every tracker box is an FP (the repeated (1, 9) row is dropped). MOTA has no denominator.
    tr = boxes((1, 9, 0, 0, 10, 10), (1, 9, 5, 0, 10, 10), (2, 9, 0, 0, 10, 10))
    only_fp = evaluate_sequence(no_boxes, tr)
    assert clear(only_fp) == dict(gt_ids=0, gt_dets=0, tr_dets=2, tp=0, fp=2, fn=0, idsw=0, frag=0, mt=0, pt=0, ml=0,
                           motp_sum=0.0, idtp=0, idfp=2, idfn=0, dup_rows=1)
    assert math.isnan(ratios(only_fp)["mota"])
    total = sum_counts([counts, only_fp, evaluate_sequence(no_boxes, no_boxes)])
    assert clear(total) == {**clear(counts), "tr_dets": 2, "fp": 2, "idfp": 2, "dup_rows": 1}
    # HOTA: no match at any alpha; 4 FN and 2 FP at each; its ratios are 0 (TrackEval's max(1, .) denominators).
    assert (total["hota_fn"] == 4).all() and (total["hota_fp"] == 2).all() and not total["hota_tp"].any()
    assert hota_ratios(total) == dict(hota=0.0, deta=0.0, assa=0.0, detre=0.0, detpr=0.0, assre=0.0, asspr=0.0,
                                      loca=1.0)
    # A repeated (frame, track_id) keeps its last row: the far first copy of gt 1 is dropped, the last one matches.
    duplicated = boxes((1, 1, 50, 50, 10, 10), (1, 1, 0, 0, 10, 10))
    assert evaluate_sequence(duplicated, boxes((1, 4, 0, 0, 10, 10)))["tp"] == 1


# --- HOTA and MOTChallenge 16/17/20 ground truth, against TrackEval -------------------------------------------
TRACKEVAL_ABS = 1e-6
CLASSES = tuple(range(1, 14))  # every MOTChallenge class id: 1 pedestrian ... 12 reflection, 13 crowd


def random_sequence(seed: int, frames: int = 40, people: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A MOT17-style gt (consider, object_class, visibility) and a tracker with identity switches,
    fragmentations, false positives, boxes on distractors and frames with nothing on one or both sides."""
    rng = np.random.default_rng(seed)
    gt_rows, tr_rows = [], []
    next_tracker_id = 100
    for person in range(1, people + 1):
        # every other person is of another class, cycling through all of them across sequences
        object_class = CLASSES[(seed * people + person) % len(CLASSES)] if person % 2 == 0 else 1
        consider = int(object_class == 1 and rng.random() > 0.1)
        start, length = int(rng.integers(1, frames // 2)), int(rng.integers(5, frames))
        x, y = rng.uniform(0, 500), rng.uniform(0, 300)
        w, h = rng.uniform(20, 80), rng.uniform(50, 160)
        vx, vy = rng.normal(0, 4), rng.normal(0, 2)
        tracker_id = next_tracker_id = next_tracker_id + 1
        followed = rng.random() < 0.85
        for f in range(start, min(start + length, frames + 1)):
            if 18 <= f <= 20:  # frames 18-20: nobody labelled
                continue
            gx, gy = x + vx * (f - start), y + vy * (f - start)
            gt_rows.append((f, person, round(gx, 2), round(gy, 2), round(w, 2), round(h, 2), consider, object_class,
                            round(float(rng.uniform(0, 1)), 3)))
            if not followed or rng.random() < 0.12 or 24 <= f <= 25:  # misses; frames 24-25: tracker silent
                continue
            if rng.random() < 0.06:  # identity switch
                tracker_id = next_tracker_id = next_tracker_id + 1
            jitter = rng.normal(0, 0.08, 4) * np.array([w, h, w, h])
            tr_rows.append((f, tracker_id, round(gx + jitter[0], 2), round(gy + jitter[1], 2),
                            round(max(w + jitter[2], 5), 2), round(max(h + jitter[3], 5), 2)))
    for f in range(1, frames + 1):  # false positives
        for _ in range(int(rng.poisson(0.6))):
            next_tracker_id += 1
            tr_rows.append((f, next_tracker_id, round(rng.uniform(0, 600), 2), round(rng.uniform(0, 400), 2),
                            round(rng.uniform(20, 80), 2), round(rng.uniform(50, 160), 2)))
    gt = pd.DataFrame(gt_rows, columns=[*COLUMNS, "consider", "object_class", "visibility"])
    tr = pd.DataFrame(tr_rows, columns=list(COLUMNS))
    return gt.sort_values(["frame", "track_id"]), tr.sort_values(["frame", "track_id"])


def ours(counts: dict[str, object]) -> dict[str, float]:
    got = {**ratios(counts), **hota_ratios(counts)}  # type: ignore[arg-type]
    return {**{k: got[k] for k in (*HOTA_RATIO_KEYS, "mota", "idf1", "idp", "idr")},
            **{k: float(counts[k]) for k in ("fp", "fn", "idsw", "tp", "idtp")}}  # type: ignore[arg-type]


def test_hota_clear_and_identity_equal_trackeval_on_mot17_sequences_with_every_class(tmp_path: Path) -> None:
    sequences = {f"MOT17-{seed:02d}": random_sequence(seed) for seed in range(1, 9)}
    assert {c for gt, _ in sequences.values() for c in gt["object_class"]} == set(CLASSES)
    reference = evaluate_with_trackeval(tmp_path, sequences, "MOT17")
    per_sequence = {seq: evaluate_sequence(gt, tr) for seq, (gt, tr) in sequences.items()}
    removed = 0
    for seq, counts in per_sequence.items():
        assert ours(counts) == pytest.approx(reference[seq], abs=TRACKEVAL_ABS, rel=0), seq
        removed += len(sequences[seq][1]) - int(counts["tr_dets"])  # type: ignore[call-overload]
    assert removed > 0  # tracker boxes on distractors were taken out, as the official evaluation does
    assert ours(sum_counts(per_sequence.values())) == pytest.approx(reference["COMBINED_SEQ"], abs=TRACKEVAL_ABS,
                                                                     rel=0)


def test_hota_equals_trackeval_on_mot15_tud(tmp_path: Path) -> None:
    require_oracles()
    sequences = {}
    for seq in SEQUENCES:
        gt = read_mot(MOT15 / seq / "gt.txt").rename(columns={"conf": "consider", "wx": "object_class",
                                                               "wy": "visibility"})
        sequences[seq] = (gt, read_mot(MOT15 / seq / "test.txt")[list(COLUMNS)])
    reference = evaluate_with_trackeval(tmp_path, sequences, "MOT15")
    # scenelake stores no class for MOT15 files (their column 8 is a world coordinate, -1).
    per_sequence = {seq: evaluate_sequence(gt.drop(columns="object_class"), tr) for seq, (gt, tr) in sequences.items()}
    for seq, counts in per_sequence.items():
        assert ours(counts) == pytest.approx(reference[seq], abs=TRACKEVAL_ABS, rel=0), seq
    assert ours(sum_counts(per_sequence.values())) == pytest.approx(reference["COMBINED_SEQ"], abs=TRACKEVAL_ABS,
                                                                     rel=0)
