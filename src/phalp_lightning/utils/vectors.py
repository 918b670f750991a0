"""The per-detection feature layouts shared by HMAR, the tracker, the pose transformer and writers.

One definition of each vector (docs/geometry.md):

``pose`` (229): [0:9] global_orient rotation matrix (row-major), [9:216] body_pose 23 x 9,
[216:226] betas, [226:229] ``(t_x, t_y, t_z / 200)`` of the full-image camera translation.

``location`` (99): [0:90] the 45 projected joints ``(u, v) / 256`` interleaved per joint,
then the camera translation repeated three times (90:93, 93:96, 96:99).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

POSE_DIM = 229
LOCATION_DIM = 99
APPEARANCE_DIM = 4096
NUM_BODY_JOINTS = 23
NUM_BETAS = 10
NUM_LOCATION_JOINTS = 45
# The tracker's location point: the SMPL-frame origin appended as the 45th joint.
LOCATION_JOINT = 44
CAMERA_DEPTH_SCALE = 200.0

POSE_GLOBAL_ORIENT = slice(0, 9)
POSE_BODY_POSE = slice(9, 216)
POSE_BETAS = slice(216, 226)
POSE_CAMERA = slice(226, 229)
# Rotations and betas: the part of the pose vector that the pose distance compares.
POSE_SMPL = slice(0, 226)
LOCATION_JOINTS_2D = slice(0, 90)


class SMPLPose(NamedTuple):
    """SMPL parameters as rotation matrices, batched over the leading dims."""

    global_orient: Tensor  # (..., 1, 3, 3)
    body_pose: Tensor  # (..., 23, 3, 3)
    betas: Tensor  # (..., 10)


def pose_vector(global_orient: Tensor, body_pose: Tensor, betas: Tensor, cam_t: Tensor) -> Tensor:
    """Pack SMPL rotations, betas and the full-image camera translation into the 229-d vector.

    Args:
        global_orient: (..., 1, 3, 3); body_pose: (..., 23, 3, 3); betas: (..., 10); cam_t: (..., 3).
    """
    lead = betas.shape[:-1]
    camera = torch.cat([cam_t[..., :2], cam_t[..., 2:3] / CAMERA_DEPTH_SCALE], dim=-1)
    return torch.cat(
        [global_orient.reshape(*lead, 9), body_pose.reshape(*lead, NUM_BODY_JOINTS * 9), betas, camera], dim=-1
    )


def split_pose_vector(pose: Tensor) -> tuple[SMPLPose, Tensor]:
    """Inverse of :func:`pose_vector`: returns the SMPL parameters and ``cam_t`` (..., 3)."""
    lead = pose.shape[:-1]
    smpl = SMPLPose(
        global_orient=pose[..., POSE_GLOBAL_ORIENT].reshape(*lead, 1, 3, 3),
        body_pose=pose[..., POSE_BODY_POSE].reshape(*lead, NUM_BODY_JOINTS, 3, 3),
        betas=pose[..., POSE_BETAS],
    )
    camera = pose[..., POSE_CAMERA]
    cam_t = torch.cat([camera[..., :2], camera[..., 2:3] * CAMERA_DEPTH_SCALE], dim=-1)
    return smpl, cam_t


def location_vector(joints_2d: Tensor, cam_t: Tensor, img_size: int = 256) -> Tensor:
    """Pack projected joints (..., 45, 2) in padded-frame pixels and ``cam_t`` (..., 3) into 99-d."""
    lead = cam_t.shape[:-1]
    normalised = (joints_2d / img_size).reshape(*lead, NUM_LOCATION_JOINTS * 2)
    return torch.cat([normalised, cam_t, cam_t, cam_t], dim=-1)


def location_point(location: Tensor) -> Tensor:
    """The tracker's location point (..., 2): joint 44 of a location vector, in [0, 1] units."""
    return location[..., 2 * LOCATION_JOINT : 2 * LOCATION_JOINT + 2]
