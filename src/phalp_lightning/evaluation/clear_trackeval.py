"""CLEAR-MOT and Identity metrics by TrackEval's rules (MOTChallenge's official evaluator since 2021).

The official presets (``mot15`` ... ``mot20``, ``posetrack21_boxes``) compute MOTA, MOTP, IDSW, FP, FN,
Frag, MT/PT/ML and IDF1 here, so their numbers are the benchmark's own; motmetrics (``clear.py``)
serves the ``plain`` preset, the PHALP protocol and the Lightning metric. The two differ only where
the matching is ambiguous:

- **Continuity.** In each frame a ground-truth object keeps its partner only when that tracker id
  was its partner in the *previous scored frame* (a 1000-point bonus in one Hungarian assignment
  that otherwise maximises the summed IoU). motmetrics keeps a partner across missed frames and
  minimises the summed distance of the rest.
- **ID switches** are counted against the *last* tracker id the object was matched to, however many
  frames ago.
- A frame without ground truth or without predictions leaves the previous-frame partners as they
  were (TrackEval skips the frame before it updates them).
- **Frag** counts, per object, the times its matched run restarts after the first.
- **MT / PT / ML**: matched in > 80 % / >= 20 % / fewer of the frames the object is present in.
- **MOTP** is the mean IoU of the matches, 0 when nothing matched (TrackEval's ``max(1, TP)``).
- **Identity**: one global assignment of gt ids to tracker ids maximising the frames where the pair
  overlaps with IoU >= threshold (IDTP); IDF1 = IDTP / (IDTP + (IDFP + IDFN) / 2). CLEAR accepts an
  IoU one machine epsilon below the threshold, Identity does not: both as TrackEval does.

Everything is computed from :class:`~phalp_lightning.evaluation.sequences.SequenceData`, the data
TrackEval's metrics receive; ``tests/test_evaluation_clear_trackeval.py`` compares every field with
the installed TrackEval on randomized ambiguous sequences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from phalp_lightning.evaluation.sequences import SequenceData

_EPS = float(np.finfo("float").eps)
# Score added to last frame's pairs: larger than any sum of IoUs it competes with in one frame's assignment.
_CONTINUITY_BONUS = 1000.0

# Counts summed over sequences; every score is derived from them (``clear_scores``).
CLEAR_COUNTS = ("TP", "FN", "FP", "IDSW", "MT", "PT", "ML", "Frag", "MOTP_sum", "Frames", "IDTP", "IDFN", "IDFP")


def clear_counts(data: SequenceData, threshold: float = 0.5) -> dict[str, float]:
    """CLEAR and Identity counts of one sequence under TrackEval's rules.

    Args:
        data: one sequence (ids contiguous from 0, similarity = IoU per frame).
        threshold: IoU a pair needs to match (TrackEval's ``THRESHOLD``).

    Returns:
        The ``CLEAR_COUNTS`` of the sequence.
    """
    from scipy.optimize import linear_sum_assignment

    counts = dict.fromkeys(CLEAR_COUNTS, 0.0)
    counts["Frames"] = float(data.num_timesteps)
    counts.update(_identity_counts(data, threshold))
    num_gt_ids = data.num_gt_ids
    if data.num_tracker_dets == 0:
        counts["FN"], counts["ML"] = float(data.num_gt_dets), float(num_gt_ids)
        return counts
    if data.num_gt_dets == 0:
        counts["FP"] = float(data.num_tracker_dets)
        return counts

    present = np.zeros(num_gt_ids, dtype=np.int64)  # frames each object is in
    matched = np.zeros(num_gt_ids, dtype=np.int64)  # frames each object is matched in
    runs = np.zeros(num_gt_ids, dtype=np.int64)  # matched runs each object starts
    last_partner = np.full(num_gt_ids, -1, dtype=np.int64)  # for IDSW: last tracker id, any frame ago
    previous_partner = np.full(num_gt_ids, -1, dtype=np.int64)  # for the bonus: partner in the previous frame
    tp = fn = fp = idsw = 0
    motp_sum = 0.0
    for gt_ids, tracker_ids, similarity in zip(data.gt_ids, data.tracker_ids, data.similarity_scores, strict=True):
        if gt_ids.shape[0] == 0 or tracker_ids.shape[0] == 0:
            # Partners of the previous frame stay: TrackEval skips such frames before updating them.
            fp += tracker_ids.shape[0]
            fn += gt_ids.shape[0]
            present[gt_ids] += 1
            continue
        continuing = tracker_ids[np.newaxis, :] == previous_partner[gt_ids][:, np.newaxis]
        score = np.where(similarity < threshold - _EPS, 0.0, _CONTINUITY_BONUS * continuing + similarity)
        rows, cols = linear_sum_assignment(-score)
        real = score[rows, cols] > _EPS
        rows, cols = rows[real], cols[real]
        matched_gt, matched_tracker = gt_ids[rows], tracker_ids[cols]

        earlier = last_partner[matched_gt]
        idsw += int(((earlier >= 0) & (earlier != matched_tracker)).sum())
        present[gt_ids] += 1
        matched[matched_gt] += 1
        was_tracked = previous_partner >= 0
        last_partner[matched_gt] = matched_tracker
        previous_partner[:] = -1
        previous_partner[matched_gt] = matched_tracker
        runs += ~was_tracked & (previous_partner >= 0)

        tp += rows.shape[0]
        fn += gt_ids.shape[0] - rows.shape[0]
        fp += tracker_ids.shape[0] - rows.shape[0]
        motp_sum += float(similarity[rows, cols].sum())

    seen = present > 0
    ratio = matched[seen] / present[seen]
    mostly_tracked = int((ratio > 0.8).sum())
    partly_tracked = int((ratio >= 0.2).sum()) - mostly_tracked
    counts.update(TP=float(tp), FN=float(fn), FP=float(fp), IDSW=float(idsw), MOTP_sum=motp_sum,
                  MT=float(mostly_tracked), PT=float(partly_tracked), ML=float(num_gt_ids - mostly_tracked - partly_tracked),
                  Frag=float((runs[runs > 0] - 1).sum()))
    return counts


def _identity_counts(data: SequenceData, threshold: float) -> dict[str, float]:
    """IDTP / IDFN / IDFP: the gt-id to tracker-id assignment that maximises the overlapping frames."""
    from scipy.optimize import linear_sum_assignment

    num_gt_dets, num_tracker_dets = data.num_gt_dets, data.num_tracker_dets
    if num_gt_dets == 0 or num_tracker_dets == 0:
        return {"IDTP": 0.0, "IDFN": float(num_gt_dets), "IDFP": float(num_tracker_dets)}
    pair_gt, pair_tracker = [], []
    for gt_ids, tracker_ids, similarity in zip(data.gt_ids, data.tracker_ids, data.similarity_scores, strict=True):
        rows, cols = np.nonzero(similarity >= threshold)  # no epsilon here, unlike CLEAR (as in TrackEval)
        pair_gt.append(gt_ids[rows])
        pair_tracker.append(tracker_ids[cols])
    overlaps = np.zeros((data.num_gt_ids, data.num_tracker_ids))
    np.add.at(overlaps, (np.concatenate(pair_gt), np.concatenate(pair_tracker)), 1.0)
    # Maximising the matched frames is TrackEval's minimum of IDFN + IDFP (both are totals minus IDTP).
    rows, cols = linear_sum_assignment(-overlaps)
    idtp = float(overlaps[rows, cols].sum())
    return {"IDTP": idtp, "IDFN": float(num_gt_dets) - idtp, "IDFP": float(num_tracker_dets) - idtp}


def clear_scores(counts: Mapping[str, float]) -> dict[str, float]:
    """Scores from summed counts, TrackEval's formulas (denominators floored at 1)."""
    tp, fn, fp, idsw = counts["TP"], counts["FN"], counts["FP"], counts["IDSW"]
    gt = max(1.0, tp + fn)
    idtp, idfn, idfp = counts["IDTP"], counts["IDFN"], counts["IDFP"]
    motp = counts["MOTP_sum"] / max(1.0, tp)
    return {
        "MOTA": (tp - fp - idsw) / gt,
        "MOTP": motp,
        "MOTP_distance": 1.0 - motp if tp > 0 else float("nan"),
        "MODA": (tp - fp) / gt,
        "sMOTA": (counts["MOTP_sum"] - fp - idsw) / gt,
        "MOTAL": (tp - fp - (np.log10(idsw) if idsw > 0 else 0.0)) / gt,
        "IDF1": idtp / max(1.0, idtp + 0.5 * idfp + 0.5 * idfn),
        "IDP": idtp / max(1.0, idtp + idfp),
        "IDR": idtp / max(1.0, idtp + idfn),
        "IDSW": idsw,
        "Precision": tp / max(1.0, tp + fp),
        "Recall": tp / gt,
        "FP": fp,
        "FN": fn,
        "TP": tp,
        "MT": counts["MT"],
        "PT": counts["PT"],
        "ML": counts["ML"],
        "Frag": counts["Frag"],
    }


def clear_identity_metrics_trackeval(sequences: Sequence[SequenceData], threshold: float = 0.5
                                     ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per-sequence and combined CLEAR + Identity scores, TrackEval's ``combine_sequences`` (counts summed)."""
    per_sequence_counts = {data.name: clear_counts(data, threshold) for data in sequences}
    total = {key: float(sum(counts[key] for counts in per_sequence_counts.values())) for key in CLEAR_COUNTS}
    return {name: clear_scores(counts) for name, counts in per_sequence_counts.items()}, clear_scores(total)
