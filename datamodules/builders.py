"""Shard builders: dataset annotations -> the versioned crop / tracklet shards (schema.py).

- :func:`build_posetrack_crops`: PoseTrack18/21 JSON + frames -> person-crop shards for HMAR
  (crop with PHALP's geometry, box mask, 17 keypoints placed in the 44-joint layout).
- :func:`build_phalp_tracklets`: PHALP results pkls -> tracklet windows for the pose transformer,
  optionally with AVA v2.2 action labels attached at the keyframes.
- :func:`posetrack_to_given_boxes` / :func:`mot_to_given_boxes`: ground-truth boxes as PHALP's
  given-boxes pkl (track with ground-truth detections).

The command line is ``python -m phalp_lightning.datamodules.build_shards``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from phalp_lightning.datamodules.formats.ava import AVAAnnotations
from phalp_lightning.datamodules.formats.phalp_results import GivenBoxes

from phalp_lightning.utils.boxes import box_iou

log = logging.getLogger(__name__)


def crop_frame_people(image_rgb: np.ndarray, boxes_xyxy: np.ndarray, crop_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut the crops of one frame's people exactly as predict does, for storing in a shard.

    The cut is :func:`phalp_lightning.utils.person_crops.crop_people` (PHALP's square of side max(w, h) about
    the box centre, bilinear, black border, box-shaped mask), without the normalisation: the training
    decoder applies it to the stored pixels.

    Args:
        image_rgb: (H, W, 3) uint8 frame; boxes_xyxy: (N, 4) boxes in frame pixels; crop_size: S.

    Returns:
        crops (N, S, S, 3) uint8 RGB, masks (N, S, S) uint8 0/255, affines (N, 2, 3) frame -> crop pixels.
    """
    import torch

    from phalp_lightning.utils.person_crops import crop_affine, crop_people

    crops = crop_people(torch.from_numpy(np.ascontiguousarray(image_rgb)), torch.as_tensor(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)),
                        crop_size=crop_size, normalize=False)
    pixels = crops.images.round().clamp(0, 255).to(torch.uint8)
    affines = crop_affine(crops.center.double(), crops.side.double(), crop_size)
    return pixels[:, :3].permute(0, 2, 3, 1).contiguous().numpy(), pixels[:, 3].contiguous().numpy(), affines.numpy()


def build_posetrack_crops(
    annotation_paths: Sequence[str | os.PathLike[str]],
    image_root: str | os.PathLike[str],
    out_prefix: str | os.PathLike[str],
    crop_size: int = 256,
    shard_size: int = 1000,
    dataset: str = "posetrack",
    labeled_only: bool = True,
    min_box_side: float = 16.0,
    min_keypoints: int = 1,
) -> dict:
    """PoseTrack JSON files -> crop shards ``<out_prefix>-000000.tar ...``.

    Args:
        annotation_paths: PoseTrack18/21 JSON files (one per video).
        image_root: folder that the JSON ``file_name`` entries are relative to.
        labeled_only: use only frames with ``is_labeled``.
        min_box_side: skip people whose box is smaller (pixels).
        min_keypoints: skip people with fewer visible keypoints.

    Returns:
        {"shards": [...], "pattern", "num_samples", "skipped"}.

    Raises:
        FileNotFoundError: a frame image is missing (names the image and the JSON file).
    """
    import cv2
    from phalp_lightning.datamodules.formats.posetrack import POSETRACK_TO_JOINTS44, read_posetrack
    from phalp_lightning.datamodules.shard_writing import ShardWriter, encode_crop_sample, sample_key

    image_root = Path(image_root)
    skipped = 0
    with ShardWriter(out_prefix, max_count=shard_size) as writer:
        for annotation_path in annotation_paths:
            video = read_posetrack(annotation_path)
            for frame in video.frames:
                if (labeled_only and not frame.is_labeled) or not frame.people:
                    continue
                image_path = image_root / frame.file_name
                image = cv2.imread(str(image_path))
                if image is None:
                    raise FileNotFoundError(f"{annotation_path}: frame image {image_path} (image id {frame.image_id}) is missing or unreadable")
                image_rgb = np.ascontiguousarray(image[..., ::-1])
                height, width = image_rgb.shape[:2]
                kept = []  # (number, person, box) of the people that pass the filters
                for number, person in enumerate(frame.people):
                    if min(person.box_xywh[2:]) < min_box_side or (person.keypoints[:, 2] > 0).sum() < min_keypoints:
                        skipped += 1
                        continue
                    kept.append((number, person, np.concatenate([person.box_xywh[:2], person.box_xywh[:2] + person.box_xywh[2:]])))
                if not kept:
                    continue
                crops, masks, affines = crop_frame_people(image_rgb, np.stack([box for _, _, box in kept]), crop_size)
                for (number, person, box), crop, mask, affine in zip(kept, crops, masks, affines, strict=True):
                    visible = person.keypoints[:, 2] > 0
                    keypoints = np.zeros((44, 3), np.float32)
                    points = person.keypoints[:, :2] @ affine[:, :2].T + affine[:, 2]
                    keypoints[list(POSETRACK_TO_JOINTS44), :2] = points
                    keypoints[list(POSETRACK_TO_JOINTS44), 2] = visible
                    keypoints[keypoints[:, 2] == 0, :2] = 0
                    writer.write(
                        encode_crop_sample(
                            sample_key(dataset, video.video_id, f"{frame.frame_index:06d}", f"{number:03d}"),
                            crop=crop, mask=mask, keypoints_2d=keypoints,
                            meta={"dataset": dataset, "sequence": video.video_id, "frame": frame.frame_index,
                                  "track_id": int(person.track_id), "box_xyxy": box.tolist(), "image_size": [height, width]},
                        )
                    )
    return {"shards": [str(p) for p in writer.shards], "pattern": writer.brace_pattern(), "num_samples": writer.count, "skipped": skipped}


