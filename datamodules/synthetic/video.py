"""Short synthetic multi-person videos with exact tracking ground truth.

People are the body model's meshes walking on a ground plane in front of a static pinhole camera
(x right, y down, z forward; the horizon is the middle row). They walk roughly sideways at different
depths, in both directions, and cross near the image centre, so their boxes overlap and the nearer
person occludes the farther one. Each is >= 150 px tall, upright and darker than the light background,
which is what OpenCV's HOG people detector needs.

Outputs under ``out_dir``: ``frames/000000.jpg ...``, ``video.mp4`` (OpenCV mp4v), ``gt/gt.txt`` (MOT17
layout: frame, id, x, y, w, h, 1, 1, visibility; ids = track + 1), ``posetrack.json`` (PoseTrack21 layout;
track ids 0-based), ``gt_boxes.pkl`` (PHALP's given-boxes pkl keyed by frame name; ids = track + 1) and
``ground_truth.npz`` (per MOT row: SMPL parameters, 229-d pose vector, camera).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from phalp_lightning.datamodules.formats.posetrack import POSETRACK_KEYPOINTS, POSETRACK_TO_JOINTS44
from phalp_lightning.datamodules.synthetic.people import (
    BodyModelHandle,
    Clothing,
    Gait,
    global_orientation,
    random_background,
    save_jpeg,
    walking_body_pose,
)

from phalp_lightning.utils.io import atomic_output

# 44-joint set (BODY-25 then J19) -> PoseTrack's 17 keypoints; -1 = never annotated (the ears).
POSETRACK_FROM_JOINTS = np.array([-1 if name.endswith("ear") else joint for name, joint in zip(POSETRACK_KEYPOINTS, POSETRACK_TO_JOINTS44, strict=True)])
BODY_HEIGHT_M = 1.72
CAMERA_HEIGHT_M = 1.0  # the camera looks horizontally from this height above the ground


@dataclass
class SyntheticVideo:
    """Paths and ground truth of a generated video; per-frame lists are indexed by 0-based frame.

    Attributes:
        boxes: per frame (N, 4) float64 amodal boxes x1, y1, x2, y2 clipped to the image.
        track_ids: per frame (N,) int64 0-based track ids (MOT ids are these + 1).
        visibility: per frame (N,) visible / in-image area of each person.
        keypoints: per frame (N, 17, 3) PoseTrack keypoints (v = 0: occluded or outside).
        masks_area: per frame (N,) visible pixel counts.
        masks: per frame (H, W) int16 track id visible at each pixel (-1: background).
    """

    out_dir: Path
    video_path: Path | None
    frames_dir: Path
    frame_paths: list[Path]
    mot_gt_path: Path
    posetrack_json_path: Path
    ground_truth_path: Path
    given_boxes_path: Path
    boxes: list[np.ndarray]
    track_ids: list[np.ndarray]
    visibility: list[np.ndarray]
    keypoints: list[np.ndarray]
    masks_area: list[np.ndarray]
    masks: list[np.ndarray]
    height: int
    width: int
    fps: float
    focal_length: float
    num_people: int

    @property
    def num_frames(self) -> int:
        return len(self.frame_paths)


def _height_range(height: int) -> tuple[float, float]:
    """Pixel heights that keep a person >= 160 px tall and fully inside the frame."""
    feet_limit = BODY_HEIGHT_M / CAMERA_HEIGHT_M * (height / 2.0 - 8.0)
    head_limit = BODY_HEIGHT_M / (BODY_HEIGHT_M - CAMERA_HEIGHT_M) * (height / 2.0 - 8.0)
    high = min(0.85 * height, feet_limit, head_limit)
    low = max(160.0, 0.5 * high)
    if high < low + 5:
        raise ValueError(f"frames of height {height} cannot hold people >= 160 px tall; use height >= 256")
    return low, high


@dataclass
class _Walker:
    gait: Gait
    clothing: Clothing
    betas: np.ndarray
    heading: float
    speed: float  # metres per frame
    cross_point: np.ndarray  # (3,) camera-frame position at the crossing frame (y ignored)
    cross_frame: float


def _plan_walkers(
    rng: np.random.Generator, num_people: int, num_frames: int, height: int, width: int, focal: float, fps: float,
    walk_speed: tuple[float, float], diagonal: tuple[float, float],
) -> list[_Walker]:
    low, high = _height_range(height)
    near, far = focal * BODY_HEIGHT_M / high, focal * BODY_HEIGHT_M / low
    duration = max(num_frames - 1, 1)
    walkers = []
    first_direction = rng.choice([-1.0, 1.0])
    for index in range(num_people):
        direction = first_direction * (1.0 if index % 2 == 0 else -1.0)
        speed = float(rng.uniform(*walk_speed)) / fps
        # Walk diagonally towards the camera (a 3/4 view, which HOG finds far more reliably than a
        # profile), but never so steeply that the person leaves the allowed depth range.
        steepest = np.arcsin(min(1.0, 0.9 * (far - near) / (speed * duration)))
        angle = min(float(rng.uniform(*diagonal)), float(steepest))
        approach = speed * np.sin(angle)
        cross_frame = float(rng.uniform(0.3, 0.7) * duration)
        depth_low = near + approach * (duration - cross_frame)
        depth_high = far - approach * cross_frame
        depth = float(rng.uniform(depth_low, max(depth_low, depth_high)))
        # Everyone passes near the image centre around the middle of the clip: crossings and occlusions.
        centre_x = rng.uniform(-0.12, 0.12) * width / focal * depth
        walkers.append(
            _Walker(
                gait=Gait.sample(rng, fps),
                clothing=Clothing.sample(rng),
                betas=np.concatenate([rng.normal(0, 0.4, 2), rng.normal(0, 0.3, 8)]),
                heading=float(direction * (np.pi / 2 - angle)),
                speed=speed,
                cross_point=np.array([centre_x, 0.0, depth]),
                cross_frame=cross_frame,
            )
        )
    return walkers


def _head_box(joints_2d: np.ndarray) -> np.ndarray:
    """(4,) xywh square head box from the neck (J19 12) and head top (J19 13) joints."""
    neck, top = joints_2d[37], joints_2d[38]
    side = max(np.linalg.norm(top - neck), 1.0)
    centre = (neck + top) / 2.0
    return np.array([centre[0] - side / 2, centre[1] - side / 2, side, side])


def make_synthetic_video(
    out_dir: str | os.PathLike[str],
    num_frames: int = 8,
    num_people: int = 3,
    height: int = 360,
    width: int = 640,
    seed: int = 0,
    fps: float = 30.0,
    walk_speed: tuple[float, float] = (1.1, 1.6),
    diagonal: tuple[float, float] = (0.5, 0.8),
    write_video: bool = True,
    jpeg_quality: int = 95,
    assets_root: str | os.PathLike[str] | None = None,
    body_model: BodyModelHandle | None = None,
    sequence_name: str = "synthetic",
) -> SyntheticVideo:
    """Render a short video of people walking past each other, with MOT and PoseTrack ground truth.

    Args:
        out_dir: output folder (created).
        num_frames, num_people, height, width: clip size; height >= 256 so people are >= 160 px.
        seed: everything (people, clothes, gaits, paths, background) is a function of the seed.
        fps: frame rate of the video and of the walking motion.
        walk_speed: range of walking speeds in m/s.
        diagonal: range of angles (radians) between the walking direction and the image plane;
            people walk towards the camera at this angle (reduced for long clips).
        write_video: also write ``video.mp4``.
        assets_root: body-model assets (None: registry, else the generated mannequin).
        body_model: a ready :class:`BodyModelHandle` (saves loading it again).
        sequence_name: the video id written into the ground-truth files.

    Returns:
        :class:`SyntheticVideo` with the paths and the ground truth.
    """
    import cv2
    from phalp_lightning.datamodules.formats.mot import write_mot
    from phalp_lightning.datamodules.formats.posetrack import (
        PoseTrackFrame,
        PoseTrackPerson,
        PoseTrackVideo,
        write_posetrack,
    )

    from phalp_lightning.utils.geometry import FOCAL_LENGTH, IMG_SIZE
    from phalp_lightning.utils.rasterize import project_points, render_meshes

    if num_frames < 1 or num_people < 1:
        raise ValueError(f"num_frames and num_people must be >= 1, got {num_frames} and {num_people}")
    out_dir = Path(out_dir)
    frames_dir = out_dir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    body = body_model or BodyModelHandle(assets_root)
    focal = float(max(height, width))
    principal = (width / 2.0, height / 2.0)
    walkers = _plan_walkers(rng, num_people, num_frames, height, width, focal, fps, walk_speed, diagonal)
    background = random_background(rng, height, width, horizon=height / 2.0)
    colors = [walker.clothing.vertex_colors(body.rest_vertices, body.regions) for walker in walkers]

    # Pose every person in every frame in one batch.
    frame_index = np.arange(num_frames, dtype=np.float64)
    body_pose = np.concatenate([walking_body_pose(walker.gait, frame_index) for walker in walkers])
    orient = np.concatenate([global_orientation(np.full(num_frames, walker.heading)) for walker in walkers])
    betas = np.repeat(np.stack([walker.betas for walker in walkers]), num_frames, axis=0)
    vertices, joints = body.pose(orient, body_pose, betas)
    vertices = vertices.reshape(num_people, num_frames, -1, 3)
    joints = joints.reshape(num_people, num_frames, -1, 3)
    # Root path: straight along the heading; feet on the ground plane in every frame.
    translation = np.zeros((num_people, num_frames, 3))
    for person, walker in enumerate(walkers):
        direction = np.array([np.sin(walker.heading), 0.0, -np.cos(walker.heading)])
        translation[person] = walker.cross_point + np.outer(frame_index - walker.cross_frame, direction * walker.speed)
    translation[..., 1] = CAMERA_HEIGHT_M - vertices[..., 1].max(axis=2)

    rows, frame_paths, posetrack_frames = [], [], []
    boxes_all, ids_all, visibility_all, keypoints_all, area_all, masks_all = [], [], [], [], [], []
    smpl_rows: dict[str, list[np.ndarray]] = {key: [] for key in ("global_orient", "body_pose", "betas", "cam_t", "pose", "translation")}
    padded_side = max(height, width)
    # Our camera seen as PHALP's virtual camera (focal 5000 on the 256 px padded frame): same
    # image of the root when its depth is scaled by the focal-length ratio.
    depth_scale = FOCAL_LENGTH * padded_side / (IMG_SIZE * focal)
    for frame in range(num_frames):
        meshes = [vertices[person, frame] + translation[person, frame] for person in range(num_people)]
        raster = render_meshes(meshes, body.faces, colors, focal, principal, height, width, background)
        path = frames_dir / f"{frame:06d}.jpg"
        save_jpeg(path, raster.image, jpeg_quality)
        frame_paths.append(path)
        visible = raster.visible_pixels()
        people, boxes, ids, vis, kps, areas = [], [], [], [], [], []
        for person in range(num_people):
            if raster.coverage[person] == 0:
                continue
            projected = project_points(meshes[person], focal, principal)
            x1, y1 = np.clip(projected[:, :2].min(0), 0, [width, height])
            x2, y2 = np.clip(projected[:, :2].max(0), 0, [width, height])
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            joints_2d = project_points(joints[person, frame] + translation[person, frame], focal, principal)[:, :2]
            keypoints = np.zeros((17, 3))
            for slot, joint in enumerate(POSETRACK_FROM_JOINTS):
                if joint < 0:
                    continue
                x, y = joints_2d[joint]
                if 0 <= x < width and 0 <= y < height and raster.mask[int(y), int(x)] in (person, -1):
                    keypoints[slot] = (x, y, 1.0)
            visibility = float(visible[person] / raster.coverage[person])
            boxes.append([x1, y1, x2, y2])
            ids.append(person)
            vis.append(visibility)
            kps.append(keypoints)
            areas.append(int(visible[person]))
            rows.append([frame + 1, person + 1, x1, y1, x2 - x1, y2 - y1, 1, 1, visibility])
            people.append(
                PoseTrackPerson(
                    track_id=person, box_xywh=np.array([x1, y1, x2 - x1, y2 - y1]), keypoints=keypoints,
                    person_id=person, head_box_xywh=_head_box(joints_2d),
                )
            )
            cam_t = translation[person, frame] * np.array([1.0, 1.0, depth_scale])
            smpl_rows["global_orient"].append(orient[person * num_frames + frame][None])
            smpl_rows["body_pose"].append(body_pose[person * num_frames + frame])
            smpl_rows["betas"].append(walkers[person].betas)
            smpl_rows["cam_t"].append(cam_t)
            smpl_rows["translation"].append(translation[person, frame])
            smpl_rows["pose"].append(
                np.concatenate([orient[person * num_frames + frame].reshape(9), body_pose[person * num_frames + frame].reshape(-1), walkers[person].betas, cam_t[:2], cam_t[2:] / 200.0])
            )
        boxes_all.append(np.asarray(boxes, np.float64).reshape(-1, 4))
        ids_all.append(np.asarray(ids, np.int64))
        visibility_all.append(np.asarray(vis, np.float64))
        keypoints_all.append(np.asarray(kps, np.float64).reshape(-1, 17, 3))
        area_all.append(np.asarray(areas, np.int64))
        masks_all.append(raster.mask.astype(np.int16))
        posetrack_frames.append(
            PoseTrackFrame(image_id=0, file_name=f"frames/{frame:06d}.jpg", frame_index=frame, is_labeled=True, people=people)
        )

    video_path = None
    if write_video:
        video_path = out_dir / "video.mp4"
        with atomic_output(video_path) as temporary:
            writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not writer.isOpened():
                raise OSError(f"OpenCV could not open a mp4v writer for {temporary}")
            for path in frame_paths:
                writer.write(cv2.imread(str(path)))
            writer.release()

    mot_path = write_mot(out_dir / "gt" / "gt.txt", np.asarray(rows, np.float64).reshape(-1, 9))
    posetrack_path = write_posetrack(out_dir / "posetrack.json", PoseTrackVideo(None, sequence_name, posetrack_frames, []))
    from phalp_lightning.datamodules.formats.phalp_results import GivenBoxes, write_given_boxes

    given_path = write_given_boxes(
        out_dir / "gt_boxes.pkl",
        {path.name: GivenBoxes(np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1), ids + 1, [0] * len(ids))
         for path, b, ids in zip(frame_paths, boxes_all, ids_all, strict=True)},
    )
    truth_path = out_dir / "ground_truth.npz"
    arrays = {key: np.asarray(value, np.float64) for key, value in smpl_rows.items()}
    arrays["mot_rows"] = np.asarray(rows, np.float64).reshape(-1, 9)
    arrays["focal_length"] = np.array(focal)
    arrays["image_size"] = np.array([height, width])
    with atomic_output(truth_path) as temporary:
        np.savez(temporary, **arrays)
    return SyntheticVideo(
        out_dir=out_dir, video_path=video_path, frames_dir=frames_dir, frame_paths=frame_paths,
        mot_gt_path=mot_path, posetrack_json_path=posetrack_path, ground_truth_path=truth_path, given_boxes_path=given_path,
        boxes=boxes_all, track_ids=ids_all, visibility=visibility_all, keypoints=keypoints_all,
        masks_area=area_all, masks=masks_all, height=height, width=width, fps=fps, focal_length=focal, num_people=num_people,
    )
