"""OpenCV's built-in HOG + linear SVM people detector: the default that needs no download.

It is far weaker than ViTDet (upright, fully visible people of at least ~100 px only) and gives no
masks, but it lets the whole pipeline run with nothing but ``opencv-python-headless`` installed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from phalp_lightning.detection.base import sort_by_score
from phalp_lightning.structures import Detections


class HOGDetector:
    """People detector on ``cv2.HOGDescriptor_getDefaultPeopleDetector``.

    Args:
        score_threshold: keep detections whose score is strictly above this. The score is the SVM
            margin ``m`` squashed to ``m / (1 + m)`` (0 at the decision boundary, -> 1 for confident ones).
        nms_threshold: IoU above which the lower-scored of two overlapping boxes is dropped.
        max_side: frames are downscaled so that their longer side is at most this before detection
            (HOG is slow on large frames); boxes are returned in original pixels. ``None`` keeps the size.
        win_stride: sliding-window step in pixels.
        scale: image-pyramid step.
        shrink: fraction of the HOG window's width/height removed from each side: the 64 x 128 window
            has a margin around the person, removing it tightens the box.
    """

    def __init__(
        self,
        score_threshold: float = 0.3,
        nms_threshold: float = 0.4,
        max_side: int | None = 640,
        win_stride: int = 8,
        scale: float = 1.05,
        shrink: float = 0.1,
    ) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.win_stride = win_stride
        self.scale = scale
        self.shrink = shrink
        self._hog = None

    def _descriptor(self):  # noqa: ANN202 - cv2 type
        if self._hog is None:
            import cv2

            hog = cv2.HOGDescriptor()
            hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
            self._hog = hog
        return self._hog

    def detect_one(self, image: np.ndarray) -> Detections:
        """Detect people in one (H, W, 3) uint8 RGB frame."""
        import cv2

        height, width = image.shape[:2]
        factor = 1.0
        if self.max_side is not None and max(height, width) > self.max_side:
            factor = self.max_side / max(height, width)
            image = cv2.resize(image, (round(width * factor), round(height * factor)), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        rects, weights = self._descriptor().detectMultiScale(
            gray, winStride=(self.win_stride, self.win_stride), padding=(8, 8), scale=self.scale
        )
        if len(rects) == 0:
            return Detections.empty()
        rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
        margins = np.asarray(weights, dtype=np.float32).reshape(-1)
        scores = np.clip(margins, 0.0, None) / (1.0 + np.clip(margins, 0.0, None))
        keep = cv2.dnn.NMSBoxes(rects.tolist(), scores.tolist(), self.score_threshold, self.nms_threshold)
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        keep = keep[scores[keep] > self.score_threshold]
        rects, scores = rects[keep], scores[keep]
        x, y, w, h = rects.T
        dx, dy = w * self.shrink, h * self.shrink * 0.5
        boxes = np.stack([x + dx, y + dy, x + w - dx, y + h - dy], axis=1) / factor
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        return sort_by_score(Detections(boxes=torch.from_numpy(boxes.astype(np.float32)), scores=torch.from_numpy(scores)))

    def __call__(self, images: Tensor) -> list[Detections]:
        """Detect people in (B, H, W, 3) uint8 RGB frames; see :class:`~phalp_lightning.detection.base.Detector`."""
        frames = images.detach().cpu().numpy()
        return [self.detect_one(np.ascontiguousarray(frame)) for frame in frames]
