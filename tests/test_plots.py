"""Plots: the figure-saving helpers, evaluation bar charts and ID-switch timelines, track plots, evaluate.py plot=true."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


def switching_result():
    """Two people over 10 frames; the tracker follows person 1 with id 11, then id 12 from frame 6 on."""
    from phalp_lightning.evaluation.evaluator import evaluate_sequences
    from phalp_lightning.evaluation.sequences import TrackSequence

    frames = np.repeat(np.arange(10), 2)
    gt_ids = np.tile([1, 2], 10)
    boxes = np.stack([np.where(gt_ids == 1, 10.0, 200.0) + frames * 3, np.full(20, 50.0), np.full(20, 40.0), np.full(20, 100.0)], 1)
    ground_truth = TrackSequence("walk", frames, gt_ids, boxes)
    pred_ids = np.where(gt_ids == 1, np.where(frames < 6, 11, 12), 21)
    keep = ~((gt_ids == 2) & (frames == 3))  # person 2 missed in frame 3
    prediction = TrackSequence("walk", frames[keep], pred_ids[keep], boxes[keep])
    return evaluate_sequences({"walk": prediction}, {"walk": ground_truth})


def test_save_curves_and_bars_write_png_atomically(tmp_path):
    from phalp_lightning.utils.plotting import save_bars, save_curves

    curves = save_curves(tmp_path / "curve.png", [0, 1, 2], {"model": [3.0, 2.0, 1.0], "baseline": [3.0, 3.0, 3.0]},
                         xlabel="epoch", ylabel="error", log_y=True)
    bars = save_bars(tmp_path / "sub" / "bars.png", ["a", "b"], {"fps": [10.0, 20.0]}, ylabel="frames/s")
    assert is_png(curves) and is_png(bars)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bars.png", "curve.png", "sub"]  # no temporaries left


def test_plots_without_matplotlib_raise_a_user_error(monkeypatch):
    from phalp_lightning.errors import UserError
    from phalp_lightning.utils.plotting import pyplot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(UserError, match=r"\[plot\]"):
        pyplot()


def test_match_events_find_the_switch_and_the_miss():
    from phalp_lightning.evaluation.plots import match_events

    result = switching_result()
    assert result.per_sequence["walk"]["IDSW"] == 1
    events = match_events(result, "walk")
    switches = events[events["event"] == "SWITCH"]
    assert switches[["frame", "gt_id", "tracker_id"]].values.tolist() == [[6, 1, 12]]
    misses = events[events["event"] == "MISS"]
    assert misses[["frame", "gt_id"]].values.tolist() == [[3, 2]]
    assert set(events.loc[events["gt_id"] == 2, "tracker_id"].dropna()) == {21}


def test_id_switch_timeline_marks_each_switch():
    from phalp_lightning.evaluation.plots import plot_id_switch_timeline

    axis = plot_id_switch_timeline(switching_result(), "walk")
    crosses = [line for line in axis.get_lines() if line.get_marker() == "x"]
    assert sum(len(line.get_xdata()) for line in crosses) == 1
    assert [text.get_text() for text in axis.texts] == ["11", "12", "21"]  # the tracker ids along the rows
    assert "ID switch (1)" in axis.get_title()


def test_write_evaluation_plots_writes_bars_and_timelines(tmp_path):
    from phalp_lightning.evaluation.plots import plot_sequence_scores, write_evaluation_plots

    result = switching_result()
    paths = write_evaluation_plots(result, tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["metrics.png", "errors.png", "id_switches/walk.png"]
    assert all(is_png(p) for p in paths)
    heights = [patch.get_height() for patch in plot_sequence_scores(result).patches]
    assert heights == pytest.approx([100 * result.per_sequence["walk"][c] for c in ("HOTA", "DetA", "AssA", "MOTA", "IDF1")])


def small_tracks():
    from phalp_lightning.api import TRACK_COLUMNS, Tracks

    rows = [(f, 1, f != 2, 10.0 + f, 20.0, 30, 60, 0.1 * f, 0.0, 50.0 - f) for f in range(5)]
    rows += [(f, 2, True, 100.0, 20.0, 30, 60, -0.5, 0.0, 40.0) for f in (3, 4)]
    table = pd.DataFrame(rows, columns=list(TRACK_COLUMNS))
    return Tracks(table, np.zeros((len(rows), 229), np.float32), np.zeros((len(rows), 99), np.float32), (120, 160), Path("x.npz"))


def test_track_plots_draw_every_track():
    from phalp_lightning.tracking.plots import _runs, plot_id_timeline, plot_image_trajectories, plot_top_down

    tracks = small_tracks()
    assert _runs(np.array([0, 1, 3, 4, 7])) == [(-0.5, 2.0), (2.5, 2.0), (6.5, 1.0)]
    axis = plot_image_trajectories(tracks)
    path = axis.get_lines()[0]
    # Track 1's feet (box bottom centre), detected frames only (frame 2 was not detected).
    assert list(path.get_xdata()) == [25.0, 26.0, 28.0, 29.0] and set(path.get_ydata()) == {80.0}
    top = plot_top_down(tracks)
    assert [collection.get_offsets().shape[0] for collection in top.collections] == [4, 2, 1]  # id 1, id 2, camera
    timeline = plot_id_timeline(tracks)
    # Bars per (id, detected / not detected): id 1 is seen in frames 0-1 and 3-4, missed in 2; id 2 seen in 3-4.
    assert [len(collection.get_paths()) for collection in timeline.collections] == [2, 1, 1, 0]
    assert [label.get_text() for label in timeline.get_yticklabels()] == ["id 1", "id 2"]


def test_evaluate_pipeline_with_plot_true_writes_pictures_next_to_metrics(compose_cfg, tmp_path):
    from phalp_lightning.pipelines.evaluate import run

    gt = tmp_path / "seq" / "gt" / "gt.txt"
    gt.parent.mkdir(parents=True)
    rows = [f"{f},1,{10 + f},20,40,100,1,1,1" for f in range(1, 9)] + [f"{f},2,200,20,40,100,1,1,1" for f in range(1, 9)]
    gt.write_text("\n".join(rows) + "\n")
    pred = tmp_path / "pred" / "seq.txt"
    pred.parent.mkdir()
    pred.write_text("\n".join(r.replace(",1,", ",5,", 1) if int(r.split(",")[0]) > 4 else r for r in rows) + "\n")
    cfg = compose_cfg("evaluate", [f"pred={pred.parent}", f"gt={gt.parent.parent}", "logger=none", "plot=true"])
    overall = run(cfg)
    assert overall["IDSW"] == 1
    out = Path(cfg.paths.output_dir)
    assert (out / "metrics.csv").is_file()
    assert is_png(out / "metrics.png") and is_png(out / "errors.png") and is_png(out / "id_switches" / "seq.png")
    cfg = compose_cfg("evaluate", [f"pred={pred.parent}", f"gt={gt.parent.parent}", "logger=none"])
    assert cfg.plot is False