def attach_ava_actions(
    tracklets: Sequence, people: list, fps: float, start_second: int, min_iou: float = 0.5, num_actions: int = 80
) -> dict[int, np.ndarray]:
    """Per track id, (F, num_actions) uint8 multi-hot AVA labels at the keyframes.

    At each keyframe the AVA people and the tracks present are matched one to one (Hungarian on
    IoU, pairs below ``min_iou`` refused), so one labelled person never labels two tracks.

    Args:
        tracklets: :class:`~phalp_lightning.datamodules.formats.phalp_results.PHALPTracklet` of one
            video (with ``size``); frame ``time`` is keyframe ``ts`` when
            ``time == round((ts - start_second) * fps)``.
        people: the video's :class:`~phalp_lightning.datamodules.formats.ava.AVAPerson` entries.
    """
    from scipy.optimize import linear_sum_assignment

    labels = {track.track_id: np.zeros((len(track.time), num_actions), np.uint8) for track in tracklets}
    by_frame: dict[int, list] = {}
    for person in people:
        by_frame.setdefault(int(round((person.timestamp - start_second) * fps)), []).append(person)
    for frame_time, candidates in by_frame.items():
        present = []  # (track, step) of the tracks detected at this frame
        for track in tracklets:
            steps = np.flatnonzero((track.time == frame_time) & track.valid)
            if len(steps):
                present.append((track, int(steps[0])))
        if not present:
            continue
        # AVA boxes are fractions of the frame; each track carries its own frame size.
        boxes = np.stack([track.boxes_xywh[step] for track, step in present])
        boxes = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)  # (T, 4) xyxy
        height, width = np.stack([track.size[step] for track, step in present]).astype(np.float64).T
        scale = np.stack([width, height, width, height], axis=1)  # (T, 4)
        ava_boxes = np.stack([p.box_xyxy for p in candidates])[None] * scale[:, None]  # (T, C, 4)
        ious = box_iou(boxes[:, None], ava_boxes, min_union=1e-9)[:, 0]  # (T, C)
        for row, column in zip(*linear_sum_assignment(-ious), strict=True):
            if ious[row, column] >= min_iou:
                track, step = present[row]
                labels[track.track_id][step] = candidates[column].multi_hot(num_actions)
    return labels


