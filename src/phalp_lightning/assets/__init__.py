"""Registry of the files PHALP uses, where they are looked for, and one clear error when one is missing.

Assets live under one root: ``$PHALP_ASSETS`` if set, else ``~/.cache/phalp_lightning``. The layout
under the root mirrors PHALP's own ``~/.cache/phalp`` so an existing PHALP cache can be pointed at
directly. Nothing downloads on import or on use: ``python -m phalp_lightning.assets download GROUP``
fetches the released files (:mod:`~phalp_lightning.assets.remote` lists where from), ``verify``
checks every file present by content, ``list`` shows what is found, and ``generate`` writes a
synthetic body-model set (a mannequin with SMPL's array names and shapes) for users and tests
without the licensed SMPL files. See docs/assets.md. Those commands are the entry-point floor
(:mod:`phalp_lightning.pipelines.assets`); this package, the registry, is the foundation the models
and the body model import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from phalp_lightning.errors import UserError

ENV_VAR = "PHALP_ASSETS"
# Marker key stored inside generated files so code can tell a mannequin from the real SMPL.
SYNTHETIC_MARKER = "phalp_lightning_synthetic"


class AssetMissingError(UserError, FileNotFoundError):
    """An asset file is not where it is looked for; the message says where to put it."""


@dataclass(frozen=True)
class Asset:
    """One file PHALP uses, relative to the assets root."""

    name: str
    relpath: str
    description: str
    used_by: str
    how_to_get: str
    generated: bool  # True when `python -m phalp_lightning.assets generate` can write a stand-in


SMPL_HELP = (
    "SMPL is licensed and never downloaded: register at https://smpl.is.tue.mpg.de, accept the SMPL "
    "licence, download the neutral model (basicModel_neutral_lbs_10_207_0_v1.0.0.pkl) and convert it "
    "once with `python -m phalp_lightning.assets convert-smpl <that file>`"
)
_PHALP_HELP = "run `{download}` (or copy it from an existing PHALP cache, ~/.cache/phalp/{relpath})"

ASSETS: dict[str, Asset] = {
    asset.name: asset
    for asset in [
        Asset("smpl_neutral", "3D/models/smpl/SMPL_NEUTRAL.pkl", "SMPL neutral body model (6890 vertices, 24 joints)", "body model, HMAR, renderer", SMPL_HELP, True),
        Asset("smpl_to_j19", "3D/SMPL_to_J19.pkl", "extra joint regressor (19 x 6890)", "body model (44/45 joints)", _PHALP_HELP, True),
        Asset("smpl_mean_params", "3D/smpl_mean_params.npz", "mean SMPL pose (6-D), shape and camera", "HMAR SMPL head initialisation", _PHALP_HELP, True),
        Asset("texture", "3D/texture.npz", "SMPL UV layout (smpl_faces, vt, ft)", "HMAR uv sampler, renderer", _PHALP_HELP, True),
        Asset("head_faces", "3D/head_faces.npy", "indices of the head faces", "renderer", _PHALP_HELP, True),
        Asset("mean_std", "3D/mean_std.npy", "pose-vector normalisation (2, 1, K)", "pose transformer", _PHALP_HELP, True),
        Asset("bmap_256", "3D/bmap_256.npy", "UV texel barycentric coordinates (256, 256, 3)", "texture sampler (PHALP')", _PHALP_HELP, True),
        Asset("fmap_256", "3D/fmap_256.npy", "UV texel face index (256, 256)", "texture sampler (PHALP')", _PHALP_HELP, True),
        Asset("hmar_weights", "weights/hmar_v2_weights.pth", "official HMAR weights ({'model': state_dict})", "predict.py ckpt=... (experiment=official_weights), convert_hmar", _PHALP_HELP, False),
        Asset("pose_predictor", "weights/pose_predictor.pth", "official pose transformer checkpoint (Lightning, 'state_dict')", "pose predictor", _PHALP_HELP, False),
        Asset("pose_predictor_config", "weights/pose_predictor.yaml", "pose transformer config (top-level 'configs:')", "pose predictor", _PHALP_HELP, False),
        Asset("ava_labels", "ava/ava_labels.pkl", "AVA action label names", "action read-out", _PHALP_HELP, False),
        Asset("ava_class_mapping", "ava/ava_class_mapping.pkl", "AVA class index mapping", "action read-out", _PHALP_HELP, False),
        Asset("vitdet_weights", "detector/model_final_f05665.pkl", "ViTDet-H cascade Mask R-CNN weights (detectron2 pickle)", "detector=vitdet (detector.weights)", _PHALP_HELP, False),
    ]
}


def assets_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder assets are looked for in: ``root`` if given, else ``$PHALP_ASSETS``, else the cache."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "phalp_lightning"


def asset_path(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where asset ``name`` is looked for (whether or not it exists)."""
    if name not in ASSETS:
        raise KeyError(f"unknown asset {name!r}; known assets: {', '.join(ASSETS)}")
    return assets_root(root) / ASSETS[name].relpath


def how_to_get(name: str, root: str | os.PathLike[str] | None = None) -> str:
    """What to do to get asset ``name``: the download command, or SMPL's registration and conversion."""
    from phalp_lightning.assets.remote import download_command, remote_for

    asset = ASSETS[name]
    remote = remote_for(name)
    download = download_command(remote.group) if remote is not None else ""
    hint = asset.how_to_get.format(relpath=asset.relpath, download=download)
    if asset.generated:
        hint += (
            "; for a synthetic stand-in (a mannequin with SMPL's array layout) run "
            f"`python -m phalp_lightning.assets generate --root {assets_root(root)}`"
        )
    return hint


def resolve(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Path of an existing asset, or :class:`AssetMissingError` saying where it goes and how to get it."""
    path = asset_path(name, root)
    if not path.is_file():
        asset = ASSETS[name]
        raise AssetMissingError(
            f"missing asset '{name}' ({asset.description}): expected the file {path} "
            f"(or set {ENV_VAR} to a folder that holds {asset.relpath})",
            how_to_get(name, root),
        )
    return path


def is_synthetic(root: str | os.PathLike[str] | None = None) -> bool:
    """True when the SMPL file under ``root`` is the generated mannequin, not the licensed model."""
    import pickle

    path = resolve("smpl_neutral", root)
    with path.open("rb") as handle:
        data = pickle.load(handle)
    return bool(data.get(SYNTHETIC_MARKER, False)) if isinstance(data, dict) else False
