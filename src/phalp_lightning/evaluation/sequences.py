"""Per-sequence box tracks and the TrackEval-style per-timestep data every metric reads.

A :class:`TrackSequence` holds the boxes of one video (ground truth or predictions) as flat rows.
:func:`build_sequence_data` pairs one ground-truth and one predicted sequence into a
:class:`SequenceData`: for every scored frame the 0-based contiguous gt / tracker ids present and
their IoU matrix, exactly the ``data`` dict that TrackEval's metrics take.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from phalp_lightning.evaluation.ignore_regions import box_region_overlap
from phalp_lightning.evaluation.protocol import EvaluationProtocol

if TYPE_CHECKING:
    from phalp_lightning.structures import FrameTracks


@dataclass(frozen=True)
class TrackSequence:
    """The boxes of one video, one row per (frame, track): ground truth or tracker output.

    Attributes:
        name: sequence (video) name; ground truth and predictions are paired by it.
        frames: (N,) int64 frame index of each row.
        track_ids: (N,) int64 track id of each row (any integers; unique within a frame).
        boxes: (N, 4) float64 boxes as x, y, w, h in pixels (MOTChallenge convention).
        evaluated_frames: (F,) int64 frames that are scored, ground truth only (PoseTrack scores
            only annotated frames). None: every frame holding a ground-truth or predicted row.
        ignore_regions: frame index -> list of (P, 2) polygons (x, y pixels); ground truth only.
    """

    name: str
    frames: np.ndarray
    track_ids: np.ndarray
    boxes: np.ndarray
    evaluated_frames: np.ndarray | None = None
    ignore_regions: Mapping[int, Sequence[np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4) if np.size(self.boxes) else np.zeros((0, 4))
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "track_ids", track_ids)
        object.__setattr__(self, "boxes", boxes)
        if self.evaluated_frames is not None:
            object.__setattr__(self, "evaluated_frames", np.unique(np.asarray(self.evaluated_frames, dtype=np.int64)))
        self.validate()

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def validate(self) -> None:
        """Raise ValueError naming the sequence when the rows are inconsistent."""
        count = self.frames.shape[0]
        if self.track_ids.shape[0] != count or self.boxes.shape[0] != count:
            raise ValueError(
                f"sequence {self.name!r}: frames ({count}), track_ids ({self.track_ids.shape[0]}) and "
                f"boxes ({self.boxes.shape[0]}) must have one row each"
            )
        if not np.isfinite(self.boxes).all():
            raise ValueError(f"sequence {self.name!r}: boxes contain NaN or infinite values")
        if (self.boxes[:, 2:] < 0).any():
            row = int(np.nonzero((self.boxes[:, 2:] < 0).any(axis=1))[0][0])
            raise ValueError(f"sequence {self.name!r}: negative box width/height at row {row} (frame {self.frames[row]})")
        if count:
            pairs = np.stack([self.frames, self.track_ids], axis=1)
            unique_pairs, counts = np.unique(pairs, axis=0, return_counts=True)
            if (counts > 1).any():
                frame, track = unique_pairs[np.argmax(counts > 1)]
                raise ValueError(f"sequence {self.name!r}: track id {track} appears twice in frame {frame}")

    @classmethod
    def from_rows(cls, name: str, rows: np.ndarray, **kwargs: Any) -> TrackSequence:
        """Build from MOT-style rows ``frame, id, x, y, w, h[, ...]`` (extra columns ignored).

        Args:
            name: sequence name.
            rows: (N, >=6) array.
            **kwargs: ``evaluated_frames`` / ``ignore_regions``.
        """
        rows = np.asarray(rows, dtype=np.float64)
        if rows.size == 0:
            rows = np.zeros((0, 6))
        if rows.ndim != 2 or rows.shape[1] < 6:
            raise ValueError(f"sequence {name!r}: rows must be (N, >=6) frame,id,x,y,w,h; got shape {rows.shape}")
        return cls(name, rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2:6], **kwargs)

    @classmethod
    def from_frame_tracks(cls, frame_tracks: Sequence[FrameTracks], name: str | None = None,
                          detected_only: bool = True) -> TrackSequence:
        """Build from the tracker's per-frame output (boxes xyxy -> xywh).

        Args:
            frame_tracks: the complete frames of one video, any order.
            name: sequence name; defaults to ``frame_tracks[0].video``.
            detected_only: keep only entries seen in their frame (PHALP scores ``tracked_ids``,
                not the ghosts of tracks that were not detected).
        """
        if name is None:
            if not frame_tracks:
                raise ValueError("from_frame_tracks: no frames and no name given")
            name = frame_tracks[0].video
        frames, ids, boxes = [], [], []
        for frame in frame_tracks:
            keep = frame.detected if detected_only else np.ones(len(frame), dtype=bool)
            keep = np.asarray(keep.cpu() if hasattr(keep, "cpu") else keep, dtype=bool)
            xyxy = frame.detections.boxes.detach().cpu().double().numpy()[keep]
            frames.append(np.full(int(keep.sum()), frame.frame_index, dtype=np.int64))
            ids.append(frame.track_ids.detach().cpu().numpy()[keep].astype(np.int64))
            boxes.append(np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1))
        if not frames:
            return cls(name, np.zeros(0), np.zeros(0), np.zeros((0, 4)))
        return cls(name, np.concatenate(frames), np.concatenate(ids), np.concatenate(boxes))


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
        (N, M) float64 IoU.
    """
    boxes_a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    boxes_b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    min_a, max_a = boxes_a[:, None, :2], boxes_a[:, None, :2] + boxes_a[:, None, 2:]
    min_b, max_b = boxes_b[None, :, :2], boxes_b[None, :, :2] + boxes_b[None, :, 2:]
    intersection = np.prod(np.maximum(np.minimum(max_a, max_b) - np.maximum(min_a, min_b), 0.0), axis=-1)
    area_a = np.prod(np.maximum(boxes_a[:, 2:], 0.0), axis=-1)[:, None]
    area_b = np.prod(np.maximum(boxes_b[:, 2:], 0.0), axis=-1)[None, :]
    union = area_a + area_b - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)
    return np.where(intersection == 0, 0.0, iou)


