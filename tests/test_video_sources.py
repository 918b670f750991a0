"""Frame sources: video files, image folders, given boxes (PHALP pkl, MOT text, PoseTrack JSON)."""

from __future__ import annotations

from types import SimpleNamespace

import joblib
import numpy as np
import pytest
import torch
from helpers import synthetic_data
from phalp_lightning.datamodules.video import FrameSourceError, VideoDataModule, open_source, source_name

synthetic_video = synthetic_data.synthetic_video


@pytest.fixture()
def video(synthetic_video):
    """The generated 6-frame, 3-person 256 x 384 video, with boxes as (T, P, 4) xyxy sorted by id."""
    boxes = np.stack([frame_boxes[np.argsort(ids)] for frame_boxes, ids in zip(synthetic_video.boxes, synthetic_video.track_ids, strict=True)])
    return SimpleNamespace(
        video_path=synthetic_video.video_path, frames_dir=synthetic_video.frames_dir, mot_gt_path=synthetic_video.mot_gt_path,
        boxes=boxes.astype(np.float32), frame=synthetic_video.frame_paths,
    )


def test_video_file_frames_are_read_lazily_and_sliced(video):
    import cv2

    source = open_source(video.video_path, start_frame=1, end_frame=4)
    assert source.name == "video" and len(source) == 3
    assert source.frame_name(0) == "video/000001.jpg"
    frame = source.read(2)  # frame 3 of the file; out-of-order read seeks
    assert frame.shape == (256, 384, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(source.read(0), open_source(video.video_path).read(1))
    # RGB order, and the same picture as the JPEG of that frame (up to compression).
    jpeg = cv2.cvtColor(cv2.imread(str(video.frame[3])), cv2.COLOR_BGR2RGB).astype(float)
    assert np.abs(frame.astype(float) - jpeg).mean() < 6


def test_image_folder_and_mot_sequence_folder(video, tmp_path):
    source = open_source(video.frames_dir, start_frame=-1, end_frame=-1)
    assert len(source) == 6 and source.frame_name(4).endswith("000004.jpg") and source.given_boxes(0) is None
    sequence = tmp_path / "MOT17-02"
    (sequence / "gt").mkdir(parents=True)
    (sequence / "img1").symlink_to(video.frames_dir)
    (sequence / "gt" / "gt.txt").write_text(video.mot_gt_path.read_text())
    assert open_source(sequence).name == "MOT17-02"
    given = open_source(sequence / "gt" / "gt.txt", start_frame=2)
    assert given.name == "MOT17-02" and len(given) == 4
    boxes = given.given_boxes(0)
    torch.testing.assert_close(boxes.boxes, torch.from_numpy(video.boxes[2]), atol=0.01, rtol=0)
    assert boxes.track_ids.tolist() == [1, 2, 3] and boxes.scores.tolist() == [1.0, 1.0, 1.0]


def test_phalp_pkl_boxes_are_xywh_and_empty_frames_have_none(video, tmp_path):
    records = {}
    for t in range(6):
        xyxy = video.boxes[t]
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        records[video.frame[t].name] = {"gt_bbox": xywh if t != 3 else np.zeros((0, 4)), "extra_data": {"gt_class": [], "gt_track_id": [7, 9, 4] if t != 3 else []}}
    joblib.dump(records, tmp_path / "gt_tracks.pkl")
    source = open_source(tmp_path / "gt_tracks.pkl", boxes_base_path=video.frames_dir)
    assert source.name == "gt_tracks" and len(source) == 6
    torch.testing.assert_close(source.given_boxes(1).boxes, torch.from_numpy(video.boxes[1]))
    assert source.given_boxes(1).track_ids.tolist() == [7, 9, 4]
    assert source.given_boxes(3) is None  # PHALP runs the detector on such frames
    assert source.read(4).shape == (256, 384, 3)


def test_posetrack_json(synthetic_video, video):
    source = open_source(synthetic_video.posetrack_json_path)
    assert source.name == "posetrack" and len(source) == 6
    given = source.given_boxes(2)
    order = np.argsort(given.track_ids.numpy())
    assert given.track_ids[order].tolist() == [0, 1, 2]
    torch.testing.assert_close(given.boxes[order], torch.from_numpy(video.boxes[2]), atol=0.01, rtol=0)
    assert source.read(0).shape == (256, 384, 3)


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


def test_datamodule_keeps_order_and_never_mixes_videos(video):
    module = VideoDataModule([str(video.video_path), str(video.frames_dir)], batch_size=4, end_frame=5)
    module.setup("predict")
    batches = list(module.predict_dataloader())
    assert [(b["video"], b["frame_index"].tolist(), b["is_first"], b["is_last"]) for b in batches] == [
        ("video", [0, 1, 2, 3], True, False), ("video", [4], False, True),
        ("frames", [0, 1, 2, 3], True, False), ("frames", [4], False, True),
    ]
    assert batches[0]["images"].shape == (4, 256, 384, 3)


def test_videos_are_split_across_ranks(video, tmp_path):
    videos = [str(video.video_path), str(video.frames_dir), str(video.mot_gt_path)]
    names = []
    for rank in range(2):
        module = VideoDataModule(videos, boxes_base_path=str(video.frames_dir))
        module.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        module.setup("predict")
        names.append([source.name for source in module.sources])
    assert names == [["video", source_name(video.mot_gt_path)], ["frames"]] and module.failures == {}


def test_pyav_backend_reads_the_same_frames(video):
    pytest.importorskip("av")
    opencv = open_source(video.video_path, start_frame=1)
    pyav = open_source(video.video_path, start_frame=1)
    pyav.backend = "pyav"  # the fallback used for containers OpenCV cannot open
    for index in (0, 3, 1):  # includes a backwards read, which restarts decoding
        difference = np.abs(pyav.read(index).astype(int) - opencv.read(index).astype(int))
        assert difference.mean() < 2.0
    with pytest.raises(FrameSourceError, match="frame 99 cannot be decoded"):
        pyav.frames = range(100)
        pyav.read(99)


def test_decoding_workers_keep_the_order(video):
    module = VideoDataModule([str(video.video_path)], batch_size=2, num_workers=2)
    module.setup("predict")
    batches = list(module.predict_dataloader())
    assert [b["frame_index"].tolist() for b in batches] == [[0, 1], [2, 3], [4, 5]]
    reference = open_source(video.video_path)
    for batch in batches:
        for k, index in enumerate(batch["frame_index"].tolist()):
            np.testing.assert_array_equal(batch["images"][k].numpy(), reference.read(index))


def test_truncated_video_gives_a_clear_error(video, tmp_path):
    data = video.video_path.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) * 2 // 3])  # OpenCV's mp4v writer puts the index at the end
    with pytest.raises(FrameSourceError, match="truncated.mp4: cannot decode"):
        open_source(path)


def test_det_txt_confidences_become_scores_and_out_of_range_ones_are_refused_with_a_warning(video, tmp_path):
    sequence = tmp_path / "SEQ"
    (sequence / "det").mkdir(parents=True)
    (sequence / "img1").symlink_to(video.frames_dir)
    rows = "1,-1,10,20,30,60,0.25,-1,-1,-1\n1,-1,50,20,30,60,0.9,-1,-1,-1\n2,-1,12,20,30,60,0.5,-1,-1,-1\n"
    (sequence / "det" / "det.txt").write_text(rows)
    given = open_source(sequence / "det" / "det.txt")
    assert given.given_boxes(0).scores.tolist() == pytest.approx([0.25, 0.9])
    assert given.given_boxes(0).track_ids is None
    (sequence / "det" / "det.txt").write_text(rows.replace("0.9", "2.7"))  # an SVM margin, not a probability
    with pytest.warns(UserWarning, match=r"outside \[0, 1\]"):
        given = open_source(sequence / "det" / "det.txt")
    assert given.given_boxes(0).scores.tolist() == [1.0, 1.0]
