"""CLEAR-MOT (MOTA, ID switches) and Identity (IDF1) metrics from motmetrics 1.4.0.

motmetrics 1.4.0 is used only through the paths that work with NumPy 2 and pandas 3:

- ``MOTAccumulator.update`` fed with our own distance matrices (``1 - IoU``, NaN where the pair
  may not match). ``motmetrics.distances.iou_matrix`` is never called: it uses ``np.asfarray``,
  removed in NumPy 2.0 (so are ``utils.compare_to_groundtruth`` and ``utils.CLEAR_MOT_M``).
- ``MetricsHost.compute_many(..., generate_overall=True)``: its OVERALL row is computed from
  per-sequence partial counts, not by merging event frames. ``MOTAccumulator.merge_event_dataframes``
  (used by ``compute(..)`` on a list of accumulators) calls ``DataFrame.append``, removed in
  pandas 2.0, and is never called.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from phalp_lightning.evaluation.protocol import EvaluationProtocol
from phalp_lightning.evaluation.sequences import SequenceData

# motmetrics name -> our column name.
CLEAR_IDENTITY_METRICS = {
    "mota": "MOTA",
    "motp": "MOTP",
    "idf1": "IDF1",
    "idp": "IDP",
    "idr": "IDR",
    "num_switches": "IDSW",
    "precision": "Precision",
    "recall": "Recall",
    "num_false_positives": "FP",
    "num_misses": "FN",
    "mostly_tracked": "MT",
    "partially_tracked": "PT",
    "mostly_lost": "ML",
    "num_fragmentations": "Frag",
}


def distance_matrix(similarity: np.ndarray, protocol: EvaluationProtocol) -> np.ndarray:
    """motmetrics distance ``1 - IoU``, NaN (do-not-pair) when IoU is below the protocol's threshold.

    Args:
        similarity: (n_gt, n_pred) IoU.
        protocol: gives ``max_distance = 1 - iou_threshold``.

    Returns:
        (n_gt, n_pred) float64 distances.
    """
    distance = 1.0 - np.asarray(similarity, dtype=np.float64)
    return np.where(distance > protocol.max_distance, np.nan, distance)


def accumulate(data: SequenceData, protocol: EvaluationProtocol):  # -> motmetrics.MOTAccumulator
    """Feed one sequence, frame by frame, to a ``motmetrics.MOTAccumulator``.

    Ids passed to motmetrics are the original track ids, so its event log reads like the input.
    """
    import motmetrics

    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    for frame, gt_ids, tracker_ids, similarity in zip(
        data.frames.tolist(), data.gt_ids, data.tracker_ids, data.similarity_scores, strict=True
    ):
        accumulator.update(
            data.gt_id_names[gt_ids], data.tracker_id_names[tracker_ids],
            distance_matrix(similarity, protocol).reshape(gt_ids.shape[0], tracker_ids.shape[0]), frameid=frame,
        )
    return accumulator


def clear_identity_metrics(sequences: Sequence[SequenceData], protocol: EvaluationProtocol
                           ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """MOTA, MOTP, IDF1, IDP, IDR, IDSW, precision, recall, FP, FN, MT/PT/ML, Frag.

    Args:
        sequences: per-sequence data (names must be unique).
        protocol: matching threshold.

    Returns:
        (per-sequence metrics keyed by name, overall metrics over all sequences), with the column
        names of ``CLEAR_IDENTITY_METRICS``. Overall = motmetrics' OVERALL row (counts summed, so
        MOTA/IDF1 are of the pooled events, not a mean of sequences).
    """
    import motmetrics

    names = [data.name for data in sequences]
    if len(set(names)) != len(names):
        raise ValueError(f"clear_identity_metrics: duplicate sequence names in {names}")
    if not sequences:
        return {}, {column: float("nan") for column in CLEAR_IDENTITY_METRICS.values()}
    accumulators = [accumulate(data, protocol) for data in sequences]
    host = motmetrics.metrics.create()
    # compute_many reports its own timings on the root logger at INFO; keep them out of the run log.
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.INFO))
    try:
        summary = host.compute_many(accumulators, metrics=list(CLEAR_IDENTITY_METRICS), names=names,
                                    generate_overall=True)
    finally:
        logging.disable(previous)

    def row(label: str) -> dict[str, float]:
        return {column: float(summary.loc[label, key]) for key, column in CLEAR_IDENTITY_METRICS.items()}

    return {name: row(name) for name in names}, row("OVERALL")