def _split_by_frame(sequence: TrackSequence, frames: np.ndarray) -> list[np.ndarray]:
    """Row indices of ``sequence`` for each of ``frames`` (sorted unique), in one sort."""
    order = np.argsort(sequence.frames, kind="stable")
    sorted_frames = sequence.frames[order]
    starts = np.searchsorted(sorted_frames, frames, side="left")
    ends = np.searchsorted(sorted_frames, frames, side="right")
    return [order[start:end] for start, end in zip(starts, ends, strict=True)]


def _ignored_predictions(iou: np.ndarray, pred_boxes: np.ndarray, regions: Sequence[np.ndarray],
                         protocol: EvaluationProtocol) -> np.ndarray:
    """(M,) bool: predictions without a ground-truth match that lie in an ignore region.

    Matching is TrackEval's preprocessing: maximum-IoU assignment, pairs kept when IoU >= the
    protocol's threshold. Only unmatched predictions can be ignored, as in PoseTrack21's evaluation.
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


def build_sequence_data(ground_truth: TrackSequence, prediction: TrackSequence,
                        protocol: EvaluationProtocol | None = None) -> SequenceData:
    """Pair ground truth and predictions of one sequence into per-timestep ids and IoUs.

    Scored frames are ``ground_truth.evaluated_frames`` when given (predictions on other frames are
    dropped), else every frame holding a row of either. With ``protocol.use_ignore_regions``,
    unmatched predictions in the frame's ignore regions are removed before any metric.

    Args:
        ground_truth: ground-truth boxes of the sequence.
        prediction: tracker boxes of the same sequence.
        protocol: matching and ignore-region settings (default: the standard protocol).

    Returns:
        The sequence's :class:`SequenceData`.
    """
    protocol = protocol or EvaluationProtocol()
    if ground_truth.evaluated_frames is not None:
        frames = ground_truth.evaluated_frames
    else:
        frames = np.union1d(ground_truth.frames, prediction.frames)
    gt_rows = _split_by_frame(ground_truth, frames)
    pred_rows = _split_by_frame(prediction, frames)

    kept_pred_rows, similarities, ignored = [], [], 0
    for frame, gt_index, pred_index in zip(frames.tolist(), gt_rows, pred_rows, strict=True):
        iou = box_iou_xywh(ground_truth.boxes[gt_index], prediction.boxes[pred_index])
        regions = ground_truth.ignore_regions.get(frame, ()) if protocol.use_ignore_regions else ()
        if len(regions) and pred_index.size:
            drop = _ignored_predictions(iou, prediction.boxes[pred_index], regions, protocol)
            ignored += int(drop.sum())
            pred_index, iou = pred_index[~drop], iou[:, ~drop]
        kept_pred_rows.append(pred_index)
        similarities.append(iou)

    gt_all = np.concatenate(gt_rows) if gt_rows else np.zeros(0, dtype=np.int64)
    pred_all = np.concatenate(kept_pred_rows) if kept_pred_rows else np.zeros(0, dtype=np.int64)
    gt_names, gt_contiguous = np.unique(ground_truth.track_ids[gt_all], return_inverse=True)
    pred_names, pred_contiguous = np.unique(prediction.track_ids[pred_all], return_inverse=True)
    gt_splits = np.cumsum([rows.shape[0] for rows in gt_rows])[:-1]
    pred_splits = np.cumsum([rows.shape[0] for rows in kept_pred_rows])[:-1]
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
