"""PHALP-compatible results: the joblib pkl with every key of PHALP's output (docs/predict.md, Outputs), and the same content as a safe npz.

``results/<prefix><video>.pkl`` is a dict keyed by frame key, in processing order, with every key of
PHALP's output table (``time``, ``shot``, ``frame_path``, ``tid``, ``bbox`` [x, y, w, h],
``tracked_time``, ``tracked_ids``, ``tracked_bbox``, ``appe``, ``loca``, ``pose``, ``center``, ``scale``,
``size``, ``img_path``, ``img_name``, ``class_name``, ``conf``, ``annotations``, ``smpl``, ``camera``,
``camera_bbox``, ``3d_joints``, ``2d_joints``, ``mask``, ``extra_data``). Loading a pkl runs code from
the file, so the same content is also written as ``<prefix><video>.npz`` (plain arrays, no pickle):
one row per (frame, track) entry plus per-frame arrays; :func:`load_results_npz` rebuilds the dict.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from phalp_lightning.sinks.rle import box_mask, encode_mask
from phalp_lightning.structures import FrameTracks, VideoInfo
from phalp_lightning.utils.io import atomic_output
from phalp_lightning.utils.vectors import LOCATION_JOINTS_2D, split_pose_vector

# Per-entry arrays of the npz, in the order their keys appear in a PHALP record.
_ENTRY_ARRAYS = (
    "tid", "bbox", "tracked_time", "appe", "loca", "pose", "center", "scale", "size", "conf", "class_name",
    "smpl_global_orient", "smpl_body_pose", "smpl_betas", "camera", "camera_bbox", "3d_joints", "2d_joints",
    "extra_data", "img_name", "mask", "annotations",
)


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy()


def frame_entries(tracks: FrameTracks) -> dict[str, np.ndarray]:
    """The per-entry columns of one frame, M rows each (numpy; strings as unicode arrays)."""
    det = tracks.detections
    m = len(tracks)
    height, width = tracks.image_size
    boxes = _numpy(det.boxes).astype(np.float32).reshape(m, 4)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    smpl, cam_t = split_pose_vector(det.pose.float())
    if det.masks is not None:
        masks = [encode_mask(mask) for mask in _numpy(det.masks)]
    else:
        masks = [encode_mask(box_mask(box, height, width)) for box in boxes]
    detection_index = _numpy(det.detection_index) if det.detection_index is not None else np.arange(m)
    center = _numpy(det.center) if det.center is not None else (boxes[:, :2] + boxes[:, 2:]) / 2
    scale = _numpy(det.scale) if det.scale is not None else (boxes[:, 2:] - boxes[:, :2]).max(1) / max(height, width)
    return {
        "tid": _numpy(tracks.track_ids).astype(np.int64),
        "bbox": xywh,
        "tracked_time": _numpy(tracks.time_since_update).astype(np.int64),
        "appe": _numpy(det.appearance).astype(np.float32),
        "loca": _numpy(det.location).astype(np.float32),
        "pose": _numpy(det.pose).astype(np.float32),
        "center": center.astype(np.float32).reshape(m, 2),
        "scale": scale.astype(np.float32).reshape(m),
        "size": np.tile(np.array([[height, width]], dtype=np.int64), (m, 1)),
        "conf": _numpy(det.scores).astype(np.float32),
        "class_name": np.zeros(m, dtype=np.int64),
        "smpl_global_orient": _numpy(smpl.global_orient).astype(np.float32),
        "smpl_body_pose": _numpy(smpl.body_pose).astype(np.float32),
        "smpl_betas": _numpy(smpl.betas).astype(np.float32),
        "camera": _numpy(cam_t).astype(np.float32),
        "camera_bbox": _numpy(det.camera_bbox).astype(np.float32) if det.camera_bbox is not None else np.zeros((m, 3), np.float32),
        "3d_joints": _numpy(det.joints_3d).astype(np.float32) if det.joints_3d is not None else np.zeros((m, 45, 3), np.float32),
        "2d_joints": _numpy(det.location[:, LOCATION_JOINTS_2D]).astype(np.float32),
        "extra_data": detection_index.astype(np.int64).reshape(m),
        "img_name": np.array([os.path.basename(tracks.frame_name)] * m, dtype=str),
        "mask": np.array([json.dumps(mask) for mask in masks], dtype=str),
        "annotations": np.array(["[]"] * m, dtype=str),
    }


def phalp_record(time: int, shot: int, frame_path: str, entries: dict[str, np.ndarray]) -> dict[str, Any]:
    """One frame of PHALP's results dict from its entry columns."""
    m = len(entries["tid"])
    detected = entries["tracked_time"] == 0
    rows = range(m)
    return {
        "time": int(time),
        "shot": int(shot),
        "frame_path": frame_path,
        "tid": [int(t) for t in entries["tid"]],
        "bbox": [entries["bbox"][k] for k in rows],
        "tracked_time": [int(t) for t in entries["tracked_time"]],
        "tracked_ids": [int(t) for t in entries["tid"][detected]],
        "tracked_bbox": [entries["bbox"][k] for k in np.flatnonzero(detected)],
        "appe": [entries["appe"][k] for k in rows],
        "loca": [entries["loca"][k] for k in rows],
        "pose": [entries["pose"][k] for k in rows],
        "center": [entries["center"][k] for k in rows],
        "scale": [float(s) for s in entries["scale"]],
        "size": [[int(h), int(w)] for h, w in entries["size"]],
        "img_path": [frame_path] * m,
        "img_name": [str(name) for name in entries["img_name"]],
        "class_name": [int(c) for c in entries["class_name"]],
        "conf": [np.float32(c) for c in entries["conf"]],
        "annotations": [json.loads(a) for a in entries["annotations"]],
        "smpl": [
            {"global_orient": entries["smpl_global_orient"][k], "body_pose": entries["smpl_body_pose"][k], "betas": entries["smpl_betas"][k]}
            for k in rows
        ],
        "camera": [entries["camera"][k] for k in rows],
        "camera_bbox": [entries["camera_bbox"][k] for k in rows],
        "3d_joints": [entries["3d_joints"][k] for k in rows],
        "2d_joints": [entries["2d_joints"][k] for k in rows],
        "mask": [[json.loads(mask)] for mask in entries["mask"]],
        "extra_data": [int(e) for e in entries["extra_data"]],
    }


