"""The predict pipeline end to end on a generated video (people walking, known tracks), with a fake HMAR and tracker."""

from __future__ import annotations

import os
from pathlib import Path

import joblib
import numpy as np
import pytest
from helpers import synthetic_data
from helpers.tracks import id_pairs, is_one_to_one
from omegaconf import open_dict
from phalp_lightning.datamodules.video import source_name

from phalp_lightning.sinks.results import load_results_npz

synthetic_video = synthetic_data.synthetic_video

PHALP_KEYS = {
    "time", "shot", "frame_path", "tid", "bbox", "tracked_time", "tracked_ids", "tracked_bbox", "appe", "loca", "pose",
    "center", "scale", "size", "img_path", "img_name", "class_name", "conf", "annotations", "smpl", "camera",
    "camera_bbox", "3d_joints", "2d_joints", "mask", "extra_data",
}
VECTOR_SHAPES = {"appe": (4096,), "loca": (99,), "pose": (229,), "3d_joints": (45, 3), "2d_joints": (90,), "camera": (3,), "camera_bbox": (3,), "bbox": (4,), "center": (2,)}


def given_boxes(video) -> list[str]:
    """Track the generator's ground-truth boxes (video=gt.txt), so tests do not depend on a detector."""
    return [f"video={video.mot_gt_path}", f"source.boxes_base_path={video.frames_dir}", "detector=given_boxes"]


def run_predict(compose_cfg, overrides, fake_detector: bool = False):
    from phalp_lightning.pipelines.predict import run

    # The HMAR path (a fake HMAR); without untrained_hmar=true, ckpt=null is the box-only path.
    cfg = compose_cfg("predict", [*overrides, "ckpt=null", "untrained_hmar=true", "system.crop_size=32", "source.batch_size=4", "progress_bar=false", "trainer.accelerator=cpu"])
    with open_dict(cfg):
        cfg.tracker = {"_target_": "helpers.fakes.FakeTracker"}
        cfg.hmar = {"_target_": "helpers.fakes.FakeHMAR"}
    return cfg, run(cfg)


@pytest.fixture(scope="module")
def walker_video(tmp_path_factory, synthetic_assets):
    """One person walking across a 256 x 384 frame for 8 frames."""
    from phalp_lightning.datamodules.synthetic import make_synthetic_video

    body = synthetic_data.body_model_handle(str(synthetic_assets))
    return make_synthetic_video(tmp_path_factory.mktemp("walker"), num_frames=8, num_people=1, height=256, width=384, seed=1, body_model=body)


def gt_per_frame(video):
    return video.boxes, [ids + 1 for ids in video.track_ids]


def test_video_file_with_hog_gives_phalp_results_and_one_walker_keeps_one_id(compose_cfg, walker_video):
    cfg, reports = run_predict(compose_cfg, [f"video={walker_video.video_path}", "detector=hog"])
    (report,) = reports
    assert report.error is None and report.frames == 8 and report.name == "video"
    results = joblib.load(f"{cfg.output_dir}/results/demo_video.pkl")
    assert list(results) == [f"video/{t:06d}.jpg" for t in range(1, 9)]
    for t, (name, record) in enumerate(results.items()):
        assert set(record) == PHALP_KEYS
        assert record["time"] == t and record["frame_path"] == name and record["shot"] == 0
        for key, shape in VECTOR_SHAPES.items():
            assert all(np.shape(value) == shape for value in record[key]), key
        assert all(s["body_pose"].shape == (23, 3, 3) and s["betas"].shape == (10,) for s in record["smpl"])
        assert all(size == [256, 384] for size in record["size"])
        assert all(m[0]["size"] == [256, 384] and isinstance(m[0]["counts"], str) for m in record["mask"])
    mot = np.loadtxt(f"{cfg.output_dir}/mot/video.txt", delimiter=",", ndmin=2)
    assert len(mot) >= 6, "HOG should find the walker in most frames"
    assert id_pairs(mot, *gt_per_frame(walker_video)) == {(1, 1)}
    assert report.track_ids == {1}


def test_given_boxes_are_tracked_with_their_ids_and_boxes(compose_cfg, synthetic_video):
    cfg, (report,) = run_predict(compose_cfg, given_boxes(synthetic_video))
    name = source_name(synthetic_video.mot_gt_path)  # the sequence folder, as for MOT's <seq>/gt/gt.txt
    assert report.name == name == synthetic_video.out_dir.name and report.frames == 6
    mot = np.loadtxt(f"{cfg.output_dir}/mot/{name}.txt", delimiter=",", ndmin=2)
    gt = np.loadtxt(synthetic_video.mot_gt_path, delimiter=",", ndmin=2)
    gt = gt[(gt[:, 4] >= 50) & (gt[:, 5] >= 100)]  # PHALP's small-box filter applies to given boxes too
    assert len(mot) == len(gt)
    # The fake tracker keeps given ids (PHALP's use_gt): they reach the tracker with their boxes.
    pairs = id_pairs(mot, *gt_per_frame(synthetic_video), min_iou=0.99)
    assert pairs == {(g, g) for g in set(gt[:, 1].astype(int))}


