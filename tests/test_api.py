"""The Python API (phalp_lightning.api): configs, results loading, drawing, one-step pose predictions."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

from phalp_lightning import api

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_project_config_dir_is_found_from_a_subfolder_and_by_env(monkeypatch, tmp_path):
    monkeypatch.chdir(PROJECT_ROOT / "notebooks")
    monkeypatch.delenv(api.CONFIG_DIR_ENV, raising=False)
    assert api.project_config_dir() == (PROJECT_ROOT / "configs").resolve()
    monkeypatch.setenv(api.CONFIG_DIR_ENV, str(tmp_path))
    with pytest.raises(api.ConfigDirNotFoundError, match=api.CONFIG_DIR_ENV):
        api.project_config_dir()


def test_compose_gives_the_entry_points_config(tmp_path):
    cfg = api.compose("predict", ["video=clip.mp4", "tracker.max_age=3"], tmp_path / "run")
    assert cfg.video == "clip.mp4" and cfg.tracker.max_age == 3
    assert Path(cfg.output_dir) == (tmp_path / "run").resolve()


def phalp_record(time, ids, detected):
    count = len(ids)
    return {
        "time": time, "tid": list(ids), "tracked_time": [0 if d else 2 for d in detected],
        "bbox": [np.array([10.0 * k, 20.0, 30.0, 60.0]) for k in range(count)],
        "camera": [np.array([0.5 * k, 0.1, 40.0 + time]) for k in range(count)],
        "pose": [np.full(229, float(k)) for k in range(count)], "loca": [np.zeros(99) for _ in range(count)],
        "size": [[120, 160]] * count,
    }


def test_load_tracks_reads_a_phalp_pickle_into_one_row_per_entry(tmp_path):
    path = tmp_path / "demo_clip.pkl"
    joblib.dump({"0.jpg": phalp_record(0, [1], [True]), "1.jpg": phalp_record(1, [1, 4], [False, True])}, path)
    tracks = api.load_tracks(path)
    assert tracks.table[["frame", "track_id", "detected"]].values.tolist() == [[0, 1, True], [1, 1, False], [1, 4, True]]
    assert tracks.table["cam_z"].tolist() == [40.0, 41.0, 41.0]
    assert tracks.table.loc[2, ["x", "w"]].tolist() == [10.0, 30.0]
    assert tracks.image_size == (120, 160) and tracks.track_ids == [1, 4] and tracks.num_frames == 2
    assert tracks.pose.shape == (3, 229) and tracks.pose[2, 0] == 1.0
    frame = tracks.frame_tracks(1)
    assert frame.track_ids.tolist() == [1, 4] and frame.detected.tolist() == [False, True]
    assert frame.detections.boxes[1].tolist() == [10.0, 20.0, 40.0, 80.0]  # xywh -> xyxy


def test_load_tracks_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results file"):
        api.load_tracks(tmp_path / "missing.npz")


def test_draw_frame_draws_boxes_and_ids(tmp_path):
    path = tmp_path / "demo_clip.pkl"
    joblib.dump({"0.jpg": phalp_record(0, [3], [True])}, path)
    image = np.full((120, 160, 3), 255, np.uint8)
    drawn = api.draw_frame(image, api.load_tracks(path), 0)
    assert drawn.shape == image.shape and (drawn != 255).any() and (image == 255).all()


class ShiftNetwork:
    """predict_next = newest history pose + time_since_update + 1 (so each call is checkable)."""

    def predict_next(self, pose_history, time_history, time_since_update):
        self.calls = (pose_history.clone(), time_history.clone(), time_since_update.clone())
        return pose_history[:, -1] + (time_since_update[:, None] + 1).float()


def test_one_step_pose_predictions_feed_the_previous_valid_steps():
    steps = 12
    pose = np.arange(steps, dtype=np.float32)[:, None].repeat(229, 1)
    time = np.arange(steps) + 100
    valid = np.ones(steps, bool)
    valid[5] = False  # a missed detection: the step after it predicts across a gap of 2
    network = ShiftNetwork()
    out = api.one_step_pose_predictions(network, pose, time, valid, history=3)
    assert out["time"].tolist() == [103, 104, 106, 107, 108, 109, 110, 111]
    pose_history, time_history, gaps = network.calls
    assert time_history[2].tolist() == [102, 103, 104] and gaps.tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(out["constant_pose"][:, 0], [2, 3, 4, 6, 7, 8, 9, 10])
    np.testing.assert_array_equal(out["model"][:, 0], [3, 4, 6, 7, 8, 9, 10, 11])
    np.testing.assert_array_equal(out["target"][:, 0], [3, 4, 6, 7, 8, 9, 10, 11])
    with pytest.raises(ValueError, match="more than 3"):
        api.one_step_pose_predictions(network, pose[:3], time[:3], valid[:3], history=3)
    assert isinstance(pose_history, torch.Tensor)


def test_tracking_run_paths_follow_the_writer_config(tmp_path):
    from phalp_lightning.structures import VideoReport

    cfg = api.compose("predict", ["video=clip.mp4", "writers.results.prefix=run_", "render=boxes"], tmp_path)
    run = api.TrackingRun(tmp_path, [VideoReport(name="clip", source="clip.mp4")], cfg)
    assert run.results_path() == tmp_path / "results" / "run_clip.npz"
    assert run.results_path("other", format="pkl") == tmp_path / "results" / "run_other.pkl"
    assert run.rendered_video() == tmp_path / "PHALP_clip.mp4" and run.mot_dir == tmp_path / "mot"
    assert api.TrackingRun(tmp_path, [VideoReport(name="clip", source="clip.mp4")]).results_path().name == "demo_clip.npz"


TRICKY_VALUES = ["out dir/train-{000000..000001}.tar", "a=b,c", "it's here", r"C:\runs\x", "end\\", "[a,b]", ""]


@pytest.mark.parametrize("value", TRICKY_VALUES)
def test_override_quotes_any_path_so_hydra_reads_it_back_unchanged(value):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(api.override("data.train_shards", value))
    assert parsed.key_or_group == "data.train_shards" and parsed.value() == value


def test_compose_takes_a_mapping_of_paths_and_a_video_list_with_spaces(tmp_path):
    pattern = str(tmp_path / "my data" / "train-{000000..000003}.tar")
    cfg = api.compose("train", {"data.train_shards": pattern, "trainer.max_epochs": 2, "ckpt_path": None}, tmp_path / "run")
    assert cfg.data.train_shards == pattern and cfg.trainer.max_epochs == 2 and cfg.ckpt_path is None
    videos = [str(tmp_path / "a clip, take=1.mp4"), str(tmp_path / "it's.mp4")]
    cfg = api.compose("predict", [api.override("video", videos)], tmp_path / "run")
    assert list(cfg.video) == videos


@pytest.mark.slow
def test_train_reads_several_shards_by_brace_pattern_under_a_folder_with_spaces(tmp_path, assets_env):
    # Notebook 02's and the README's path: make_tracklet_shards -> api.train(train_shards=..., val_shards=...).
    out = tmp_path / "my runs, v=1"
    shards = api.make_tracklet_shards(out / "data", num_train_tracks=4, num_val_tracks=4, track_length=16, window=16,
                                      shard_size=2)
    assert "{000000..000001}" in shards["train"] and "{000000..000001}" in shards["val"]
    run = api.train(out / "train", train_shards=shards["train"], val_shards=shards["val"],
                    overrides={"+trainer.fast_dev_run": True, "data.batch_size": 2})
    assert run.config.data.train_shards == shards["train"]
    assert "train/loss" in run.metrics


def readme_api_example() -> str:
    text = (PROJECT_ROOT / "README.md").read_text()
    start = text.index("```python\nfrom phalp_lightning import api\n")
    return text[start + len("```python\n"): text.index("```", start + 10)]


@pytest.mark.slow
def test_the_readme_api_example_runs_through_its_code_paths(tmp_path, monkeypatch, assets_env):
    # The README's calls as written, from a folder whose path has a space; only sizes shrink (the shards
    # still span several files named by a brace pattern) and training is one batch.
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    calls = {}
    make_video, make_shards, train = api.make_demo_video, api.make_tracklet_shards, api.train

    def small_video(out_dir, num_frames=48, **kwargs):
        return make_video(out_dir, num_frames=12, **kwargs)

    def small_shards(out_dir, **kwargs):
        calls["shards"] = make_shards(out_dir, num_train_tracks=4, num_val_tracks=4, track_length=16, window=16, shard_size=2)
        return calls["shards"]

    def one_batch(output_dir, model="pose_transformer", overrides=(), **kwargs):
        calls["train"] = train(output_dir, model, {"+trainer.fast_dev_run": True, "data.batch_size": 2}, **kwargs)
        return calls["train"]

    monkeypatch.setattr(api, "make_demo_video", small_video)
    monkeypatch.setattr(api, "make_tracklet_shards", small_shards)
    monkeypatch.setattr(api, "train", one_batch)
    workdir = tmp_path / "my project"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    exec(compile(readme_api_example(), "README.md", "exec"), {})  # noqa: S102 - the README's own example
    assert "{000000..000001}" in calls["shards"]["train"]
    assert calls["train"].config.data.train_shards == calls["shards"]["train"]
    assert (workdir / "out" / "predict" / "mot" / "demo.txt").is_file()
