"""CLEAR-MOT (MOTA, ID switches) and Identity (IDF1) metrics from motmetrics 1.4.0.

This engine serves the ``plain`` preset, PHALP's protocol (PHALP scores with motmetrics) and the
Lightning metric. The official presets use TrackEval's rules instead (``clear_trackeval.py``); the
two differ on ambiguous frames (see there).

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
    order, same ids and distances; ``tests/test_evaluation_metrics.py`` compares the two): the RAW
    events of all frames come from array operations; the CLEAR matching runs the accumulator's own
    rules frame by frame (keep last frame's pairs while within the threshold, then motmetrics' own
    ``lap.linear_sum_assignment`` on the rest, then the SWITCH / TRANSFER / ASCEND / MIGRATE
    bookkeeping) without motmetrics' per-event appends. ``MetricsHost.compute_many`` then computes
    every metric from the table.
    """
    import motmetrics
    from motmetrics.lap import linear_sum_assignment

    frames = data.frames
    count = len(data.gt_ids)
    if count == 0:
        return motmetrics.MOTAccumulator.new_event_dataframe()
    gt_counts = np.asarray([ids.shape[0] for ids in data.gt_ids], dtype=np.int64)
    pred_counts = np.asarray([ids.shape[0] for ids in data.tracker_ids], dtype=np.int64)
    oids_all = data.gt_id_names[np.concatenate(data.gt_ids)].astype(np.float64) if gt_counts.sum() else np.zeros(0)
    hids_all = data.tracker_id_names[np.concatenate(data.tracker_ids)].astype(np.float64) if pred_counts.sum() else np.zeros(0)
    gt_starts = np.cumsum(gt_counts) - gt_counts
    pred_starts = np.cumsum(pred_counts) - pred_counts
    distances = [distance_matrix(similarity, protocol).reshape(g, h)
                 for similarity, g, h in zip(data.similarity_scores, gt_counts.tolist(), pred_counts.tolist(), strict=True)]

    # RAW events, all frames at once: a marker per frame, every finite pair (row-major), then the
    # objects and the hypotheses without any finite pair.
    pair_counts = gt_counts * pred_counts
    flat = np.concatenate([matrix.ravel() for matrix in distances]) if pair_counts.sum() else np.zeros(0)
    pair_frame = np.repeat(np.arange(count), pair_counts)
    pair_offset = np.arange(flat.shape[0]) - np.repeat(np.cumsum(pair_counts) - pair_counts, pair_counts)
    pair_row = pair_offset // np.maximum(pred_counts[pair_frame], 1)
    pair_col = pair_offset % np.maximum(pred_counts[pair_frame], 1)
    finite = np.isfinite(flat)
    global_row = gt_starts[pair_frame] + pair_row
    global_col = pred_starts[pair_frame] + pair_col
    row_used = np.zeros(oids_all.shape[0], dtype=bool)
    row_used[global_row[finite]] = True
    col_used = np.zeros(hids_all.shape[0], dtype=bool)
    col_used[global_col[finite]] = True
    row_frame = np.repeat(np.arange(count), gt_counts)
    col_frame = np.repeat(np.arange(count), pred_counts)
    nan = float("nan")
    sections = [  # (frame position, section, type, object, hypothesis, distance)
        (np.arange(count), 0, np.zeros(count, np.int8), np.full(count, nan), np.full(count, nan), np.full(count, nan)),
        (pair_frame[finite], 1, np.zeros(int(finite.sum()), np.int8), oids_all[global_row[finite]],
         hids_all[global_col[finite]], flat[finite]),
        (row_frame[~row_used], 2, np.zeros(int((~row_used).sum()), np.int8), oids_all[~row_used],
         np.full(int((~row_used).sum()), nan), np.full(int((~row_used).sum()), nan)),
        (col_frame[~col_used], 3, np.zeros(int((~col_used).sum()), np.int8), np.full(int((~col_used).sum()), nan),
         hids_all[~col_used], np.full(int((~col_used).sum()), nan)),
    ]

    # CLEAR matching, frame by frame (the pairing of a frame depends on the frames before it).
    m: dict[float, float] = {}  # object -> hypothesis paired last
    res_m: dict[float, float] = {}  # hypothesis -> object paired last
    last_match: set[float] = set()  # objects matched at least once
    hyp_history: set[float] = set()  # hypotheses matched at least once
    events: list[tuple[int, int, float, float, float]] = []  # (frame position, type, object, hypothesis, distance)
    row_matched = np.zeros(oids_all.shape[0], dtype=bool)
    col_matched = np.zeros(hids_all.shape[0], dtype=bool)
    oids_py, hids_py = oids_all.tolist(), hids_all.tolist()
    gt_starts_py, pred_starts_py = gt_starts.tolist(), pred_starts.tolist()
    gt_counts_py, pred_counts_py = gt_counts.tolist(), pred_counts.tolist()
    for position in range(count):
        no, nh = gt_counts_py[position], pred_counts_py[position]
        if not (no and nh):
            continue
        g0, p0 = gt_starts_py[position], pred_starts_py[position]
        oid_list, hid_list = oids_py[g0:g0 + no], hids_py[p0:p0 + nh]
        dists = distances[position]
        item = dists.item
        oids_masked = [False] * no
        hids_masked = [False] * nh
        # 1. Pairs of the previous frames that are still within the threshold are kept.
        if m:
            column = {hid: index for index, hid in enumerate(hid_list)}  # ids are unique within a frame
            for i, o in enumerate(oid_list):
                previous = m.get(o)
                if previous is None:
                    continue
                j = column.get(previous)
                if j is None or hids_masked[j]:
                    continue
                distance = item(i, j)
                if distance != distance:
                    continue
                oids_masked[i] = hids_masked[j] = True
                events.append((position, 4, o, previous, distance))
                last_match.add(o)
                hyp_history.add(previous)
        # 2. The rest by minimum-cost assignment, with motmetrics' own solver.
        free_rows = [i for i in range(no) if not oids_masked[i]]
        free_cols = [j for j in range(nh) if not hids_masked[j]]
        if free_rows and free_cols and any(item(i, j) == item(i, j) for i in free_rows for j in free_cols):
            remaining = dists.copy()
            remaining[np.asarray(oids_masked), :] = np.nan
            remaining[:, np.asarray(hids_masked)] = np.nan
            rows, cols = linear_sum_assignment(remaining)
            for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
                distance = remaining.item(i, j)
                if not math.isfinite(distance):
                    continue
                o, h = oid_list[i], hid_list[j]
                is_switch = o in m and m[o] != h
                if is_switch and h not in hyp_history:
                    events.append((position, 6, o, h, distance))
                if h in res_m and res_m[h] != o:
                    if o not in last_match:
                        events.append((position, 7, o, h, distance))
                    events.append((position, 5, o, h, distance))
                hyp_history.add(h)
                last_match.add(o)
                events.append((position, 3 if is_switch else 4, o, h, distance))
                oids_masked[i] = hids_masked[j] = True
                m[o] = h
                res_m[h] = o
        row_matched[g0:g0 + no] = oids_masked
        col_matched[p0:p0 + nh] = hids_masked
    table = np.asarray(events, dtype=np.float64).reshape(-1, 5)
    sections.append((table[:, 0].astype(np.int64), 4, table[:, 1].astype(np.int8), table[:, 2], table[:, 3], table[:, 4]))
    # 3. Objects left unmatched are missed; 4. hypotheses left unmatched are false alarms.
    missed, false_alarms = int((~row_matched).sum()), int((~col_matched).sum())
    sections.append((row_frame[~row_matched], 5, np.full(missed, 2, np.int8), oids_all[~row_matched],
                     np.full(missed, nan), np.full(missed, nan)))
    sections.append((col_frame[~col_matched], 6, np.full(false_alarms, 1, np.int8), np.full(false_alarms, nan),
                     hids_all[~col_matched], np.full(false_alarms, nan)))

    position_all = np.concatenate([section[0] for section in sections])
    section_all = np.concatenate([np.full(section[0].shape[0], section[1], np.int8) for section in sections])
    # Within a frame: marker, finite pairs, unused objects, unused hypotheses, the matching's events,
    # misses, false alarms; each in the order it was produced (lexsort is stable).
    order = np.lexsort((section_all, position_all))
    position_sorted = position_all[order]
    starts = np.searchsorted(position_sorted, np.arange(count))
    event_ids = np.arange(position_sorted.shape[0]) - starts[position_sorted]
    names = np.asarray(list(_EVENT_CODES))
    return motmetrics.MOTAccumulator.new_event_dataframe_with_data(
        {"FrameId": frames[position_sorted], "Event": event_ids},
        {"Type": names[np.concatenate([section[2] for section in sections])[order]],
         "OId": np.concatenate([section[3] for section in sections])[order],
         "HId": np.concatenate([section[4] for section in sections])[order],
         "D": np.concatenate([section[5] for section in sections])[order]},
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


# Columns TrackEval's CLEAR adds, derived here from motmetrics' counts with TrackEval's formulas.
DERIVED_COLUMNS = ("TP", "MODA", "sMOTA", "MOTAL")


def _derived(values: dict[str, float], num_objects: float) -> dict[str, float]:
    tp = num_objects - values["FN"]
    fp, idsw, gt = values["FP"], values["IDSW"], max(1.0, num_objects)
    motp_sum = tp * values["MOTP"] if tp > 0 else 0.0
    return {"TP": tp, "MODA": (tp - fp) / gt, "sMOTA": (motp_sum - fp - idsw) / gt,
            "MOTAL": (tp - fp - (math.log10(idsw) if idsw > 0 else 0.0)) / gt}


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
        return {}, {column: float("nan") for column in ("MOTA", "MOTP", *list(CLEAR_IDENTITY_METRICS.values())[1:],
                                                        *DERIVED_COLUMNS)}
    events = [clear_events(data, protocol) for data in sequences]
    host = motmetrics.metrics.create()
    host.register(num_fragmentations, deps=["obj_frequencies"], name="num_fragmentations")
    # compute_many reports its own timings on the root logger at INFO; keep them out of the run log.
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.INFO))
    try:
        summary = host.compute_many(events, metrics=[*CLEAR_IDENTITY_METRICS, "num_objects"], names=names,
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
        return {**values, **_derived(values, float(summary.loc[label, "num_objects"]))}

    return {name: row(name) for name in names}, row("OVERALL")
