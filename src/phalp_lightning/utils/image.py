"""The one ImageNet normalisation of HMAR's RGB input (docs/geometry.md, "Person crops").

The statistics are given on the 0-255 scale, the scale the original HMAR applies them on; the same
numbers divided by 255 are the familiar (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


def normalize_rgb(rgb: ArrayT, channel_axis: int = -1) -> ArrayT:
    """``(rgb - mean) / std`` per channel, for RGB on the 0-255 scale (uint8 or float).

    Args:
        rgb: a torch tensor or numpy array with 3 channels along ``channel_axis``
            (e.g. (H, W, 3) with -1, or (N, 3, S, S) with 1).
        channel_axis: the axis holding R, G, B.

    Returns:
        The same kind of array, float32 (or the input's floating dtype).
    """
    shape = [1] * rgb.ndim
    shape[channel_axis] = 3
    if isinstance(rgb, torch.Tensor):
        dtype = rgb.dtype if rgb.is_floating_point() else torch.float32
        mean = torch.tensor(IMAGENET_MEAN, dtype=dtype, device=rgb.device).view(shape)
        std = torch.tensor(IMAGENET_STD, dtype=dtype, device=rgb.device).view(shape)
        return (rgb.to(dtype) - mean) / std
    dtype = rgb.dtype if np.issubdtype(rgb.dtype, np.floating) else np.float32
    mean = np.asarray(IMAGENET_MEAN, dtype).reshape(shape)
    std = np.asarray(IMAGENET_STD, dtype).reshape(shape)
    return (rgb.astype(dtype, copy=False) - mean) / std
