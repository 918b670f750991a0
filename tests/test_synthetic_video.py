"""The synthetic video generator: determinism, exact ground truth, crossings, detectability."""

import numpy as np
from helpers import synthetic_data
from helpers.synthetic_data import VIDEO_KWARGS, body_model_handle
from phalp_lightning.datamodules.formats.mot import read_mot
from phalp_lightning.datamodules.formats.posetrack import read_posetrack
from phalp_lightning.datamodules.synthetic import make_synthetic_video

synthetic_video = synthetic_data.synthetic_video


def test_files_exist_and_ground_truth_files_agree_with_the_arrays(synthetic_video):
    video = synthetic_video
    assert video.num_frames == VIDEO_KWARGS["num_frames"] and video.video_path.stat().st_size > 0
    import cv2

    capture = cv2.VideoCapture(str(video.video_path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == video.num_frames
    capture.release()
    mot = read_mot(video.mot_gt_path)
    posetrack = read_posetrack(video.posetrack_json_path)
    assert len(posetrack.frames) == video.num_frames
    for frame in range(video.num_frames):
        rows = mot.frame(frame + 1)
        assert (rows.track_ids - 1).tolist() == video.track_ids[frame].tolist()
        assert np.allclose(rows.boxes_xyxy, video.boxes[frame], atol=0.01)
        assert np.allclose(rows.extra[:, 1], video.visibility[frame], atol=1e-6)
        assert posetrack.frames[frame].track_ids.tolist() == video.track_ids[frame].tolist()
        assert np.allclose(posetrack.frames[frame].boxes_xyxy, video.boxes[frame], atol=1e-6)
        assert (video.frames_dir / posetrack.frames[frame].file_name.split("/")[-1]).is_file()
    truth = np.load(video.ground_truth_path)
    assert truth["pose"].shape == (len(mot), 229) and truth["mot_rows"].shape == (len(mot), 9)


def test_boxes_contain_the_rendered_masks_and_keypoints_are_consistent(synthetic_video):
    video = synthetic_video
    for frame in range(video.num_frames):
        mask = video.masks[frame]
        for box, track, visibility, area, keypoints in zip(
            video.boxes[frame], video.track_ids[frame], video.visibility[frame], video.masks_area[frame], video.keypoints[frame]
        , strict=True):
            rows, cols = np.nonzero(mask == track)
            assert len(rows) == area > 0
            assert cols.min() + 0.5 >= box[0] and cols.max() + 0.5 <= box[2]
            assert rows.min() + 0.5 >= box[1] and rows.max() + 0.5 <= box[3]
            assert 0 < visibility <= 1
            if visibility == 1.0 and box[1] > 0 and box[3] < video.height:
                assert box[3] - box[1] >= 150  # people are tall enough for the HOG detector
            shown = keypoints[keypoints[:, 2] > 0]
            labels = mask[shown[:, 1].astype(int), shown[:, 0].astype(int)]
            assert np.isin(labels, [track, -1]).all()


def test_people_cross_and_occlude_each_other(synthetic_video):
    video = synthetic_video
    occluded = [v < 0.95 for frame in video.visibility for v in frame]
    assert any(occluded)
    directions = []
    for track in range(video.num_people):
        centres = [video.boxes[f][video.track_ids[f] == track][0, [0, 2]].mean() for f in (0, video.num_frames - 1)]
        directions.append(np.sign(centres[1] - centres[0]))
    assert {-1.0, 1.0} <= set(directions)  # people walk both ways, so they cross


def test_generation_is_deterministic_by_seed(tmp_path, synthetic_assets):
    body = body_model_handle(str(synthetic_assets))
    kwargs = dict(VIDEO_KWARGS, num_frames=2, write_video=False)
    first = make_synthetic_video(tmp_path / "a", body_model=body, **kwargs)
    again = make_synthetic_video(tmp_path / "b", body_model=body, **kwargs)
    other = make_synthetic_video(tmp_path / "c", body_model=body, **dict(kwargs, seed=kwargs["seed"] + 1))
    assert first.frame_paths[1].read_bytes() == again.frame_paths[1].read_bytes()
    assert first.mot_gt_path.read_text() == again.mot_gt_path.read_text()
    assert not np.allclose(first.boxes[0], other.boxes[0])


def test_an_unoccluded_person_is_found_by_opencv_hog(tmp_path, synthetic_assets):
    import cv2

    body = body_model_handle(str(synthetic_assets))
    video = make_synthetic_video(tmp_path / "one", num_frames=1, num_people=1, height=320, width=320, seed=3, write_video=False, body_model=body)
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    rects, weights = hog.detectMultiScale(cv2.imread(str(video.frame_paths[0])), winStride=(8, 8), padding=(8, 8), scale=1.05)
    box = video.boxes[0][0]
    centre = (box[:2] + box[2:]) / 2
    hits = [r for r, w in zip(rects, np.ravel(weights), strict=True) if w > 0.5 and r[0] <= centre[0] <= r[0] + r[2] and r[1] <= centre[1] <= r[1] + r[3]]
    assert hits, f"HOG missed the person at {box}"
