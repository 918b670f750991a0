"""The evaluator's hand-off type: the boxes of one video as flat rows (ground truth or tracker output).

Built by the format readers, the synthetic box scenes and :meth:`TrackSequence.from_frame_tracks`;
scored by :mod:`phalp_lightning.evaluation`. Numpy only (``evaluate.py`` runs without torch), so it
lives beside :mod:`phalp_lightning.structures`, not in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

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
        kinds: (N,) int8 role of each ground-truth row under a benchmark's preprocessing (None: all
            scored): ``SCORED`` (0), ``UNSCORED`` (1: matched before scoring, then dropped, e.g. a
            zero-marked pedestrian or a car) or ``DISTRACTOR`` (2: a prediction matched to it is removed
            too, e.g. a static person or a reflection in MOT17).
        keypoints: (N, K, 3) x, y, visibility per row when the file has them (PoseTrack), for the
            keypoint rules of PoseTrack18's evaluation; None otherwise.
    """

    name: str
    frames: np.ndarray
    track_ids: np.ndarray
    boxes: np.ndarray
    evaluated_frames: np.ndarray | None = None
    ignore_regions: Mapping[int, Sequence[np.ndarray]] = field(default_factory=dict)
    kinds: np.ndarray | None = None
    keypoints: np.ndarray | None = None

    def __post_init__(self) -> None:
        frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(-1)
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4) if np.size(self.boxes) else np.zeros((0, 4))
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "track_ids", track_ids)
        object.__setattr__(self, "boxes", boxes)
        if self.evaluated_frames is not None:
            object.__setattr__(self, "evaluated_frames", np.unique(np.asarray(self.evaluated_frames, dtype=np.int64)))
        if self.kinds is not None:
            object.__setattr__(self, "kinds", np.asarray(self.kinds, dtype=np.int8).reshape(-1))
        if self.keypoints is not None:
            object.__setattr__(self, "keypoints", np.asarray(self.keypoints, dtype=np.float64))
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
        for name, extra in (("kinds", self.kinds), ("keypoints", self.keypoints)):
            if extra is not None and extra.shape[0] != count:
                raise ValueError(f"sequence {self.name!r}: {name} has {extra.shape[0]} rows, boxes {count}")
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
