"""PHALP output pkls (joblib): tracking results, and the given-boxes files PHALP reads as input.

Results (``<output_dir>/results/demo_<video>.pkl``): a dict frame key -> per-frame dict with ``time``,
``shot``, ``frame_path`` and, per confirmed track alive, parallel lists ``tid``, ``bbox`` ([x, y, w, h]),
``tracked_time`` (0 = detected, k > 0 = missed for k frames), ``smpl`` (global_orient (1,3,3),
body_pose (23,3,3), betas (10,)), ``camera`` (pred_cam_t), ``camera_bbox``, ``3d_joints`` (45,3),
``2d_joints`` (90,), ``center``, ``scale``, ``size``, ``conf`` and, when rendering was on, ``pose``
(229), ``loca`` (99) and ``appe`` (4096). ``tracked_ids`` / ``tracked_bbox`` list the detected tracks.
Results tracked without an HMAR checkpoint (predict's box-only path) keep every key and shape but
their 3D values (``pose``, ``loca``, ``appe``, ``smpl``, ``camera``, ``camera_bbox``, ``3d_joints``,
``2d_joints``) are NaN: such a frame reads with ``has_3d`` False and those arrays None, its boxes as usual.

Given boxes (PHALP's ``video.source=<file>.pkl``): a dict frame basename ->
``{"gt_bbox": (N,4) [x, y, w, h], "extra_data": {"gt_class": [...], "gt_track_id": [...]}}``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from phalp_lightning.errors import UserError
from phalp_lightning.utils.io import atomic_output


class PHALPResultsError(UserError, ValueError):
    """A malformed PHALP pkl; the message names the file, the frame and the key."""


@dataclass
class PHALPFrame:
    """One frame of a PHALP results pkl, as arrays over its N track entries."""

    key: Any
    time: int
    shot: int
    track_ids: np.ndarray  # (N,) int64
    boxes_xywh: np.ndarray  # (N, 4)
    tracked_time: np.ndarray  # (N,) 0 = detected in this frame
    pose: np.ndarray | None  # (N, 229)
    location: np.ndarray | None  # (N, 99)
    appearance: np.ndarray | None  # (N, 4096)
    joints_3d: np.ndarray | None  # (N, 45, 3)
    size: np.ndarray | None  # (N, 2) H, W
    has_3d: bool = True  # False: the file's 3D fields are NaN (tracked without HMAR); pose etc. are None

    @property
    def detected(self) -> np.ndarray:
        """(N,) bool: entries detected in this frame (not ghosts)."""
        return self.tracked_time == 0


@dataclass
class PHALPTracklet:
    """One track over the frames from its first to its last detection."""

    track_id: int
    time: np.ndarray  # (F,) frame times
    frame_keys: list[Any]
    pose: np.ndarray  # (F, 229), zeros where not detected
    location: np.ndarray  # (F, 99)
    valid: np.ndarray  # (F,) detected
    boxes_xywh: np.ndarray  # (F, 4)
    appearance: np.ndarray | None  # (F, 4096)
    size: np.ndarray | None  # (F, 2) H, W


def _joblib_load(path: Path) -> Any:
    import joblib

    if not path.is_file():
        raise FileNotFoundError(f"PHALP pkl not found: {path}")
    try:
        return joblib.load(path)
    except Exception as error:
        raise PHALPResultsError(f"{path}: cannot unpickle ({type(error).__name__}: {error})") from None


def _stack(entries: list, key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        array = np.asarray([np.asarray(value, np.float32).reshape(shape) for value in entries], np.float32)
    except ValueError as error:
        raise PHALPResultsError(f"{where}: {key!r} entries must have shape {shape}: {error}") from None
    return array.reshape(len(entries), *shape)


def _pose_from_smpl(frame: Mapping[str, Any], count: int, where: str) -> np.ndarray | None:
    """The 229-d pose vector from ``smpl`` + ``camera`` (when ``pose`` itself was not saved)."""
    if "smpl" not in frame or "camera" not in frame or len(frame["smpl"]) != count:
        return None
    rows = []
    for number, (smpl, camera) in enumerate(zip(frame["smpl"], frame["camera"], strict=True)):
        try:
            orient = np.asarray(smpl["global_orient"], np.float32).reshape(9)
            body = np.asarray(smpl["body_pose"], np.float32).reshape(207)
            betas = np.asarray(smpl["betas"], np.float32).reshape(10)
        except (KeyError, ValueError) as error:
            raise PHALPResultsError(f"{where}: smpl[{number}] must hold global_orient (1,3,3), body_pose (23,3,3), betas (10,): {error}") from None
        camera = np.asarray(camera, np.float32).reshape(3)
        rows.append(np.concatenate([orient, body, betas, camera[:2], camera[2:] / 200.0]))
    return np.asarray(rows, np.float32).reshape(count, 229)


def _location_from_joints(frame: Mapping[str, Any], count: int, where: str) -> np.ndarray | None:
    """The 99-d location from ``2d_joints`` (90, normalised) + ``camera`` repeated three times."""
    if "2d_joints" not in frame or "camera" not in frame or len(frame["2d_joints"]) != count:
        return None
    joints = _stack(frame["2d_joints"], "2d_joints", (90,), where)
    camera = _stack(frame["camera"], "camera", (3,), where)
    return np.concatenate([joints, camera, camera, camera], axis=1)


def _frame(key: Any, frame: Mapping[str, Any], path: Path) -> PHALPFrame:
    where = f"{path}: frame {key!r}"
    if not isinstance(frame, Mapping):
        raise PHALPResultsError(f"{where}: expected a dict per frame, got {type(frame).__name__}")
    for name in ("tid", "bbox", "tracked_time"):
        if name not in frame:
            raise PHALPResultsError(f"{where}: missing key {name!r}")
    count = len(frame["tid"])
    for name in ("bbox", "tracked_time"):
        if len(frame[name]) != count:
            raise PHALPResultsError(f"{where}: {name!r} has {len(frame[name])} entries for {count} track ids")
    boxes = _stack(frame["bbox"], "bbox", (4,), where).astype(np.float64)
    pose = _stack(frame["pose"], "pose", (229,), where) if len(frame.get("pose", [])) == count and count else _pose_from_smpl(frame, count, where)
    location = _stack(frame["loca"], "loca", (99,), where) if len(frame.get("loca", [])) == count and count else _location_from_joints(frame, count, where)
    appearance = _stack(frame["appe"], "appe", (4096,), where) if len(frame.get("appe", [])) == count and count else None
    joints = _stack(frame["3d_joints"], "3d_joints", (45, 3), where) if len(frame.get("3d_joints", [])) == count and count else None
    size = _stack(frame["size"], "size", (2,), where) if len(frame.get("size", [])) == count and count else None
    # NaN poses mark 3D outputs that were not computed (predict without an HMAR checkpoint).
    has_3d = pose is None or not bool(np.isnan(pose).all(axis=1).any())
    if not has_3d:
        pose = location = appearance = joints = None
    return PHALPFrame(
        key=key, time=int(frame.get("time", -1)), shot=int(frame.get("shot", 0)),
        track_ids=np.asarray(frame["tid"], np.int64).reshape(count), boxes_xywh=boxes.reshape(count, 4),
        tracked_time=np.asarray(frame["tracked_time"], np.int64).reshape(count),
        pose=pose, location=location, appearance=appearance, joints_3d=joints, size=size, has_3d=has_3d,
    )


@dataclass
class PHALPResults:
    """A whole PHALP results pkl, frames in the file's (processing) order."""

    path: Path
    frames: list[PHALPFrame]

    def tracklets(self) -> list[PHALPTracklet]:
        """Per track id: its frames from first to last detection (ghost frames have ``valid`` False)."""
        track_ids = sorted({int(tid) for frame in self.frames for tid in frame.track_ids})
        result = []
        for track_id in track_ids:
            indices, rows = [], []
            for index, frame in enumerate(self.frames):
                hits = np.flatnonzero(frame.track_ids == track_id)
                if len(hits):
                    # Back-filled frames can list a track twice; the detected entry wins.
                    detected = hits[frame.tracked_time[hits] == 0]
                    indices.append(index)
                    rows.append(int(detected[0] if len(detected) else hits[0]))
            detected_flags = np.asarray([self.frames[i].tracked_time[r] == 0 for i, r in zip(indices, rows, strict=True)])
            if not detected_flags.any():
                continue
            first, last = np.flatnonzero(detected_flags)[[0, -1]]
            span = slice(first, last + 1)
            frames = [self.frames[i] for i in indices[span]]
            rows = rows[span]
            valid = detected_flags[span]
            boxes_only = [f.key for f in frames if not f.has_3d]
            if boxes_only:
                raise PHALPResultsError(
                    f"{self.path}: frame {boxes_only[0]!r} has no 3D outputs (NaN pose: tracked without an HMAR checkpoint)",
                    "tracklets need poses: rerun predict.py with ckpt=<hmar checkpoint> (the frames' boxes read as usual)",
                )
            missing = [f.key for f in frames if f.pose is None or f.location is None]
            if missing:
                raise PHALPResultsError(f"{self.path}: frame {missing[0]!r} has neither 'pose'/'loca' nor 'smpl'/'camera'/'2d_joints' for track {track_id}")
            pose = np.stack([f.pose[r] for f, r in zip(frames, rows, strict=True)]) * valid[:, None]
            location = np.stack([f.location[r] for f, r in zip(frames, rows, strict=True)]) * valid[:, None]
            has_appearance = all(f.appearance is not None for f in frames)
            result.append(
                PHALPTracklet(
                    track_id=track_id,
                    time=np.asarray([f.time for f in frames], np.int64),
                    frame_keys=[f.key for f in frames],
                    pose=pose.astype(np.float32),
                    location=location.astype(np.float32),
                    valid=valid,
                    boxes_xywh=np.stack([f.boxes_xywh[r] for f, r in zip(frames, rows, strict=True)]),
                    appearance=np.stack([f.appearance[r] for f, r in zip(frames, rows, strict=True)]) * valid[:, None] if has_appearance else None,
                    size=np.stack([f.size[r] for f, r in zip(frames, rows, strict=True)]) if all(f.size is not None for f in frames) else None,
                )
            )
        return result


