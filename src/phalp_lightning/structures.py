"""Typed records passed between the stages of the tracking data flow.

detector -> :class:`Detections` -> crops + HMAR -> :class:`FrameDetections` (the tracker's input,
one :class:`BatchDetections` per predict batch) -> tracker -> :class:`FrameTracks` (what writers, the
renderer and the evaluator consume) -> :class:`~phalp_lightning.track_sequence.TrackSequence` (one
video's boxes, one row per frame and track: what the evaluator scores; numpy only, in its own module
so that evaluating files never imports torch).

As detectron2's ``Instances``, the records carry their row operations (``select``, ``cat``,
``empty``), so the stages never rebuild them field by field.

Tensors are CPU or device tensors with the documented shapes; N is the number of detections in the
frame, M the number of track entries. Vector layouts are defined once in
:mod:`phalp_lightning.utils.vectors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from phalp_lightning.utils.vectors import APPEARANCE_DIM, LOCATION_DIM, POSE_DIM


def _index_rows(value: Any, index: Tensor) -> Any:
    if isinstance(value, Tensor) and value.ndim > 0:
        return value[index.to(value.device)]
    return value


@dataclass
class Detections:
    """Detector output for one frame."""

    boxes: Tensor  # (N, 4) xyxy, frame pixels, float32
    scores: Tensor  # (N,) confidence in [0, 1]
    masks: Tensor | None = None  # (N, H, W) bool instance masks, or None (box-shaped masks are used)
    track_ids: Tensor | None = None  # (N,) int64 ground-truth ids when the boxes are given, else None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, index: Tensor) -> Detections:
        """Rows ``index`` (bool mask or int indices) of every per-detection field."""
        return Detections(**{f.name: _index_rows(getattr(self, f.name), index) for f in fields(self)})

    @staticmethod
    def empty() -> Detections:
        return Detections(boxes=torch.zeros(0, 4), scores=torch.zeros(0))


@dataclass
class FrameDetections:
    """Everything known about the people detected in one frame: the tracker's input.

    Only ``boxes``, ``scores``, ``appearance``, ``pose`` and ``location`` are required by the
    tracker; ``uv`` enables the texture distance. The remaining fields are carried for writers.
    Without HMAR (predict's box-only path) the 3D fields are NaN (:func:`absent_3d`) and ``uv`` is None.
    """

    video: str
    frame_index: int  # position of the frame in the processed sequence (PHALP's t)
    frame_name: str
    image_size: tuple[int, int]  # (H, W)
    boxes: Tensor  # (N, 4) xyxy frame pixels
    scores: Tensor  # (N,)
    appearance: Tensor  # (N, D) appearance code, not divided by 1000; D = 4096 for the official 256-px HMAR
    pose: Tensor  # (N, 229) see utils.vectors
    location: Tensor  # (N, 99) see utils.vectors
    uv: Tensor | None = None  # (N, 4, 256, 256) processed UV maps (RGB/5, mask +-1)
    masks: Tensor | None = None  # (N, H, W) bool
    camera_bbox: Tensor | None = None  # (N, 3) crop camera (s, tx, ty)
    joints_3d: Tensor | None = None  # (N, 45, 3) body-frame joints
    center: Tensor | None = None  # (N, 2) padded-box centre, frame pixels
    scale: Tensor | None = None  # (N,) max(padded w, h) / max(H, W)
    gt_track_ids: Tensor | None = None  # (N,) ids of given boxes (PHALP's use_gt), else None
    shot: bool = False  # a shot boundary comes right before this frame
    extra: dict[str, Any] = field(default_factory=dict)  # per-frame metadata for writers
    detection_index: Tensor | None = None  # (N,) int64 position in the detector's output (PHALP's extra_data)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def validate(self) -> FrameDetections:
        """Check shapes; raise ValueError naming the field and frame when one is wrong."""
        n = len(self)
        # The appearance width follows HMAR's crop size (16 * (S/16)^2), so any positive width is accepted.
        width = self.appearance.shape[-1] if self.appearance.ndim == 2 and self.appearance.shape[-1] > 0 else APPEARANCE_DIM
        expected = {"boxes": (n, 4), "scores": (n,), "appearance": (n, width), "pose": (n, POSE_DIM), "location": (n, LOCATION_DIM)}
        for name, shape in expected.items():
            actual = tuple(getattr(self, name).shape)
            if actual != shape:
                raise ValueError(f"{self.video} frame {self.frame_name}: {name} has shape {actual}, expected {shape}")
        for name in ("uv", "masks", "camera_bbox", "joints_3d", "center", "scale", "gt_track_ids", "detection_index"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise ValueError(f"{self.video} frame {self.frame_name}: {name} has {value.shape[0]} rows, expected {n}")
        return self

    def select(self, index: Tensor) -> FrameDetections:
        """Rows ``index`` (bool mask or int indices) of every per-detection field."""
        moved: dict[torch.device, Tensor] = {}  # the index on each field's device, moved once
        per_row = {}
        for name in ROW_FIELDS:
            value = getattr(self, name)
            if isinstance(value, Tensor) and value.ndim > 0:
                device = value.device
                if device not in moved:
                    moved[device] = index.to(device)
                rows = moved[device]
                # index_select copies whole rows, several times faster than tensor indexing.
                by_position = rows.ndim == 1 and rows.dtype in (torch.int64, torch.int32)
                value = torch.index_select(value, 0, rows) if by_position else value[rows]
            per_row[name] = value
        return replace(self, **per_row)

    def empty(self) -> FrameDetections:
        """This frame with no detection: every per-row tensor with 0 rows (a None field stays None)."""
        return self.select(torch.zeros(0, dtype=torch.int64))

    @staticmethod
    def cat(blocks: Sequence[FrameDetections], frame: FrameDetections | None = None) -> FrameDetections:
        """The rows of ``blocks``, one block after the other, with ``frame``'s frame-level fields.

        Args:
            blocks: detections of one or several frames (their frame-level fields are ignored).
            frame: whose video, frame index, name, size, shot flag and extra the result has; default
                the first block. Required when ``blocks`` is empty (the result is ``frame.empty()``).

        A per-row field that is None in any block is None in the result. A single block's tensors are
        taken as they are (no copy); several are concatenated on the first block's device.
        """
        if not blocks:
            if frame is None:
                raise ValueError("FrameDetections.cat: no blocks and no frame to take the frame-level fields from")
            return frame.empty()
        values: dict[str, Tensor | None] = {}
        for name in ROW_FIELDS:
            column = [getattr(block, name) for block in blocks]
            if any(value is None for value in column):
                values[name] = None
            elif len(column) == 1:
                values[name] = column[0]
            else:
                values[name] = torch.cat([value.to(column[0].device) for value in column])
        return replace(blocks[0] if frame is None else frame, **values)

    def to(self, device: torch.device | str) -> FrameDetections:
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self) if isinstance(getattr(self, f.name), Tensor)}
        return replace(self, **moved)


# Fields HMAR computes. Without HMAR (predict's box-only path) they keep their shapes and are filled
# with NaN, the mark of "not computed" that writers store and readers recognise.
FIELDS_3D = ("appearance", "pose", "location", "camera_bbox", "joints_3d")


def absent_3d(count: int, appearance_dim: int = APPEARANCE_DIM) -> dict[str, Tensor]:
    """The 3D fields of ``count`` detections, not computed: NaN at their usual shapes (float32)."""
    shapes = {"appearance": (appearance_dim,), "pose": (POSE_DIM,), "location": (LOCATION_DIM,), "camera_bbox": (3,), "joints_3d": (45, 3)}
    return {name: torch.full((count, *shapes[name]), float("nan")) for name in FIELDS_3D}


def has_3d(values: Tensor | np.ndarray) -> bool:
    """False when ``values`` (e.g. pose vectors) are the NaN of :func:`absent_3d` (any row all NaN)."""
    array = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    if array.size == 0:
        return True
    return not bool(np.isnan(array.reshape(array.shape[0], -1)).all(axis=1).any())


_FRAME_FIELDS = {"video", "frame_index", "frame_name", "image_size", "shot", "extra"}
# The per-detection fields of FrameDetections (one row per detection), in declaration order.
ROW_FIELDS = tuple(f.name for f in fields(FrameDetections) if f.name not in _FRAME_FIELDS)


@dataclass
class FrameTracks:
    """The confirmed tracks of one frame, complete (back-fills applied): the writers' input.

    Entry k is track ``track_ids[k]``. ``detections`` holds, row for row, the detection data of the
    entry: this frame's detection when ``time_since_update[k] == 0``, else (a ghost) the stale
    data of the track's last matched detection, as PHALP records it.
    """

    video: str
    frame_index: int
    frame_name: str
    image_size: tuple[int, int]  # (H, W)
    track_ids: Tensor  # (M,) int64
    time_since_update: Tensor  # (M,) int64; 0 = detected in this frame (or back-filled)
    detections: FrameDetections  # M rows
    predicted_pose: Tensor | None = None  # (M, 229) the tracker's prediction for the next frame
    predicted_location: Tensor | None = None  # (M, 99)
    shot: bool = False

    def __len__(self) -> int:
        return int(self.track_ids.shape[0])

    @property
    def detected(self) -> Tensor:
        """(M,) bool: entries seen in this frame (PHALP's ``tracked_ids``)."""
        return self.time_since_update == 0

    @staticmethod
    def empty(frame: FrameDetections) -> FrameTracks:
        """``frame`` with no confirmed track (a frame the tracker does not emit, or emits with none)."""
        return FrameTracks(
            video=frame.video,
            frame_index=frame.frame_index,
            frame_name=frame.frame_name,
            image_size=frame.image_size,
            track_ids=torch.zeros(0, dtype=torch.int64),
            time_since_update=torch.zeros(0, dtype=torch.int64),
            detections=frame.empty(),
            shot=frame.shot,
        )


@dataclass
class BatchDetections:
    """What ``TrackingSystem.predict_step`` returns for one batch: its frames' detections, in order, or
    why the batch failed (then ``frames`` is empty and the callback fails the video, naming ``error``)."""

    video: str
    frames: list[FrameDetections]
    error: str | None = None


# The hand-off from the tracker callback to the writers (sinks/): what a writer is told about a
# video, and the protocol every writer follows.
@dataclass(frozen=True)
class VideoInfo:
    """What writers know about the video they are opened for."""

    name: str  # output file stem
    source: str  # path of the video, folder or box file
    num_frames: int
    output_dir: Path
    fps: float = 30.0


@dataclass
class VideoReport:
    """What happened to one video (the tracker callback's record, the pipeline's summary): counts, speed,
    files written, or the error."""

    name: str
    source: str
    frames: int = 0
    track_ids: set[int] = field(default_factory=set)
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: bool = False
    given_boxes: int = 0  # boxes the source gave for the frames tracked
    given_boxes_dropped: int = 0  # of those, removed by the small-box filter

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "track_ids": sorted(self.track_ids)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> VideoReport:
        return VideoReport(**{**data, "track_ids": set(data["track_ids"])})


@runtime_checkable
class TrackWriter(Protocol):
    """Writes the tracks of one video at a time: ``open`` -> ``write`` per frame -> ``close``."""

    needs_images: bool  # True when write() needs the frame image

    def outputs(self, video: VideoInfo) -> list[Path]:
        """The files ``close`` will write for ``video`` (all exist = the video is finished)."""
        ...

    def open(self, video: VideoInfo) -> None:
        """Start a video (discarding any unfinished one)."""
        ...

    def write(self, tracks: FrameTracks, image: np.ndarray | None) -> None:
        """Add one frame; ``image`` is the (H, W, 3) uint8 RGB frame when ``needs_images``."""
        ...

    def close(self) -> list[Path]:
        """Write the files of the video atomically; returns their paths."""
        ...

    def abort(self) -> None:
        """Drop the video's partial state and temporary files; nothing is written."""
        ...
