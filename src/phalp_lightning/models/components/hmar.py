"""HMAR: Human Mesh and Appearance Recovery (PHALP's per-person network).

One forward runs every person crop of a frame as a batch (docs/hmar.md, Architecture):

    image (B,4,S,S) -> ResNet-50 -> masked features -> max-pool -> pose_emb (B,2048)
                                                              -> SMPL head -> pose_smpl, pred_cam
                    -> unmasked skips -> texture head -> flow (B,2,S,S)
    grid_sample(image, flow) -> uv_image -> process_uv_image -> uv_vector (B,4,S,S)
    encoding_head.encode(uv_vector) -> appearance code (B, 16*(S/16)^2) = 4096 at S = 256

The state dict holds exactly the official keys (backbone, texture_head, encoding_head, smpl_head);
the SMPL body model is non-persistent and built from the asset files.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from phalp_lightning.assets import resolve
from phalp_lightning.body_model import BodyModel
from phalp_lightning.models.components.appearance import EncodingHead, appearance_dim
from phalp_lightning.models.components.backbones import ResNetBackbone, pose_embedding
from phalp_lightning.models.components.heads import SMPLHead, TextureHead, read_smpl_mean_params
from phalp_lightning.utils.geometry import (
    FOCAL_LENGTH,
    IMG_SIZE,
    crop_cam_to_full_translation,
    perspective_projection,
    project_to_padded_frame,
)

# HMAR's RGB input is normalised by phalp_lightning.utils.image.normalize_rgb (the crop cutters apply it).
# process_uv_image divides the sampled (normalised) RGB by this.
UV_RGB_DIVISOR = 5.0


def process_uv_image(uv_image: Tensor) -> Tensor:
    """Raw UV texture -> autoencoder input (docs/hmar.md, Architecture).

    Args:
        uv_image: (B, 4, S, S) sampled crop: normalised RGB and the mask channel (0-255 scale).

    Returns:
        (B, 4, S, S): RGB / 5 where the sampled mask is non-zero (0 elsewhere), mask channel +1
        where visible and -1 elsewhere.
    """
    visible = (uv_image[:, 3:4] != 0).to(uv_image.dtype)
    rgb = uv_image[:, :3] / UV_RGB_DIVISOR * visible
    return torch.cat([rgb, 2.0 * visible - 1.0], dim=1)


def crop_keypoints(joints: Tensor, pred_cam: Tensor, focal_length: float = FOCAL_LENGTH) -> Tensor:
    """Project body-frame joints with the crop camera into crop units in [-0.5, 0.5].

    The crop camera ``(s, tx, ty)`` is a pinhole camera with focal ``focal_length`` over a
    256-pixel crop at depth ``2 f / (256 s)``; this equals ``get_3d_parameters`` with the box
    filling the whole frame, divided by 256 and shifted by -0.5.

    Args:
        joints: (B, J, 3) body-frame joints.
        pred_cam: (B, 3) crop camera.

    Returns:
        (B, J, 2) x, y in crop units (-0.5 = left/top edge, +0.5 = right/bottom edge).
    """
    batch = pred_cam.shape[0]
    centre = pred_cam.new_full((batch, 2), IMG_SIZE / 2.0)
    scale = pred_cam.new_full((batch,), float(IMG_SIZE))
    cam_t = crop_cam_to_full_translation(pred_cam, centre, scale, focal_length, IMG_SIZE)
    return perspective_projection(joints, cam_t, focal_length / IMG_SIZE)


class HMAR(nn.Module):
    """PHALP's HMAR network with checkpoint-compatible parameter names.

    Args:
        assets_dir: root of the asset files (SMPL model, J19 regressor, mean parameters);
            ``None`` uses ``$PHALP_ASSETS`` or the default cache (see ``phalp_lightning.assets``).
        img_size: crop side S the network takes (256 for the official weights; any multiple of 32
            works, e.g. 64 for CPU tests). The weights do not depend on S, but the appearance code has
            16*(S/16)^2 values, so ``forward`` insists on this size.
        mask_type: backbone mask handling, ``"feat"`` (official), ``"rgb"`` or ``"rgbm"``.
        smpl_iterations: IEF iterations of the SMPL head (3).
        smpl_dropout: dropout inside the SMPL head while training (0.5 official).
        focal_length: virtual focal length of the camera conversions (5000).
    """

    def __init__(
        self,
        assets_dir: str | os.PathLike[str] | None = None,
        img_size: int = IMG_SIZE,
        mask_type: str = "feat",
        smpl_iterations: int = 3,
        smpl_dropout: float = 0.5,
        focal_length: float = FOCAL_LENGTH,
    ) -> None:
        super().__init__()
        if img_size % 32 != 0 or img_size < 32:
            raise ValueError(f"img_size must be a positive multiple of 32 (backbone stride), got {img_size}")
        self.img_size = img_size
        self.mask_type = mask_type
        self.smpl_iterations = smpl_iterations
        self.smpl_dropout = smpl_dropout
        self.focal_length = focal_length

        mean_pose, mean_betas, mean_camera = read_smpl_mean_params(resolve("smpl_mean_params", assets_dir))
        self.backbone = ResNetBackbone(mask_type=mask_type)
        self.texture_head = TextureHead()
        self.encoding_head = EncodingHead()
        self.smpl_head = SMPLHead(
            mean_pose,
            mean_betas,
            mean_camera,
            input_dim=self.backbone.out_channels,
            num_iterations=smpl_iterations,
            dropout=smpl_dropout,
        )
        # Non-persistent: the official checkpoint has no body-model keys.
        self.smpl = BodyModel(
            model_path=resolve("smpl_neutral", assets_dir),
            joint_regressor_extra=resolve("smpl_to_j19", assets_dir),
            persistent=False,
        )

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments (without the machine-specific assets_dir) to rebuild this network."""
        return {
            "img_size": self.img_size,
            "mask_type": self.mask_type,
            "smpl_iterations": self.smpl_iterations,
            "smpl_dropout": self.smpl_dropout,
            "focal_length": self.focal_length,
        }

    @property
    def appearance_dim(self) -> int:
        """Length of the appearance code at this network's crop size (4096 at 256)."""
        return appearance_dim(self.img_size)

    def forward(self, image: Tensor) -> dict[str, Any]:
        """Run HMAR on a batch of person crops.

        Args:
            image: (B, 4, S, S): ImageNet-normalised RGB and the person mask in [0, 255].

        Returns:
            dict with ``uv_image`` (B,4,S,S) (mask channel binarised to +-1 as in the official code),
            ``uv_vector`` (B,4,S,S), ``flow`` (B,2,S,S), ``pose_emb`` (B,2048), ``pose_smpl``
            dict(global_orient (B,1,3,3), body_pose (B,23,3,3), betas (B,10)), ``pred_cam`` (B,3),
            and ``smpl_iterations`` (per-IEF-step pose_6d/betas/camera, for training losses).
        """
        if image.ndim != 4 or image.shape[1] != 4 or image.shape[2] != image.shape[3]:
            raise ValueError(f"HMAR input must be square (B, 4, S, S) crops, got {tuple(image.shape)}")
        if image.shape[-1] != self.img_size:
            raise ValueError(
                f"HMAR was built for {self.img_size} px crops (img_size), got {image.shape[-1]} px; "
                "crop at img_size or build the network with the crop size you use"
            )
        features, skips = self.backbone(image)
        pose_emb = pose_embedding(features)
        flow = self.texture_head(skips)
        uv_image = F.grid_sample(
            image, flow.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros", align_corners=False
        )
        uv_vector = process_uv_image(uv_image)
        # The official process_uv_image writes the +-1 mask in place into uv_image; reproduced without
        # the in-place write so autograd stays valid.
        uv_image = torch.cat([uv_image[:, :3], uv_vector[:, 3:]], dim=1)
        pose_smpl, pred_cam, iterations = self.smpl_head(pose_emb)
        return {
            "uv_image": uv_image,
            "uv_vector": uv_vector,
            "flow": flow,
            "pose_emb": pose_emb,
            "pose_smpl": pose_smpl,
            "pred_cam": pred_cam,
            "smpl_iterations": iterations,
        }

    def encode_appearance(self, uv_vector: Tensor) -> Tensor:
        """Appearance code of processed UV maps.

        Args:
            uv_vector: (B, 4, S, S) as returned by ``forward`` (or masked by the tracker).

        Returns:
            (B, 16*(S/16)^2) non-negative codes, flattened in C, H, W order (4096 at S = 256).
        """
        return self.encoding_head.encode(uv_vector).flatten(1)

    def body(self, pose_smpl: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Pose the body model: returns vertices (B,6890,3) and joints (B,44,3) in the body frame."""
        output = self.smpl(pose_smpl["global_orient"], pose_smpl["body_pose"], pose_smpl["betas"])
        return output.vertices, output.joints

    def get_3d_parameters(
        self,
        pose_smpl: dict[str, Tensor],
        pred_cam: Tensor,
        center: Tensor,
        scale: Tensor,
        img_size: int = IMG_SIZE,
    ) -> dict[str, Tensor]:
        """3-D joints, their image projection and the full-image camera translation (docs/geometry.md).

        Args:
            pose_smpl: dict(global_orient (B,1,3,3), body_pose (B,23,3,3), betas (B,10)).
            pred_cam: (B, 3) crop camera ``(s, tx, ty)``.
            center: (B, 2) box centre in the ``img_size`` version of the square zero-padded frame.
            scale: (B,) or (B, 1) box side in that space.
            img_size: side of the padded-frame image (256).

        Returns:
            dict(``joints_3d`` (B,45,3) body frame, BODY-25 + J19 + the SMPL origin (index 44),
            ``joints_2d`` (B,45,2) pixels of the ``img_size`` padded frame, ``pred_cam_t`` (B,3),
            ``vertices`` (B,6890,3) body frame).
        """
        vertices, joints = self.body(pose_smpl)
        joints = torch.cat([joints, joints.new_zeros(joints.shape[0], 1, 3)], dim=1)
        pred_cam_t = crop_cam_to_full_translation(pred_cam, center, scale, self.focal_length, img_size)
        joints_2d = project_to_padded_frame(joints, pred_cam_t, self.focal_length, img_size)
        return {"joints_3d": joints, "joints_2d": joints_2d, "pred_cam_t": pred_cam_t, "vertices": vertices}
