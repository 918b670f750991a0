"""The predict pipeline with the real HMAR (untrained, generated body model) and the real PHALP tracker."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from helpers import synthetic_data
from helpers.tracks import id_pairs, is_one_to_one
from phalp_lightning.datamodules.video import source_name

synthetic_video = synthetic_data.synthetic_video


def run_predict(compose_cfg, overrides):
    from phalp_lightning.pipelines.predict import run

    cfg = compose_cfg("predict", [*overrides, "ckpt=null", "untrained_hmar=true", "progress_bar=false", "trainer.accelerator=cpu", "source.batch_size=3"])
    return cfg, run(cfg)


@pytest.mark.slow
def test_real_hmar_and_tracker_follow_the_ground_truth_ids(compose_cfg, synthetic_video, assets_env):
    # Perfect boxes (the generator's), ids NOT given to the tracker: association alone must keep them.
    name = source_name(synthetic_video.mot_gt_path)
    cfg, (report,) = run_predict(
        compose_cfg,
        [f"video={synthetic_video.mot_gt_path}", f"source.boxes_base_path={synthetic_video.frames_dir}", "detector=given_boxes",
         "source.end_frame=4", "tracker.n_init=2", "render=boxes"],
    )
    assert report.error is None and report.frames == 4
    mot = np.loadtxt(f"{cfg.output_dir}/mot/{name}.txt", delimiter=",", ndmin=2)
    gt_ids = [ids + 1 for ids in synthetic_video.track_ids]
    pairs = id_pairs(mot, synthetic_video.boxes[:4], gt_ids[:4], min_iou=0.99)
    # Three people cross with heavy occlusion; the narrowest drops under PHALP's 50 px width filter.
    assert is_one_to_one(pairs) and len(pairs) >= 2, pairs
    results = joblib.load(f"{cfg.output_dir}/results/demo_{name}.pkl")
    record = results[next(iter(results))]
    # n_init=2: the first frame's tracks arrive by back-fill once confirmed on the second frame.
    assert len(record["tid"]) >= 2 and set(record["tracked_time"]) == {0}
    assert np.shape(record["appe"][0]) == (4096,) and np.shape(record["pose"][0]) == (229,)
    for loca, camera in zip(record["loca"], record["camera"], strict=True):
        # Joint 44 is the SMPL origin: it projects to (f/256) t_xy / t_z + 0.5 (docs/geometry.md, Joints).
        np.testing.assert_allclose(loca[88:90], 5000 / 256 * camera[:2] / camera[2] + 0.5, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(loca[90:99], np.tile(camera, 3), rtol=1e-6)


def test_a_small_crop_hmar_tracks_with_its_own_appearance_width(compose_cfg, synthetic_video, assets_env):
    # An HMAR trained on 64 px crops (the CPU recipe) gives 256-d appearance codes: predict must take them.
    name = source_name(synthetic_video.mot_gt_path)
    cfg, (report,) = run_predict(
        compose_cfg,
        [f"video={synthetic_video.mot_gt_path}", f"source.boxes_base_path={synthetic_video.frames_dir}", "detector=given_boxes",
         "source.end_frame=3", "tracker.n_init=2", "+hmar.img_size=64"],
    )
    assert report.error is None and report.frames == 3
    results = joblib.load(f"{cfg.output_dir}/results/demo_{name}.pkl")
    record = results[next(iter(results))]
    assert len(record["tid"]) >= 2
    assert np.shape(record["appe"][0]) == (256,)


@pytest.mark.slow
def test_hog_walker_keeps_one_id_with_the_real_models(compose_cfg, tmp_path_factory, synthetic_assets, assets_env):
    from phalp_lightning.datamodules.synthetic import make_synthetic_video

    body = synthetic_data.body_model_handle(str(synthetic_assets))
    walker = make_synthetic_video(tmp_path_factory.mktemp("walker_real"), num_frames=6, num_people=1, height=256, width=384, seed=1, body_model=body)
    cfg, (report,) = run_predict(compose_cfg, [f"video={walker.video_path}", "tracker.n_init=3"])
    assert report.error is None and report.frames == 6 and report.track_ids == {1}
    mot = np.loadtxt(f"{cfg.output_dir}/mot/video.txt", delimiter=",", ndmin=2)
    assert len(mot) >= 4 and id_pairs(mot, walker.boxes, [ids + 1 for ids in walker.track_ids]) == {(1, 1)}


def test_missing_body_model_points_at_the_generate_command(compose_cfg, tmp_path, monkeypatch, synthetic_video):
    from phalp_lightning.assets import AssetMissingError

    monkeypatch.setenv("PHALP_ASSETS", str(tmp_path / "no_assets"))
    with pytest.raises(AssetMissingError, match="python -m phalp_lightning.assets generate"):
        run_predict(compose_cfg, [f"video={synthetic_video.video_path}"])


def test_pose_transformer_checkpoint_drives_the_tracker(compose_cfg, synthetic_video, tmp_path):
    import hydra
    import torch

    from phalp_lightning.pipelines.model_adapters import PoseTransformerPredictor
    from phalp_lightning.pipelines.predict import build_pose_predictor

    overrides = ["model=pose_transformer", "model.net.num_action_classes=2", "model.net.action_names=[walk,wave]"]
    module = hydra.utils.instantiate(compose_cfg("train", overrides).model)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    path = tmp_path / "pose.ckpt"
    torch.save(checkpoint, path)
    predictor = build_pose_predictor(str(path), None)
    assert isinstance(predictor, PoseTransformerPredictor)
    history, times, gaps = torch.randn(2, 7, 229), torch.arange(7).repeat(2, 1), torch.tensor([1, 3])
    torch.testing.assert_close(predictor.predict_next(history, times, gaps), module.encoder.eval().predict_next(history, times, gaps))

    # The whole loop with it (fake HMAR for speed): tracker.pose_predictor=<ckpt> selects it too.
    from omegaconf import open_dict

    from phalp_lightning.pipelines.predict import run

    cfg = compose_cfg("predict", [f"video={synthetic_video.mot_gt_path}", f"source.boxes_base_path={synthetic_video.frames_dir}",
                                  "detector=given_boxes", "progress_bar=false", "trainer.accelerator=cpu", "tracker.n_init=2",
                                  f"tracker.pose_predictor={path}", "untrained_hmar=true"])
    with open_dict(cfg):
        cfg.hmar = {"_target_": "helpers.fakes.FakeHMAR"}
    (report,) = run(cfg)
    assert report.error is None and report.frames == 6 and len(report.track_ids) >= 2
    # Its action head scores every track: per-track probabilities beside the results.
    (actions,) = [path for path in report.outputs if path.endswith(".actions.json")]
    import json

    tracks = json.loads(open(actions).read())["tracks"]
    assert {int(track) for track in tracks} <= report.track_ids and tracks
    assert all(set(entry["probabilities"]) == {"walk", "wave"} for entry in tracks.values())
