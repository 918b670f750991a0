"""Overlap of boxes with polygonal ignore regions (PoseTrack), without a geometry library.

A polygon is clipped to the box with Sutherland-Hodgman (exact for any simple polygon against a
convex window) and its area taken with the shoelace formula. Ignore regions are few and only
unmatched predictions are tested, so one clip per (box, polygon) pair is cheap; each clip is
vectorised over the polygon's vertices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def polygon_area(polygon: np.ndarray) -> float:
    """Area of a simple polygon (P, 2) by the shoelace formula (orientation-free)."""
    if polygon.shape[0] < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _clip_half_plane(polygon: np.ndarray, axis: int, bound: float, keep_greater: bool) -> np.ndarray:
    """Clip (P, 2) to the half-plane ``coord[axis] >= bound`` (or ``<=``): one Sutherland-Hodgman pass."""
    if polygon.shape[0] == 0:
        return polygon
    start, end = polygon, np.roll(polygon, -1, axis=0)
    sign = 1.0 if keep_greater else -1.0
    start_in = sign * (start[:, axis] - bound) >= 0
    end_in = sign * (end[:, axis] - bound) >= 0
    delta = end[:, axis] - start[:, axis]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(delta != 0, (bound - start[:, axis]) / np.where(delta != 0, delta, 1.0), 0.0)
    crossing = start + t[:, None] * (end - start)
    # Per edge emit: the crossing point when the edge enters or leaves, then the end point if inside.
    emit_crossing = start_in != end_in
    points = np.stack([crossing, end], axis=1)  # (P, 2 slots, 2)
    mask = np.stack([emit_crossing, end_in], axis=1)  # (P, 2 slots)
    return points[mask]


def clip_polygon_to_box(polygon: np.ndarray, box_xywh: np.ndarray) -> np.ndarray:
    """The part of ``polygon`` (P, 2) inside the axis-aligned box (x, y, w, h), as (Q, 2)."""
    x, y, w, h = (float(value) for value in box_xywh)
    clipped = np.asarray(polygon, dtype=np.float64)
    for axis, bound, keep_greater in ((0, x, True), (0, x + w, False), (1, y, True), (1, y + h, False)):
        clipped = _clip_half_plane(clipped, axis, bound, keep_greater)
    return clipped


def box_region_overlap(boxes: np.ndarray, regions: Sequence[np.ndarray], mode: str = "iou") -> np.ndarray:
    """Overlap of each box with each ignore-region polygon.

    Args:
        boxes: (M, 4) x, y, w, h.
        regions: R polygons, each (P, 2) x, y.
        mode: "iou" = intersection / union of box and polygon (PoseTrack21's evaluation);
            "box_fraction" = intersection / box area.

    Returns:
        (M, R) float64 overlap in [0, 1].
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    polygons = [np.asarray(region, dtype=np.float64).reshape(-1, 2) for region in regions]
    overlap = np.zeros((boxes.shape[0], len(polygons)))
    box_areas = boxes[:, 2] * boxes[:, 3]
    for region_index, polygon in enumerate(polygons):
        region_area = polygon_area(polygon)
        if region_area == 0.0:
            continue
        for box_index, box in enumerate(boxes):
            intersection = polygon_area(clip_polygon_to_box(polygon, box))
            if mode == "iou":
                denominator = box_areas[box_index] + region_area - intersection
            elif mode == "box_fraction":
                denominator = box_areas[box_index]
            else:
                raise ValueError(f"box_region_overlap: mode must be 'iou' or 'box_fraction', got {mode!r}")
            overlap[box_index, region_index] = intersection / denominator if denominator > 0 else 0.0
    return overlap
