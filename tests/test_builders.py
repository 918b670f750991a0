"""Round trips raw dataset files -> shards -> batches, and the two command lines."""

import json

import cv2
import joblib
import numpy as np
import pytest
import torch
from helpers import synthetic_data
from phalp_lightning.datamodules.builders import (
    build_phalp_tracklets,
    build_posetrack_crops,
    crop_frame_people,
    mot_to_given_boxes,
    posetrack_to_given_boxes,
)
from phalp_lightning.datamodules.crops import CropDataModule
from phalp_lightning.datamodules.formats.ava import read_ava_csv
from phalp_lightning.datamodules.formats.phalp_results import read_given_boxes
from phalp_lightning.datamodules.formats.posetrack import POSETRACK_TO_JOINTS44, read_posetrack
from phalp_lightning.datamodules.schema import CROP_BATCH_KEYS
from phalp_lightning.datamodules.tracklets import TrackletDataModule

from phalp_lightning.utils.image import IMAGENET_STD, normalize_rgb
from phalp_lightning.utils.person_crops import crop_people

synthetic_video = synthetic_data.synthetic_video


def test_posetrack_json_to_crop_shards_to_batches(synthetic_video, tmp_path):
    summary = build_posetrack_crops([synthetic_video.posetrack_json_path], synthetic_video.out_dir, tmp_path / "pt" / "val",
                                    crop_size=48, shard_size=5, dataset="synthetic_pt")
    video = read_posetrack(synthetic_video.posetrack_json_path)
    people = [(frame, person) for frame in video.frames for person in frame.people]
    assert summary["num_samples"] == len(people) and len(summary["shards"]) == -(-len(people) // 5)
    module = CropDataModule(None, summary["pattern"], batch_size=len(people), crop_size=48)
    module.setup("validate")
    batch = next(iter(module.val_dataloader()))
    assert set(batch) == set(CROP_BATCH_KEYS) and batch["image"].shape == (len(people), 4, 48, 48)
    assert not batch["has_smpl"].any() and not batch["has_keypoints_3d"].any()
    images = {}
    for index, (frame, person) in enumerate(people):
        box = np.concatenate([person.box_xywh[:2], person.box_xywh[:2] + person.box_xywh[2:]])
        assert np.allclose(batch["box_xyxy"][index].numpy(), box, atol=1e-3)
        # PHALP's crop: the square of side max(w, h) about the box centre, scaled to 48 px.
        scale = 48 / max(box[2] - box[0], box[3] - box[1])
        affine = np.array([[scale, 0, 24 - scale * (box[0] + box[2]) / 2], [0, scale, 24 - scale * (box[1] + box[3]) / 2]])
        visible = person.keypoints[:, 2] > 0
        expected = (person.keypoints[visible, :2] @ affine[:, :2].T + affine[:, 2]) / 48 - 0.5
        got = batch["keypoints_2d"][index, list(np.asarray(POSETRACK_TO_JOINTS44)[visible])]
        assert torch.allclose(got[:, :2], torch.tensor(expected, dtype=torch.float32), atol=1e-4) and (got[:, 2] == 1).all()
        # The box mask covers the crop's central column (the box is centred in the crop).
        assert batch["image"][index, 3, :, 24].max() == 255
        # The training batch is what predict feeds HMAR for this box: the same mask, and the same RGB up
        # to the uint8 rounding of the stored PNG (half a grey level, over the smallest std).
        if frame.file_name not in images:
            images[frame.file_name] = torch.from_numpy(cv2.imread(str(synthetic_video.out_dir / frame.file_name))[..., ::-1].copy())
        predicted = crop_people(images[frame.file_name], torch.tensor(box[None], dtype=torch.float32), crop_size=48).images[0]
        assert torch.equal(batch["image"][index, 3], predicted[3])
        torch.testing.assert_close(batch["image"][index, :3], predicted[:3], rtol=0, atol=0.5 / min(IMAGENET_STD) + 1e-4)


def test_stored_training_crops_are_predict_crops_before_normalisation():
    generator = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (72, 130, 3), dtype=torch.uint8, generator=generator)
    boxes = np.array([[3.3, 4.1, 40.7, 70.2], [60.0, -5.0, 140.5, 50.25]], np.float32)  # the second runs off the frame
    crops, masks, affines = crop_frame_people(image.numpy(), boxes, 40)
    assert crops.shape == (2, 40, 40, 3) and crops.dtype == np.uint8 and masks.shape == (2, 40, 40) and masks.dtype == np.uint8
    predicted = crop_people(image, torch.from_numpy(boxes), crop_size=40)
    raw = crop_people(image, torch.from_numpy(boxes), crop_size=40, normalize=False)
    # The predict crop is the normalised raw cut, bit for bit; the builder stores that cut, rounded.
    assert torch.equal(predicted.images[:, :3], normalize_rgb(raw.images[:, :3], channel_axis=1))
    assert np.array_equal(crops, raw.images[:, :3].round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    assert np.array_equal(masks, predicted.images[:, 3].to(torch.uint8).numpy()) and set(np.unique(masks)) == {0, 255}
    assert (crops[1, :, -1] == 0).all()  # black border outside the frame
    # The affine sends each box centre to the crop centre and its longer side onto the crop's side.
    centres = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, np.ones((2, 1))], axis=1)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", affines, centres), 20.0, atol=1e-4)
    np.testing.assert_allclose(affines[:, 0, 0] * (boxes[:, 2:] - boxes[:, :2]).max(axis=1), 40.0, atol=1e-4)


