"""Encoding and writing shards: samples are checked against the schema, then written atomically.

:func:`encode_crop_sample` and :func:`encode_tracklet_sample` check one sample (shapes, finite
values, required meta fields; layouts in ``schema.py``) and turn it into a webdataset sample dict.
:class:`ShardWriter` writes ``<prefix>-000000.tar, <prefix>-000001.tar, ...`` with at most
``max_count`` samples each; every shard is written to a temporary name and renamed when complete, so
a crashed run never leaves a truncated shard under a real name. Reading lives in ``shard_decoding``,
the distributed stream in ``shard_streams``.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from phalp_lightning.datamodules.schema import SCHEMA_VERSION, ShardError

from phalp_lightning.utils.io import atomic_write_text

# ---------------------------------------------------------------------------------------------
# Encoding and validation
# ---------------------------------------------------------------------------------------------



def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{key: np.ascontiguousarray(value) for key, value in arrays.items()})
    return buffer.getvalue()


def _png_bytes(image: np.ndarray) -> bytes:
    import cv2

    array = np.ascontiguousarray(image[..., ::-1] if image.ndim == 3 else image)
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise ShardError("could not encode a PNG")
    return data.tobytes()


def _check_shape(key: str, array: np.ndarray, shape: tuple[int | None, ...], where: str) -> None:
    if array.ndim != len(shape) or any(want is not None and have != want for have, want in zip(array.shape, shape, strict=False)):
        raise ShardError(f"{where}: {key} must have shape {tuple('*' if s is None else s for s in shape)}, got {array.shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ShardError(f"{where}: {key} holds NaN or inf")


def sample_key(*parts: object) -> str:
    """A webdataset ``__key__`` from its parts: joined with "~" (dots and slashes are not allowed)."""
    return "~".join(str(part).replace("/", "_").replace(".", "_").replace("~", "_") for part in parts)


def encode_crop_sample(
    key: str,
    crop: np.ndarray,
    mask: np.ndarray,
    keypoints_2d: np.ndarray,
    meta: dict[str, Any],
    keypoints_3d: np.ndarray | None = None,
    smpl: dict[str, np.ndarray] | None = None,
    camera: np.ndarray | None = None,
) -> dict[str, Any]:
    """Check and encode one person crop (schema.py) into a webdataset sample dict.

    Args:
        key: ``__key__``; crop: (S, S, 3) uint8 RGB; mask: (S, S) uint8 (or bool) person mask;
        keypoints_2d: (44, 3) x, y crop pixels + confidence; meta: dataset, sequence, frame,
        track_id, box_xyxy, image_size; keypoints_3d: (44, 4); smpl: global_orient (1,3,3),
        body_pose (23,3,3), betas (10,); camera: (3,) crop camera (s, tx, ty).
    """
    where = f"crop sample {key!r}"
    crop = np.asarray(crop)
    size = crop.shape[0]
    _check_shape("crop", crop, (size, size, 3), where)
    if crop.dtype != np.uint8:
        raise ShardError(f"{where}: crop must be uint8, got {crop.dtype}")
    mask = np.asarray(mask)
    _check_shape("mask", mask, (size, size), where)
    keypoints_2d = np.asarray(keypoints_2d, np.float32)
    _check_shape("keypoints_2d", keypoints_2d, (44, 3), where)
    for field in ("dataset", "sequence", "frame", "track_id", "box_xyxy", "image_size"):
        if field not in meta:
            raise ShardError(f"{where}: meta is missing {field!r}")
    box = np.asarray(meta["box_xyxy"], np.float64)
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        raise ShardError(f"{where}: box_xyxy must be 4 finite numbers with x2 > x1 and y2 > y1, got {meta['box_xyxy']}")
    sample: dict[str, Any] = {
        "__key__": key,
        "crop.png": _png_bytes(crop),
        "mask.png": _png_bytes(np.where(mask > 0, 255, 0).astype(np.uint8)),
        "keypoints_2d.npy": _npy_bytes(keypoints_2d),
        "meta.json": json.dumps({"schema_version": SCHEMA_VERSION, **meta, "box_xyxy": box.tolist()}).encode(),
    }
    if keypoints_3d is not None:
        keypoints_3d = np.asarray(keypoints_3d, np.float32)
        _check_shape("keypoints_3d", keypoints_3d, (44, 4), where)
        sample["keypoints_3d.npy"] = _npy_bytes(keypoints_3d)
    if smpl is not None:
        arrays = {name: np.asarray(smpl[name], np.float32) for name in ("global_orient", "body_pose", "betas") if name in smpl}
        if len(arrays) != 3:
            raise ShardError(f"{where}: smpl needs global_orient, body_pose and betas, got {sorted(smpl)}")
        _check_shape("smpl.global_orient", arrays["global_orient"], (1, 3, 3), where)
        _check_shape("smpl.body_pose", arrays["body_pose"], (23, 3, 3), where)
        _check_shape("smpl.betas", arrays["betas"], (10,), where)
        sample["smpl.npz"] = _npz_bytes(arrays)
    if camera is not None:
        camera = np.asarray(camera, np.float32)
        _check_shape("camera", camera, (3,), where)
        sample["camera.npy"] = _npy_bytes(camera)
    return sample


def encode_tracklet_sample(
    key: str,
    pose: np.ndarray,
    location: np.ndarray,
    time: np.ndarray,
    valid: np.ndarray,
    meta: dict[str, Any],
    appearance: np.ndarray | None = None,
    actions: np.ndarray | None = None,
) -> dict[str, Any]:
    """Check and encode one tracklet window (schema.py) into a webdataset sample dict.

    Args:
        pose: (T, 229); location: (T, 99); time: (T,) frame indices; valid: (T,) bool;
        meta: dataset, sequence, track_id, start_frame; appearance: (T, 4096); actions: (T, A) multi-hot.
    """
    where = f"tracklet sample {key!r}"
    pose = np.asarray(pose, np.float32)
    length = pose.shape[0] if pose.ndim == 2 else -1
    _check_shape("pose", pose, (None, 229), where)
    location = np.asarray(location, np.float32)
    _check_shape("location", location, (length, 99), where)
    time = np.asarray(time, np.int64)
    _check_shape("time", time, (length,), where)
    valid = np.asarray(valid, bool)
    _check_shape("valid", valid, (length,), where)
    for field in ("dataset", "sequence", "track_id", "start_frame"):
        if field not in meta:
            raise ShardError(f"{where}: meta is missing {field!r}")
    sample: dict[str, Any] = {
        "__key__": key,
        "pose.npy": _npy_bytes(pose),
        "location.npy": _npy_bytes(location),
        "time.npy": _npy_bytes(time),
        "valid.npy": _npy_bytes(valid),
        "meta.json": json.dumps({"schema_version": SCHEMA_VERSION, **meta}).encode(),
    }
    if appearance is not None:
        appearance = np.asarray(appearance, np.float16)
        _check_shape("appearance", appearance, (length, 4096), where)
        sample["appearance.npy"] = _npy_bytes(appearance)
    if actions is not None:
        actions = np.asarray(actions, np.uint8)
        _check_shape("actions", actions, (length, None), where)
        sample["actions.npy"] = _npy_bytes(actions)
    return sample


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------



class ShardWriter:
    """Write samples into numbered tar shards, each renamed into place only when complete.

    Args:
        prefix: path prefix; shards are ``f"{prefix}-{index:06d}.tar"``.
        max_count: samples per shard.

    Use as a context manager; :attr:`shards` lists the finished files and :attr:`count` the samples.
    """

    def __init__(self, prefix: str | os.PathLike[str], max_count: int = 1000) -> None:
        if max_count < 1:
            raise ValueError(f"max_count must be >= 1, got {max_count}")
        self.prefix = Path(prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.max_count = max_count
        self.shards: list[Path] = []
        self.count = 0
        self._writer = None
        self._in_shard = 0
        self._tmp: Path | None = None
        self._keys: set[str] = set()

    def _open(self) -> None:
        import webdataset as wds

        self._tmp = Path(f"{self.prefix}-{len(self.shards):06d}.tar.tmp")
        self._writer = wds.TarWriter(str(self._tmp))
        self._in_shard = 0

    def _close_shard(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        final = Path(f"{self.prefix}-{len(self.shards):06d}.tar")
        os.replace(self._tmp, final)
        self.shards.append(final)
        self._writer = None

    def write(self, sample: dict[str, Any]) -> None:
        """Add one encoded sample (from :func:`encode_crop_sample` / :func:`encode_tracklet_sample`)."""
        key = sample.get("__key__")
        if not key or "." in key:
            raise ShardError(f"sample key must be a non-empty string without dots, got {key!r}")
        if key in self._keys:
            raise ShardError(f"duplicate sample key {key!r} in {self.prefix}-*.tar")
        self._keys.add(key)
        if self._writer is None:
            self._open()
        self._writer.write(sample)
        self._in_shard += 1
        self.count += 1
        if self._in_shard >= self.max_count:
            self._close_shard()

    def close(self) -> list[Path]:
        """Finish the last shard; returns all shard paths."""
        self._close_shard()
        return self.shards

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        elif self._writer is not None:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)

    def brace_pattern(self) -> str:
        """The shards as one brace pattern (``prefix-{000000..000003}.tar``)."""
        if len(self.shards) == 1:
            return str(self.shards[0])
        return f"{self.prefix}-{{000000..{len(self.shards) - 1:06d}}}.tar"


def write_manifest(folder: str | os.PathLike[str], entries: dict[str, dict[str, Any]]) -> Path:
    """Write ``manifest.json`` (split -> shard pattern, sample count, ...) atomically."""
    return atomic_write_text(
        Path(folder) / "manifest.json", json.dumps({"schema_version": SCHEMA_VERSION, "splits": entries}, indent=2)
    )

