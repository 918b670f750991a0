"""Per-sequence box tracks and the TrackEval-style per-timestep data every metric reads.

A :class:`~phalp_lightning.track_sequence.TrackSequence` (a hand-off type, in the foundation; imported here
for the evaluation's users) holds the boxes of one video (ground truth or predictions) as flat rows.
:func:`build_sequence_data` pairs one ground-truth and one predicted sequence into a
:class:`SequenceData`: for every scored frame the 0-based contiguous gt / tracker ids present and
their IoU matrix, exactly the ``data`` dict that TrackEval's metrics take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from phalp_lightning.evaluation.benchmarks import DISTRACTOR, SCORED, UNSCORED, Benchmark
from phalp_lightning.evaluation.ignore_regions import box_region_overlap
from phalp_lightning.evaluation.protocol import EvaluationProtocol
from phalp_lightning.track_sequence import TrackSequence
from phalp_lightning.utils.boxes import box_iou

__all__ = ["DISTRACTOR", "SCORED", "UNSCORED", "SequenceData", "TrackSequence", "box_iou_xywh", "build_sequence_data"]


@dataclass
class SequenceData:
    """TrackEval's per-sequence ``data``: ids and similarities per scored timestep.

    Attributes:
        name: sequence name.
        frames: (T,) int64 frame index of each timestep.
        gt_ids: T arrays (n_gt_t,) of 0-based contiguous ground-truth ids.
        tracker_ids: T arrays (n_tr_t,) of 0-based contiguous tracker ids.
        similarity_scores: T arrays (n_gt_t, n_tr_t) of box IoU.
        gt_id_names: (num_gt_ids,) original ground-truth id of each contiguous id.
        tracker_id_names: (num_tracker_ids,) original tracker id of each contiguous id.
        num_ignored_tracker_dets: predictions dropped in ignore regions.
    """

    name: str
    frames: np.ndarray
    gt_ids: list[np.ndarray]
    tracker_ids: list[np.ndarray]
    similarity_scores: list[np.ndarray]
    gt_id_names: np.ndarray
    tracker_id_names: np.ndarray
    num_ignored_tracker_dets: int = 0

    @property
    def num_timesteps(self) -> int:
        return len(self.gt_ids)

    @property
    def num_gt_ids(self) -> int:
        return int(self.gt_id_names.shape[0])

    @property
    def num_tracker_ids(self) -> int:
        return int(self.tracker_id_names.shape[0])

    @property
    def num_gt_dets(self) -> int:
        return int(sum(ids.shape[0] for ids in self.gt_ids))

    @property
    def num_tracker_dets(self) -> int:
        return int(sum(ids.shape[0] for ids in self.tracker_ids))

    def to_trackeval_dict(self) -> dict[str, Any]:
        """The exact dict ``trackeval.metrics.*.eval_sequence`` expects."""
        return {
            "seq": self.name,
            "num_timesteps": self.num_timesteps,
            "num_gt_ids": self.num_gt_ids,
            "num_tracker_ids": self.num_tracker_ids,
            "num_gt_dets": self.num_gt_dets,
            "num_tracker_dets": self.num_tracker_dets,
            "gt_ids": list(self.gt_ids),
            "tracker_ids": list(self.tracker_ids),
            "similarity_scores": list(self.similarity_scores),
        }


def box_iou_xywh(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of x, y, w, h boxes, with motmetrics' conventions (no +1; 0 when disjoint).

    Args:
        boxes_a: (N, 4).
        boxes_b: (M, 4).

    Returns:
        (N, M) float64 IoU (:func:`phalp_lightning.utils.boxes.box_iou`).
    """
    return box_iou(np.reshape(boxes_a, (-1, 4)), np.reshape(boxes_b, (-1, 4)), box_format="xywh")


def _split_by_frame(sequence: TrackSequence, frames: np.ndarray) -> list[np.ndarray]:
    """Row indices of ``sequence`` for each of ``frames`` (sorted unique), in one sort."""
    order = np.argsort(sequence.frames, kind="stable")
    sorted_frames = sequence.frames[order]
    starts = np.searchsorted(sorted_frames, frames, side="left")
    ends = np.searchsorted(sorted_frames, frames, side="right")
    return [order[start:end] for start, end in zip(starts, ends, strict=True)]


