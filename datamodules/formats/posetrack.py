"""PoseTrack18 / PoseTrack21 annotation JSON (one file per video).

Top level ``images``, ``annotations``, ``categories``. Each image has ``id``, ``file_name``, ``frame_id``,
``vid_id``, ``nframes``, ``is_labeled`` and ignore regions as ``ignore_regions_x`` /
``ignore_regions_y`` (a list of polygons, or one flat polygon). Each annotation has ``image_id``,
``track_id``, ``bbox = [x, y, w, h]``, ``bbox_head`` and ``keypoints`` = 17 x (x, y, v) in the order of
:data:`POSETRACK_KEYPOINTS` (PT21 adds ``person_id``; predictions add ``scores``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phalp_lightning.errors import UserError
from phalp_lightning.utils.io import atomic_write_text

POSETRACK_KEYPOINTS = (
    "nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
POSETRACK_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)
NUM_KEYPOINTS = len(POSETRACK_KEYPOINTS)
# PoseTrack keypoint -> index in the 44-joint set (OpenPose BODY-25, then the 19 J19 joints):
# the head bottom and head top are J19's neck (25 + 12) and head top (25 + 13).
POSETRACK_TO_JOINTS44 = (0, 37, 38, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11)


class PoseTrackFormatError(UserError, ValueError):
    """A PoseTrack file is malformed; the message names the file and the record."""


@dataclass
class PoseTrackPerson:
    """One annotated person in one frame."""

    track_id: int
    box_xywh: np.ndarray  # (4,) float64
    keypoints: np.ndarray  # (17, 3) float64 x, y, visibility (0 = not annotated)
    annotation_id: int | None = None
    person_id: int | None = None
    head_box_xywh: np.ndarray | None = None
    scores: np.ndarray | None = None  # (17,) for predictions


@dataclass
class PoseTrackFrame:
    """One image of a PoseTrack video with its people and ignore regions."""

    image_id: int
    file_name: str
    frame_index: int  # position in the video (0-based, by frame_id)
    is_labeled: bool
    people: list[PoseTrackPerson] = field(default_factory=list)
    ignore_regions: list[np.ndarray] = field(default_factory=list)  # polygons, each (K, 2)

    @property
    def boxes_xyxy(self) -> np.ndarray:
        """(N, 4) boxes of the people as x1, y1, x2, y2."""
        if not self.people:
            return np.zeros((0, 4))
        boxes = np.stack([person.box_xywh for person in self.people])
        return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)

    @property
    def track_ids(self) -> np.ndarray:
        """(N,) int64 track ids."""
        return np.asarray([person.track_id for person in self.people], np.int64)

    @property
    def keypoints(self) -> np.ndarray:
        """(N, 17, 3) keypoints of the people."""
        if not self.people:
            return np.zeros((0, NUM_KEYPOINTS, 3))
        return np.stack([person.keypoints for person in self.people])


@dataclass
class PoseTrackVideo:
    """A whole PoseTrack annotation file."""

    path: Path | None
    video_id: str
    frames: list[PoseTrackFrame]
    categories: list[dict[str, Any]]

    @property
    def labeled_frames(self) -> list[PoseTrackFrame]:
        """The frames with keypoint annotations."""
        return [frame for frame in self.frames if frame.is_labeled]


def _polygons(xs: Any, ys: Any, where: str) -> list[np.ndarray]:
    """Normalise ignore regions: a list of polygons, a single flat polygon, or empty."""
    if not xs:
        return []
    if not isinstance(xs[0], list | tuple):
        xs, ys = [xs], [ys]
    if len(xs) != len(ys):
        raise PoseTrackFormatError(f"{where}: ignore_regions_x has {len(xs)} polygons but ignore_regions_y has {len(ys)}")
    polygons = []
    for number, (px, py) in enumerate(zip(xs, ys, strict=True)):
        if len(px) != len(py):
            raise PoseTrackFormatError(f"{where}: ignore region {number} has {len(px)} x and {len(py)} y coordinates")
        if len(px) >= 3:
            polygons.append(np.stack([np.asarray(px, np.float64), np.asarray(py, np.float64)], axis=1))
    return polygons


def ignore_regions(xs: Any, ys: Any, where: str) -> list[np.ndarray]:
    """PoseTrack ``ignore_regions_x`` / ``ignore_regions_y`` as (K, 2) polygons (see :func:`read_posetrack`)."""
    return _polygons(xs, ys, where)


def read_image_info(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """PoseTrack21's MOT-layout ``<seq>/image_info.json``: one entry per image, in video order.

    Each entry keeps ``frame_index`` (the 1-based frame of ``gt.txt``), ``file_name`` and
    ``ignore_regions`` as a list of (K, 2) polygons.

    Raises:
        PoseTrackFormatError: not JSON, not a list, or an entry without ``frame_index``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PoseTrackFormatError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, list):
        raise PoseTrackFormatError(f"{path}: PoseTrack21's image_info.json is a list of images")
    images = []
    for number, image in enumerate(data):
        if not isinstance(image, dict) or "frame_index" not in image:
            raise PoseTrackFormatError(f"{path}: entry {number} has no 'frame_index'")
        where = f"{path}: entry {number}"
        images.append({"frame_index": int(image["frame_index"]), "file_name": image.get("file_name", ""),
                       "ignore_regions": _polygons(image.get("ignore_regions_x", []), image.get("ignore_regions_y", []), where)})
    return images


