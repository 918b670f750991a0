"""predict without an HMAR checkpoint: the box-only path (no HMAR, absent 3D) against the untrained HMAR."""

from __future__ import annotations

import logging

import joblib
import numpy as np
import pytest
from helpers import synthetic_data
from phalp_lightning.datamodules.video import source_name

from phalp_lightning.errors import UserError

synthetic_video = synthetic_data.synthetic_video

PHALP_KEYS = {
    "time", "shot", "frame_path", "tid", "bbox", "tracked_time", "tracked_ids", "tracked_bbox", "appe", "loca", "pose",
    "center", "scale", "size", "img_path", "img_name", "class_name", "conf", "annotations", "smpl", "camera",
    "camera_bbox", "3d_joints", "2d_joints", "mask", "extra_data",
}
ABSENT_3D = {"appe": (4096,), "loca": (99,), "pose": (229,), "camera": (3,), "camera_bbox": (3,), "3d_joints": (45, 3), "2d_joints": (90,)}


def run_predict(compose_cfg, video, extra=(), output_dir=None):
    from phalp_lightning.pipelines.predict import run

    overrides = [f"video={video.mot_gt_path}", f"source.boxes_base_path={video.frames_dir}", "detector=given_boxes",
                 "tracker.n_init=2", "progress_bar=false", "trainer.accelerator=cpu", *extra]
    if output_dir is not None:
        overrides.append(f"output_dir={output_dir}")
    cfg = compose_cfg("predict", overrides)
    (report,) = run(cfg)
    assert report.error is None
    return cfg, report


@pytest.mark.slow
def test_without_a_checkpoint_the_ids_are_those_of_the_untrained_hmar_and_hmar_never_runs(
    compose_cfg, synthetic_video, assets_env, monkeypatch, caplog, tmp_path
):
    from phalp_lightning.models.components.hmar import HMAR

    name = source_name(synthetic_video.mot_gt_path)
    before, before_report = run_predict(compose_cfg, synthetic_video, ["untrained_hmar=true", "+hmar.img_size=64", "render=boxes"],
                                          tmp_path / "untrained_hmar")

    def no_hmar(*args, **kwargs):
        raise AssertionError("the box-only path built HMAR")

    monkeypatch.setattr(HMAR, "__init__", no_hmar)
    with caplog.at_level(logging.WARNING):
        after, after_report = run_predict(compose_cfg, synthetic_video, ["render=mesh"], tmp_path / "box_only")
    assert sum("no HMAR checkpoint: 3D outputs are not computed; pass ckpt=" in r.getMessage() for r in caplog.records) == 1
    assert any("render=mesh without an HMAR checkpoint" in r.getMessage() for r in caplog.records)

    mot_before = open(f"{before.output_dir}/mot/{name}.txt").read()
    mot_after = open(f"{after.output_dir}/mot/{name}.txt").read()
    assert len(mot_before.splitlines()) >= 6 and mot_after == mot_before
    assert after_report.track_ids == before_report.track_ids and len(after_report.track_ids) >= 2
    # The same entries (ghosts too), boxes and PHALP's centre/scale in both results.
    old = joblib.load(f"{before.output_dir}/results/demo_{name}.pkl")
    new = joblib.load(f"{after.output_dir}/results/demo_{name}.pkl")
    assert list(new) == list(old)
    for key, record in old.items():
        for field in ("tid", "tracked_time", "extra_data"):
            assert new[key][field] == record[field]
        for field in ("bbox", "center", "scale", "conf"):
            np.testing.assert_allclose(np.asarray(new[key][field]), np.asarray(record[field]), rtol=1e-6)
    # render=mesh without 3D drew boxes: a video with every frame.
    import cv2

    capture = cv2.VideoCapture(f"{after.output_dir}/PHALP_{name}.mp4")
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()