def _fake_phalp_results(video, path):
    """A PHALP-style results pkl built from the synthetic ground truth (render off: smpl + camera)."""
    truth = np.load(video.ground_truth_path)
    rows = truth["mot_rows"]
    data = {}
    for frame in range(video.num_frames):
        here = np.flatnonzero(rows[:, 0] == frame + 1)
        data[f"{frame:06d}.jpg"] = {
            "time": frame, "shot": 0, "tid": rows[here, 1].astype(int).tolist(), "bbox": [rows[i, 2:6] for i in here],
            "tracked_time": [0] * len(here), "camera": [truth["cam_t"][i] for i in here],
            "smpl": [{"global_orient": truth["global_orient"][i], "body_pose": truth["body_pose"][i], "betas": truth["betas"][i]} for i in here],
            "2d_joints": [np.full(90, 0.5) for _ in here], "size": [[video.height, video.width] for _ in here],
        }
    joblib.dump(data, path)
    return truth


def test_phalp_results_plus_ava_csv_to_tracklet_shards_to_batches(synthetic_video, tmp_path):
    results_path = tmp_path / "demo_synthvid.pkl"
    truth = _fake_phalp_results(synthetic_video, results_path)
    # One AVA keyframe at second 902 = frame 2 (fps 1 from second 900) on track 0's box.
    box = synthetic_video.boxes[2][synthetic_video.track_ids[2] == 0][0] / np.array([synthetic_video.width, synthetic_video.height] * 2)
    csv_path = tmp_path / "ava.csv"
    csv_path.write_text("".join(f"synthvid,0902,{box[0]:.4f},{box[1]:.4f},{box[2]:.4f},{box[3]:.4f},{action},7\n" for action in (12, 80)))
    summary = build_phalp_tracklets([results_path], tmp_path / "trk" / "train", window=4, stride=2, dataset="synth",
                                    ava=read_ava_csv(csv_path), fps=1.0, ava_start_second=900)
    num_tracks = synthetic_video.num_people
    assert summary["num_tracks"] == num_tracks and summary["num_samples"] == num_tracks * 2  # starts 0 and 2 of 6 frames
    module = TrackletDataModule(None, summary["pattern"], batch_size=16, load_actions=True)
    module.setup("validate")
    batch = next(iter(module.val_dataloader()))
    assert set(batch) == {"pose", "location", "time", "valid", "actions", "has_actions"}
    assert batch["has_actions"].all() and batch["valid"].all()
    # Track 0 (MOT id 1) window starting at frame 2: actions 12 and 80 at its first step only.
    first_track = truth["mot_rows"][:, 1] == 1
    window = [i for i in range(len(batch["time"])) if batch["time"][i, 0] == 2 and torch.allclose(batch["pose"][i, 0], torch.tensor(truth["pose"][first_track][2], dtype=torch.float32), atol=1e-5)]
    assert len(window) == 1
    labels = batch["actions"][window[0]]
    assert labels[0].nonzero().flatten().tolist() == [11, 79] and labels[1:].sum() == 0
    # Frame 2 is in two windows of track 0 (steps 2 and 0); no other track takes the label.
    assert batch["actions"].sum() == 4