def _box_from_keypoints(keypoints: np.ndarray, margin: float = 0.2) -> np.ndarray | None:
    visible = keypoints[:, 2] > 0
    if visible.sum() < 2:
        return None
    low, high = keypoints[visible, :2].min(0), keypoints[visible, :2].max(0)
    size = high - low
    low, size = low - margin / 2 * size, size * (1 + margin)
    return np.concatenate([low, size]) if (size > 0).all() else None


def _person(annotation: dict[str, Any], where: str) -> PoseTrackPerson:
    if "track_id" not in annotation:
        raise PoseTrackFormatError(f"{where}: missing key 'track_id'")
    raw_keypoints = annotation.get("keypoints")
    if raw_keypoints:
        if len(raw_keypoints) != NUM_KEYPOINTS * 3:
            raise PoseTrackFormatError(f"{where}: 'keypoints' must hold {NUM_KEYPOINTS * 3} numbers, got {len(raw_keypoints)}")
        keypoints = np.asarray(raw_keypoints, np.float64).reshape(NUM_KEYPOINTS, 3)
    else:
        keypoints = np.zeros((NUM_KEYPOINTS, 3))
    box = annotation.get("bbox")
    if box is None or len(box) == 0:
        box = _box_from_keypoints(keypoints)
        if box is None:
            raise PoseTrackFormatError(f"{where}: no 'bbox' and fewer than 2 visible keypoints to derive one")
    box = np.asarray(box, np.float64)
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
        raise PoseTrackFormatError(f"{where}: 'bbox' must be [x, y, w, h] with w, h > 0, got {np.asarray(box).tolist()}")
    head = annotation.get("bbox_head")
    scores = annotation.get("scores")
    return PoseTrackPerson(
        track_id=int(annotation["track_id"]),
        box_xywh=box,
        keypoints=keypoints,
        annotation_id=annotation.get("id"),
        person_id=annotation.get("person_id"),
        head_box_xywh=np.asarray(head, np.float64) if head else None,
        scores=np.asarray(scores, np.float64) if scores is not None else None,
    )


