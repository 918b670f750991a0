"""Checks of predicted tracks against ground truth."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from phalp_lightning.utils.boxes import box_iou


def id_pairs(mot_rows: np.ndarray, gt_boxes: list[np.ndarray], gt_ids: list[np.ndarray], min_iou: float = 0.5) -> set[tuple[int, int]]:
    """(predicted id, ground-truth id) pairs of IoU-matched boxes over all frames.

    Args:
        mot_rows: (R, >=6) MOT rows frame (1-based), id, x, y, w, h of the prediction.
        gt_boxes, gt_ids: per 0-based frame (N, 4) xyxy boxes and (N,) ids.
    """
    pairs = set()
    for t, (boxes, ids) in enumerate(zip(gt_boxes, gt_ids, strict=True)):
        rows = mot_rows[mot_rows[:, 0] == t + 1]
        if not len(rows) or not len(boxes):
            continue
        predicted = np.concatenate([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]], axis=1)
        iou = box_iou(predicted, np.asarray(boxes, np.float64))
        rows_i, cols_i = linear_sum_assignment(-iou)
        pairs |= {(int(rows[r, 1]), int(ids[c])) for r, c in zip(rows_i, cols_i, strict=True) if iou[r, c] >= min_iou}
    return pairs


def is_one_to_one(pairs: set[tuple[int, int]]) -> bool:
    """No id switch: each predicted id meets one gt id and each gt id one predicted id."""
    return len({p for p, _ in pairs}) == len(pairs) == len({g for _, g in pairs})
