"""Reading shards: checking a tar is whole, iterating its raw samples, decoding them into tensors.

:func:`iterate_shard` yields the raw samples of one tar (a missing, truncated or non-tar file is a
:class:`~phalp_lightning.datamodules.schema.ShardError` naming the shard and the last good key);
:class:`CropDecoder` and :class:`TrackletDecoder` turn a raw sample into the batch tensors listed in
``schema.py``, refusing other schema versions and malformed entries with the file and key named.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from phalp_lightning.datamodules.schema import (
    CROP_KEYS_REQUIRED,
    SCHEMA_VERSION,
    TRACKLET_KEYS_REQUIRED,
    ShardError,
)


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

        from phalp_lightning.utils.image import normalize_rgb

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
        normalised = normalize_rgb(rgb.astype(np.float32))
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

