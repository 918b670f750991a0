"""Person crops for HMAR: one vectorised affine warp for all people of a frame (docs/geometry.md,
"Person crops").

The one crop implementation: predict (``TrackingSystem``) and the training-shard
builders (``datamodules.builders``) both cut their crops here, so training and inference see the same
pixels. Each crop is the square of side ``max(w', h')`` centred on the (optionally aspect-expanded) box,
resampled to ``crop_size``: the same map as OpenCV's ``warpAffine`` from the three point pairs
``c -> (S/2, S/2)``, ``c + (0, s/2) -> (S/2, S)``, ``c + (s/2, 0) -> (S, S/2)`` (bilinear, black
border). Channels 0-2 are the ImageNet-normalised RGB (so pixels outside the frame become
``-mean/std``), channel 3 the person mask in [0, 255], not normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from phalp_lightning.utils.image import normalize_rgb


@dataclass
class PersonCrops:
    """HMAR inputs of one frame and where they came from."""

    images: Tensor  # (N, 4, S, S) float32: normalised (or raw 0-255) RGB + mask in [0, 255]
    padded_boxes: Tensor  # (N, 4) xyxy frame pixels, after the aspect expansion
    center: Tensor  # (N, 2) padded-box centre, frame pixels
    side: Tensor  # (N,) crop side max(w', h') in frame pixels


def expand_to_aspect(boxes: Tensor, aspect_ratio: tuple[float, float] | None) -> Tensor:
    """Grow boxes (N, 4) xyxy about their centre to aspect w:h = ``aspect_ratio`` (4D-Humans' 192:256).

    ``None`` returns the boxes unchanged (vanilla PHALP).
    """
    if aspect_ratio is None:
        return boxes
    target_w, target_h = aspect_ratio
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    w, h = (boxes[:, 2:] - boxes[:, :2]).unbind(-1)
    taller_than_target = h / w.clamp_min(1e-6) >= target_h / target_w
    new_w = torch.where(taller_than_target, torch.maximum(h * target_w / target_h, w), w)
    new_h = torch.where(taller_than_target, h, torch.maximum(w * target_h / target_w, h))
    half = torch.stack([new_w, new_h], dim=-1) / 2
    return torch.cat([centre - half, centre + half], dim=-1)


def crop_squares(boxes: Tensor, aspect_ratio: tuple[float, float] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The square each person is cropped from: (padded boxes (N, 4), centres (N, 2), sides (N,)).

    Boxes are (optionally) expanded to ``aspect_ratio`` first; the square of side ``max(w', h')``
    is centred on the expanded box. Also what the box-only path reports as centre and scale.
    """
    padded = expand_to_aspect(boxes, aspect_ratio)
    center = (padded[:, :2] + padded[:, 2:]) / 2
    side = (padded[:, 2:] - padded[:, :2]).max(dim=-1).values
    return padded, center, side


def crop_sampling_axes(center: Tensor, side: Tensor, crop_size: int) -> tuple[Tensor, Tensor]:
    """Source x (N, S) of every crop column and source y (N, S) of every crop row (OpenCV pixel centres).

    A crop is an axis-aligned scaling, so its sampling grid is the outer product of these two axes;
    everything per pixel that depends on x or y alone is computed on them (S values, not S^2).
    """
    pixels = torch.arange(crop_size, dtype=center.dtype, device=center.device)
    step = (side / crop_size)[:, None]
    xs = center[:, 0:1] + (pixels[None] - crop_size / 2) * step  # (N, S)
    ys = center[:, 1:2] + (pixels[None] - crop_size / 2) * step
    return xs, ys


def _outer_grid(xs: Tensor, ys: Tensor) -> Tensor:
    n, size = xs.shape
    return torch.stack([xs[:, None, :].expand(n, size, size), ys[:, :, None].expand(n, size, size)], dim=-1)


def crop_sampling_grid(center: Tensor, side: Tensor, crop_size: int) -> Tensor:
    """Source pixel coordinates (N, S, S, 2) as (x, y) of every crop pixel (OpenCV pixel-centre convention)."""
    return _outer_grid(*crop_sampling_axes(center, side, crop_size))


def crop_affine(center: Tensor, side: Tensor, crop_size: int) -> Tensor:
    """(N, 2, 3) affine of each crop, frame pixels -> crop pixels: the inverse of :func:`crop_sampling_axes`."""
    scale = crop_size / side
    zero = torch.zeros_like(scale)
    offset = crop_size / 2 - scale[:, None] * center
    return torch.stack([torch.stack([scale, zero, offset[:, 0]], -1), torch.stack([zero, scale, offset[:, 1]], -1)], dim=1)


def _normalise(coordinates: Tensor, size: int) -> Tensor:
    # grid_sample(align_corners=False) puts pixel i's centre at (2 i + 1) / size - 1.
    return (2 * coordinates + 1) / torch.tensor(size, dtype=coordinates.dtype, device=coordinates.device) - 1


def crop_people(
    image: Tensor,
    boxes: Tensor,
    masks: Tensor | None = None,
    crop_size: int = 256,
    aspect_ratio: tuple[float, float] | None = None,
    normalize: bool = True,
) -> PersonCrops:
    """Build the 4-channel HMAR input of every person of one frame.

    Args:
        image: (H, W, 3) uint8 RGB frame.
        boxes: (N, 4) xyxy detector boxes in frame pixels.
        masks: (N, H, W) bool instance masks, or None for box-shaped masks.
        crop_size: output side S (256 for the official HMAR).
        aspect_ratio: optional (w, h) box expansion before cropping, e.g. (192, 256).
        normalize: ImageNet-normalise the RGB channels (HMAR's input); False keeps the sampled 0-255
            values (what the shard builders store, normalised later by the training decoder).

    Returns:
        :class:`PersonCrops` with images (N, 4, S, S).
    """
    height, width = image.shape[:2]
    boxes = boxes.to(device=image.device, dtype=torch.float32)
    padded, center, side = crop_squares(boxes, aspect_ratio)
    n = boxes.shape[0]
    if n == 0:
        empty = torch.zeros(0, 4, crop_size, crop_size, device=image.device)
        return PersonCrops(images=empty, padded_boxes=padded, center=center, side=side)

    xs, ys = crop_sampling_axes(center, side, crop_size)
    normalised_grid = _outer_grid(_normalise(xs, width), _normalise(ys, height))
    frame = image.permute(2, 0, 1)[None].float().expand(n, 3, height, width)
    rgb = F.grid_sample(frame, normalised_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if normalize:
        rgb = normalize_rgb(rgb, channel_axis=1)

    if masks is not None:
        mask = masks.to(image.device)[:, None].float() * 255.0
        mask = F.grid_sample(mask, normalised_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    else:
        # A box-shaped mask, evaluated directly in crop space instead of warping N full-frame masks.
        inside_x = (xs >= boxes[:, 0, None]) & (xs <= boxes[:, 2, None])
        inside_y = (ys >= boxes[:, 1, None]) & (ys <= boxes[:, 3, None])
        mask = (inside_y[:, :, None] & inside_x[:, None, :])[:, None].float() * 255.0
    return PersonCrops(images=torch.cat([rgb, mask], dim=1), padded_boxes=padded, center=center, side=side)
