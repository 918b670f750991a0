"""Training losses of HMAR. HMAR's own training code is not public, so these follow the
usual HMR/SPIN recipe: confidence-weighted keypoint losses in 2-D (crop units) and 3-D (pelvis
aligned), SMPL-parameter and camera regression where ground truth exists, and the appearance
autoencoder's reconstruction of the UV map. Every loss returns a scalar that is 0 (with a graph)
when its batch has no supervision, so weights never divide by zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Index of the pelvis (BODY-25 "MidHip" = SMPL joint 0) in the 44-joint set.
PELVIS_INDEX = 8

LOSS_NAMES = ("keypoints_2d", "keypoints_3d", "smpl_pose", "smpl_betas", "camera", "appearance", "uv_flow")


def _weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """sum(w * v) / sum(w), or 0 (keeping the graph) when all weights are 0."""
    total = weights.sum()
    return (values * weights).sum() / total.clamp(min=1.0) if total > 0 else values.sum() * 0.0


def keypoint_2d_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Confidence-weighted L1 between 2-D keypoints.

    Args:
        pred: (B, J, 2) predicted keypoints in crop units.
        target: (B, J, 3) x, y in crop units and confidence (0 = absent).
    """
    error = (pred - target[..., :2]).abs().sum(-1)
    return _weighted_mean(error, target[..., 2])


def keypoint_3d_loss(
    pred: Tensor, target: Tensor, has_target: Tensor, pelvis_index: int = PELVIS_INDEX
) -> Tensor:
    """Confidence-weighted L1 between pelvis-aligned 3-D keypoints.

    Args:
        pred: (B, J, 3) predicted body-frame joints (metres).
        target: (B, J, 4) body-frame joints and confidence.
        has_target: (B,) whether the sample has 3-D keypoints at all.
    """
    pred = pred - pred[:, pelvis_index : pelvis_index + 1]
    gt = target[..., :3] - target[:, pelvis_index : pelvis_index + 1, :3]
    weights = target[..., 3] * has_target.to(target.dtype)[:, None]
    return _weighted_mean((pred - gt).abs().sum(-1), weights)


def smpl_pose_loss(
    pred_global_orient: Tensor,
    pred_body_pose: Tensor,
    gt_global_orient: Tensor,
    gt_body_pose: Tensor,
    has_smpl: Tensor,
) -> Tensor:
    """Mean squared error between rotation matrices (global orientation and 23 body joints).

    Args:
        pred_global_orient, gt_global_orient: (B, 1, 3, 3).
        pred_body_pose, gt_body_pose: (B, 23, 3, 3).
        has_smpl: (B,) whether the sample has SMPL ground truth.
    """
    pred = torch.cat([pred_global_orient, pred_body_pose], dim=1)
    gt = torch.cat([gt_global_orient, gt_body_pose], dim=1)
    per_sample = (pred - gt).pow(2).flatten(1).mean(1)
    return _weighted_mean(per_sample, has_smpl.to(pred.dtype))


def smpl_betas_loss(pred_betas: Tensor, gt_betas: Tensor, has_smpl: Tensor) -> Tensor:
    """Mean squared error of the (B, 10) shape coefficients where ``has_smpl``."""
    per_sample = (pred_betas - gt_betas).pow(2).mean(1)
    return _weighted_mean(per_sample, has_smpl.to(pred_betas.dtype))


def camera_loss(pred_cam: Tensor, gt_cam: Tensor, has_camera: Tensor) -> Tensor:
    """Mean squared error of the (B, 3) crop camera ``(s, tx, ty)`` where ``has_camera``."""
    per_sample = (pred_cam - gt_cam).pow(2).mean(1)
    return _weighted_mean(per_sample, has_camera.to(pred_cam.dtype))


def appearance_loss(reconstruction: Tensor, uv_vector: Tensor) -> Tensor:
    """Autoencoder reconstruction: L1 on RGB over visible texels plus L1 on the visibility channel.

    Args:
        reconstruction: (B, 4, S, S) decoder output.
        uv_vector: (B, 4, S, S) processed UV map (RGB / 5, visibility +-1), the target.
    """
    visible = (uv_vector[:, 3:4] > 0).to(uv_vector.dtype)
    rgb = _weighted_mean((reconstruction[:, :3] - uv_vector[:, :3]).abs().sum(1, keepdim=True), visible)
    return rgb + F.l1_loss(reconstruction[:, 3], uv_vector[:, 3])


def uv_flow_loss(flow: Tensor, target_flow: Tensor, valid: Tensor) -> Tensor:
    """L1 between the predicted UV->crop sampling grid and a target grid over valid texels.

    Args:
        flow: (B, 2, S, S) predicted grid (x, y in grid_sample units).
        target_flow: (B, 2, S, S) target grid.
        valid: (B, 1, S, S) texels that have a target (inside the UV atlas).
    """
    return _weighted_mean((flow - target_flow).abs().sum(1, keepdim=True), valid.to(flow.dtype))
