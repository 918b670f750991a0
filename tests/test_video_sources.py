"""Frame sources: video files, image folders, given boxes (PHALP pkl, MOT text, PoseTrack JSON)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import joblib
import numpy as np
import pytest
import torch

from helpers.videos import make_blob_video
from phalp_lightning.datamodules.video import FrameSourceError, VideoDataModule, open_source, source_name


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return make_blob_video(tmp_path_factory.mktemp("blobs"), num_frames=5, num_people=2)


def test_video_file_frames_are_read_lazily_and_sliced(blobs):
    source = open_source(blobs.video_path, start_frame=1, end_frame=4)
    assert source.name == "blobs" and len(source) == 3
    assert source.frame_name(0) == "blobs/000001.jpg"
    frame = source.read(2)  # frame 3 of the file; out-of-order read seeks
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    x1, y1 = blobs.boxes[3, 0, :2].astype(int)
    assert frame[y1 + 60, x1 + 30, 0] > 180 and frame[y1 + 60, x1 + 30, 2] < 80  # red person 1 is there
    np.testing.assert_array_equal(source.read(0), open_source(blobs.video_path).read(1))


def test_image_folder_and_mot_sequence_folder(blobs, tmp_path):
    source = open_source(blobs.frames_dir, start_frame=-1, end_frame=-1)
    assert len(source) == 5 and source.frame_name(4).endswith("000005.jpg") and source.given_boxes(0) is None
    sequence = tmp_path / "MOT17-02"
    (sequence / "gt").mkdir(parents=True)
    (sequence / "img1").symlink_to(blobs.frames_dir)
    (sequence / "gt" / "gt.txt").write_text(blobs.mot_gt_path.read_text())
    assert open_source(sequence).name == "MOT17-02"
    given = open_source(sequence / "gt" / "gt.txt", start_frame=2)
    assert given.name == "MOT17-02" and len(given) == 3
    boxes = given.given_boxes(0)
    torch.testing.assert_close(boxes.boxes, torch.from_numpy(blobs.boxes[2]))
    assert boxes.track_ids.tolist() == [1, 2] and boxes.scores.tolist() == [1.0, 1.0]


def test_phalp_pkl_boxes_are_xywh_and_empty_frames_have_none(blobs, tmp_path):
    records = {}
    for t in range(5):
        xyxy = blobs.boxes[t]
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        records[f"{t + 1:06d}.jpg"] = {"gt_bbox": xywh if t != 3 else np.zeros((0, 4)), "extra_data": {"gt_class": [], "gt_track_id": [7, 9] if t != 3 else []}}
    joblib.dump(records, tmp_path / "gt_tracks.pkl")
    source = open_source(tmp_path / "gt_tracks.pkl", boxes_base_path=blobs.frames_dir)
    assert source.name == "gt_tracks" and len(source) == 5
    torch.testing.assert_close(source.given_boxes(1).boxes, torch.from_numpy(blobs.boxes[1]))
    assert source.given_boxes(1).track_ids.tolist() == [7, 9]
    assert source.given_boxes(3) is None  # PHALP runs the detector on such frames
    assert source.read(4).shape == (240, 320, 3)


def test_posetrack_json(blobs, tmp_path):
    data = {
        "images": [{"id": 100 + t, "frame_id": 100 + t, "file_name": f"{t + 1:06d}.jpg"} for t in range(5)],
        "annotations": [
            {"image_id": 100 + t, "track_id": p, "bbox": [float(v) for v in np.r_[blobs.boxes[t, p, :2], blobs.boxes[t, p, 2:] - blobs.boxes[t, p, :2]]]}
            for t in range(5) for p in range(2)
        ],
    }
    (tmp_path / "seq.json").write_text(json.dumps(data))
    source = open_source(tmp_path / "seq.json", boxes_base_path=blobs.frames_dir)
    assert len(source) == 5 and source.given_boxes(2).track_ids.tolist() == [0, 1]
    torch.testing.assert_close(source.given_boxes(2).boxes, torch.from_numpy(blobs.boxes[2]))


@pytest.mark.parametrize(
    "content, message",
    [(b"", "the file is empty"), (b"garbage" * 100, "cannot decode")],
)
def test_bad_videos_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(FrameSourceError, match=f"broken.mp4.*{message}"):
        open_source(path)
    with pytest.raises(FrameSourceError, match="no such file"):
        open_source(tmp_path / "missing.mp4")


def test_datamodule_keeps_order_and_never_mixes_videos(blobs, tmp_path):
    other = make_blob_video(tmp_path / "other", num_frames=3, num_people=1)
    module = VideoDataModule([str(blobs.video_path), str(other.frames_dir)], batch_size=2)
    module.setup("predict")
    batches = list(module.predict_dataloader())
    assert [(b["video"], b["frame_index"].tolist(), b["is_first"], b["is_last"]) for b in batches] == [
        ("blobs", [0, 1], True, False), ("blobs", [2, 3], False, False), ("blobs", [4], False, True),
        ("frames", [0, 1], True, False), ("frames", [2], False, True),
    ]
    assert batches[0]["images"].shape == (2, 240, 320, 3)


def test_videos_are_split_across_ranks(blobs, tmp_path):
    videos = [str(blobs.video_path), str(blobs.frames_dir), str(blobs.mot_gt_path)]
    names = []
    for rank in range(2):
        module = VideoDataModule(videos, boxes_base_path=str(blobs.frames_dir))
        module.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        module.setup("predict")
        names.append([source.name for source in module.sources])
    assert names == [["blobs", source_name(blobs.mot_gt_path)], ["frames"]] and module.failures == {}