def read_posetrack(path: str | os.PathLike[str]) -> PoseTrackVideo:
    """Read one PoseTrack18/21 JSON file.

    Raises:
        FileNotFoundError: no such file.
        PoseTrackFormatError: invalid JSON, missing keys or bad boxes (names the file and record).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PoseTrack annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PoseTrackFormatError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise PoseTrackFormatError(f"{path}: top level must be an object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if key not in data:
            raise PoseTrackFormatError(f"{path}: missing top-level key {key!r}")
    images = data["images"]
    for number, image in enumerate(images):
        for key in ("id", "file_name"):
            if key not in image:
                raise PoseTrackFormatError(f"{path}: images[{number}] is missing key {key!r}")
    ordered = sorted(range(len(images)), key=lambda i: (images[i].get("frame_id", images[i]["id"]), i))
    frames: dict[int, PoseTrackFrame] = {}
    for position, number in enumerate(ordered):
        image = images[number]
        where = f"{path}: images[{number}] (id={image['id']})"
        frames[image["id"]] = PoseTrackFrame(
            image_id=image["id"],
            file_name=image["file_name"],
            frame_index=position,
            is_labeled=bool(image.get("is_labeled", True)),
            ignore_regions=_polygons(image.get("ignore_regions_x", []), image.get("ignore_regions_y", []), where),
        )
    for number, annotation in enumerate(data["annotations"]):
        where = f"{path}: annotations[{number}] (id={annotation.get('id')})"
        if "image_id" not in annotation:
            raise PoseTrackFormatError(f"{where}: missing key 'image_id'")
        if annotation["image_id"] not in frames:
            raise PoseTrackFormatError(f"{where}: image_id {annotation['image_id']} is not in 'images'")
        frames[annotation["image_id"]].people.append(_person(annotation, where))
    video_id = str(images[ordered[0]].get("vid_id", path.stem)) if images else path.stem
    return PoseTrackVideo(path, video_id, [frames[images[i]["id"]] for i in ordered], list(data.get("categories", [])))


def posetrack_image_id(video_number: int, frame_index: int) -> int:
    """PoseTrack-style image id ``1VVVVVVFFFF`` (e.g. 10000010000 for video 1, frame 0)."""
    return int(f"1{video_number:06d}{frame_index:04d}")


def write_posetrack(path: str | os.PathLike[str], video: PoseTrackVideo, video_number: int = 1) -> Path:
    """Write a :class:`PoseTrackVideo` as PoseTrack21-style JSON, atomically.

    Image ids that are 0 or missing are assigned with :func:`posetrack_image_id`.
    """
    path = Path(path)
    images, annotations = [], []
    next_annotation = 0
    for frame in video.frames:
        image_id = frame.image_id or posetrack_image_id(video_number, frame.frame_index)
        xs = [polygon[:, 0].tolist() for polygon in frame.ignore_regions]
        ys = [polygon[:, 1].tolist() for polygon in frame.ignore_regions]
        images.append(
            {
                "id": image_id, "frame_id": image_id, "vid_id": video.video_id, "file_name": frame.file_name,
                "nframes": len(video.frames), "is_labeled": frame.is_labeled,
                "has_labeled_person": bool(frame.people), "ignore_regions_x": xs, "ignore_regions_y": ys,
            }
        )
        for person in frame.people:
            record = {
                "image_id": image_id,
                "id": person.annotation_id if person.annotation_id is not None else next_annotation,
                "track_id": int(person.track_id),
                "category_id": 1,
                "bbox": [float(value) for value in person.box_xywh],
                "keypoints": [float(value) for value in person.keypoints.reshape(-1)],
            }
            if person.head_box_xywh is not None:
                record["bbox_head"] = [float(value) for value in person.head_box_xywh]
            if person.person_id is not None:
                record["person_id"] = int(person.person_id)
            if person.scores is not None:
                record["scores"] = [float(value) for value in person.scores]
            annotations.append(record)
            next_annotation += 1
    categories = video.categories or [
        {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(POSETRACK_KEYPOINTS),
         "skeleton": [list(pair) for pair in POSETRACK_SKELETON]}
    ]
    atomic_write_text(path, json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path