def _padded(values: np.ndarray, rows: list[np.ndarray], width: int) -> np.ndarray:
    """(F, width) per-frame values of ``rows`` (padding 0), one frame per line."""
    counts = np.asarray([index.shape[0] for index in rows], dtype=np.int64)
    out = np.zeros((len(rows), width))
    if counts.sum():
        frame = np.repeat(np.arange(len(rows)), counts)
        slot = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        out[frame, slot] = values[np.concatenate(rows)]
    return out


def _frame_ious(gt_boxes: np.ndarray, pred_boxes: np.ndarray, gt_rows: list[np.ndarray],
                pred_rows: list[np.ndarray]) -> list[np.ndarray]:
    """Each frame's (n_gt, n_pred) IoU, computed for all frames at once on frame-padded arrays.

    Padding boxes are all zeros (degenerate, IoU 0) and are cut off again; the real entries are
    :func:`box_iou_xywh`'s values exactly.
    """
    gt_counts = [index.shape[0] for index in gt_rows]
    pred_counts = [index.shape[0] for index in pred_rows]
    if not gt_rows or max(gt_counts) == 0 or max(pred_counts) == 0:
        return [np.zeros((g, p)) for g, p in zip(gt_counts, pred_counts, strict=True)]
    padded_gt = np.stack([_padded(gt_boxes[:, k], gt_rows, max(gt_counts)) for k in range(4)], axis=-1)
    padded_pred = np.stack([_padded(pred_boxes[:, k], pred_rows, max(pred_counts)) for k in range(4)], axis=-1)
    iou = box_iou(padded_gt, padded_pred, box_format="xywh")  # (F, G, P)
    return [iou[frame, :g, :p] for frame, (g, p) in enumerate(zip(gt_counts, pred_counts, strict=True))]


def _ignored_predictions(iou: np.ndarray, pred_boxes: np.ndarray, regions: Sequence[np.ndarray],
                         protocol: EvaluationProtocol) -> np.ndarray:
    """(M,) bool: predictions without a ground-truth match that lie in an ignore region.

    Matching: maximum-IoU assignment, pairs kept when IoU >= the protocol's threshold. Only
    unmatched predictions can be ignored, as in PoseTrack21's evaluation.
    """
    from scipy.optimize import linear_sum_assignment

    matched = np.zeros(pred_boxes.shape[0], dtype=bool)
    if iou.size:
        rows, cols = linear_sum_assignment(-iou)
        keep = iou[rows, cols] >= protocol.iou_threshold - np.finfo(float).eps
        matched[cols[keep]] = True
    ignored = np.zeros_like(matched)
    candidates = np.nonzero(~matched)[0]
    overlap = box_region_overlap(pred_boxes[candidates], regions, mode=protocol.ignore_overlap)  # (C, R)
    if overlap.size:
        ignored[candidates] = (overlap > protocol.ignore_threshold).any(axis=1)
    return ignored


