"""Evaluation protocol: how boxes are matched and how sequences are aggregated."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

HotaAggregation = Literal["combined", "sequence_mean"]
IgnoreOverlap = Literal["iou", "box_fraction"]


@dataclass(frozen=True)
class EvaluationProtocol:
    """Settings that change metric values; written next to every result so numbers stay comparable.

    Attributes:
        name: a label reported with the results ("standard", "phalp", ...).
        iou_threshold: a ground-truth box and a predicted box can match for CLEAR (MOTA) and
            Identity (IDF1) metrics when their IoU is >= this (standard 0.5; PHALP's script 0.01).
            HOTA always integrates over its 19 alphas and ignores this value.
        hota_aggregation: "combined" = TrackEval's combined HOTA (TP/FN/FP summed over sequences,
            AssA weighted by TP); "sequence_mean" = mean of per-sequence HOTA/DetA/AssA (PHALP).
        use_ignore_regions: drop unmatched predictions inside the ground truth's ignore regions
            (PoseTrack) before every metric.
        ignore_overlap: "iou" = polygon IoU of box and region (PoseTrack21's official code);
            "box_fraction" = share of the box inside the region (CoMotion's correction).
        ignore_threshold: a prediction is ignored when its overlap with a region exceeds this.
    """

    name: str = "standard"
    iou_threshold: float = 0.5
    hota_aggregation: HotaAggregation = "combined"
    use_ignore_regions: bool = True
    ignore_overlap: IgnoreOverlap = "iou"
    ignore_threshold: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"protocol.iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.hota_aggregation not in ("combined", "sequence_mean"):
            raise ValueError(f"protocol.hota_aggregation must be 'combined' or 'sequence_mean', got {self.hota_aggregation!r}")
        if self.ignore_overlap not in ("iou", "box_fraction"):
            raise ValueError(f"protocol.ignore_overlap must be 'iou' or 'box_fraction', got {self.ignore_overlap!r}")
        if not 0.0 <= self.ignore_threshold <= 1.0:
            raise ValueError(f"protocol.ignore_threshold must be in [0, 1], got {self.ignore_threshold}")

    @classmethod
    def standard(cls) -> EvaluationProtocol:
        """MOTChallenge / PoseTrack21: IoU 0.5 matching, TrackEval's combined HOTA."""
        return cls()

    @classmethod
    def phalp(cls) -> EvaluationProtocol:
        """PHALP's ``evaluate_PHALP.py``: any overlap with IoU >= 0.01 matches, HOTA averaged per video."""
        return cls(name="phalp", iou_threshold=0.01, hota_aggregation="sequence_mean")

    @property
    def max_distance(self) -> float:
        """motmetrics' ``max_iou``: the largest 1 - IoU distance that may still match."""
        return 1.0 - self.iou_threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
