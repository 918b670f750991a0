"""The pose transformer's training data handling: which tokens a window masks, and the statistics
that normalise the pose vectors (PHALP's ``mean_std.npy``).

The masks lay out the tracker's task on a window (docs/pose_transformer.md): BERT-style random
masking, the trailing "future" slots, and the history-only view validation scores.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from phalp_lightning.utils.io import atomic_output
from phalp_lightning.utils.vectors import POSE_DIM


def history_token_mask(observed: Tensor, num_history: Tensor) -> Tensor:
    """Mask every observed slot after the first ``num_history[b]`` observed ones (the tracker's task).

    Args:
        observed: (B, T) bool.
        num_history: (B,) int64 visible slots to keep (at least 1 is kept).

    Returns:
        (B, T) bool, a subset of ``observed``.
    """
    rank = observed.long().cumsum(dim=1)
    return observed & (rank > num_history.clamp(min=1)[:, None])


def random_token_mask(observed: Tensor, ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """Mask ``floor(n * ratio)`` of the n observed slots of each sequence, uniformly at random.

    Args:
        observed: (B, T) bool.

    Returns:
        (B, T) bool, a subset of ``observed``.
    """
    scores = torch.rand(observed.shape, generator=generator).to(observed.device)
    scores = scores.masked_fill(~observed, float("inf"))
    rank = scores.argsort(dim=1).argsort(dim=1)
    count = (observed.sum(dim=1) * ratio).floor().long()
    return observed & (rank < count[:, None])


def future_token_mask(observed: Tensor, num_future: Tensor) -> Tensor:
    """Mask the last ``num_future[b]`` observed slots of each sequence.

    Args:
        observed: (B, T) bool.
        num_future: (B,) int64 (0 masks nothing).

    Returns:
        (B, T) bool, a subset of ``observed``.
    """
    from_end = observed.flip(1).long().cumsum(dim=1).flip(1)  # observed slots at or after each slot
    return observed & (from_end <= num_future[:, None])


def pose_statistics(batches: Iterable[Mapping[str, Tensor]], min_std: float = 0.05) -> tuple[Tensor, Tensor]:
    """Per-dim mean and std (229,) of the valid pose vectors in ``batches`` (for the ``mean_std`` file).

    ``min_std`` floors the std: dims that barely move (fixed joints) would otherwise be blown up by
    the division in :meth:`PoseTransformer.normalise`.
    """
    total = torch.zeros(POSE_DIM, dtype=torch.float64)
    total_sq = torch.zeros(POSE_DIM, dtype=torch.float64)
    count = 0
    for batch in batches:
        pose = batch["pose"][batch["valid"].bool()].double()
        total += pose.sum(dim=0)
        total_sq += pose.pow(2).sum(dim=0)
        count += pose.shape[0]
    if count == 0:
        raise ValueError("pose_statistics: no valid pose vector in the given batches")
    mean = total / count
    std = (total_sq / count - mean.pow(2)).clamp(min=0).sqrt().clamp(min=min_std)
    return mean.float(), std.float()


def write_mean_std(path: str | os.PathLike[str], mean: Tensor, std: Tensor) -> Path:
    """Write mean/std (229,) as PHALP's ``mean_std.npy`` layout (2, 1, 229), atomically."""
    import numpy as np

    path = Path(path)
    with atomic_output(path) as temporary:
        np.save(temporary, torch.stack([mean, std])[:, None].numpy().astype(np.float32))
    return path
