"""The predict pipeline end to end on a tiny generated video, with fake HMAR/tracker/detector."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from omegaconf import open_dict

from helpers.videos import make_blob_video
from phalp_lightning.sinks.results import load_results_npz

PHALP_KEYS = {
    "time", "shot", "frame_path", "tid", "bbox", "tracked_time", "tracked_ids", "tracked_bbox", "appe", "loca", "pose",
    "center", "scale", "size", "img_path", "img_name", "class_name", "conf", "annotations", "smpl", "camera",
    "camera_bbox", "3d_joints", "2d_joints", "mask", "extra_data",
}


def fake_overrides(video) -> list[str]:
    return [
        f"video={video}",
        "ckpt=null",
        "system.crop_size=32",
        "source.batch_size=3",
        "progress_bar=false",
        "trainer.accelerator=cpu",
    ]


@pytest.fixture()
def blob_video(tmp_path):
    return make_blob_video(tmp_path / "video", num_frames=6, num_people=2)


def run_predict(compose_cfg, overrides):
    from phalp_lightning.pipelines.predict import run

    cfg = compose_cfg("predict", overrides)
    with open_dict(cfg):
        cfg.tracker = {"_target_": "helpers.fakes.FakeTracker"}
        cfg.hmar = {"_target_": "helpers.fakes.FakeHMAR"}
        cfg.detector = {"_target_": "helpers.fakes.BlobDetector"}
    return cfg, run(cfg)


def test_video_file_gives_phalp_results_with_ground_truth_ids(compose_cfg, blob_video):
    cfg, reports = run_predict(compose_cfg, fake_overrides(blob_video.video_path))
    (report,) = reports
    assert report.error is None and report.frames == 6 and report.track_ids == {1, 2}
    results = joblib.load(f"{cfg.output_dir}/results/demo_blobs.pkl")
    assert list(results) == [f"blobs/{t:06d}.jpg" for t in range(1, 7)]
    for t, (name, record) in enumerate(results.items()):
        assert set(record) == PHALP_KEYS
        assert record["time"] == t and record["frame_path"] == name
        assert sorted(record["tid"]) == [1, 2]
        for key, shape in {"appe": (4096,), "loca": (99,), "pose": (229,), "3d_joints": (45, 3), "2d_joints": (90,), "camera": (3,), "bbox": (4,)}.items():
            assert all(np.shape(value) == shape for value in record[key]), key
        assert record["smpl"][0]["body_pose"].shape == (23, 3, 3)
        assert record["size"][0] == [240, 320]
        # Left-to-right walker (gt id 1) is the first detection of frame 0 and keeps tracker id 1.
        boxes = {tid: np.asarray(box) for tid, box in zip(record["tid"], record["bbox"])}
        np.testing.assert_allclose(boxes[1][:2], blob_video.boxes[t, 0, :2], atol=3)
        np.testing.assert_allclose(boxes[2][:2], blob_video.boxes[t, 1, :2], atol=3)
    mot = np.loadtxt(f"{cfg.output_dir}/mot/blobs.txt", delimiter=",")
    assert mot.shape == (12, 10) and set(mot[:, 1].astype(int)) == {1, 2}


def test_npz_has_the_same_content_as_the_pkl(compose_cfg, blob_video):
    cfg, _ = run_predict(compose_cfg, fake_overrides(blob_video.frames_dir))
    pkl = joblib.load(f"{cfg.output_dir}/results/demo_frames.pkl")
    npz = load_results_npz(f"{cfg.output_dir}/results/demo_frames.npz")
    assert list(pkl) == list(npz)
    for name in pkl:
        for key in PHALP_KEYS:
            left, right = pkl[name][key], npz[name][key]
            if key in ("smpl",):
                for a, b in zip(left, right):
                    assert all(np.array_equal(a[k], b[k]) for k in a)
            elif key in ("bbox", "appe", "loca", "pose", "center", "camera", "camera_bbox", "3d_joints", "2d_joints", "tracked_bbox"):
                assert all(np.array_equal(a, b) for a, b in zip(left, right)) and len(left) == len(right)
            else:
                assert left == right, key


def test_rerun_skips_finished_videos_unless_overwrite(compose_cfg, blob_video, tmp_path):
    other = make_blob_video(tmp_path / "second", num_frames=4, num_people=1)
    videos = f"[{blob_video.video_path},{other.frames_dir}]"
    overrides = fake_overrides(videos)
    cfg, reports = run_predict(compose_cfg, overrides)
    assert [r.name for r in reports] == ["blobs", "frames"] and all(r.error is None for r in reports)
    pkl = f"{cfg.output_dir}/results/demo_blobs.pkl"
    import os

    os.remove(f"{cfg.output_dir}/results/demo_frames.npz")
    stamp = os.stat(pkl).st_mtime_ns
    _, reports = run_predict(compose_cfg, overrides)
    assert {r.name: r.skipped for r in reports} == {"frames": False, "blobs": True}
    assert os.stat(pkl).st_mtime_ns == stamp
    _, reports = run_predict(compose_cfg, [*overrides, "overwrite=true"])
    assert not any(r.skipped for r in reports) and os.stat(pkl).st_mtime_ns != stamp


def test_a_corrupt_video_is_reported_and_the_others_are_written(compose_cfg, blob_video, tmp_path):
    from phalp_lightning.pipelines.predict import PredictError

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 10)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(PredictError, match=r"corrupt\.mp4.*cannot decode|empty\.mp4: the file is empty"):
        run_predict(compose_cfg, fake_overrides(f"[{corrupt},{blob_video.video_path},{empty}]"))
    outputs = sorted(p.name for p in (tmp_path / "results").iterdir())
    assert outputs == ["demo_blobs.npz", "demo_blobs.pkl"]


def test_render_boxes_writes_a_video_with_every_frame(compose_cfg, blob_video):
    import cv2

    cfg, _ = run_predict(compose_cfg, [*fake_overrides(blob_video.video_path), "render=boxes"])
    capture = cv2.VideoCapture(f"{cfg.output_dir}/PHALP_blobs.mp4")
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))) == (240, 320)
    capture.release()


def test_given_boxes_are_tracked_without_a_detector(compose_cfg, blob_video, tmp_path):
    from phalp_lightning.pipelines.predict import run

    cfg = compose_cfg("predict", [f"video={blob_video.mot_gt_path}", f"source.boxes_base_path={blob_video.frames_dir}", "detector=given_boxes", "system.crop_size=32", "progress_bar=false", "trainer.accelerator=cpu"])
    with open_dict(cfg):
        cfg.tracker = {"_target_": "helpers.fakes.FakeTracker"}
        cfg.hmar = {"_target_": "helpers.fakes.FakeHMAR"}
    (report,) = run(cfg)
    assert report.name == "gt" and report.frames == 6 and report.track_ids == {1, 2}
    mot = np.loadtxt(f"{cfg.output_dir}/mot/gt.txt", delimiter=",")
    gt = np.loadtxt(blob_video.mot_gt_path, delimiter=",")
    np.testing.assert_allclose(mot[:, [0, 1, 2, 3, 4, 5]], gt[:, :6], atol=1e-2)
