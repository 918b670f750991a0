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
import math
from collections.abc import Sequence

import numpy as np

from phalp_lightning.evaluation.protocol import EvaluationProtocol
from phalp_lightning.evaluation.sequences import SequenceData

# motmetrics name -> our column name.
CLEAR_IDENTITY_METRICS = {
    "mota": "MOTA",
    "motp": "MOTP_distance",
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
    """Feed one sequence, frame by frame, to a ``motmetrics.MOTAccumulator`` (the reference path).

    :func:`clear_events` gives the same event table in one pass; this path is kept as its cross-check.
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


_EVENT_CODES = {"RAW": 0, "FP": 1, "MISS": 2, "SWITCH": 3, "MATCH": 4, "TRANSFER": 5, "ASCEND": 6, "MIGRATE": 7}


def clear_events(data: SequenceData, protocol: EvaluationProtocol):  # -> pandas.DataFrame
    """motmetrics' event table of one sequence, built in one pass and handed over in bulk.

    Row for row the table ``MOTAccumulator.update`` builds when fed frame by frame (same events, same
    order, same ids and distances; ``tests/test_evaluation_metrics.py`` compares the two): RAW events
    come from array operations per frame; the CLEAR matching runs the accumulator's own rules (keep
    last frame's pairs when still within the threshold, then motmetrics' own ``lap.linear_sum_assignment``
    on the rest, then SWITCH/TRANSFER/ASCEND/MIGRATE bookkeeping) without motmetrics' per-event appends.
    The table is given to ``MetricsHost.compute_many``, which computes every metric from it.
    """
    import motmetrics
    from motmetrics.lap import linear_sum_assignment

    m: dict[int, int] = {}  # object -> hypothesis paired last
    res_m: dict[int, int] = {}  # hypothesis -> object paired last
    last_match: set[int] = set()  # objects matched at least once
    hyp_history: set[int] = set()  # hypotheses matched at least once
    frames_out: list[np.ndarray] = []
    types_out: list[np.ndarray] = []
    oids_out: list[np.ndarray] = []
    hids_out: list[np.ndarray] = []
    dists_out: list[np.ndarray] = []
    nan = float("nan")
    for frame, gt_ids, tracker_ids, similarity in zip(
        data.frames.tolist(), data.gt_ids, data.tracker_ids, data.similarity_scores, strict=True
    ):
        oids = data.gt_id_names[gt_ids].astype(np.float64)
        hids = data.tracker_id_names[tracker_ids].astype(np.float64)
        no, nh = oids.shape[0], hids.shape[0]
        dists = distance_matrix(similarity, protocol).reshape(no, nh)
        finite = np.isfinite(dists)
        valid_i, valid_j = np.nonzero(finite)
        unused_i = np.flatnonzero(~finite.any(axis=1))
        unused_j = np.flatnonzero(~finite.any(axis=0))
        raw_count = 1 + valid_i.shape[0] + unused_i.shape[0] + unused_j.shape[0]
        types = [np.zeros(raw_count, dtype=np.int8)]
        objects = [np.array([nan]), oids[valid_i], oids[unused_i], np.full(unused_j.shape[0], nan)]
        hypotheses = [np.array([nan]), hids[valid_j], np.full(unused_i.shape[0], nan), hids[unused_j]]
        distances = [np.array([nan]), dists[valid_i, valid_j], np.full(unused_i.shape[0] + unused_j.shape[0], nan)]
        kinds: list[int] = []
        event_o: list[float] = []
        event_h: list[float] = []
        event_d: list[float] = []
        oids_masked = np.zeros(no, dtype=bool)
        hids_masked = np.zeros(nh, dtype=bool)
        if valid_i.shape[0]:
            oid_list, hid_list = oids.tolist(), hids.tolist()
            column = {hid: index for index, hid in enumerate(hid_list)}  # ids are unique within a frame
            # 1. Pairs of the previous frames that are still within the threshold are kept.
            for i, o in enumerate(oid_list):
                if o not in m:
                    continue
                j = column.get(m[o])
                if j is None or hids_masked[j] or not finite[i, j]:
                    continue
                oids_masked[i] = hids_masked[j] = True
                kinds.append(4), event_o.append(o), event_h.append(hid_list[j]), event_d.append(dists[i, j])
                last_match.add(o)
                hyp_history.add(hid_list[j])
            # 2. The rest by minimum-cost assignment, with motmetrics' own solver.
            remaining = dists.copy()
            remaining[oids_masked, :] = np.nan
            remaining[:, hids_masked] = np.nan
            if np.isfinite(remaining).any():
                rows, cols = linear_sum_assignment(remaining)
                for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
                    distance = remaining[i, j]
                    if not math.isfinite(distance):
                        continue
                    o, h = oid_list[i], hid_list[j]
                    is_switch = o in m and m[o] != h
                    if is_switch and h not in hyp_history:
                        kinds.append(6), event_o.append(o), event_h.append(h), event_d.append(distance)
                    if h in res_m and res_m[h] != o:
                        if o not in last_match:
                            kinds.append(7), event_o.append(o), event_h.append(h), event_d.append(distance)
                        kinds.append(5), event_o.append(o), event_h.append(h), event_d.append(distance)
                    hyp_history.add(h)
                    last_match.add(o)
                    kinds.append(3 if is_switch else 4), event_o.append(o), event_h.append(h), event_d.append(distance)
                    oids_masked[i] = hids_masked[j] = True
                    m[o] = h
                    res_m[h] = o
        missed = oids[~oids_masked]
        false_alarms = hids[~hids_masked]
        types += [np.asarray(kinds, dtype=np.int8), np.full(missed.shape[0], 2, np.int8), np.full(false_alarms.shape[0], 1, np.int8)]
        objects += [np.asarray(event_o, dtype=np.float64), missed, np.full(false_alarms.shape[0], nan)]
        hypotheses += [np.asarray(event_h, dtype=np.float64), np.full(missed.shape[0], nan), false_alarms]
        distances += [np.asarray(event_d, dtype=np.float64), np.full(missed.shape[0] + false_alarms.shape[0], nan)]
        type_codes = np.concatenate(types)
        frames_out.append(np.full(type_codes.shape[0], frame, dtype=np.int64))
        types_out.append(type_codes)
        oids_out.append(np.concatenate(objects))
        hids_out.append(np.concatenate(hypotheses))
        dists_out.append(np.concatenate(distances))
    if not frames_out:
        return motmetrics.MOTAccumulator.new_event_dataframe()
    frames_all = np.concatenate(frames_out)
    starts = np.flatnonzero(np.r_[True, frames_all[1:] != frames_all[:-1]])
    counts = np.diff(np.r_[starts, frames_all.shape[0]])
    event_ids = np.arange(frames_all.shape[0]) - np.repeat(starts, counts)
    names = np.asarray(list(_EVENT_CODES))
    return motmetrics.MOTAccumulator.new_event_dataframe_with_data(
        {"FrameId": frames_all, "Event": event_ids},
        {"Type": names[np.concatenate(types_out)], "OId": np.concatenate(oids_out),
         "HId": np.concatenate(hids_out), "D": np.concatenate(dists_out)},
    )


def num_fragmentations(df, obj_frequencies) -> int:  # noqa: ARG001 - motmetrics passes its dependencies
    """motmetrics' ``num_fragmentations`` (tracked -> not tracked transitions inside each object's
    tracked span), counted with array operations instead of one pandas query per object."""
    noraw = df.noraw
    objects = noraw["OId"].to_numpy()
    missed = (noraw["Type"] == "MISS").to_numpy()
    order = np.argsort(objects, kind="stable")  # events of each object, in event order
    objects, missed = objects[order], missed[order]
    keep = ~np.isnan(objects)
    objects, missed = objects[keep], missed[keep]
    if not objects.shape[0]:
        return 0
    same_as_previous = np.r_[False, objects[1:] == objects[:-1]]
    previous_tracked = np.r_[False, ~missed[:-1]]
    # A miss run counts when a tracked event precedes it and another follows it for the same object.
    starts = np.flatnonzero(np.r_[True, ~same_as_previous[1:]])
    last_tracked = np.full(objects.shape[0], -1)
    tracked_positions = np.where(~missed, np.arange(objects.shape[0]), -1)
    group = np.cumsum(np.r_[True, ~same_as_previous[1:]]) - 1
    last_in_group = np.full(starts.shape[0], -1)
    np.maximum.at(last_in_group, group, tracked_positions)
    last_tracked = last_in_group[group]
    run_start = missed & same_as_previous & previous_tracked
    return int((run_start & (np.arange(objects.shape[0]) < last_tracked)).sum())


def clear_identity_metrics(sequences: Sequence[SequenceData], protocol: EvaluationProtocol
                           ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """MOTA, MOTP (mean IoU of matches, MOTChallenge's definition), MOTP_distance (motmetrics' 1 - IoU), IDF1, IDP, IDR, IDSW, precision, recall, FP, FN, MT/PT/ML, Frag.

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
        return {}, {column: float("nan") for column in ("MOTA", "MOTP", *list(CLEAR_IDENTITY_METRICS.values())[1:])}
    events = [clear_events(data, protocol) for data in sequences]
    host = motmetrics.metrics.create()
    host.register(num_fragmentations, deps=["obj_frequencies"], name="num_fragmentations")
    # compute_many reports its own timings on the root logger at INFO; keep them out of the run log.
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.INFO))
    try:
        summary = host.compute_many(events, metrics=list(CLEAR_IDENTITY_METRICS), names=names,
                                    generate_overall=True)
    finally:
        logging.disable(previous)

    def row(label: str) -> dict[str, float]:
        values = {}
        for key, column in CLEAR_IDENTITY_METRICS.items():
            value = float(summary.loc[label, key])
            if column == "MOTP_distance":
                # MOTChallenge's MOTP is the mean IoU of the matches (higher is better); motmetrics
                # reports the mean distance 1 - IoU, kept as MOTP_distance.
                values["MOTP"] = 1.0 - value
            values[column] = value
        return values

    return {name: row(name) for name in names}, row("OVERALL")