def test_npz_has_the_same_content_as_the_pkl(compose_cfg, synthetic_video):
    cfg, _ = run_predict(compose_cfg, given_boxes(synthetic_video))
    name = source_name(synthetic_video.mot_gt_path)
    pkl = joblib.load(f"{cfg.output_dir}/results/demo_{name}.pkl")
    npz = load_results_npz(f"{cfg.output_dir}/results/demo_{name}.npz")
    assert list(pkl) == list(npz)
    for name in pkl:
        assert set(pkl[name]) == set(npz[name]) == PHALP_KEYS
        for key in PHALP_KEYS:
            left, right = pkl[name][key], npz[name][key]
            if key == "smpl":
                assert all(np.array_equal(a[k], b[k]) for a, b in zip(left, right, strict=True) for k in a)
            elif key in VECTOR_SHAPES or key == "tracked_bbox":
                assert len(left) == len(right) and all(np.array_equal(a, b) for a, b in zip(left, right, strict=True)), key
            else:
                assert left == right, key


def test_rerun_skips_finished_videos_unless_overwrite(compose_cfg, synthetic_video):
    overrides = [*given_boxes(synthetic_video), f"video=[{synthetic_video.mot_gt_path},{synthetic_video.frames_dir}]"]
    cfg, reports = run_predict(compose_cfg, overrides)
    name = source_name(synthetic_video.mot_gt_path)
    assert [r.name for r in reports] == [name, "frames"] and all(r.error is None for r in reports)
    finished = f"{cfg.output_dir}/results/demo_{name}.pkl"
    os.remove(f"{cfg.output_dir}/mot/frames.txt")  # as if the run had stopped inside this video
    stamp = os.stat(finished).st_mtime_ns
    _, reports = run_predict(compose_cfg, overrides)
    assert {r.name: r.skipped for r in reports} == {"frames": False, name: True}
    assert os.stat(finished).st_mtime_ns == stamp and os.path.isfile(f"{cfg.output_dir}/mot/frames.txt")
    _, reports = run_predict(compose_cfg, [*overrides, "overwrite=true"])
    assert not any(r.skipped for r in reports) and os.stat(finished).st_mtime_ns != stamp


def test_corrupt_and_empty_videos_are_reported_and_the_others_are_written(compose_cfg, synthetic_video, tmp_path):
    from phalp_lightning.pipelines.predict import PredictError

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 10)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    videos = f"video=[{corrupt},{synthetic_video.mot_gt_path},{empty}]"
    with pytest.raises(PredictError, match=r"corrupt\.mp4.*cannot decode.*empty\.mp4: the file is empty"):
        run_predict(compose_cfg, [*given_boxes(synthetic_video), videos])
    name = source_name(synthetic_video.mot_gt_path)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [f"demo_{name}.npz", f"demo_{name}.pkl"]


def test_a_video_truncated_mid_way_fails_alone(compose_cfg, synthetic_video, tmp_path):
    from phalp_lightning.pipelines.predict import PredictError

    frames = tmp_path / "frames"
    frames.mkdir()
    for path in sorted(synthetic_video.frames_dir.iterdir())[:5]:
        (frames / path.name).write_bytes(path.read_bytes())
    (frames / "000004.jpg").write_bytes(b"truncated")
    with pytest.raises(PredictError, match="000004.jpg is missing or cannot be decoded"):
        run_predict(compose_cfg, [f"video=[{frames},{synthetic_video.mot_gt_path}]", f"source.boxes_base_path={synthetic_video.frames_dir}", "detector=given_boxes"])
    assert not (tmp_path / "results" / "demo_frames.pkl").exists()
    assert (tmp_path / "results" / f"demo_{source_name(synthetic_video.mot_gt_path)}.pkl").exists()
    assert not [p for p in (tmp_path / "results").iterdir() if ".tmp." in p.name]


def test_render_boxes_writes_a_video_with_every_frame(compose_cfg, synthetic_video):
    import cv2

    cfg, _ = run_predict(compose_cfg, [*given_boxes(synthetic_video), "render=boxes"])
    capture = cv2.VideoCapture(f"{cfg.output_dir}/PHALP_{source_name(synthetic_video.mot_gt_path)}.mp4")
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))) == (256, 384)
    capture.release()


def test_render_mesh_falls_back_to_the_cpu_rasteriser(compose_cfg, synthetic_video, assets_env):
    import cv2

    cfg, _ = run_predict(compose_cfg, [*given_boxes(synthetic_video), "render=mesh", "render.writer.mesh_backend=auto", "source.end_frame=2"])
    capture = cv2.VideoCapture(f"{cfg.output_dir}/PHALP_{source_name(synthetic_video.mot_gt_path)}.mp4")
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    capture.release()


