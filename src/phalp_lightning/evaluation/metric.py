"""A torchmetrics ``Metric`` that accumulates MOT ground truth and tracker boxes for HOTA/MOTA/IDF1.

MOTA's ID switches depend on frame order and IDF1 / HOTA on a global id assignment, so no per-frame
partial sum is exact. The metric therefore keeps the raw rows (sequence, frame, id, box) as list
states reduced with ``cat``: under DDP every rank's rows are gathered before ``compute``, frames of
one sequence may be spread over ranks, and the result equals a single-process evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from phalp_lightning.evaluation.evaluator import (
    TABLE_COLUMNS,
    EvaluationResult,
    HotaBackend,
    evaluate_sequences,
)
from phalp_lightning.evaluation.protocol import EvaluationProtocol
from phalp_lightning.evaluation.sequences import TrackSequence


def _rows(sequence: int, frame: int, ids: Tensor, boxes: Tensor, box_format: str) -> Tensor:
    """(N * 7,) float64: rows ``sequence, frame, id, x, y, w, h``, flattened (see ``MOTMetrics``)."""
    boxes = torch.as_tensor(boxes).detach().to(dtype=torch.float64).reshape(-1, 4)
    ids = torch.as_tensor(ids).detach().to(device=boxes.device, dtype=torch.float64).reshape(-1)
    if ids.shape[0] != boxes.shape[0]:
        raise ValueError(f"MOTMetrics.update: {ids.shape[0]} ids but {boxes.shape[0]} boxes (sequence {sequence}, frame {frame})")
    if box_format == "xyxy":
        boxes = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
    elif box_format != "xywh":
        raise ValueError(f"MOTMetrics.update: box_format must be 'xyxy' or 'xywh', got {box_format!r}")
    key = boxes.new_tensor([float(sequence), float(frame)]).expand(boxes.shape[0], 2)
    return torch.cat([key, ids[:, None], boxes], dim=1).reshape(-1)


class MOTMetrics(Metric):
    """HOTA, DetA, AssA, MOTA, IDF1, IDSW, precision, recall, FP, FN over all updated frames.

    Call :meth:`update` once per frame (any order, any rank; a frame updated twice with the same
    boxes counts once); :meth:`compute` returns the overall
    metrics as a dict of scalar tensors, e.g. for ``self.log_dict(metric.compute())`` in
    ``on_validation_epoch_end``; :attr:`last_result` keeps the full per-sequence result.

    Args:
        protocol: matching / aggregation protocol (default: standard).
        prefix: key prefix of the returned dict (e.g. "val/").
        metrics: which overall columns to return.
        hota_backend: "own" or "trackeval".
        box_format: "xyxy" (the tracker's) or "xywh" (MOT files').
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    gt_rows: list[Tensor]
    pred_rows: list[Tensor]
    frames: list[Tensor]

    def __init__(self, protocol: EvaluationProtocol | None = None, prefix: str = "eval/",
                 metrics: Sequence[str] = TABLE_COLUMNS, hota_backend: HotaBackend = "own",
                 box_format: str = "xyxy", **kwargs) -> None:
        super().__init__(**kwargs)
        self.protocol = protocol or EvaluationProtocol()
        self.prefix = prefix
        self.metric_names = tuple(metrics)
        self.hota_backend = hota_backend
        self.box_format = box_format
        self.last_result: EvaluationResult | None = None
        self.add_state("gt_rows", default=[], dist_reduce_fx="cat")
        self.add_state("pred_rows", default=[], dist_reduce_fx="cat")
        # (sequence, frame) of every update, so frames without any box are still scored.
        self.add_state("frames", default=[], dist_reduce_fx="cat")
        # States are 1-D float64: a rank without updates syncs an empty tensor of the metric's dtype
        # and of one dimension, and torchmetrics' gather needs dtype and ndim equal on every rank.
        self.set_dtype(torch.float64)

    def update(self, gt_boxes: Tensor, gt_ids: Tensor, pred_boxes: Tensor, pred_ids: Tensor, frame: int,
               sequence: int = 0) -> None:
        """Add one frame.

        Args:
            gt_boxes: (G, 4) ground-truth boxes in ``box_format``.
            gt_ids: (G,) ground-truth track ids.
            pred_boxes: (P, 4) predicted boxes in ``box_format``.
            pred_ids: (P,) predicted track ids.
            frame: frame index within the sequence.
            sequence: integer id of the sequence (video).
        """
        self.gt_rows.append(_rows(sequence, frame, gt_ids, gt_boxes, self.box_format))
        self.pred_rows.append(_rows(sequence, frame, pred_ids, pred_boxes, self.box_format))
        self.frames.append(torch.tensor([float(sequence), float(frame)], dtype=torch.float64, device=self.device))

    def compute(self) -> dict[str, Tensor]:
        """Evaluate every sequence seen so far; returns ``{prefix + column: scalar tensor}``."""
        def rows(state: list[Tensor] | Tensor, width: int) -> np.ndarray:
            if isinstance(state, list) and not state:
                return np.zeros((0, width))
            return dim_zero_cat(state).double().cpu().numpy().reshape(-1, width)

        gt, pred, frames = rows(self.gt_rows, 7), rows(self.pred_rows, 7), rows(self.frames, 2)
        # DistributedSampler pads ranks by repeating samples: a frame seen twice adds identical rows.
        gt, pred, frames = np.unique(gt, axis=0), np.unique(pred, axis=0), np.unique(frames, axis=0)
        ground_truth, predictions = {}, {}
        for sequence in np.unique(frames[:, 0]).astype(np.int64).tolist():
            name = str(sequence)
            ground_truth[name] = TrackSequence.from_rows(
                name, gt[gt[:, 0] == sequence][:, 1:], evaluated_frames=frames[frames[:, 0] == sequence, 1])
            predictions[name] = TrackSequence.from_rows(name, pred[pred[:, 0] == sequence][:, 1:])
        self.last_result = evaluate_sequences(predictions, ground_truth, protocol=self.protocol,
                                              hota_backend=self.hota_backend)
        overall = self.last_result.overall
        return {f"{self.prefix}{name}": torch.tensor(overall[name], dtype=torch.float32) for name in self.metric_names}
