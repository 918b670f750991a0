"""OpenCV's built-in HOG + linear SVM people detector: the default that needs no download.

It is far weaker than ViTDet (upright, mostly visible people only) and gives no masks, but it lets
the whole pipeline run with nothing but ``opencv-python-headless`` installed.

What is tuned here and why (figures and the fitting procedure: experiments/hog_detector, docs/predict.md):

- The SVM scores a 64 x 128 window in which the person fills only the middle (the training crops
  have a margin of about 16 px on every side). A window is therefore mapped to the person's extent
  with ``person_box`` (centre and size as fractions of the window), fitted on real street footage,
  instead of being returned as it is.
- The image pyramid starts at the frame's own size, so the smallest person HOG can see is the
  window's person height (~96 px). ``min_person_height`` upsamples the frame first so that people of
  that height are reached; ``max_side`` caps the processed size (and with it the cost).
- Raw windows (``group_threshold=0``) are reduced by score-ordered non-maximum suppression on the
  person boxes, with the threshold and the score cut fitted on real data; OpenCV's own grouping
  (``group_threshold>=1``: keep clusters of more than that many windows) is available too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from phalp_lightning.detection.base import sort_by_score
from phalp_lightning.structures import Detections

WINDOW_WIDTH, WINDOW_HEIGHT = 64, 128


# OpenCV's default people detector scores 64 x 128 px windows.
HOG_WINDOW_WIDTH, HOG_WINDOW_HEIGHT = 64, 128

class HOGDetector:
    """People detector on ``cv2.HOGDescriptor_getDefaultPeopleDetector``.

    The defaults are the values fitted on real footage (``configs/detector/hog.yaml``). The detector
    before that fit is ``score_threshold=0.3, nms_threshold=0.4, max_side=640, person_box=(0.5, 0.5,
    0.8, 0.9), min_person_height=None, group_threshold=2``.

    Args:
        score_threshold: keep detections whose score is strictly above this. The score is the SVM
            margin ``m`` squashed to ``m / (1 + m)`` (0 at the decision boundary, -> 1 for confident ones).
        nms_threshold: IoU (of the person boxes) above which the lower-scored of two boxes is dropped.
        max_side: the frame is resized so that its longer side is at most this before detection
            (HOG's cost grows with the pixel count); boxes are returned in original pixels. ``None``: no cap.
        win_stride: sliding-window step in pixels.
        scale: image-pyramid step.
        person_box: (centre x, centre y, width, height) of the person inside the 64 x 128 window, as
            fractions of the window's width and height ((0.5, 0.5, 1, 1) returns the window itself).
        min_person_height: height in original pixels of the smallest person to reach: the frame is
            upsampled by ``128 * person_box[3] / min_person_height`` when that is above 1 (then capped
            by ``max_side``). ``None``: never upsample.
        group_threshold: OpenCV's window grouping (a cluster needs more than this many windows; its
            score is its best window's); 0 returns every window to the non-maximum suppression.
        hit_threshold: SVM margin a window needs before grouping (OpenCV's ``hitThreshold``).
    """

    def __init__(
        self,
        score_threshold: float = 0.0,
        nms_threshold: float = 0.2,
        max_side: int | None = 640,
        win_stride: int = 8,
        scale: float = 1.05,
        person_box: tuple[float, float, float, float] = (0.488, 0.493, 0.582, 0.774),
        min_person_height: float | None = 100.0,
        group_threshold: int = 0,
        hit_threshold: float = 0.0,
    ) -> None:
        if len(person_box) != 4 or min(person_box[2:]) <= 0:
            raise ValueError(f"person_box must be (centre x, centre y, width, height) fractions with positive size, got {person_box}")
        if min_person_height is not None and min_person_height <= 0:
            raise ValueError(f"min_person_height must be positive or null, got {min_person_height}")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.win_stride = win_stride
        self.scale = scale
        self.person_box = tuple(float(value) for value in person_box)
        self.min_person_height = min_person_height
        self.group_threshold = group_threshold
        self.hit_threshold = hit_threshold
        self._hog = None

    def _descriptor(self):  # noqa: ANN202 - cv2 type
        if self._hog is None:
            import cv2

            hog = cv2.HOGDescriptor()
            hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
            self._hog = hog
        return self._hog

    def resize_factor(self, height: int, width: int) -> float:
        """How much a (height, width) frame is scaled before detection."""
        factor = 1.0
        if self.min_person_height is not None:
            factor = max(1.0, WINDOW_HEIGHT * self.person_box[3] / self.min_person_height)
        if self.max_side is not None and max(height, width) * factor > self.max_side:
            factor = self.max_side / max(height, width)
        return factor

    def windows(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HOG windows (K, 4) x, y, w, h in original pixels and their SVM margins (K,), before any NMS."""
        return self.windows_at(image, self.resize_factor(*image.shape[:2]))

    def windows_at(self, image: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`windows` with the frame scaled by ``factor`` before detection."""
        import cv2

        height, width = image.shape[:2]
        if factor != 1.0:
            interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
            image = cv2.resize(image, (round(width * factor), round(height * factor)), interpolation=interpolation)
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if gray.shape[0] < HOG_WINDOW_HEIGHT or gray.shape[1] < HOG_WINDOW_WIDTH:
            # No window fits, so nobody can be found; OpenCV would crash the process instead of saying so.
            return np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.float32)
        rects, weights = self._descriptor().detectMultiScale(
            gray,
            hitThreshold=self.hit_threshold,
            winStride=(self.win_stride, self.win_stride),
            padding=(8, 8),
            scale=self.scale,
            groupThreshold=self.group_threshold,
        )
        rects = np.asarray(rects, dtype=np.float32).reshape(-1, 4) / factor
        return rects, np.asarray(weights, dtype=np.float32).reshape(-1)

    def person_boxes(self, windows: np.ndarray) -> np.ndarray:
        """(K, 4) windows x, y, w, h -> (K, 4) person boxes x1, y1, x2, y2 (``person_box``)."""
        x, y, w, h = windows.T
        centre_x, centre_y, box_w, box_h = self.person_box
        cx, cy = x + centre_x * w, y + centre_y * h
        half_w, half_h = 0.5 * box_w * w, 0.5 * box_h * h
        return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)

    def select(self, windows: np.ndarray, margins: np.ndarray, height: int, width: int) -> Detections:
        """Windows and margins of one frame -> thresholded, non-maximum-suppressed person boxes."""
        import cv2

        if len(windows) == 0:
            return Detections.empty()
        scores = np.clip(margins, 0.0, None) / (1.0 + np.clip(margins, 0.0, None))
        boxes = self.person_boxes(windows)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.score_threshold, self.nms_threshold)
        keep = np.asarray(keep, dtype=np.int64).reshape(-1)
        keep = keep[scores[keep] > self.score_threshold]
        boxes, scores = boxes[keep], scores[keep]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        return sort_by_score(Detections(boxes=torch.from_numpy(boxes.astype(np.float32)), scores=torch.from_numpy(scores.astype(np.float32))))

    def detect_one(self, image: np.ndarray) -> Detections:
        """Detect people in one (H, W, 3) uint8 RGB frame."""
        windows, margins = self.windows(image)
        return self.select(windows, margins, *image.shape[:2])

    def __call__(self, images: Tensor) -> list[Detections]:
        """Detect people in (B, H, W, 3) uint8 RGB frames; see :class:`~phalp_lightning.detection.base.Detector`."""
        frames = images.detach().cpu().numpy()
        return [self.detect_one(np.ascontiguousarray(frame)) for frame in frames]