def read_phalp_results(path: str | os.PathLike[str]) -> PHALPResults:
    """Read a PHALP results pkl (joblib).

    Raises:
        PHALPResultsError: not a dict of frame dicts, or a frame lacks ``tid``/``bbox``/``tracked_time``
            or has inconsistent list lengths (names the file, frame and key).
    """
    path = Path(path)
    data = _joblib_load(path)
    if not isinstance(data, Mapping):
        raise PHALPResultsError(f"{path}: expected a dict keyed by frame, got {type(data).__name__}")
    return PHALPResults(path, [_frame(key, frame, path) for key, frame in data.items()])


@dataclass
class GivenBoxes:
    """Boxes PHALP is told to track in one frame (instead of running its detector)."""

    boxes_xywh: np.ndarray  # (N, 4)
    track_ids: np.ndarray  # (N,) int64, -1 where not given
    classes: list[Any]


def read_given_boxes(path: str | os.PathLike[str]) -> dict[str, GivenBoxes]:
    """Read a given-boxes pkl: frame basename -> :class:`GivenBoxes` (sorted by basename, like PHALP).

    Frames with an empty ``gt_bbox`` are kept with N = 0 (PHALP runs its detector on them).
    """
    path = Path(path)
    data = _joblib_load(path)
    if not isinstance(data, Mapping):
        raise PHALPResultsError(f"{path}: expected a dict keyed by frame name, got {type(data).__name__}")
    result = {}
    for name in sorted(data):
        entry = data[name]
        where = f"{path}: frame {name!r}"
        if not isinstance(entry, Mapping) or "gt_bbox" not in entry:
            raise PHALPResultsError(f"{where}: missing key 'gt_bbox'")
        boxes = np.asarray(entry["gt_bbox"], np.float64).reshape(-1, 4) if len(entry["gt_bbox"]) else np.zeros((0, 4))
        if len(boxes) and ((boxes[:, 2] <= 0) | (boxes[:, 3] <= 0) | ~np.isfinite(boxes).all(1)).any():
            raise PHALPResultsError(f"{where}: gt_bbox rows must be [x, y, w, h] with w, h > 0, got {boxes.tolist()}")
        extra = entry.get("extra_data", {}) or {}
        ids = extra.get("gt_track_id", [])
        ids = np.asarray(ids, np.int64).reshape(-1) if len(ids) else np.full(len(boxes), -1, np.int64)
        if len(ids) != len(boxes):
            raise PHALPResultsError(f"{where}: {len(ids)} gt_track_id for {len(boxes)} boxes")
        classes = list(extra.get("gt_class", [])) or [None] * len(boxes)
        result[str(name)] = GivenBoxes(boxes, ids, classes)
    return result


def write_given_boxes(path: str | os.PathLike[str], frames: Mapping[str, GivenBoxes]) -> Path:
    """Write a given-boxes pkl that PHALP (and our predict pipeline) accepts, atomically."""
    import joblib

    path = Path(path)
    data = {
        name: {
            "gt_bbox": np.asarray(entry.boxes_xywh, np.float32).reshape(-1, 4),
            "extra_data": {"gt_class": list(entry.classes), "gt_track_id": np.asarray(entry.track_ids, np.int64)},
        }
        for name, entry in frames.items()
    }
    with atomic_output(path) as temporary:
        joblib.dump(data, temporary)
    return path