def test_ground_truth_to_given_boxes_pkl(synthetic_video, tmp_path):
    from phalp_lightning.datamodules.formats.phalp_results import write_given_boxes

    from_posetrack = posetrack_to_given_boxes(synthetic_video.posetrack_json_path)
    names = [p.name for p in synthetic_video.frame_paths]
    from_mot = mot_to_given_boxes(synthetic_video.mot_gt_path, names)
    written = read_given_boxes(synthetic_video.given_boxes_path)
    for frame, name in enumerate(names):
        boxes = synthetic_video.boxes[frame]
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        assert np.allclose(from_posetrack[name].boxes_xywh, xywh, atol=1e-6)
        assert np.allclose(from_mot[name].boxes_xywh, xywh, atol=0.01)
        assert np.allclose(written[name].boxes_xywh, xywh, atol=1e-3)
        assert written[name].track_ids.tolist() == (synthetic_video.track_ids[frame] + 1).tolist() == from_mot[name].track_ids.tolist()
    assert read_given_boxes(write_given_boxes(tmp_path / "g.pkl", from_posetrack)).keys() == from_posetrack.keys()


def test_missing_frame_image_names_it_and_the_json(synthetic_video, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"posetrack\.json: frame image .*frames/000000\.jpg .* is missing"):
        build_posetrack_crops([synthetic_video.posetrack_json_path], tmp_path, tmp_path / "x")


def test_command_lines_write_shards_and_given_boxes(synthetic_video, synthetic_assets, tmp_path, capsys):
    from phalp_lightning.datamodules import build_shards
    from phalp_lightning.datamodules.synthetic.__main__ import main as synthetic_main

    build_shards.main(["given-boxes", "--mot", str(synthetic_video.mot_gt_path), "--frames", str(synthetic_video.frames_dir), "--out", str(tmp_path / "gt.pkl")])
    assert json.loads(capsys.readouterr().out)["frames"] == synthetic_video.num_frames
    build_shards.main(["posetrack-crops", "--annotations", str(synthetic_video.posetrack_json_path), "--images", str(synthetic_video.out_dir),
                       "--out", str(tmp_path / "pt" / "train"), "--crop-size", "32"])
    assert json.loads(capsys.readouterr().out)["num_samples"] > 0
    synthetic_main(["crops", "--out", str(tmp_path / "crops"), "--num-train", "3", "--num-val", "2", "--crop-size", "32",
                    "--shard-size", "2", "--assets", str(synthetic_assets)])
    assert sorted(p.name for p in (tmp_path / "crops").glob("*.tar")) == ["train-000000.tar", "train-000001.tar", "val-000000.tar"]
    manifest = json.loads((tmp_path / "crops" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["num_samples"] == 3


def test_attach_ava_actions_matches_each_labelled_person_to_one_track():
    from types import SimpleNamespace

    from phalp_lightning.datamodules.builders import attach_ava_actions

    def person(timestamp, box_xyxy, action):
        hot = np.zeros(4, np.uint8)
        hot[action] = 1
        return SimpleNamespace(timestamp=timestamp, box_xyxy=np.asarray(box_xyxy, float),
                               multi_hot=lambda num_actions, hot=hot: hot[:num_actions])

    def track(track_id, boxes_xywh, size):
        return SimpleNamespace(track_id=track_id, time=np.arange(2), valid=np.array([True, True]),
                               boxes_xywh=np.asarray(boxes_xywh, float), size=np.asarray(size))

    # Two tracks in a 100 x 200 (h x w) frame; AVA boxes are fractions of the frame.
    left = track(7, [[10, 10, 60, 80], [10, 10, 60, 80]], [[100, 200], [100, 200]])
    right = track(9, [[120, 10, 60, 80], [120, 10, 60, 80]], [[100, 200], [100, 200]])
    people = [person(3.0, [0.6, 0.1, 0.9, 0.9], 2), person(3.0, [0.05, 0.1, 0.35, 0.9], 1),
              person(4.0, [0.9, 0.0, 1.0, 0.05], 3)]  # second keyframe: overlaps nobody
    labels = attach_ava_actions([left, right], people, fps=1.0, start_second=3, num_actions=4)
    np.testing.assert_array_equal(labels[7], [[0, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(labels[9], [[0, 0, 1, 0], [0, 0, 0, 0]])
