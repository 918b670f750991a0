"""PoseTrack18/21 JSON: reading both layouts, ignore regions, round trip and clear errors."""

import json

import numpy as np
import pytest
from phalp_lightning.datamodules.formats.posetrack import (
    NUM_KEYPOINTS,
    PoseTrackFormatError,
    read_posetrack,
    write_posetrack,
)


def _keypoints(x0):
    points = np.zeros((NUM_KEYPOINTS, 3))
    points[:, 0], points[:, 1], points[:, 2] = x0 + np.arange(NUM_KEYPOINTS), 50 + np.arange(NUM_KEYPOINTS), 1
    points[3:5] = 0  # the ears are never annotated
    return points.reshape(-1).tolist()


def _document():
    return {
        "images": [
            # Listed out of order: the reader orders frames by frame_id.
            {"id": 10000010001, "frame_id": 10000010001, "vid_id": "000001", "file_name": "images/val/000001_bonn/000001.jpg",
             "nframes": 2, "is_labeled": True, "ignore_regions_x": [[0, 10, 10]], "ignore_regions_y": [[0, 0, 10]]},
            {"id": 10000010000, "frame_id": 10000010000, "vid_id": "000001", "file_name": "images/val/000001_bonn/000000.jpg",
             "nframes": 2, "is_labeled": False, "ignore_regions_x": [5, 15, 15, 5], "ignore_regions_y": [5, 5, 15, 15]},
        ],
        "annotations": [
            {"image_id": 10000010001, "id": 7, "track_id": 0, "category_id": 1, "bbox": [10, 20, 30, 60],
             "bbox_head": [15, 20, 10, 10], "keypoints": _keypoints(12), "person_id": 42},
            {"image_id": 10000010001, "id": 8, "track_id": 3, "category_id": 1, "bbox": [100, 20, 30, 60], "keypoints": []},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }


def test_reads_frames_people_and_normalises_ignore_regions(tmp_path):
    path = tmp_path / "000001_bonn_val.json"
    path.write_text(json.dumps(_document()))
    video = read_posetrack(path)
    assert video.video_id == "000001"
    assert [frame.frame_index for frame in video.frames] == [0, 1]
    first, second = video.frames
    assert first.file_name.endswith("000000.jpg") and not first.is_labeled and first.people == []
    assert len(first.ignore_regions) == 1 and first.ignore_regions[0].shape == (4, 2)
    assert second.track_ids.tolist() == [0, 3]
    assert np.allclose(second.boxes_xyxy[0], [10, 20, 40, 80])
    assert second.keypoints.shape == (2, NUM_KEYPOINTS, 3)
    assert second.keypoints[1].sum() == 0  # a PT21 box without keypoints
    assert second.people[0].person_id == 42 and np.allclose(second.people[0].head_box_xywh, [15, 20, 10, 10])
    assert [frame.image_id for frame in video.labeled_frames] == [10000010001]


def test_round_trip_through_the_writer(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps(_document()))
    video = read_posetrack(path)
    again = read_posetrack(write_posetrack(tmp_path / "out.json", video))
    assert [f.image_id for f in again.frames] == [f.image_id for f in video.frames]
    for old, new in zip(video.frames, again.frames, strict=True):
        assert np.allclose(old.boxes_xyxy, new.boxes_xyxy) and np.allclose(old.keypoints, new.keypoints)
        assert len(old.ignore_regions) == len(new.ignore_regions)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["annotations"][0].pop("track_id"), r"annotations\[0\] \(id=7\): missing key 'track_id'"),
        (lambda d: d["annotations"][1].update(bbox=[1, 2, 0, 5]), r"annotations\[1\] \(id=8\): 'bbox' must be"),
        (lambda d: d["annotations"][0].update(keypoints=[1, 2, 3]), r"annotations\[0\] \(id=7\): 'keypoints' must hold 51"),
        (lambda d: d["annotations"][0].update(image_id=5), r"annotations\[0\] \(id=7\): image_id 5 is not in 'images'"),
        (lambda d: d.pop("images"), "missing top-level key 'images'"),
        (lambda d: d["images"][0].update(ignore_regions_y=[[0, 0]]), r"images\[0\].*ignore region 0 has 3 x and 2 y"),
    ],
)
def test_malformed_records_name_the_file_and_record(tmp_path, edit, message):
    document = _document()
    edit(document)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(PoseTrackFormatError, match=message) as error:
        read_posetrack(path)
    assert "bad.json" in str(error.value)


def test_invalid_json_and_missing_box_derived_from_keypoints(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(PoseTrackFormatError, match="broken.json: not valid JSON"):
        read_posetrack(path)
    document = _document()
    del document["annotations"][0]["bbox"]
    path.write_text(json.dumps(document))
    box = read_posetrack(path).frames[1].boxes_xyxy[0]
    assert box[0] < 12 and box[2] > 12 + 16 and box[1] < 50 and box[3] > 66
