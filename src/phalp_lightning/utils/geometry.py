"""Rotations, cameras and crop geometry used by HMAR, the tracker and the renderer.

Conventions (docs/geometry.md):
- rotation matrices act on column vectors; the 6-D representation is the first two *columns* of R
  stored column after column, ``(R[:,0], R[:,1])``;
- the crop camera is weak-perspective ``(s, tx, ty)`` relative to a 256 px crop;
- full-image cameras live in a virtual pinhole camera with focal length 5000 whose image is the
  zero-padded square frame resized to ``img_size`` (256) pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

FOCAL_LENGTH = 5000.0
IMG_SIZE = 256


def rot6d_to_rotmat(rot6d: Tensor) -> Tensor:
    """6-D rotation (..., 6) -> rotation matrix (..., 3, 3) by Gram-Schmidt on the two columns."""
    a1, a2 = rot6d[..., 0:3], rot6d[..., 3:6]
    b1 = F.normalize(a1, dim=-1, eps=1e-12)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=1e-12)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def rotmat_to_rot6d(rotmat: Tensor) -> Tensor:
    """Rotation matrix (..., 3, 3) -> 6-D rotation (..., 6): first column, then second column."""
    return torch.cat([rotmat[..., :, 0], rotmat[..., :, 1]], dim=-1)


def axis_angle_to_rotmat(axis_angle: Tensor) -> Tensor:
    """Axis-angle (..., 3) -> rotation matrix (..., 3, 3) (Rodrigues, stable near zero)."""
    angle = axis_angle.norm(dim=-1, keepdim=True).unsqueeze(-1)  # (..., 1, 1)
    kx, ky, kz = axis_angle.unbind(-1)
    zeros = torch.zeros_like(kx)
    skew = torch.stack([zeros, -kz, ky, kz, zeros, -kx, -ky, kx, zeros], dim=-1)
    skew = skew.reshape(*axis_angle.shape[:-1], 3, 3)
    # sin(t)/t and (1-cos t)/t^2 with their Taylor limits, so a zero rotation has finite gradients.
    small = angle < 1e-6
    safe = torch.where(small, torch.ones_like(angle), angle)
    sin_term = torch.where(small, 1.0 - angle**2 / 6.0, torch.sin(safe) / safe)
    cos_term = torch.where(small, 0.5 - angle**2 / 24.0, (1.0 - torch.cos(safe)) / safe**2)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(skew)
    return eye + sin_term * skew + cos_term * (skew @ skew)


def rotmat_to_axis_angle(rotmat: Tensor) -> Tensor:
    """Rotation matrix (..., 3, 3) -> axis-angle (..., 3), valid on the whole range [0, pi]."""
    quat = rotmat_to_quaternion(rotmat)
    xyz, w = quat[..., 1:], quat[..., :1]
    sin_half = xyz.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, w)
    small = sin_half < 1e-8
    scale = torch.where(small, 2.0 / w.clamp(min=1e-8), angle / sin_half.clamp(min=1e-12))
    return xyz * scale


def rotmat_to_quaternion(rotmat: Tensor) -> Tensor:
    """Rotation matrix (..., 3, 3) -> unit quaternion (..., 4) as (w, x, y, z) with w >= 0."""
    m = rotmat
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Four candidate formulas; the one with the largest denominator is numerically safe.
    candidates = torch.stack(
        [
            torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
        ],
        dim=-2,
    )  # (..., 4, 4)
    diag = torch.stack([trace, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], dim=-1)
    best = diag.argmax(dim=-1)
    quat = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    quat = F.normalize(quat, dim=-1)
    return torch.where(quat[..., :1] < 0, -quat, quat)


def perspective_projection(
    points: Tensor,
    translation: Tensor,
    focal_length: Tensor | float,
    camera_center: Tensor | float = 0.0,
    rotation: Tensor | None = None,
) -> Tensor:
    """Pinhole projection of 3-D points.

    Args:
        points: (B, N, 3) points in the body frame.
        translation: (B, 3) camera translation added to every point.
        focal_length: scalar or (B, 2).
        camera_center: scalar or (B, 2) principal point.
        rotation: optional (B, 3, 3) rotation applied before the translation.

    Returns:
        (B, N, 2) image coordinates.
    """
    if rotation is not None:
        points = points @ rotation.transpose(-1, -2)
    cam_points = points + translation[:, None, :]
    xy = cam_points[..., :2] / cam_points[..., 2:3]
    focal = torch.as_tensor(focal_length, dtype=points.dtype, device=points.device)
    center = torch.as_tensor(camera_center, dtype=points.dtype, device=points.device)
    if focal.ndim == 2:
        focal = focal[:, None, :]
    if center.ndim == 2:
        center = center[:, None, :]
    return xy * focal + center


def crop_cam_to_full_translation(
    crop_cam: Tensor,
    center: Tensor,
    scale: Tensor,
    focal_length: float = FOCAL_LENGTH,
    img_size: int = IMG_SIZE,
) -> Tensor:
    """Weak-perspective crop camera -> translation in the padded, resized frame (docs/geometry.md, Crop camera to full-frame camera).

    Args:
        crop_cam: (B, 3) ``(s, tx, ty)``.
        center: (B, 2) box centre in the ``img_size`` version of the square padded frame.
        scale: (B,) or (B, 1) box side in that same space.

    Returns:
        (B, 3) ``pred_cam_t``: ``t_z = 2 f / (s * scale + 1e-9)`` and ``t_xy += (center - img_size/2) t_z / f``.
    """
    scale = scale.reshape(-1)
    s, tx, ty = crop_cam.unbind(-1)
    tz = 2.0 * focal_length / (s * scale + 1e-9)
    offset = (center - img_size / 2.0) * tz[:, None] / focal_length
    return torch.stack([tx + offset[:, 0], ty + offset[:, 1], tz], dim=-1)


def project_to_padded_frame(
    joints: Tensor, cam_t: Tensor, focal_length: float = FOCAL_LENGTH, img_size: int = IMG_SIZE
) -> Tensor:
    """Project body-frame joints (B, N, 3) with translation (B, 3) to pixels of the padded frame.

    Matches PHALP: focal ``f / img_size``, principal point 0, then ``(x + 0.5) * img_size``.
    """
    normalised = perspective_projection(joints, cam_t, focal_length / img_size)
    return (normalised + 0.5) * img_size


def box_center_scale_in_padded_frame(
    boxes_xyxy: Tensor, frame_height: int, frame_width: int, img_size: int = IMG_SIZE
) -> tuple[Tensor, Tensor]:
    """Box centre and side in the ``img_size`` version of the square, zero-padded frame.

    Args:
        boxes_xyxy: (B, 4) boxes in frame pixels (``bbox_pad`` in PHALP's terms).

    Returns:
        center (B, 2) and scale (B,) as ``get_3d_parameters`` expects them.
    """
    side = max(frame_height, frame_width)
    top, left = (side - frame_height) // 2, (side - frame_width) // 2
    ratio = img_size / side
    centre = (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2.0
    offset = torch.tensor([left, top], dtype=boxes_xyxy.dtype, device=boxes_xyxy.device)
    wh = boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]
    return (centre + offset) * ratio, wh.max(dim=-1).values * ratio


def padded_frame_to_image(points: Tensor, frame_height: int, frame_width: int, img_size: int = IMG_SIZE) -> Tensor:
    """Pixels of the ``img_size`` padded frame (..., 2) -> pixels of the original frame."""
    side = max(frame_height, frame_width)
    top, left = (side - frame_height) // 2, (side - frame_width) // 2
    offset = torch.tensor([left, top], dtype=points.dtype, device=points.device)
    return points * (side / img_size) - offset
