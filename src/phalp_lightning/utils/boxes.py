"""Axis-aligned box IoU, the one implementation that evaluation and the dataset builders share.

Conventions (motmetrics'): continuous coordinates, no ``+1`` on widths, IoU 0 for disjoint boxes.
Degenerate boxes (zero or negative width or height) overlap nothing, so their IoU is 0, never NaN,
whatever the other box is, including an identical degenerate box.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

BoxFormat = Literal["xyxy", "xywh"]


def _corners_and_sides(boxes: np.ndarray, box_format: BoxFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(min corner, max corner, width and height); xywh sides are the given ones, not max - min,
    which can differ in the last bit."""
    if box_format == "xyxy":
        return boxes[..., :2], boxes[..., 2:], boxes[..., 2:] - boxes[..., :2]
    if box_format == "xywh":
        return boxes[..., :2], boxes[..., :2] + boxes[..., 2:], boxes[..., 2:]
    raise ValueError(f"box_iou: box_format must be 'xyxy' or 'xywh', got {box_format!r}")


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, box_format: BoxFormat = "xyxy",
            min_union: float = 0.0) -> np.ndarray:
    """Pairwise IoU of two sets of boxes, batched over any leading dimensions.

    Args:
        boxes_a: (..., N, 4) boxes (a single (4,) box counts as N = 1).
        boxes_b: (..., M, 4) boxes; leading dimensions broadcast with ``boxes_a``'s.
        box_format: "xyxy" (corners) or "xywh" (top-left corner, width, height).
        min_union: the union is floored at this before dividing. 0 divides by the exact union (the
            evaluation's rule); the dataset builders pass 1e-9, which only differs for overlapping
            boxes smaller than 1e-9 square pixels.

    Returns:
        (..., N, M) float64 IoU in [0, 1].
    """
    boxes_a = np.asarray(boxes_a, dtype=np.float64)
    boxes_b = np.asarray(boxes_b, dtype=np.float64)
    boxes_a = boxes_a.reshape(1, 4) if boxes_a.ndim == 1 else boxes_a
    boxes_b = boxes_b.reshape(1, 4) if boxes_b.ndim == 1 else boxes_b
    min_a, max_a, sides_a = _corners_and_sides(boxes_a, box_format)
    min_b, max_b, sides_b = _corners_and_sides(boxes_b, box_format)
    min_a, max_a = min_a[..., :, None, :], max_a[..., :, None, :]
    min_b, max_b = min_b[..., None, :, :], max_b[..., None, :, :]
    intersection = np.prod(np.maximum(np.minimum(max_a, max_b) - np.maximum(min_a, min_b), 0.0), axis=-1)
    # Clamped sides: a degenerate box has area 0, so a union is never smaller than the other box.
    area_a = np.prod(np.maximum(sides_a, 0.0), axis=-1)[..., :, None]
    area_b = np.prod(np.maximum(sides_b, 0.0), axis=-1)[..., None, :]
    union = np.maximum(area_a + area_b - intersection, min_union)
    # intersection > 0 implies union >= intersection > 0; elsewhere the IoU is 0 (no 0/0).
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(intersection > 0, intersection / np.where(intersection > 0, union, 1.0), 0.0)
