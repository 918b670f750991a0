"""Webdataset shards: writing (atomic, schema-checked), encoding/decoding samples, and streaming.

Writing: :class:`ShardWriter` writes ``<prefix>-000000.tar, <prefix>-000001.tar, ...`` with at most
``max_count`` samples each; every shard is written to a temporary name and renamed when complete, so
a crashed run never leaves a truncated shard under a real name.

Reading: :class:`ShardStream` is the IterableDataset both DataModules use. It splits the work over
DDP ranks and DataLoader workers ("slots" = ranks x workers) so that no sample is read by two slots
in an epoch and none is left out:

- training, with at least as many shards as slots: shards are dealt out round robin (after a
  shuffle shared by all slots);
- training with fewer shards than slots, and validation (``balanced_eval``, the default): every slot
  reads all shards and keeps every ``slots``-th sample, so ranks differ by at most one sample.

Training streams are endless: each slot cycles through its own part (reshuffled every pass), several
datasets are mixed by weight, a shuffle buffer decorrelates neighbours, and the epoch ends after
``epoch_length`` samples in total (the same number of batches on every rank, which DDP needs).
Validation streams read every sample exactly once, in order.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from phalp_lightning.datamodules.schema import (
    CROP_KEYS_REQUIRED,
    SCHEMA_VERSION,
    TRACKLET_KEYS_REQUIRED,
)
from torch.utils.data import IterableDataset

from phalp_lightning.errors import UserError
from phalp_lightning.utils.io import atomic_write_text

log = logging.getLogger(__name__)

SYNTHETIC_COMMAND = "python -m phalp_lightning.datamodules.synthetic all --out <data_dir>/synthetic"


class ShardError(UserError, ValueError):
    """A shard or a sample in it is missing, truncated or malformed; the message names which."""


class ShardNotFoundError(ShardError, FileNotFoundError):
    """A shard spec names no file."""


# ---------------------------------------------------------------------------------------------
# Shard lists
# ---------------------------------------------------------------------------------------------


def expand_shards(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], hint: str = SYNTHETIC_COMMAND) -> list[str]:
    """Expand a shard spec into existing files.

    Args:
        spec: a path, a brace pattern (``train-{000000..000009}.tar``), a glob, or a list of these.
        hint: the command that creates the shards, quoted in the error.

    Raises:
        FileNotFoundError: a named shard does not exist (the message names it and ``hint``).
    """
    import braceexpand

    items = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    urls: list[str] = []
    for item in items:
        for expanded in braceexpand.braceexpand(str(item)):
            if any(char in expanded for char in "*?["):
                matches = sorted(glob.glob(expanded))
                if not matches:
                    raise ShardNotFoundError(f"no shard matches {expanded!r}; create shards with: {hint}")
                urls.extend(matches)
            elif not Path(expanded).is_file():
                raise ShardNotFoundError(f"shard not found: {expanded}; create shards with: {hint}")
            else:
                urls.append(expanded)
    if not urls:
        raise ShardNotFoundError(f"the shard spec {spec!r} names no file; create shards with: {hint}")
    return urls


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


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _check_complete(url: str) -> None:
    """Refuse a local tar that lacks its end-of-archive blocks (a truncated copy or download)."""
    path = Path(url)
    if not path.is_file():
        raise ShardError(f"shard not found: {url}")
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - 1024))
        tail = handle.read(1024)
    if size < 1024 or size % 512 != 0 or tail.strip(b"\0"):
        raise ShardError(
            f"shard {url} is truncated or not a tar file (size {size} B, no end-of-archive blocks)",
            "re-create it (or copy it again)",
        )


def count_shard_samples(urls: Sequence[str]) -> int:
    """Number of samples in tar shards (reads only the member headers); a bad shard is named."""
    import tarfile

    total = 0
    for url in urls:
        _check_complete(url)
        keys = set()
        try:
            with tarfile.open(url) as archive:
                for member in archive:
                    if member.isreg():
                        keys.add(member.name.split(".", 1)[0])
        except (tarfile.TarError, EOFError, OSError) as error:
            raise ShardError(f"cannot read shard {url}: {type(error).__name__}: {error}", "re-create it") from error
        total += len(keys)
    return total


def iterate_shard(url: str) -> Iterator[dict[str, Any]]:
    """Raw samples (``__key__``, ``__url__`` and one bytes entry per file) of one tar shard.

    Raises:
        ShardError: the file is missing, not a tar, or truncated (names the shard and last key).
    """
    import webdataset as wds

    _check_complete(url)
    last_key = None
    try:
        for sample in wds.tarfile_samples([{"url": url}]):
            last_key = sample.get("__key__")
            yield sample
    except ShardError:
        raise
    except Exception as error:  # tarfile.ReadError, EOFError, OSError ...
        after = f" after sample {last_key!r}" if last_key else ""
        reason = error.args[0] if error.args else ""
        raise ShardError(f"cannot read shard {url}{after}: {type(error).__name__}: {reason}", "re-create it (or copy it again)") from error


def _require(sample: dict[str, Any], required: Sequence[str], kind: str) -> None:
    missing = [key for key in required if key not in sample]
    if missing:
        raise ShardError(
            f"{sample.get('__url__')}: {kind} sample {sample.get('__key__')!r} is missing {missing} "
            f"(has {sorted(k for k in sample if not k.startswith('__'))})"
        )


def _load_npy(sample: dict[str, Any], key: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(sample[key]), allow_pickle=False)
    except Exception as error:
        raise ShardError(f"{sample.get('__url__')}: sample {sample.get('__key__')!r}: cannot decode {key}: {error}") from None


def _load_meta(sample: dict[str, Any]) -> dict[str, Any]:
    try:
        meta = json.loads(sample["meta.json"])
    except Exception as error:
        raise ShardError(f"{sample.get('__url__')}: sample {sample.get('__key__')!r}: meta.json is not valid JSON: {error}") from None
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ShardError(
            f"{sample.get('__url__')}: sample {sample.get('__key__')!r} has schema_version {version}, this reader "
            f"reads {SCHEMA_VERSION}; rebuild the shards"
        )
    return meta


def _load_png(sample: dict[str, Any], key: str, flags: int) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(sample[key], np.uint8), flags)
    if image is None:
        raise ShardError(f"{sample.get('__url__')}: sample {sample.get('__key__')!r}: {key} is not a decodable PNG")
    return image


@dataclass
class CropDecoder:
    """Turn a raw crop-shard sample into HMAR's training tensors (batch keys in schema.py).

    Args:
        crop_size: output side S; stored crops of another size are resized.
    """

    crop_size: int = 256

    def __call__(self, sample: dict[str, Any]) -> dict[str, torch.Tensor]:
        import cv2
        from phalp_lightning.datamodules.schema import IMAGENET_MEAN, IMAGENET_STD

        _require(sample, CROP_KEYS_REQUIRED, "crop")
        meta = _load_meta(sample)
        where = f"{sample.get('__url__')}: sample {sample.get('__key__')!r}"
        rgb = _load_png(sample, "crop.png", cv2.IMREAD_COLOR)[..., ::-1]
        mask = _load_png(sample, "mask.png", cv2.IMREAD_GRAYSCALE)
        stored = rgb.shape[0]
        if rgb.shape[:2] != (stored, stored) or mask.shape != (stored, stored):
            raise ShardError(f"{where}: crop {rgb.shape} and mask {mask.shape} must be square and the same size")
        if stored != self.crop_size:
            rgb = cv2.resize(np.ascontiguousarray(rgb), (self.crop_size, self.crop_size), interpolation=cv2.INTER_AREA if stored > self.crop_size else cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (self.crop_size, self.crop_size), interpolation=cv2.INTER_NEAREST)
        normalised = (rgb.astype(np.float32) / 255.0 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        image = np.concatenate([normalised.transpose(2, 0, 1), mask[None].astype(np.float32)], axis=0)
        keypoints_2d = _load_npy(sample, "keypoints_2d.npy").astype(np.float32)
        if keypoints_2d.shape != (44, 3):
            raise ShardError(f"{where}: keypoints_2d.npy must be (44, 3), got {keypoints_2d.shape}")
        keypoints_2d[:, :2] = keypoints_2d[:, :2] / stored - 0.5
        out = {
            "image": torch.from_numpy(image),
            "keypoints_2d": torch.from_numpy(keypoints_2d),
            "box_xyxy": torch.tensor(meta["box_xyxy"], dtype=torch.float32),
        }
        has_3d = "keypoints_3d.npy" in sample
        keypoints_3d = _load_npy(sample, "keypoints_3d.npy").astype(np.float32) if has_3d else np.zeros((44, 4), np.float32)
        if keypoints_3d.shape != (44, 4):
            raise ShardError(f"{where}: keypoints_3d.npy must be (44, 4), got {keypoints_3d.shape}")
        out["keypoints_3d"] = torch.from_numpy(keypoints_3d)
        out["has_keypoints_3d"] = torch.tensor(has_3d)
        has_smpl = "smpl.npz" in sample
        if has_smpl:
            try:
                with np.load(io.BytesIO(sample["smpl.npz"])) as smpl:
                    arrays = {name: smpl[name].astype(np.float32) for name in ("global_orient", "body_pose", "betas")}
            except Exception as error:
                raise ShardError(f"{where}: cannot decode smpl.npz: {error}") from None
        else:
            arrays = {"global_orient": np.eye(3, dtype=np.float32)[None], "body_pose": np.broadcast_to(np.eye(3, dtype=np.float32), (23, 3, 3)).copy(), "betas": np.zeros(10, np.float32)}
        out["smpl_global_orient"] = torch.from_numpy(arrays["global_orient"].reshape(1, 3, 3))
        out["smpl_body_pose"] = torch.from_numpy(arrays["body_pose"].reshape(23, 3, 3))
        out["smpl_betas"] = torch.from_numpy(arrays["betas"].reshape(10))
        out["has_smpl"] = torch.tensor(has_smpl)
        has_camera = "camera.npy" in sample
        camera = _load_npy(sample, "camera.npy").astype(np.float32).reshape(3) if has_camera else np.zeros(3, np.float32)
        out["camera"] = torch.from_numpy(camera)
        out["has_camera"] = torch.tensor(has_camera)
        return out


@dataclass
class TrackletDecoder:
    """Turn a raw tracklet-shard sample into the pose transformer's tensors (schema.py).

    Args:
        sequence_length: crop or pad every window to this many steps (None: keep the stored T).
        random_crop: pick the crop's start at random (training) instead of at 0.
        load_appearance: add ``appearance`` (every sample must have it).
        load_actions: add ``actions`` (B,T,num_actions) and ``has_actions`` (zeros where absent).
        num_actions: the action vocabulary size when loading actions (AVA: 80).
    """

    sequence_length: int | None = None
    random_crop: bool = False
    load_appearance: bool = False
    load_actions: bool = False
    num_actions: int = 80

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        _require(sample, TRACKLET_KEYS_REQUIRED, "tracklet")
        _load_meta(sample)
        where = f"{sample.get('__url__')}: sample {sample.get('__key__')!r}"
        arrays = {
            "pose": _load_npy(sample, "pose.npy").astype(np.float32),
            "location": _load_npy(sample, "location.npy").astype(np.float32),
            "time": _load_npy(sample, "time.npy").astype(np.int64),
            "valid": _load_npy(sample, "valid.npy").astype(bool),
        }
        length = arrays["pose"].shape[0]
        expected = {"pose": (length, 229), "location": (length, 99), "time": (length,), "valid": (length,)}
        if self.load_appearance:
            if "appearance.npy" not in sample:
                raise ShardError(f"{where}: load_appearance is on but the sample has no appearance.npy")
            arrays["appearance"] = _load_npy(sample, "appearance.npy").astype(np.float32)
            expected["appearance"] = (length, 4096)
        if self.load_actions:
            if "actions.npy" in sample:
                actions = _load_npy(sample, "actions.npy").astype(np.float32)
                if actions.ndim != 2 or actions.shape[0] != length or actions.shape[1] > self.num_actions:
                    raise ShardError(f"{where}: actions.npy must be (T, <= {self.num_actions}), got {actions.shape}")
                arrays["actions"] = np.pad(actions, ((0, 0), (0, self.num_actions - actions.shape[1])))
            else:
                arrays["actions"] = np.zeros((length, self.num_actions), np.float32)
            expected["actions"] = (length, self.num_actions)
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise ShardError(f"{where}: {name}.npy must have shape {shape}, got {arrays[name].shape}")
        target = self.sequence_length or length
        if length > target:
            start = int((rng or np.random.default_rng()).integers(0, length - target + 1)) if self.random_crop else 0
            arrays = {name: value[start : start + target] for name, value in arrays.items()}
        elif length < target:
            arrays = {name: np.concatenate([value, np.zeros((target - length, *value.shape[1:]), value.dtype)]) for name, value in arrays.items()}
        out = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in arrays.items()}
        if self.load_actions:
            out["has_actions"] = torch.tensor("actions.npy" in sample)
        return out


# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------


@dataclass
class ShardSource:
    """One dataset of a mixture: its shard files and its mixing weight."""

    urls: list[str]
    weight: float = 1.0
    name: str = ""


def distributed_info() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed when initialised, else RANK / WORLD_SIZE, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class ShardStream(IterableDataset):
    """Samples from one or several shard sets, split over ranks and workers (see the module doc).

    Args:
        sources: the datasets (shard lists with mixing weights).
        decode: raw sample -> tensor dict; called with ``(sample, rng)`` when ``pass_rng``.
        train: endless, shuffled, weight-mixed stream of ``epoch_length`` samples per epoch; else
            one ordered pass over every sample.
        epoch_length: total samples per epoch over all ranks (training only).
        batch_size: per-slot sample counts are rounded up to whole batches (so every rank runs the
            same number of full batches).
        num_workers: the DataLoader's worker count (for the length).
        shuffle_buffer: samples held for shuffling, per dataset (training; 0 or 1 disables it);
            shard order is shuffled as well.
        seed: base seed; the stream of a slot depends on (seed, epoch, slot) only.
        rank, world_size: override the detected DDP position (tests, custom launchers).
        pass_rng: call ``decode(sample, rng)`` (for random crops).
        balanced_eval: split validation sample by sample (balanced ranks; every slot reads every
            shard) instead of shard by shard (less reading, ranks may differ by a shard).
    """

    def __init__(
        self,
        sources: Sequence[ShardSource],
        decode: Callable[..., dict[str, torch.Tensor]],
        train: bool,
        epoch_length: int | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        pass_rng: bool = False,
        balanced_eval: bool = True,
    ) -> None:
        super().__init__()
        if not sources or any(not source.urls for source in sources):
            raise ValueError("ShardStream needs at least one source with at least one shard")
        if train and (epoch_length is None or epoch_length < 1):
            raise ValueError(f"a training stream needs epoch_length >= 1, got {epoch_length}")
        weights = np.asarray([source.weight for source in sources], np.float64)
        if (weights <= 0).any() or not np.isfinite(weights).all():
            raise ValueError(f"mixing weights must be positive, got {weights.tolist()}")
        self.sources = list(sources)
        self.weights = weights / weights.sum()
        self.decode = decode
        self.train = train
        self.epoch_length = epoch_length
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pass_rng = pass_rng
        self.balanced_eval = balanced_eval
        self._epoch = 0
        self._iterations = 0
        # Set to an epoch number to replay the same stream every epoch (overfitting a few batches).
        self.fixed_epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (reshuffles the training stream); called by :class:`EpochDataLoader`."""
        self._epoch = epoch
        self._iterations = 0

    def _position(self) -> tuple[int, int]:
        rank, world = distributed_info()
        rank = self.rank if self.rank is not None else rank
        world = self.world_size if self.world_size is not None else world
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return rank * workers + worker, world * workers

    def samples_per_slot(self, slots: int) -> int:
        """Training samples each (rank, worker) yields per epoch: a whole number of batches."""
        batches = math.ceil(self.epoch_length / (slots * self.batch_size))
        return max(1, batches) * self.batch_size

    def __len__(self) -> int:
        if not self.train:
            raise TypeError("a validation ShardStream has no fixed length")
        rank, world = distributed_info()
        world = self.world_size if self.world_size is not None else world
        workers = max(1, self.num_workers)
        return self.samples_per_slot(world * workers) * workers

    def _slot_samples(self, source: ShardSource, slot: int, slots: int, rng: np.random.Generator | None) -> Iterator[dict[str, Any]]:
        """One pass over the part of ``source`` that belongs to ``slot``."""
        urls = list(source.urls)
        if rng is not None:
            # The same permutation on every slot (seeded by epoch only), so the parts stay disjoint.
            urls = [urls[i] for i in np.random.default_rng([self.seed, self._current_epoch, 7]).permutation(len(urls))]
        by_shard = len(urls) >= slots and (self.train or not self.balanced_eval)
        if by_shard:
            own = urls[slot::slots]
            if rng is not None:
                own = [own[i] for i in rng.permutation(len(own))]
            for url in own:
                yield from iterate_shard(url)
        else:
            index = 0
            for url in urls:
                for sample in iterate_shard(url):
                    if index % slots == slot:
                        yield sample
                    index += 1

    def _endless(self, source: ShardSource, slot: int, slots: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        """Endless passes over the slot's part, shuffled within each pass (shard order + buffer).

        The buffer is flushed at the end of every pass, so every sample of a pass comes out before
        any sample of the next one: an epoch as long as the data shows each sample exactly once.
        """
        while True:
            produced = False
            buffer: list[dict[str, Any]] = []
            for sample in self._slot_samples(source, slot, slots, rng):
                produced = True
                if self.shuffle_buffer <= 1:
                    yield sample
                    continue
                buffer.append(sample)
                if len(buffer) >= self.shuffle_buffer:
                    pick = int(rng.integers(len(buffer)))
                    buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                    yield buffer.pop()
            for pick in rng.permutation(len(buffer)):
                yield buffer[pick]
            if not produced:
                raise ShardError(
                    f"dataset {source.name or source.urls[0]!r} has no sample for rank/worker slot {slot} of {slots}: "
                    "write more (smaller) shards or use fewer workers"
                )

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self._current_epoch = self._epoch + self._iterations if self.fixed_epoch is None else self.fixed_epoch
        self._iterations += 1
        slot, slots = self._position()
        if not self.train:
            for source in self.sources:
                for sample in self._slot_samples(source, slot, slots, None):
                    yield self.decode(sample, None) if self.pass_rng else self.decode(sample)
            return
        rng = np.random.default_rng([self.seed, self._current_epoch, slot])
        streams = [self._endless(source, slot, slots, rng) for source in self.sources]
        for _ in range(self.samples_per_slot(slots)):
            choice = int(rng.choice(len(streams), p=self.weights)) if len(streams) > 1 else 0
            sample = next(streams[choice])
            yield self.decode(sample, rng) if self.pass_rng else self.decode(sample)


class EpochDataLoader(torch.utils.data.DataLoader):
    """A DataLoader that tells its :class:`ShardStream` which epoch starts at each ``iter()``.

    Args:
        epoch_source: returns the epoch that is starting (the trainer's ``current_epoch``), so a run
            resumed from a checkpoint continues the data stream of its epoch; None counts ``iter()`` calls.
    """

    def __init__(self, *args: Any, epoch_source: Callable[[], int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch = 0
        self._epoch_source = epoch_source

    def __iter__(self):
        epoch = self._epoch_source() if self._epoch_source is not None else self._epoch
        if isinstance(self.dataset, ShardStream):
            self.dataset.set_epoch(epoch)
        self._epoch = epoch + 1
        return super().__iter__()