def test_box_only_results_keep_every_key_with_nan_3d_and_load_in_every_reader(compose_cfg, synthetic_video, tmp_path):
    from phalp_lightning.datamodules.formats.phalp_results import PHALPResultsError, read_phalp_results

    from phalp_lightning import api
    from phalp_lightning.pipelines.evaluate import evaluate_files
    from phalp_lightning.sinks.results import load_results_npz

    name = source_name(synthetic_video.mot_gt_path)
    cfg, _ = run_predict(compose_cfg, synthetic_video)
    pkl = joblib.load(f"{cfg.output_dir}/results/demo_{name}.pkl")
    entries = [record for record in pkl.values() if record["tid"]]
    assert entries and all(set(record) == PHALP_KEYS for record in pkl.values())
    for record in entries:
        for key, shape in ABSENT_3D.items():
            assert all(np.shape(value) == shape and np.isnan(value).all() for value in record[key]), key
        assert all(np.isnan(smpl["body_pose"]).all() and np.shape(smpl["body_pose"]) == (23, 3, 3) for smpl in record["smpl"])
        assert all(np.isfinite(box).all() for box in record["bbox"])
    # The npz rebuilds the same dict (NaN where the pkl has NaN).
    npz = load_results_npz(f"{cfg.output_dir}/results/demo_{name}.npz")
    assert list(npz) == list(pkl)
    for key, record in pkl.items():
        assert npz[key]["tid"] == record["tid"]
        np.testing.assert_array_equal(np.asarray(npz[key]["pose"]).reshape(-1, 229), np.asarray(record["pose"]).reshape(-1, 229))
    # The project's readers: the PHALP reader (boxes yes, 3D marked absent), the table API, the evaluator.
    results = read_phalp_results(f"{cfg.output_dir}/results/demo_{name}.pkl")
    frame = next(f for f in results.frames if len(f.track_ids))
    assert not frame.has_3d and frame.pose is None and frame.appearance is None and np.isfinite(frame.boxes_xywh).all()
    with pytest.raises(PHALPResultsError, match="no 3D outputs.*ckpt="):
        results.tracklets()
    tracks = api.load_tracks(f"{cfg.output_dir}/results/demo_{name}.npz")
    assert not tracks.has_3d and len(tracks.table) == sum(len(r["tid"]) for r in pkl.values())
    frame_index = int(tracks.table["frame"].iloc[0])
    image = np.zeros((*tracks.image_size, 3), np.uint8)
    with pytest.warns(UserWarning, match="no 3D outputs.*boxes and ids"):
        drawn = api.draw_frame(image, tracks, frame_index, meshes=True)
    assert drawn.any()  # the boxes and ids
    scored = evaluate_files(f"{cfg.output_dir}/results/demo_{name}.pkl", [str(synthetic_video.mot_gt_path)],
                            format="phalp_pkl", gt_format="mot", sequences=[name])
    assert scored.overall["MOTA"] > 0.5


def test_box_only_refuses_what_needs_3d(compose_cfg, synthetic_video):
    with pytest.raises(UserError, match="box-only path.*tracker rule with 3D cues"):
        run_predict(compose_cfg, synthetic_video, ["tracker/association=eq019"])
    with pytest.raises(UserError, match="box-only path.*tracker rule with 3D cues"):
        run_predict(compose_cfg, synthetic_video, ["tracker.association.cues=all"])
    with pytest.raises(UserError, match="box-only path.*tracker rule with 3D cues"):
        run_predict(compose_cfg, synthetic_video, ["tracker.reference_mode=true"])
    with pytest.raises(UserError, match="untrained_hmar=true"):
        run_predict(compose_cfg, synthetic_video, ["ckpt=hmar.ckpt", "untrained_hmar=true"])


def test_a_mesh_video_writer_given_tracks_without_3d_draws_boxes_and_ids(synthetic_assets, tmp_path, caplog):
    import torch

    from phalp_lightning.sinks.video import VideoRenderWriter
    from phalp_lightning.structures import FrameDetections, FrameTracks, VideoInfo, absent_3d

    writer = VideoRenderWriter(mode="mesh", mesh_backend="cpu", assets_dir=str(synthetic_assets))
    writer.open(VideoInfo(name="clip", source="clip.mp4", num_frames=1, output_dir=tmp_path))
    boxes = torch.tensor([[10.0, 10.0, 40.0, 90.0]])
    detections = FrameDetections(video="clip", frame_index=0, frame_name="0", image_size=(120, 160), boxes=boxes,
                                 scores=torch.ones(1), **{k: v for k, v in absent_3d(1).items() if k in ("appearance", "pose", "location")})
    tracks = FrameTracks(video="clip", frame_index=0, frame_name="0", image_size=(120, 160), track_ids=torch.tensor([3]),
                         time_since_update=torch.zeros(1, dtype=torch.int64), detections=detections)
    with caplog.at_level(logging.WARNING):
        frame = writer._render(tracks, np.zeros((120, 160, 3), np.uint8))
    assert writer.mode == "boxes" and any("no 3D outputs" in r.getMessage() for r in caplog.records)
    assert frame[10:90, 10].any() and frame[60, 60].sum() == 0  # the box outline, nothing drawn inside
    writer.abort()
