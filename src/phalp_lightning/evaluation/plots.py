"""Pictures of an evaluation: per-sequence bar charts and ID-switch timelines.

``python evaluate.py ... plot=true`` calls :func:`write_evaluation_plots`, which writes next to
``metrics.csv``:

- ``metrics.png``: HOTA, DetA, AssA, MOTA, IDF1 per sequence (and OVERALL), as percentages;
- ``errors.png``: ID switches, false positives and misses per sequence;
- ``id_switches/<sequence>.png``: one row per ground-truth person over the frames, coloured by the
  tracker id matched to it (CLEAR-MOT matching, the protocol's IoU threshold), grey where it was
  missed, a red cross where the matched tracker id changed (an ID switch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from phalp_lightning.utils.plotting import bar_axes, pyplot, save_figure

if TYPE_CHECKING:
    import pandas as pd

    from phalp_lightning.evaluation.evaluator import EvaluationResult

SCORE_COLUMNS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1")
ERROR_COLUMNS = ("IDSW", "FP", "FN")


def _rows(result: EvaluationResult, include_overall: bool) -> list[dict[str, Any]]:
    rows = result.rows()
    return rows if include_overall and len(rows) > 2 else rows[:-1] if len(rows) > 1 else rows


def plot_sequence_scores(result: EvaluationResult, columns: Sequence[str] = SCORE_COLUMNS,
                         include_overall: bool = True, axis: Any = None) -> Any:
    """Grouped bars: one group per sequence (and OVERALL when there are several), one bar per score (%)."""
    rows = _rows(result, include_overall)
    if axis is None:
        _, axis = pyplot().subplots(figsize=(max(6.0, 1.4 * len(rows) * len(columns) ** 0.5 + 2), 4))
    series = {column: [100.0 * float(row.get(column, np.nan)) for row in rows] for column in columns}
    bar_axes(axis, [row["sequence"] for row in rows], series, ylabel="%", title="scores per sequence",
             value_format="{:.1f}")
    axis.set_ylim(min(0.0, *(v for values in series.values() for v in values if np.isfinite(v))), 105)
    return axis


def plot_sequence_errors(result: EvaluationResult, columns: Sequence[str] = ERROR_COLUMNS, axis: Any = None) -> Any:
    """Grouped bars of error counts (ID switches, false positives, misses) per sequence."""
    rows = _rows(result, include_overall=False)
    if axis is None:
        _, axis = pyplot().subplots(figsize=(max(6.0, 1.4 * len(rows) * len(columns) ** 0.5 + 2), 4))
    series = {column: [float(row.get(column, np.nan)) for row in rows] for column in columns}
    bar_axes(axis, [row["sequence"] for row in rows], series, ylabel="count", title="errors per sequence",
             value_format="{:.0f}")
    return axis


def match_events(result: EvaluationResult, sequence: str) -> pd.DataFrame:
    """Per frame and ground-truth person: the matched tracker id, a miss, or an ID switch.

    Computed with motmetrics' CLEAR-MOT matching under the result's protocol (the matching behind
    MOTA and IDSW). Columns: ``frame``, ``gt_id``, ``tracker_id`` (NaN when missed), ``event``
    ("MATCH", "SWITCH", "MISS").
    """
    import pandas as pd

    from phalp_lightning.evaluation.clear import accumulate

    if sequence not in result.sequences:
        raise KeyError(f"sequence {sequence!r} not in the result ({sorted(result.sequences)[:10]})")
    events = accumulate(result.sequences[sequence], result.protocol).mot_events.reset_index()
    events = events[events["Type"].isin(["MATCH", "SWITCH", "MISS"])]
    return pd.DataFrame({
        "frame": events["FrameId"].to_numpy(np.int64),
        "gt_id": events["OId"].to_numpy(np.float64).astype(np.int64),
        "tracker_id": events["HId"].to_numpy(np.float64),
        "event": events["Type"].astype(str).to_numpy(),
    })


def plot_id_switch_timeline(result: EvaluationResult, sequence: str, axis: Any = None) -> Any:
    """One row per ground-truth person over the frames, coloured by matched tracker id; ID switches marked.

    A colour change along a row is the tracker handing the person a different id; grey is a
    frame where no tracker box matched the person (missed); a red cross is an ID switch.
    """
    from phalp_lightning.utils.colours import track_colours

    events = match_events(result, sequence)
    gt_ids = sorted(int(g) for g in events["gt_id"].unique())
    if axis is None:
        _, axis = pyplot().subplots(figsize=(9, 0.8 + 0.45 * max(len(gt_ids), 1)))
    matched = events[events["event"] != "MISS"]
    for row_number, gt_id in enumerate(gt_ids):
        rows = events[events["gt_id"] == gt_id]
        missed = rows[rows["event"] == "MISS"]["frame"].to_numpy()
        axis.broken_barh([(f - 0.5, 1.0) for f in missed], (row_number - 0.3, 0.6), facecolors="0.8")
        hits = matched[matched["gt_id"] == gt_id]
        for tracker_id, part in hits.groupby("tracker_id"):
            colour = track_colours(np.array([int(tracker_id)]))[0] / 255.0
            axis.broken_barh([(f - 0.5, 1.0) for f in part["frame"].to_numpy()], (row_number - 0.3, 0.6), facecolors=[colour])
            first = part["frame"].min()
            axis.text(first - 0.3, row_number + 0.05, f"{int(tracker_id)}", va="center", ha="left", fontsize=8, color="k")
        # On the bar's top edge at the frame boundary, so the id label of the new run stays readable.
        switches = rows[rows["event"] == "SWITCH"]["frame"].to_numpy()
        axis.plot(switches - 0.5, np.full(len(switches), row_number - 0.3), "x", color="red", ms=9, mew=2.5, clip_on=False)
    frames = result.sequences[sequence].frames
    axis.set_xlim(float(frames.min()) - 0.5 if len(frames) else -0.5, float(frames.max()) + 0.5 if len(frames) else 0.5)
    axis.set_yticks(range(len(gt_ids)), [f"person {g}" for g in gt_ids])
    axis.set_ylim(len(gt_ids) - 0.4, -0.6)
    switches_total = int((events["event"] == "SWITCH").sum())
    axis.set(xlabel="frame", title=f"{sequence}: tracker id per person (numbers), grey = missed, "
                                   f"red x = ID switch ({switches_total})")
    return axis


def write_evaluation_plots(result: EvaluationResult, output_dir: str | os.PathLike[str],
                           max_timelines: int | None = None) -> list[Path]:
    """Write ``metrics.png``, ``errors.png`` and ``id_switches/<sequence>.png`` under ``output_dir``.

    Args:
        result: the evaluation (with its per-sequence data).
        output_dir: the folder holding ``metrics.csv``.
        max_timelines: at most this many ID-switch timelines, sequences with the most switches
            first (None: every sequence).

    Returns:
        The paths written.
    """
    output_dir = Path(output_dir)
    paths = [save_figure(plot_sequence_scores(result).figure, output_dir / "metrics.png"),
             save_figure(plot_sequence_errors(result).figure, output_dir / "errors.png")]
    names = sorted(result.sequences, key=lambda name: -float(result.per_sequence.get(name, {}).get("IDSW", 0.0)))
    for name in names[:max_timelines] if max_timelines is not None else names:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        paths.append(save_figure(plot_id_switch_timeline(result, name).figure, output_dir / "id_switches" / f"{safe}.png"))
    return paths
