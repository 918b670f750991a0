"""In-memory stand-in for TrackletDataModule: gait-like tracklet windows following datamodules/schema.py."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from phalp_lightning.utils.geometry import axis_angle_to_rotmat
from phalp_lightning.utils.vectors import pose_vector

# body_pose indices (SMPL joint - 1): hips, knees, shoulders, elbows; left/right swing in antiphase.
SWINGING_JOINTS = (0, 1, 3, 4, 15, 16, 17, 18)
SWING_SIGNS = (1.0, -1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0)


def gait_windows(num_windows: int, window: int, seed: int, noise: float = 0.0) -> dict[str, Tensor]:
    """Periodic walking-like pose sequences: a tracklet batch dict with B = num_windows, T = window."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.arange(window, dtype=torch.float32)
    frequency = 0.04 + 0.06 * torch.rand(num_windows, 1, generator=generator)
    phase = 2 * math.pi * torch.rand(num_windows, 1, generator=generator)
    amplitude = 0.3 + 0.4 * torch.rand(num_windows, 1, generator=generator)
    swing = amplitude * torch.sin(2 * math.pi * frequency * frames + phase)  # (B, T)
    axis_angle = torch.zeros(num_windows, window, 23, 3)
    for joint, sign in zip(SWINGING_JOINTS, SWING_SIGNS, strict=True):
        axis_angle[:, :, joint, 0] = sign * swing
    axis_angle = axis_angle + noise * torch.randn(axis_angle.shape, generator=generator)
    body_pose = axis_angle_to_rotmat(axis_angle)
    yaw = 2 * math.pi * torch.rand(num_windows, generator=generator)
    orient = torch.zeros(num_windows, 3)
    orient[:, 0] = math.pi
    global_orient = axis_angle_to_rotmat(orient) @ axis_angle_to_rotmat(
        torch.stack([0 * yaw, yaw, 0 * yaw], -1)
    )
    global_orient = global_orient[:, None, None].expand(num_windows, window, 1, 3, 3)
    betas = torch.randn(num_windows, 1, 10, generator=generator).expand(num_windows, window, 10)
    speed = 0.02 * torch.randn(num_windows, 1, generator=generator)
    cam_t = torch.stack(
        [speed * frames, torch.zeros_like(speed * frames), torch.full_like(speed * frames, 40.0)], -1
    )
    pose = pose_vector(global_orient, body_pose, betas, cam_t)
    start = torch.randint(0, 1000, (num_windows, 1), generator=generator)
    return {
        "pose": pose.float(),
        "location": torch.zeros(num_windows, window, 99),
        "time": (start + frames.long()).long(),
        "valid": torch.ones(num_windows, window, dtype=torch.bool),
    }


class _Windows(Dataset):
    def __init__(self, batch: dict[str, Tensor]) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return self.batch["pose"].shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[index] for key, value in self.batch.items()}


class FakeTrackletDataModule(L.LightningDataModule):
    """Tiny in-memory tracklet windows (same batch keys as TrackletDataModule)."""

    def __init__(
        self, num_train: int = 16, num_val: int = 8, window: int = 16, batch_size: int = 4, seed: int = 0
    ) -> None:
        super().__init__()
        self.train_set = _Windows(gait_windows(num_train, window, seed))
        self.val_set = _Windows(gait_windows(num_val, window, seed + 1))
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
