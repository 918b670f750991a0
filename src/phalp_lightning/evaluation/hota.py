"""HOTA (Luiten et al., IJCV 2021), vectorised over alphas, detections and id pairs.

Numerically the same as TrackEval's ``trackeval.metrics.HOTA`` (tests compare both to 1e-6):

1. a global alignment score per (gt id, tracker id): per-frame similarities normalised as a
   Jaccard index, summed over the sequence;
2. per frame, a Hungarian match on alignment x similarity (the only per-frame loop: one
   ``linear_sum_assignment`` call);
3. for every alpha in 0.05, 0.10, ..., 0.95 at once, matches with similarity >= alpha are TPs;
   association scores come from one ``bincount`` over (alpha, matched id pair), so memory grows
   with the matches, not with gt ids x tracker ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from phalp_lightning.evaluation.sequences import SequenceData

ALPHAS = np.arange(0.05, 0.99, 0.05)  # (19,), TrackEval's thresholds
_EPS = np.finfo("float").eps


@dataclass
class HotaResult:
    """HOTA counts and scores, one entry per alpha (A = 19).

    Attributes:
        tp, fn, fp: (A,) detection true positives, misses, false positives.
        ass_a, ass_re, ass_pr: (A,) association accuracy, recall, precision (TP-weighted means).
        loc_a: (A,) mean similarity of the true positives.
    """

    tp: np.ndarray
    fn: np.ndarray
    fp: np.ndarray
    ass_a: np.ndarray
    ass_re: np.ndarray
    ass_pr: np.ndarray
    loc_a: np.ndarray

    @property
    def det_re(self) -> np.ndarray:
        return self.tp / np.maximum(1, self.tp + self.fn)

    @property
    def det_pr(self) -> np.ndarray:
        return self.tp / np.maximum(1, self.tp + self.fp)

    @property
    def det_a(self) -> np.ndarray:
        return self.tp / np.maximum(1, self.tp + self.fn + self.fp)

    @property
    def hota(self) -> np.ndarray:
        return np.sqrt(self.det_a * self.ass_a)

    @property
    def owta(self) -> np.ndarray:
        return np.sqrt(self.det_re * self.ass_a)

    def summary(self) -> dict[str, float]:
        """Scores averaged over alphas (TrackEval's reported numbers), plus HOTA(0) at alpha 0.05."""
        return {
            "HOTA": float(self.hota.mean()),
            "DetA": float(self.det_a.mean()),
            "AssA": float(self.ass_a.mean()),
            "DetRe": float(self.det_re.mean()),
            "DetPr": float(self.det_pr.mean()),
            "AssRe": float(self.ass_re.mean()),
            "AssPr": float(self.ass_pr.mean()),
            "LocA": float(self.loc_a.mean()),
            "OWTA": float(self.owta.mean()),
            "HOTA(0)": float(self.hota[0]),
        }


def _empty_result(num_gt_dets: int, num_tracker_dets: int) -> HotaResult:
    zeros = np.zeros(len(ALPHAS))
    return HotaResult(tp=zeros.copy(), fn=np.full(len(ALPHAS), float(num_gt_dets)),
                      fp=np.full(len(ALPHAS), float(num_tracker_dets)), ass_a=zeros.copy(),
                      ass_re=zeros.copy(), ass_pr=zeros.copy(), loc_a=np.ones(len(ALPHAS)))


def hota_sequence(data: SequenceData) -> HotaResult:
    """HOTA of one sequence.

    Args:
        data: per-timestep ids and IoU similarities (see :func:`build_sequence_data`).

    Returns:
        Per-alpha counts and scores.
    """
    num_gt_dets, num_tracker_dets = data.num_gt_dets, data.num_tracker_dets
    if num_tracker_dets == 0 or num_gt_dets == 0:
        return _empty_result(num_gt_dets if num_tracker_dets == 0 else 0, num_tracker_dets if num_gt_dets == 0 else 0)
    num_gt_ids, num_tracker_ids = data.num_gt_ids, data.num_tracker_ids
    gt_id_count = np.bincount(np.concatenate(data.gt_ids), minlength=num_gt_ids).astype(float)
    tracker_id_count = np.bincount(np.concatenate(data.tracker_ids), minlength=num_tracker_ids).astype(float)

    # 1. Global alignment: per-frame Jaccard-normalised similarity of every present (gt, tracker) pair.
    pair_gt, pair_tracker, pair_score = [], [], []
    for gt_ids, tracker_ids, similarity in zip(data.gt_ids, data.tracker_ids, data.similarity_scores, strict=True):
        if similarity.size == 0:
            continue
        denominator = similarity.sum(0)[None, :] + similarity.sum(1)[:, None] - similarity
        mask = denominator > 0 + _EPS
        normalised = np.zeros_like(similarity)
        normalised[mask] = similarity[mask] / denominator[mask]
        pair_gt.append(np.repeat(gt_ids, tracker_ids.shape[0]))
        pair_tracker.append(np.tile(tracker_ids, gt_ids.shape[0]))
        pair_score.append(normalised.reshape(-1))
    flat_pairs = np.concatenate(pair_gt) * num_tracker_ids + np.concatenate(pair_tracker)
    potential_matches = np.bincount(flat_pairs, weights=np.concatenate(pair_score),
                                    minlength=num_gt_ids * num_tracker_ids).reshape(num_gt_ids, num_tracker_ids)
    global_alignment = potential_matches / (gt_id_count[:, None] + tracker_id_count[None, :] - potential_matches)

    # 2. Per-frame matching maximising alignment x similarity.
    match_gt, match_tracker, match_similarity = [], [], []
    for gt_ids, tracker_ids, similarity in zip(data.gt_ids, data.tracker_ids, data.similarity_scores, strict=True):
        if gt_ids.size == 0 or tracker_ids.size == 0:
            continue
        score = global_alignment[gt_ids[:, None], tracker_ids[None, :]] * similarity
        rows, cols = linear_sum_assignment(-score)
        match_gt.append(gt_ids[rows])
        match_tracker.append(tracker_ids[cols])
        match_similarity.append(similarity[rows, cols])
    matched_gt = np.concatenate(match_gt) if match_gt else np.zeros(0, dtype=np.int64)
    matched_tracker = np.concatenate(match_tracker) if match_tracker else np.zeros(0, dtype=np.int64)
    matched_similarity = np.concatenate(match_similarity) if match_similarity else np.zeros(0)

    # 3. All alphas at once: (A, M) mask of matches that count at each threshold.
    counted = matched_similarity[None, :] >= ALPHAS[:, None] - _EPS
    tp = counted.sum(axis=1).astype(float)
    loc_sum = (counted * matched_similarity[None, :]).sum(axis=1)
    # Association counts only for the (gt, tracker) pairs that ever matched: (A, K), K <= matches.
    num_alphas = len(ALPHAS)
    pairs, pair_of_match = np.unique(matched_gt * num_tracker_ids + matched_tracker, return_inverse=True)
    flat = (np.arange(num_alphas)[:, None] * pairs.shape[0] + pair_of_match.reshape(-1)[None, :])[counted]
    matches_count = np.bincount(flat, minlength=num_alphas * pairs.shape[0]).reshape(num_alphas, -1).astype(float)
    gt_count = gt_id_count[pairs // num_tracker_ids][None, :]
    tracker_count = tracker_id_count[pairs % num_tracker_ids][None, :]
    weight = np.maximum(1, tp)
    ass_a = (matches_count * matches_count / np.maximum(1, gt_count + tracker_count - matches_count)).sum(1) / weight
    ass_re = (matches_count * matches_count / np.maximum(1, gt_count)).sum(1) / weight
    ass_pr = (matches_count * matches_count / np.maximum(1, tracker_count)).sum(1) / weight
    return HotaResult(
        tp=tp, fn=num_gt_dets - tp, fp=num_tracker_dets - tp, ass_a=ass_a, ass_re=ass_re, ass_pr=ass_pr,
        loc_a=np.maximum(1e-10, loc_sum) / np.maximum(1e-10, tp),
    )


def combine_hota(results: Sequence[HotaResult]) -> HotaResult:
    """TrackEval's combined HOTA over sequences: counts summed, association scores TP-weighted."""
    if not results:
        return _empty_result(0, 0)
    tp = np.sum([result.tp for result in results], axis=0)
    weight = np.maximum(1.0, tp)

    def weighted(field: str) -> np.ndarray:
        return np.sum([getattr(result, field) * result.tp for result in results], axis=0) / weight

    return HotaResult(
        tp=tp,
        fn=np.sum([result.fn for result in results], axis=0),
        fp=np.sum([result.fp for result in results], axis=0),
        ass_a=weighted("ass_a"),
        ass_re=weighted("ass_re"),
        ass_pr=weighted("ass_pr"),
        loc_a=np.maximum(1e-10, np.sum([result.loc_a * result.tp for result in results], axis=0)) / np.maximum(1e-10, tp),
    )