def build_phalp_tracklets(
    result_paths: Sequence[str | os.PathLike[str]],
    out_prefix: str | os.PathLike[str],
    window: int = 32,
    stride: int = 16,
    shard_size: int = 1000,
    dataset: str = "phalp",
    min_detections: int = 2,
    with_appearance: bool = False,
    ava: AVAAnnotations | None = None,
    fps: float = 30.0,
    ava_start_second: int = 900,
    results_prefix: str = "demo_",
) -> dict:
    """PHALP results pkls -> tracklet shards of ``window``-frame windows (the last one may be shorter
    than ``window`` only when the whole track is; it is padded with ``valid = False``).

    Args:
        result_paths: ``demo_<video>.pkl`` files; the video id is the file stem minus ``results_prefix``.
        min_detections: skip windows with fewer detected steps.
        with_appearance: store ``appearance`` (needs ``appe`` in the pkls, i.e. PHALP ran with rendering).
        ava: AVA annotations whose video ids match the result files; labels go to ``actions.npy``.
        fps, ava_start_second: map AVA timestamps to frame indices (frames extracted from second
            ``ava_start_second`` at ``fps``).

    Returns:
        {"shards", "pattern", "num_samples", "num_tracks"}.
    """
    from phalp_lightning.datamodules.formats.phalp_results import read_phalp_results
    from phalp_lightning.datamodules.shard_writing import ShardWriter, encode_tracklet_sample, sample_key

    num_tracks = 0
    with ShardWriter(out_prefix, max_count=shard_size) as writer:
        for result_path in result_paths:
            results = read_phalp_results(result_path)
            stem = Path(result_path).stem
            video_id = stem[len(results_prefix):] if results_prefix and stem.startswith(results_prefix) else stem
            tracklets = results.tracklets()
            labels = None
            if ava is not None:
                unsized = [track.track_id for track in tracklets if track.size is None]
                if unsized:
                    raise ValueError(f"{result_path}: track {unsized[0]} has no 'size' entries, needed to match AVA boxes")
                labels = attach_ava_actions(tracklets, ava.video(video_id), fps, ava_start_second)
            for track in tracklets:
                num_tracks += 1
                if with_appearance and track.appearance is None:
                    raise ValueError(f"{result_path}: track {track.track_id} has no 'appe' entries; run PHALP with rendering or drop with_appearance")
                actions = labels[track.track_id] if labels is not None else None
                length = len(track.time)
                starts = list(range(0, max(length - window, 0) + 1, stride))
                if starts[-1] + window < length:
                    starts.append(length - window)
                for start in starts:
                    part = slice(start, start + window)
                    valid = track.valid[part]
                    if valid.sum() < min_detections:
                        continue
                    pad = window - len(valid)

                    def padded(array, pad=pad):
                        return np.concatenate([array, np.zeros((pad, *array.shape[1:]), array.dtype)]) if pad > 0 else array

                    time = track.time[part]
                    if pad > 0:
                        time = np.concatenate([time, time[-1] + 1 + np.arange(pad)])
                    writer.write(
                        encode_tracklet_sample(
                            sample_key(dataset, video_id, track.track_id, f"{int(track.time[start]):06d}"),
                            pose=padded(track.pose[part]), location=padded(track.location[part]), time=time, valid=padded(valid),
                            meta={"dataset": dataset, "sequence": video_id, "track_id": int(track.track_id), "start_frame": int(track.time[start])},
                            appearance=padded(track.appearance[part]) if with_appearance else None,
                            actions=padded(actions[part]) if actions is not None else None,
                        )
                    )
    return {"shards": [str(p) for p in writer.shards], "pattern": writer.brace_pattern(), "num_samples": writer.count, "num_tracks": num_tracks}


def posetrack_to_given_boxes(annotation_path: str | os.PathLike[str]) -> dict[str, GivenBoxes]:
    """PoseTrack ground truth -> given boxes keyed by frame basename (track ids kept as they are)."""
    from phalp_lightning.datamodules.formats.posetrack import read_posetrack

    video = read_posetrack(annotation_path)
    return {
        Path(frame.file_name).name: GivenBoxes(
            np.stack([p.box_xywh for p in frame.people]) if frame.people else np.zeros((0, 4)), frame.track_ids, [0] * len(frame.people)
        )
        for frame in video.frames
    }


def mot_to_given_boxes(mot_path: str | os.PathLike[str], frame_names: Sequence[str], min_confidence: float = 0.5) -> dict[str, GivenBoxes]:
    """MOT rows -> given boxes for ``frame_names`` (MOT frame n is ``frame_names[n - 1]``); rows with
    ``conf < min_confidence`` (ignored ground truth) are dropped."""
    from phalp_lightning.datamodules.formats.mot import read_mot

    rows = read_mot(mot_path)
    result = {}
    for number, name in enumerate(frame_names, start=1):
        frame = rows.frame(number)
        keep = frame.confidences >= min_confidence
        result[name] = GivenBoxes(frame.boxes_xywh[keep], frame.track_ids[keep], [0] * int(keep.sum()))
    return result