@pytest.mark.slow
def test_two_processes_split_the_videos_and_each_writes_its_own(compose_cfg, synthetic_video):
    videos = f"video=[{synthetic_video.mot_gt_path},{synthetic_video.frames_dir}]"
    cfg, reports = run_predict(compose_cfg, [*given_boxes(synthetic_video), videos, "trainer=ddp_cpu"])
    name = source_name(synthetic_video.mot_gt_path)
    assert sorted((r.name, r.frames) for r in reports) == sorted([(name, 6), ("frames", 6)])
    for video in (name, "frames"):
        assert os.path.isfile(f"{cfg.output_dir}/results/demo_{video}.pkl")
    assert len(np.loadtxt(f"{cfg.output_dir}/mot/{name}.txt", delimiter=",", ndmin=2)) > 0


def test_the_real_tracker_runs_in_the_loop_with_its_back_fill_delay(compose_cfg, synthetic_video):
    from phalp_lightning.pipelines.predict import run

    cfg = compose_cfg("predict", [*given_boxes(synthetic_video), "ckpt=null", "untrained_hmar=true", "progress_bar=false", "trainer.accelerator=cpu", "source.batch_size=4", "tracker.n_init=3"])
    with open_dict(cfg):
        cfg.hmar = {"_target_": "helpers.fakes.FakeHMAR", "img_size": 32}
    (report,) = run(cfg)
    name = source_name(synthetic_video.mot_gt_path)
    results = joblib.load(f"{cfg.output_dir}/results/demo_{name}.pkl")
    assert report.error is None and [record["time"] for record in results.values()] == list(range(6))
    mot = np.loadtxt(f"{cfg.output_dir}/mot/{name}.txt", delimiter=",", ndmin=2)
    pairs = id_pairs(mot, *gt_per_frame(synthetic_video), min_iou=0.99)
    assert is_one_to_one(pairs) and len(pairs) >= 2, pairs
    # Tracks confirmed on frame 2 (n_init=3) are back-filled into frames 0 and 1.
    first = results[next(iter(results))]
    assert len(first["tid"]) >= 2 and set(first["tracked_time"]) == {0}


def test_a_single_unreadable_video_fails_the_run_with_its_reason(compose_cfg, tmp_path):
    from phalp_lightning.pipelines.predict import PredictError

    empty = tmp_path / "clip.mp4"
    empty.write_bytes(b"")
    with pytest.raises(PredictError, match=r"clip\.mp4: the file is empty — no video was written; fix") as caught:
        run_predict(compose_cfg, [f"video={empty}"])
    assert "other" not in str(caught.value)


def test_a_missing_video_stops_before_anything_is_built_and_leaves_no_run_folder(tmp_path, monkeypatch):
    from phalp_lightning import api
    from phalp_lightning.errors import UserError
    from phalp_lightning.pipelines import predict

    def never(*args, **kwargs):
        raise AssertionError("HMAR was built for a video that does not exist")

    monkeypatch.setattr(predict, "build_hmar", never)
    cfg = api.compose("predict", {"video": str(tmp_path / "missing.mp4")}, tmp_path / "run")
    run_dir = Path(cfg.output_dir)
    # What Hydra writes before the task starts.
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("video: missing.mp4\n")
    (run_dir / "predict.log").write_text("")
    with pytest.raises(UserError, match=r"video=.*missing\.mp4: no such file or folder .* pass an existing video") as caught:
        predict.run(cfg)
    assert not isinstance(caught.value, predict.PredictError) and not run_dir.exists()
    # A folder holding an earlier run's outputs stays.
    (run_dir / "mot").mkdir(parents=True)
    (run_dir / "mot" / "clip.txt").write_text("1,1,0,0,1,1,1,-1,-1,-1\n")
    with pytest.raises(UserError):
        predict.run(cfg)
    assert (run_dir / "mot" / "clip.txt").is_file()


def test_evaluate_true_scores_the_run_against_the_ground_truth(compose_cfg, synthetic_video):
    import json

    gt = synthetic_video.mot_gt_path
    cfg, _ = run_predict(compose_cfg, [*given_boxes(synthetic_video), "evaluate=true", f"ground_truth={gt}"])
    overall = json.loads((Path(cfg.output_dir) / "evaluation" / "metrics.json").read_text())["overall"]
    # Ground-truth boxes with their ids: only the boxes under PHALP's size filter are missed.
    rows = np.loadtxt(gt, delimiter=",", ndmin=2)
    kept = ((rows[:, 4] >= 50) & (rows[:, 5] >= 100)).mean()
    assert overall["MOTA"] == pytest.approx(kept, abs=1e-6)
