"""PHALP results pkls (tracklets from tid/tracked_time) and the given-boxes pkl."""

import joblib
import numpy as np
import pytest
from phalp_lightning.datamodules.formats.phalp_results import (
    GivenBoxes,
    PHALPResultsError,
    read_given_boxes,
    read_phalp_results,
    write_given_boxes,
)


def _entry(value, rng):
    """One track entry of PHALP's per-frame lists, with recognisable values."""
    return {
        "bbox": np.array([10 * value, 20, 30, 60], np.float32),
        "smpl": {"global_orient": np.eye(3)[None] * value, "body_pose": np.ones((23, 3, 3)) * value, "betas": np.full(10, value)},
        "camera": np.array([value, 0.5, 40.0], np.float32),
        "2d_joints": np.full(90, value / 100, np.float32),
        "size": [480, 640],
    }


def _results(tmp_path, with_pose=False):
    """Track 1 detected at t=0,1, a ghost at t=2, detected at t=3; track 2 only a ghost at t=1."""
    rng = np.random.default_rng(0)
    layout = {0: [(1, 0)], 1: [(1, 0), (2, 3)], 2: [(1, 1)], 3: [(1, 0)], 4: [(1, 1)]}
    data = {}
    for time, entries in layout.items():
        frame = {"time": time, "shot": 0, "frame_path": f"img/{time:06d}.jpg", "tid": [], "bbox": [], "tracked_time": [],
                 "smpl": [], "camera": [], "2d_joints": [], "size": []}
        if with_pose:
            frame["pose"], frame["loca"] = [], []
        for track_id, missed in entries:
            entry = _entry(time + 1, rng)
            frame["tid"].append(track_id)
            frame["tracked_time"].append(missed)
            for key in ("bbox", "smpl", "camera", "2d_joints", "size"):
                frame[key].append(entry[key])
            if with_pose:
                frame["pose"].append(np.full(229, time, np.float32))
                frame["loca"].append(np.full(99, time, np.float32))
        data[f"img/{time:06d}.jpg"] = frame
    path = tmp_path / "demo_video.pkl"
    joblib.dump(data, path, compress=3)
    return path


def test_tracklets_span_first_to_last_detection_with_ghosts_invalid(tmp_path):
    results = read_phalp_results(_results(tmp_path))
    assert len(results.frames) == 5 and results.frames[1].track_ids.tolist() == [1, 2]
    tracklets = results.tracklets()
    assert [t.track_id for t in tracklets] == [1]  # track 2 was never detected
    track = tracklets[0]
    assert track.time.tolist() == [0, 1, 2, 3] and track.valid.tolist() == [True, True, False, True]
    # pose from smpl + camera with t_z / 200; location = 2d_joints + camera x 3; zeros where not detected
    assert np.allclose(track.pose[1, :9], (np.eye(3) * 2).reshape(9)) and np.allclose(track.pose[1, 226:], [2, 0.5, 0.2])
    assert np.allclose(track.location[3, :90], 0.04) and np.allclose(track.location[3, 90:], [4, 0.5, 40] * 3)
    assert (track.pose[2] == 0).all() and track.size.tolist()[0] == [480, 640]


def test_saved_pose_and_location_are_used_when_present(tmp_path):
    track = read_phalp_results(_results(tmp_path, with_pose=True)).tracklets()[0]
    assert np.allclose(track.pose[3], 3.0) and np.allclose(track.location[1], 1.0)


def test_malformed_results_name_the_file_frame_and_key(tmp_path):
    path = tmp_path / "bad.pkl"
    joblib.dump({"f0": {"tid": [1], "bbox": [[0, 0, 1, 1]]}}, path)
    with pytest.raises(PHALPResultsError, match="bad.pkl: frame 'f0': missing key 'tracked_time'"):
        read_phalp_results(path)
    joblib.dump({"f0": {"tid": [1, 2], "bbox": [[0, 0, 1, 1]], "tracked_time": [0, 0]}}, path)
    with pytest.raises(PHALPResultsError, match="'bbox' has 1 entries for 2 track ids"):
        read_phalp_results(path)
    joblib.dump([1, 2], path)
    with pytest.raises(PHALPResultsError, match="expected a dict keyed by frame"):
        read_phalp_results(path)
    path.write_bytes(b"garbage")
    with pytest.raises(PHALPResultsError, match="bad.pkl: cannot unpickle"):
        read_phalp_results(path)


def test_given_boxes_round_trip_and_errors(tmp_path):
    frames = {"000001.jpg": GivenBoxes(np.array([[1.0, 2, 3, 4]]), np.array([5]), [0]), "000000.jpg": GivenBoxes(np.zeros((0, 4)), np.zeros(0, np.int64), [])}
    path = write_given_boxes(tmp_path / "gt.pkl", frames)
    raw = joblib.load(path)
    assert raw["000001.jpg"]["gt_bbox"].dtype == np.float32 and raw["000001.jpg"]["extra_data"]["gt_track_id"].tolist() == [5]
    back = read_given_boxes(path)
    assert list(back) == ["000000.jpg", "000001.jpg"]
    assert np.allclose(back["000001.jpg"].boxes_xywh, [[1, 2, 3, 4]]) and len(back["000000.jpg"].boxes_xywh) == 0
    joblib.dump({"a.jpg": {"gt_bbox": np.array([[0, 0, 0, 5]]), "extra_data": {}}}, path)
    with pytest.raises(PHALPResultsError, match="frame 'a.jpg': gt_bbox rows must be"):
        read_given_boxes(path)
    joblib.dump({"a.jpg": {"gt_bbox": np.array([[0, 0, 3, 5]]), "extra_data": {"gt_track_id": [1, 2]}}}, path)
    with pytest.raises(PHALPResultsError, match="2 gt_track_id for 1 boxes"):
        read_given_boxes(path)
