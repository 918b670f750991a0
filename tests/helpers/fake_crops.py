"""FakeCropDataModule: tiny in-memory crop batches that follow datamodules/schema.py (crop keys)."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset


def fake_crop_batch(batch_size: int = 2, img_size: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """One crop batch with every schema key; the person mask is a centred box, half the samples have SMPL truth."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(batch_size, 4, img_size, img_size, generator=generator)
    mask = torch.zeros(batch_size, img_size, img_size)
    mask[:, img_size // 8 : -img_size // 8, img_size // 4 : -img_size // 4] = 255.0
    image[:, 3] = mask
    keypoints_2d = torch.rand(batch_size, 44, 3, generator=generator) - 0.5
    keypoints_2d[..., 2] = (torch.rand(batch_size, 44, generator=generator) > 0.2).float()
    keypoints_3d = torch.randn(batch_size, 44, 4, generator=generator) * 0.3
    keypoints_3d[..., 3] = 1.0
    has_smpl = (torch.arange(batch_size) % 2 == 0).float()
    return {
        "image": image,
        "keypoints_2d": keypoints_2d,
        "keypoints_3d": keypoints_3d,
        "has_keypoints_3d": torch.ones(batch_size),
        "smpl_global_orient": torch.eye(3).expand(batch_size, 1, 3, 3).clone(),
        "smpl_body_pose": torch.eye(3).expand(batch_size, 23, 3, 3).clone(),
        "smpl_betas": torch.zeros(batch_size, 10),
        "has_smpl": has_smpl,
        "camera": torch.tensor([0.9, 0.0, 0.0]).expand(batch_size, 3).clone(),
        "has_camera": has_smpl,
        "box_xyxy": torch.tensor([0.0, 0.0, 100.0, 200.0]).expand(batch_size, 4).clone(),
    }


class _FakeCropDataset(Dataset):
    def __init__(self, size: int, img_size: int, seed: int) -> None:
        batch = fake_crop_batch(size, img_size, seed)
        self.samples = [{key: value[index] for key, value in batch.items()} for index in range(size)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.samples[index]


class FakeCropDataModule(L.LightningDataModule):
    """Stand-in for CropDataModule in tests: ``size`` samples, same for train and val."""

    def __init__(self, size: int = 4, img_size: int = 64, batch_size: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.dataset = _FakeCropDataset(size, img_size, seed)
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False)
