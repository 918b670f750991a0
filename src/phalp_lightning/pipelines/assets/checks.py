"""Check asset files by content: shapes of arrays, keys of checkpoints, pickles that open.

``check_asset(name, path)`` raises :class:`AssetContentError` (one line: the file and what is
wrong) or returns a short summary of what the file holds. The full check reads the whole file:

- arrays (``.npy``/``.npz``): read without pickle, keys and shapes as the code that uses them needs;
- pickles: read with an unpickler that only builds numpy/scipy arrays and plain containers, so a
  downloaded pickle cannot run code;
- HMAR weights: the official key map and the strict key/shape comparison with the network's 686
  entries (:mod:`phalp_lightning.models.convert_hmar`);
- pose predictor: the ``encoder.`` key table, a network built from its shapes and loaded strictly
  (:mod:`phalp_lightning.models.convert_pose_transformer`), and its YAML's ``configs`` node;
- detector weights: a detectron2 pickle of arrays holding every parameter of the shipped ViTDet-H
  config with its shape (``detection/configs/cascade_mask_rcnn_vitdet_h.layout.tsv``).

The quick check (``full=False``, used by ``list``) reads only headers and file ends, which is enough
to tell a truncated download from a complete one without reading gigabytes.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from phalp_lightning.assets.pickles import PickleRefusedError, safe_pickle_load
from phalp_lightning.errors import UserError, one_line
from phalp_lightning.utils.io import sha256_of

log = logging.getLogger(__name__)

SMPL_NUM_VERTICES = 6890
SMPL_NUM_FACES = 13776


class AssetContentError(UserError, ValueError):
    """A file is present but its content is not the asset (truncated, corrupt, or another file)."""


class _Invalid(Exception):
    """Internal: the reason a file fails its check (wrapped into AssetContentError with the path)."""


# ---------------------------------------------------------------------------------------------
# Checks per kind of file. Each gets the path and ``full``; raises _Invalid; returns a summary.


def _describe(array: Any) -> str:
    return f"{tuple(array.shape)} {array.dtype}"


def _npy(path: Path, full: bool) -> np.ndarray:
    try:
        # mmap reads the header and checks the data length against the file size.
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        return np.array(array) if full else array
    except ValueError as error:
        raise _Invalid(f"not a complete .npy array ({error})") from error


def _npz(path: Path, keys: Mapping[str, Callable[[np.ndarray], bool]], full: bool) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in keys if key not in data.files]
            if missing:
                raise _Invalid(f"lacks the arrays {missing} (has {data.files})")
            # Reading an entry checks its CRC; the quick check reads only the (small) needed entries.
            return {key: data[key] for key in (data.files if full else keys)}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise _Invalid(f"not a complete .npz archive ({error})") from error


def _shape(name: str, array: Any, expected: tuple[int | None, ...]) -> None:
    shape = tuple(array.shape)
    if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape, strict=False)):
        wanted = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
        raise _Invalid(f"{name} has shape {shape}, expected {wanted}")


def _pickle_complete(path: Path) -> None:
    """Quick check: a pickle stream ends with the STOP opcode; a truncated download does not."""
    size = path.stat().st_size
    if size < 2:
        raise _Invalid("empty or truncated pickle")
    with path.open("rb") as handle:
        handle.seek(-1, io.SEEK_END)
        if handle.read(1) != pickle.STOP:
            raise _Invalid("truncated pickle (no end marker)")


def _load_pickle(path: Path) -> Any:
    try:
        return safe_pickle_load(path)
    except PickleRefusedError as error:
        raise _Invalid(str(error)) from None
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise _Invalid(f"does not unpickle ({type(error).__name__}: {error})") from error


def _check_head_faces(path: Path, full: bool) -> str:
    faces = _npy(path, full)
    if not np.issubdtype(faces.dtype, np.integer) or faces.ndim not in (1, 2) or faces.size == 0:
        raise _Invalid(f"expected a non-empty integer array of face indices, got {_describe(faces)}")
    if full and (faces.min() < 0 or faces.max() >= SMPL_NUM_FACES):
        raise _Invalid(f"face indices outside [0, {SMPL_NUM_FACES})")
    return _describe(faces)


def _check_mean_std(path: Path, full: bool) -> str:
    array = _npy(path, full)
    _shape("mean_std", array, (2, 1, None))
    if array.shape[2] > 229 or not np.issubdtype(array.dtype, np.floating):
        raise _Invalid(f"expected float (2, 1, K) with K <= 229, got {_describe(array)}")
    return _describe(array)


def _check_bmap(path: Path, full: bool) -> str:
    array = _npy(path, full)
    _shape("bmap_256", array, (256, 256, 3))
    return _describe(array)


def _check_fmap(path: Path, full: bool) -> str:
    array = _npy(path, full)
    _shape("fmap_256", array, (256, 256))
    if not np.issubdtype(array.dtype, np.integer):
        raise _Invalid(f"expected integer face indices, got {array.dtype}")
    return _describe(array)


def _check_mean_params(path: Path, full: bool) -> str:
    sizes = {"pose": 144, "shape": 10, "cam": 3}
    arrays = _npz(path, {key: bool for key in sizes}, full)
    for key, size in sizes.items():
        if arrays[key].size != size:
            raise _Invalid(f"'{key}' has {arrays[key].size} values, expected {size}")
    return "pose (144,), shape (10,), cam (3,)"


def _check_texture(path: Path, full: bool) -> str:
    arrays = _npz(path, {key: bool for key in ("smpl_faces", "vt", "ft")}, full)
    _shape("smpl_faces", arrays["smpl_faces"], (SMPL_NUM_FACES, 3))
    _shape("ft", arrays["ft"], (SMPL_NUM_FACES, 3))
    _shape("vt", arrays["vt"], (None, 2))
    return f"smpl_faces {arrays['smpl_faces'].shape}, vt {arrays['vt'].shape}, ft {arrays['ft'].shape}"


def _check_j19(path: Path, full: bool) -> str:
    _pickle_complete(path)
    if not full:
        return "pickle"
    regressor = _load_pickle(path)
    _shape("SMPL_to_J19", regressor, (19, SMPL_NUM_VERTICES))
    return _describe(regressor)


def _check_smpl(path: Path, full: bool) -> str:
    _pickle_complete(path)
    if not full:
        return "pickle"
    data = _load_pickle(path)
    if not isinstance(data, dict):
        raise _Invalid(f"holds a {type(data).__name__}, not SMPL's dict of arrays")
    expected = {
        "v_template": (SMPL_NUM_VERTICES, 3),
        "shapedirs": (SMPL_NUM_VERTICES, 3, None),
        "posedirs": (SMPL_NUM_VERTICES, 3, 207),
        "J_regressor": (24, SMPL_NUM_VERTICES),
        "weights": (SMPL_NUM_VERTICES, 24),
        "kintree_table": (2, 24),
        "f": (SMPL_NUM_FACES, 3),
    }
    missing = [key for key in expected if key not in data]
    if missing:
        raise _Invalid(f"lacks the SMPL arrays {missing}")
    for key, shape in expected.items():
        _shape(key, data[key], shape)
    return "SMPL neutral, 6890 vertices" + (" (synthetic mannequin)" if data.get("phalp_lightning_synthetic") else "")


def _check_plain_pickle(path: Path, full: bool) -> str:
    _pickle_complete(path)
    if not full:
        return "pickle"
    data = _load_pickle(path)
    if not hasattr(data, "__len__") or len(data) == 0:
        raise _Invalid(f"holds an empty or unexpected {type(data).__name__}")
    return f"{type(data).__name__} of {len(data)} entries"


def _check_vitdet(path: Path, full: bool) -> str:
    _pickle_complete(path)
    if not full:
        return "pickle"
    from phalp_lightning.detection.detectron2 import shipped_layout
    from phalp_lightning.detection.weights import layout_mismatch

    data = _load_pickle(path)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or not model:
        found = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise _Invalid(f"not a detectron2 checkpoint (expected a dict with a 'model' entry, found {found})")
    not_arrays = [key for key, value in model.items() if not isinstance(value, np.ndarray)]
    if not_arrays:
        raise _Invalid(f"'model' entries that are not arrays: {not_arrays[:5]}")
    # The layout of the shipped ViTDet-H config (detection/configs): every parameter with its shape.
    problem = layout_mismatch(model, shipped_layout("cascade_mask_rcnn_vitdet_h.py"))
    if problem is not None:
        raise _Invalid(f"does not fit the ViTDet-H cascade Mask R-CNN config: {problem}")
    return f"detectron2 checkpoint, {len(model)} arrays, fits ViTDet-H cascade Mask R-CNN"


def _torch_load(path: Path) -> Any:
    """The project's one checkpoint loader, for a release file the user asked to download.

    Asking for the published file is the trust decision here: the loader tries the safe, weights-only
    unpickler first and only then the full one, with its loud UNSAFE LOAD warning.
    """
    from phalp_lightning.models.checkpoints import CheckpointError, load_checkpoint

    try:
        return load_checkpoint(path, map_location="cpu", trusted=True, what="release file")
    except CheckpointError as error:
        raise _Invalid(f"does not load as a torch checkpoint ({one_line(str(error))[:200]})") from error


def _torch_quick(path: Path) -> str:
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile as error:
            raise _Invalid(f"truncated or damaged checkpoint archive ({error})") from error
        return f"torch archive, {len(names)} entries"
    # The legacy format is a sequence of pickles; a complete one still ends with tensor data.
    if path.stat().st_size == 0:
        raise _Invalid("empty file")
    with path.open("rb") as handle:
        if handle.read(2)[:1] != b"\x80":
            raise _Invalid("neither a torch zip archive nor a pickle (truncated download? an HTML error page?)")
    return "torch legacy checkpoint"


def hmar_reference_state_dict() -> dict[str, Any]:
    """HMAR's parameter names and shapes (meta tensors), built without any asset file.

    The four heads are built as HMAR builds them; the body model is not part of the state dict.
    """
    import torch
    from torch import nn

    from phalp_lightning.models.components.appearance import EncodingHead
    from phalp_lightning.models.components.backbones import ResNetBackbone
    from phalp_lightning.models.components.heads import SMPLHead, TextureHead

    with torch.device("meta"):
        heads = nn.Module()
        heads.backbone = ResNetBackbone(mask_type="feat")
        heads.texture_head = TextureHead()
        heads.encoding_head = EncodingHead()
        heads.smpl_head = SMPLHead(input_dim=heads.backbone.out_channels)
    return heads.state_dict()


def _check_hmar(path: Path, full: bool) -> str:
    if not full:
        return _torch_quick(path)
    from phalp_lightning.models.convert_hmar import (
        FILLABLE_KEYS,
        HMARCheckpointError,
        check_state_dict,
        map_official_state_dict,
    )

    official = _torch_load(path)
    if not isinstance(official, Mapping) or not isinstance(official.get("model"), Mapping):
        found = sorted(official)[:8] if isinstance(official, Mapping) else type(official).__name__
        raise _Invalid(f"not the official HMAR file (expected a dict with a 'model' state dict, found {found})")
    mapped, _ignored = map_official_state_dict(official["model"])
    reference = hmar_reference_state_dict()
    try:
        filled = check_state_dict(mapped, reference, path.name, FILLABLE_KEYS)
    except HMARCheckpointError as error:
        raise _Invalid(one_line(str(error)).removeprefix(f"{path.name}: ")) from error
    return f"HMAR weights, {len(reference) - len(filled)} of {len(reference)} keys match"


def _check_pose_predictor(path: Path, full: bool, config: Path | None = None) -> str:
    if not full:
        return _torch_quick(path)
    from phalp_lightning.models.convert_pose_transformer import (
        DEFAULT_CONV_PAD,
        DEFAULT_DIM_HEAD,
        build_from_state_dict,
        official_config_overrides,
        strip_encoder_prefix,
    )

    checkpoint = _torch_load(path)
    raw = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(raw, Mapping) or not raw:
        raise _Invalid("not a pose predictor checkpoint (no 'state_dict')")
    state_dict, _dropped = strip_encoder_prefix(raw)
    if not state_dict:
        raise _Invalid(f"no key starts with 'encoder.' (keys {sorted(raw)[:6]})")
    overrides: dict[str, Any] = {"dim_head": DEFAULT_DIM_HEAD, "conv_pad": DEFAULT_CONV_PAD}
    if config is not None and config.is_file():
        overrides = official_config_overrides(config)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            network = build_from_state_dict(state_dict, overrides, source=path.name)
    except (KeyError, ValueError, RuntimeError) as error:
        raise _Invalid(one_line(str(error)).removeprefix(f"{path.name}: ")) from error
    size = ", ".join(f"{key}={network.config[key]}" for key in ("dim", "depth", "heads") if key in network.config)
    return f"pose predictor, {len(state_dict)} keys ({size})"


def _check_pose_config(path: Path, full: bool) -> str:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise _Invalid(f"not readable YAML ({one_line(str(error))[:200]})") from error
    if not isinstance(data, dict) or not isinstance(data.get("configs"), dict):
        raise _Invalid("expected a YAML mapping with a top-level 'configs:' node")
    transformer = data["configs"].get("transformer")
    if not isinstance(transformer, dict) or not {"heads", "dim_head"} <= set(transformer):
        raise _Invalid("'configs.transformer' lacks heads/dim_head")
    return f"pose predictor config (heads={transformer['heads']}, dim_head={transformer['dim_head']})"


_CHECKS: dict[str, Callable[..., str]] = {
    "smpl_neutral": _check_smpl,
    "smpl_to_j19": _check_j19,
    "smpl_mean_params": _check_mean_params,
    "texture": _check_texture,
    "head_faces": _check_head_faces,
    "mean_std": _check_mean_std,
    "bmap_256": _check_bmap,
    "fmap_256": _check_fmap,
    "hmar_weights": _check_hmar,
    "pose_predictor": _check_pose_predictor,
    "pose_predictor_config": _check_pose_config,
    "ava_labels": _check_plain_pickle,
    "ava_class_mapping": _check_plain_pickle,
    "vitdet_weights": _check_vitdet,
}


def check_asset(
    name: str,
    path: str | os.PathLike[str],
    full: bool = True,
    size: int | None = None,
    sha256: str | None = None,
    pose_predictor_config: str | os.PathLike[str] | None = None,
    todo: str | None = None,
) -> str:
    """Check that ``path`` holds asset ``name``; returns a summary or raises :class:`AssetContentError`.

    Args:
        name: key of :data:`phalp_lightning.assets.ASSETS`.
        path: the file (it may be a download in progress, under another name).
        full: read everything (False: headers and file ends only).
        size, sha256: published size and digest, checked when given (the digest only when ``full``).
        pose_predictor_config: the YAML that gives the pose predictor's heads/dim_head split.
        todo: what the error tells the user to do (default: fetch it again).
    """
    from phalp_lightning.assets import ASSETS, how_to_get

    path = Path(path)
    todo = todo or how_to_get(name)
    if name not in _CHECKS:
        raise KeyError(f"no content check for asset {name!r}; known: {', '.join(ASSETS)}")
    if not path.is_file():
        raise AssetContentError(f"{path}: no such file", todo)
    try:
        if size is not None and path.stat().st_size != size:
            raise _Invalid(f"{path.stat().st_size} bytes, the published file has {size}")
        if full and sha256 is not None and sha256_of(path) != sha256.lower():
            raise _Invalid("sha256 differs from the published digest")
        extra = {"config": Path(pose_predictor_config)} if name == "pose_predictor" and pose_predictor_config else {}
        return _CHECKS[name](path, full, **extra)
    except _Invalid as error:
        raise AssetContentError(f"{path} is not a valid {name} file: {error}", todo) from None
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - unforeseen reader errors are content errors too
        raise AssetContentError(
            f"{path} is not a valid {name} file: {type(error).__name__}: {one_line(str(error))[:300]}", todo
        ) from error
