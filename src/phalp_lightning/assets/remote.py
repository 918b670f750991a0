"""Where the released files are published: the one table of download locations.

Every downloadable asset has one row: the group it belongs to, the asset it becomes (its place
under the assets root comes from :data:`phalp_lightning.assets.ASSETS`), the official base URL and
the path below it. Some files are published under another name than the one they are saved as
(``pose_predictor_40006.ckpt`` becomes ``weights/pose_predictor.pth``, ``ava_class_mappping.pkl``
with its typo becomes ``ava/ava_class_mapping.pkl``).

A mirror (``--base-url`` or ``$PHALP_ASSETS_BASE_URL``; ``http(s)://`` or ``file://``) holds the
same tree as the official hosts: each file at ``<base>/<mirror_path>``. ``size`` and ``sha256``
are checked when known; the published files carry neither today, so their content is validated
structurally instead (:mod:`phalp_lightning.pipelines.assets.checks`). The SMPL body model is licensed and
is never downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

BASE_URL_ENV_VAR = "PHALP_ASSETS_BASE_URL"
PHALP_BASE = "https://www.cs.utexas.edu/~pavlakos/phalp"
DETECTRON2_BASE = "https://dl.fbaipublicfiles.com"


@dataclass(frozen=True)
class RemoteFile:
    """One published file: where it is downloaded from and which asset it becomes."""

    group: str
    asset: str  # key of phalp_lightning.assets.ASSETS (its relpath is where the file is saved)
    base: str  # official host and folder
    mirror_path: str  # path below ``base``, and below a mirror's base URL
    size: int | None = None  # bytes, when published
    sha256: str | None = None  # hex digest, when published

    @property
    def official_url(self) -> str:
        return f"{self.base}/{self.mirror_path}"

    def url(self, base_url: str | None = None) -> str:
        """The URL to fetch: the official one, or the same path under a mirror's base URL."""
        base_url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV_VAR) or None
        if base_url is None:
            return self.official_url
        return f"{base_url.rstrip('/')}/{self.mirror_path}"


_VITDET_H = "detectron2/ViTDet/COCO/cascade_mask_rcnn_vitdet_h/f328730692/model_final_f05665.pkl"

REMOTE_FILES: tuple[RemoteFile, ...] = (
    RemoteFile("3d", "head_faces", PHALP_BASE, "3D/head_faces.npy"),
    RemoteFile("3d", "mean_std", PHALP_BASE, "3D/mean_std.npy"),
    RemoteFile("3d", "smpl_mean_params", PHALP_BASE, "3D/smpl_mean_params.npz"),
    RemoteFile("3d", "smpl_to_j19", PHALP_BASE, "3D/SMPL_to_J19.pkl"),
    RemoteFile("3d", "texture", PHALP_BASE, "3D/texture.npz"),
    RemoteFile("3d", "bmap_256", PHALP_BASE, "bmap_256.npy"),
    RemoteFile("3d", "fmap_256", PHALP_BASE, "fmap_256.npy"),
    RemoteFile("weights", "hmar_weights", PHALP_BASE, "weights/hmar_v2_weights.pth"),
    # The config first: checking the checkpoint reads its heads/dim_head split.
    RemoteFile("weights", "pose_predictor_config", PHALP_BASE, "weights/config_40006.yaml"),
    RemoteFile("weights", "pose_predictor", PHALP_BASE, "weights/pose_predictor_40006.ckpt"),
    RemoteFile("ava", "ava_labels", PHALP_BASE, "ava/ava_labels.pkl"),
    RemoteFile("ava", "ava_class_mapping", PHALP_BASE, "ava/ava_class_mappping.pkl"),
    RemoteFile("detector", "vitdet_weights", DETECTRON2_BASE, _VITDET_H),
)

GROUP_HELP = {
    "3d": "body-model side files (mean parameters, J19 regressor, UV maps, pose normalisation): HMAR, tracker, renderer",
    "weights": "PHALP's trained HMAR and pose predictor (+ its config): real 3D and pose prediction in predict.py",
    "ava": "AVA action label maps (action read-out of the pose predictor)",
    "detector": "ViTDet-H cascade Mask R-CNN weights for detector=vitdet (needs detectron2)",
}
GROUPS: dict[str, tuple[RemoteFile, ...]] = {
    group: tuple(remote for remote in REMOTE_FILES if remote.group == group) for group in GROUP_HELP
}
ALL_GROUP = "all"


def remote_for(asset: str) -> RemoteFile | None:
    """The published file that becomes ``asset``, or None (SMPL, and anything not published)."""
    return next((remote for remote in REMOTE_FILES if remote.asset == asset), None)


def select(groups: list[str] | tuple[str, ...]) -> list[RemoteFile]:
    """The files of ``groups`` (``all`` = every group), in table order, each once."""
    from phalp_lightning.errors import UserError

    unknown = [group for group in groups if group != ALL_GROUP and group not in GROUPS]
    if unknown:
        raise UserError(
            f"unknown asset group(s) {', '.join(unknown)}",
            f"choose from {', '.join([*GROUPS, ALL_GROUP])}",
        )
    wanted = set(GROUPS) if ALL_GROUP in groups or not groups else set(groups)
    return [remote for remote in REMOTE_FILES if remote.group in wanted]


def download_command(group: str) -> str:
    """The exact command that fetches ``group``."""
    return f"python -m phalp_lightning.assets download {group}"