class ResultsWriter:
    """PHALP results of each video as ``results/<prefix><name>.pkl`` (joblib) and/or ``.npz``.

    Args:
        formats: any of "pkl" and "npz".
        prefix: file-name prefix (PHALP's ``track_dataset`` + "_": "demo_").
        compress: joblib compression level of the pkl (PHALP: 3).
    """

    needs_images = False

    def __init__(self, formats: tuple[str, ...] | list[str] = ("pkl", "npz"), prefix: str = "demo_", compress: int = 3) -> None:
        unknown = set(formats) - {"pkl", "npz"}
        if unknown or not formats:
            raise ValueError(f"results formats must be a non-empty subset of ['pkl', 'npz'], got {list(formats)}")
        self.formats = tuple(formats)
        self.prefix = prefix
        self.compress = compress
        self._video: VideoInfo | None = None
        self._frames: list[tuple[int, int, str, dict[str, np.ndarray]]] = []

    def outputs(self, video: VideoInfo) -> list[Path]:
        return [video.output_dir / "results" / f"{self.prefix}{video.name}.{fmt}" for fmt in self.formats]

    def open(self, video: VideoInfo) -> None:
        self._video, self._frames = video, []

    def write(self, tracks: FrameTracks, image: np.ndarray | None = None) -> None:
        self._frames.append((tracks.frame_index, int(tracks.shot), tracks.frame_name, frame_entries(tracks)))

    def close(self) -> list[Path]:
        if self._video is None:
            raise RuntimeError("ResultsWriter.close() before open()")
        paths = self.outputs(self._video)
        for path in paths:
            with atomic_output(path) as temporary:
                if path.suffix == ".pkl":
                    self._write_pkl(temporary)
                else:
                    self._write_npz(temporary)
        self._video, self._frames = None, []
        return paths

    def abort(self) -> None:
        self._video, self._frames = None, []

    def _write_pkl(self, path: Path) -> None:
        import joblib

        results = {name: phalp_record(time, shot, name, entries) for time, shot, name, entries in self._frames}
        joblib.dump(results, path, compress=self.compress)

    def _write_npz(self, path: Path) -> None:
        columns: dict[str, np.ndarray] = {
            "frame_time": np.array([time for time, _, _, _ in self._frames], dtype=np.int64),
            "frame_shot": np.array([shot for _, shot, _, _ in self._frames], dtype=np.int64),
            "frame_path": np.array([name for _, _, name, _ in self._frames], dtype=str),
            "entry_frame": np.concatenate([np.full(len(entries["tid"]), k, dtype=np.int64) for k, (_, _, _, entries) in enumerate(self._frames)] or [np.zeros(0, np.int64)]),
        }
        for key in _ENTRY_ARRAYS:
            parts = [entries[key] for _, _, _, entries in self._frames]
            columns[f"entry_{key}"] = np.concatenate(parts) if parts else np.zeros(0)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **columns)


def load_results_npz(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Rebuild PHALP's results dict from a results npz (no pickle involved)."""
    with np.load(path, allow_pickle=False) as data:
        columns = {key: data[key] for key in data.files}
    results = {}
    for k, name in enumerate(columns["frame_path"]):
        rows = columns["entry_frame"] == k
        entries = {key: columns[f"entry_{key}"][rows] for key in _ENTRY_ARRAYS}
        results[str(name)] = phalp_record(int(columns["frame_time"][k]), int(columns["frame_shot"][k]), str(name), entries)
    return results
