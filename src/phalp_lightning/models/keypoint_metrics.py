"""Keypoint metrics as torchmetrics ``Metric`` objects (accumulate over batches, sync across devices).

- :class:`MPJPE`: mean per-joint position error after pelvis alignment, in millimetres.
- :class:`MPJPE` with ``procrustes=True`` (PA-MPJPE): after a similarity Procrustes alignment.
- :class:`PCK2D`: fraction of visible 2-D keypoints within a threshold (crop units).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from phalp_lightning.models.losses import PELVIS_INDEX


def procrustes_align(source: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """Align ``source`` to ``target`` with the weighted similarity transform that best fits them.

    Args:
        source, target: (B, J, 3) point sets.
        weights: (B, J) non-negative point weights (0 = ignore the point).

    Returns:
        (B, J, 3) aligned ``source``.
    """
    w = weights[..., None]
    total = w.sum(1, keepdim=True).clamp(min=1e-8)
    mu_source = (source * w).sum(1, keepdim=True) / total
    mu_target = (target * w).sum(1, keepdim=True) / total
    x, y = source - mu_source, target - mu_target
    covariance = (x * w).transpose(1, 2) @ y  # (B, 3, 3)
    u, singular, vh = torch.linalg.svd(covariance)
    # Reflection fix: make the rotation proper.
    sign = torch.sign(torch.linalg.det(vh.transpose(1, 2) @ u.transpose(1, 2)))
    correction = torch.ones_like(singular)
    correction[:, -1] = sign
    rotation = vh.transpose(1, 2) @ torch.diag_embed(correction) @ u.transpose(1, 2)
    variance = ((x**2) * w).sum((1, 2)).clamp(min=1e-8)
    scale = (singular * correction).sum(1) / variance
    return scale[:, None, None] * (x @ rotation.transpose(1, 2)) + mu_target


class MPJPE(Metric):
    """Mean per-joint position error in millimetres over visible joints of samples with 3-D truth.

    Args:
        procrustes: align with a similarity transform first (PA-MPJPE) instead of the pelvis.
        pelvis_index: joint used for root alignment.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(self, procrustes: bool = False, pelvis_index: int = PELVIS_INDEX) -> None:
        super().__init__()
        self.procrustes = procrustes
        self.pelvis_index = pelvis_index
        self.add_state("error_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, has_target: Tensor) -> None:
        """pred (B,J,3) metres, target (B,J,4) metres + confidence, has_target (B,)."""
        weights = (target[..., 3] > 0).to(pred.dtype) * has_target.to(pred.dtype)[:, None]
        gt = target[..., :3]
        if self.procrustes:
            keep = weights.sum(1) >= 3  # a similarity fit needs at least three points
            pred, gt, weights = pred[keep], gt[keep], weights[keep]
            if pred.shape[0] == 0:
                return
            aligned = procrustes_align(pred, gt, weights)
        else:
            aligned = pred - pred[:, self.pelvis_index : self.pelvis_index + 1]
            gt = gt - gt[:, self.pelvis_index : self.pelvis_index + 1]
        error = (aligned - gt).norm(dim=-1) * 1000.0
        self.error_sum += (error * weights).sum().double()
        self.count += weights.sum().double()

    def compute(self) -> Tensor:
        """Mean error (mm); NaN when nothing was seen."""
        return (self.error_sum / self.count).float() if self.count > 0 else torch.tensor(float("nan"))


class PCK2D(Metric):
    """Percentage of correct 2-D keypoints: visible joints within ``threshold`` crop units."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = 0.05) -> None:
        super().__init__()
        self.threshold = threshold
        self.add_state("correct", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        """pred (B,J,2) crop units, target (B,J,3) crop units + confidence."""
        visible = target[..., 2] > 0
        close = (pred - target[..., :2]).norm(dim=-1) < self.threshold
        self.correct += (close & visible).sum().double()
        self.count += visible.sum().double()

    def compute(self) -> Tensor:
        """Fraction in [0, 1]; NaN when nothing was seen."""
        return (self.correct / self.count).float() if self.count > 0 else torch.tensor(float("nan"))
