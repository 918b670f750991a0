"""The detector interface and the detection filters every detector shares (docs/geometry.md, Person crops: Filters).

A detector is a frozen, eval-only callable: ``detector(images) -> list[Detections]``, one entry per
frame, boxes ``xyxy`` in frame pixels, people only, scores already thresholded by the detector's own
``score_threshold`` (each detector's scores live on its own scale). The small-box filter applies to
every source of boxes, given boxes included, so it lives here and is applied by the tracking system.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from phalp_lightning.structures import Detections

# PHALP drops boxes narrower than 50 px or shorter than 100 px (original-frame pixels).
MIN_BOX_WIDTH = 50.0
MIN_BOX_HEIGHT = 100.0


@runtime_checkable
class Detector(Protocol):
    """Finds people in a batch of frames of one video."""

    def __call__(self, images: Tensor) -> list[Detections]:
        """Detect people.

        Args:
            images: (B, H, W, 3) uint8 RGB frames.

        Returns:
            One :class:`Detections` per frame: boxes (N, 4) xyxy pixels, scores (N,), optional
            masks (N, H, W) bool, in descending score order (the order new track ids are given in).
        """
        ...


def score_filter(detections: Detections, threshold: float) -> Detections:
    """Keep detections whose score is strictly above ``threshold`` (PHALP's ``score > low_th_c``)."""
    return detections.select(detections.scores > threshold)


def small_box_filter(
    detections: Detections, min_width: float = MIN_BOX_WIDTH, min_height: float = MIN_BOX_HEIGHT
) -> tuple[Detections, Tensor]:
    """Drop boxes with width < ``min_width`` or height < ``min_height``.

    Returns:
        The kept detections and the (K,) int64 indices they had in the input (PHALP's ``extra_data``).
    """
    wh = detections.boxes[:, 2:] - detections.boxes[:, :2]
    keep = (wh[:, 0] >= min_width) & (wh[:, 1] >= min_height)
    index = torch.nonzero(keep, as_tuple=False).reshape(-1)
    return detections.select(index), index


def sort_by_score(detections: Detections) -> Detections:
    """Descending score order, stable for ties."""
    order = torch.argsort(detections.scores, descending=True, stable=True)
    return detections.select(order)


class NoDetector:
    """Detects nothing: frames are tracked only from the boxes their source gives (``detector=given_boxes``).

    PHALP falls back to its detector on frames whose given-box list is empty; choose a real detector
    instead of this one to get that behaviour.
    """

    def __call__(self, images: Tensor) -> list[Detections]:
        return [Detections.empty() for _ in range(images.shape[0])]