def trackeval_matches(iou: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """TrackEval's preprocessing match: Hungarian on IoU with values below ``threshold`` zeroed.

    Returns:
        (rows, cols) of the pairs that matched with a positive score.
    """
    from scipy.optimize import linear_sum_assignment

    eps = np.finfo("float").eps
    scores = iou.copy()
    scores[scores < threshold - eps] = 0
    rows, cols = linear_sum_assignment(-scores)
    matched = scores[rows, cols] > 0 + eps
    return rows[matched], cols[matched]


def points_in_polygons(points: np.ndarray, polygons: Sequence[np.ndarray]) -> np.ndarray:
    """(N,) bool: each (x, y) point lies inside at least one polygon (even-odd rule, vectorised)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    inside_any = np.zeros(points.shape[0], dtype=bool)
    x, y = points[:, 0:1], points[:, 1:2]
    for polygon in polygons:
        polygon = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if polygon.shape[0] < 3:
            continue
        x1, y1 = polygon[:, 0][None, :], polygon[:, 1][None, :]
        x2, y2 = np.roll(polygon[:, 0], -1)[None, :], np.roll(polygon[:, 1], -1)[None, :]
        straddles = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing_x = x1 + (y - y1) * (x2 - x1) / np.where(y2 != y1, y2 - y1, 1.0)
        inside_any |= (np.count_nonzero(straddles & (x < crossing_x), axis=1) % 2) == 1
    return inside_any


# PoseTrack18's evaluation (poseval) scores 15 joints: the ears of the 17-keypoint layout are not among them.
_POSEVAL_JOINTS = np.asarray([0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])


def posetrack18_points(keypoints: np.ndarray | None, boxes: np.ndarray, box_fallback: bool = True) -> list[np.ndarray]:
    """The points poseval keeps for each person: its 15 joints except unannotated ones (0, 0, v=0).

    With ``box_fallback``, a row without any such joint (a box-only tracker) is represented by its
    box centre; without it, that row has no point.
    """
    centres = [box[:2][None, :] + box[2:][None, :] / 2 for box in boxes]
    if keypoints is None or keypoints.ndim != 3 or keypoints.shape[1] < 17:
        return centres if box_fallback else [np.zeros((0, 2)) for _ in boxes]
    points = [joint[mask, :2] for joint, mask in zip(keypoints[:, _POSEVAL_JOINTS], posetrack18_annotated(keypoints), strict=True)]
    if box_fallback:
        points = [point if point.shape[0] else centre for point, centre in zip(points, centres, strict=True)]
    return points


def posetrack18_annotated(keypoints: np.ndarray) -> np.ndarray:
    """(N, 15) bool: poseval's annotated joints (its 15 scored joints, not ``x = y = v = 0``)."""
    joints = keypoints[:, _POSEVAL_JOINTS]
    return ~((joints[..., 0] == 0) & (joints[..., 1] == 0) & (joints[..., 2] == 0))


def _outside_regions(points: list[np.ndarray], regions: Sequence[np.ndarray]) -> np.ndarray:
    """(N,) bool: the person keeps at least one point outside every ignore region."""
    keep = np.zeros(len(points), dtype=bool)
    counts = np.asarray([p.shape[0] for p in points], dtype=np.int64)
    if counts.sum() == 0:
        return keep
    inside = points_in_polygons(np.concatenate(points), regions) if len(regions) else np.zeros(int(counts.sum()), bool)
    owner = np.repeat(np.arange(len(points)), counts)
    np.logical_or.at(keep, owner, ~inside)
    return keep


def build_sequence_data(ground_truth: TrackSequence, prediction: TrackSequence,
                        protocol: EvaluationProtocol | None = None, benchmark: Benchmark | None = None) -> SequenceData:
    """Pair ground truth and predictions of one sequence into per-timestep ids and IoUs.

    Scored frames are ``ground_truth.evaluated_frames`` when given (predictions on other frames are
    dropped), else every frame holding a row of either. Before any metric, the benchmark's
    preprocessing runs frame by frame (see ``evaluation.benchmarks``): predictions matched to
    distractors are removed and unscored ground-truth rows dropped (MOT16/17/20), and predictions
    (and, for PoseTrack18, ground truth) in ignore regions are removed. Without a benchmark, or
    with ``plain``: unmatched predictions in the frame's ignore regions are removed when
    ``protocol.use_ignore_regions``.

    Args:
        ground_truth: ground-truth boxes of the sequence.
        prediction: tracker boxes of the same sequence.
        protocol: matching and ignore-region settings (default: the standard protocol).
        benchmark: preprocessing preset (default: plain).

    Returns:
        The sequence's :class:`SequenceData`.
    """
    protocol = protocol or EvaluationProtocol()
    ignore_rule = benchmark.ignore_rule if benchmark is not None else "protocol"
    if ground_truth.evaluated_frames is not None:
        frames = ground_truth.evaluated_frames
    else:
        frames = np.union1d(ground_truth.frames, prediction.frames)
    gt_rows = _split_by_frame(ground_truth, frames)
    pred_rows = _split_by_frame(prediction, frames)
    similarities = _frame_ious(ground_truth.boxes, prediction.boxes, gt_rows, pred_rows)
    kinds = ground_truth.kinds
    use_regions = bool(ground_truth.ignore_regions) and (ignore_rule != "protocol" or protocol.use_ignore_regions)

    ignored = 0
    for position, frame in enumerate(frames.tolist()):
        gt_index, pred_index, iou = gt_rows[position], pred_rows[position], similarities[position]
        regions = ground_truth.ignore_regions.get(frame, ()) if use_regions else ()
        frame_kinds = kinds[gt_index] if kinds is not None else None
        unscored = frame_kinds is not None and bool((frame_kinds != SCORED).any())
        if not (len(regions) or unscored):
            continue
        drop = np.zeros(pred_index.shape[0], dtype=bool)
        # Rows marked DISTRACTOR (by a MOT16/17/20 preset's loader) remove the predictions matched to them.
        if gt_index.size and pred_index.size and frame_kinds is not None and bool((frame_kinds == DISTRACTOR).any()):
            rows, cols = trackeval_matches(iou)
            drop[cols[frame_kinds[rows] == DISTRACTOR]] = True
        if len(regions) and pred_index.size:
            if ignore_rule == "protocol":
                drop |= _ignored_predictions(iou, prediction.boxes[pred_index], regions, protocol)
            elif ignore_rule == "posetrack21" and gt_index.size:
                # PoseTrack21's box evaluation: unmatched predictions (TrackEval's match) whose IoU with
                # a region exceeds the threshold; only in frames that hold ground truth.
                _, cols = trackeval_matches(iou)
                unmatched = np.setdiff1d(np.arange(pred_index.shape[0]), cols)
                overlap = box_region_overlap(prediction.boxes[pred_index[unmatched]], regions, mode=protocol.ignore_overlap)
                if overlap.size:
                    drop[unmatched[(overlap > protocol.ignore_threshold).any(axis=1)]] = True
            elif ignore_rule == "posetrack18":
                points = posetrack18_points(None if prediction.keypoints is None else prediction.keypoints[pred_index],
                                            prediction.boxes[pred_index])
                drop |= ~_outside_regions(points, regions)
        keep_gt = np.ones(gt_index.shape[0], dtype=bool) if frame_kinds is None else frame_kinds == SCORED
        if len(regions) and ignore_rule == "posetrack18" and gt_index.size:
            keep_gt &= _outside_regions(posetrack18_points(
                None if ground_truth.keypoints is None else ground_truth.keypoints[gt_index],
                ground_truth.boxes[gt_index], box_fallback=ground_truth.keypoints is None), regions)
        ignored += int(drop.sum())
        gt_rows[position], pred_rows[position] = gt_index[keep_gt], pred_index[~drop]
        similarities[position] = iou[keep_gt][:, ~drop]

    gt_all = np.concatenate(gt_rows) if gt_rows else np.zeros(0, dtype=np.int64)
    pred_all = np.concatenate(pred_rows) if pred_rows else np.zeros(0, dtype=np.int64)
    gt_names, gt_contiguous = np.unique(ground_truth.track_ids[gt_all], return_inverse=True)
    pred_names, pred_contiguous = np.unique(prediction.track_ids[pred_all], return_inverse=True)
    gt_splits = np.cumsum([rows.shape[0] for rows in gt_rows])[:-1]
    pred_splits = np.cumsum([rows.shape[0] for rows in pred_rows])[:-1]
    return SequenceData(
        name=ground_truth.name,
        frames=np.asarray(frames, dtype=np.int64),
        gt_ids=[ids.astype(np.int64) for ids in np.split(gt_contiguous.reshape(-1), gt_splits)] if len(frames) else [],
        tracker_ids=[ids.astype(np.int64) for ids in np.split(pred_contiguous.reshape(-1), pred_splits)] if len(frames) else [],
        similarity_scores=similarities,
        gt_id_names=gt_names,
        tracker_id_names=pred_names,
        num_ignored_tracker_dets=ignored,
    )
