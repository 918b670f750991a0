"""Synthetic tracklet shards for the pose transformer: people walking with smooth, learnable motion.

Each track has its own gait (frequency, phase, stride and arm-swing amplitudes), body shape, walking
speed, heading that turns slowly, and start position; the root moves along the heading and the
feet stay on the ground. Poses and locations use the exact layouts of ``utils.vectors`` with
PHALP's virtual camera (focal 5000 on the 256 px padded frame) for a real camera of focal
``max(H, W)`` at the frame centre. A few steps per track are marked unobserved (``valid = False``,
values zeroed), like missed detections. The next frame is predictable from the history (periodic
gait, smooth root), so a model can beat the constant-pose baseline.

With ``motions`` each track does one of several labelled motions (walk, run, stand, turn, wave),
and the shards carry per-step one-hot ``actions``: the labels the pose transformer's action head is
trained and scored on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from phalp_lightning.datamodules.synthetic.people import (
    BodyModelHandle,
    Gait,
    global_orientation,
    rot_y,
    rot_z,
    walking_body_pose,
)

CAMERA_HEIGHT_M = 1.2
MOTIONS = ("walk", "run", "stand", "turn", "wave")
_R_SHOULDER, _R_ELBOW = 16, 18  # body_pose indices (SMPL joint - 1)


def motion_track(
    rng: np.random.Generator, motion: str, frames: np.ndarray, fps: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """One track of a labelled motion: body pose (T, 23, 3, 3), heading (T,) radians, speed (m/frame).

    walk: a natural gait and a slowly drifting heading; run: a faster, larger gait at 2.5-3.5 m/s;
    stand: nearly still, a slow sway; turn: a slow gait while the heading turns at 1.5-3 rad/s;
    wave: standing, the right arm raised, its forearm waving at 1.5-2.5 Hz.
    """
    heading = rng.uniform(-np.pi, np.pi) + rng.normal(0.0, 0.004) * frames
    if motion == "walk":
        return walking_body_pose(Gait.sample(rng, fps), frames), heading, rng.uniform(1.0, 1.6) / fps
    if motion == "run":
        gait = Gait(
            frequency=float(rng.uniform(1.3, 1.6)) / fps, phase=float(rng.uniform(0.0, 2.0 * np.pi)),
            hip_swing=float(rng.uniform(0.6, 0.8)), knee_bend=float(rng.uniform(1.1, 1.5)),
            arm_swing=float(rng.uniform(0.6, 0.9)), arm_down=float(rng.uniform(1.1, 1.3)),
            elbow_bend=float(rng.uniform(1.0, 1.4)), torso_twist=float(rng.uniform(0.08, 0.15)),
        )  # fmt: skip
        return walking_body_pose(gait, frames), heading, rng.uniform(2.5, 3.5) / fps
    if motion == "turn":
        gait = Gait.sample(rng, fps)
        gait = Gait(**{**gait.__dict__, "frequency": float(rng.uniform(0.6, 0.8)) / fps})
        rate = rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 3.0) / fps
        return walking_body_pose(gait, frames), heading + rate * frames, rng.uniform(0.3, 0.7) / fps
    if motion in ("stand", "wave"):
        still = Gait(
            frequency=float(rng.uniform(0.1, 0.3)) / fps, phase=float(rng.uniform(0.0, 2.0 * np.pi)),
            hip_swing=0.02, knee_bend=0.0, arm_swing=0.03, arm_down=float(rng.uniform(1.2, 1.4)),
            elbow_bend=float(rng.uniform(0.1, 0.3)), torso_twist=float(rng.uniform(0.02, 0.05)),
        )  # fmt: skip
        pose = walking_body_pose(still, frames)
        if motion == "wave":
            frequency = rng.uniform(1.5, 2.5) / fps
            phase = rng.uniform(0.0, 2.0 * np.pi)
            wave = np.sin(2.0 * np.pi * frequency * frames + phase)
            pose[:, _R_SHOULDER] = rot_z(np.full(len(frames), -rng.uniform(0.6, 1.0)))
            pose[:, _R_ELBOW] = rot_y(rng.uniform(0.9, 1.3) + rng.uniform(0.4, 0.7) * wave)
        return pose, heading, 0.0
    raise ValueError(f"unknown motion {motion!r}; known: {MOTIONS}")


# SMPL body_pose indices (SMPL joint - 1) of the left/right pairs: hips, knees, ankles, feet,
# collars, shoulders, elbows, wrists, hands.
_LEFT_RIGHT = ((0, 1), (3, 4), (6, 7), (9, 10), (12, 13), (15, 16), (17, 18), (19, 20), (21, 22))
_MIRROR = np.diag([-1.0, 1.0, 1.0])  # reflection through the body's sagittal (y-z) plane


@dataclass(frozen=True)
class PoseNoise:
    """Per-frame errors of a single-frame 3D pose estimator at one level (docs/pose_transformer.md, Noise).

    Attributes:
        rotation_deg: std (degrees) of each axis-angle component of a random rotation applied to
            each of the 24 joint rotations, independently per frame.
        flip_prob: per-frame probability that the left and right limbs are swapped (mirrored).
        miss_prob: per-frame probability of a missed detection, on top of the tracks' dropout.
        betas_std: std of per-frame Gaussian noise on the 10 betas.
    """

    rotation_deg: float
    flip_prob: float = 0.0
    miss_prob: float = 0.0
    betas_std: float = 0.0

    @classmethod
    def at_level(cls, rotation_deg: float) -> PoseNoise:
        """The level used for training and validation: flips, misses and shape jitter grow with it (assumed rates)."""
        if rotation_deg <= 0:
            return cls(0.0)
        return cls(rotation_deg, flip_prob=0.01, miss_prob=0.05, betas_std=0.05 * rotation_deg)


def corrupt_poses(rng: np.random.Generator, pose: np.ndarray, valid: np.ndarray, noise: PoseNoise) -> tuple[np.ndarray, np.ndarray]:
    """Add a single-frame estimator's errors to pose vectors (..., 229); returns (noisy pose, valid).

    Each joint rotation R becomes exp(n) R with n ~ N(0, rotation_deg^2) per axis-angle component;
    on flipped frames the left and right body joints swap and are mirrored (M R M); betas get
    Gaussian noise; missed frames are marked invalid and zeroed. The camera is left as it is.
    """
    import torch

    from phalp_lightning.utils.geometry import axis_angle_to_rotmat

    pose = np.array(pose, dtype=np.float64)
    lead = pose.shape[:-1]
    rotations = pose[..., :216].reshape(*lead, 24, 3, 3)
    if noise.flip_prob > 0:
        flipped = rng.uniform(size=lead) < noise.flip_prob
        body = rotations[..., 1:, :, :]
        left, right = (np.array(side) for side in zip(*_LEFT_RIGHT, strict=True))
        swapped = body.copy()
        swapped[..., left, :, :], swapped[..., right, :, :] = body[..., right, :, :], body[..., left, :, :]
        swapped = _MIRROR @ swapped @ _MIRROR
        body[flipped] = swapped[flipped]
    if noise.rotation_deg > 0:
        axis_angle = rng.normal(0.0, np.deg2rad(noise.rotation_deg), size=(*lead, 24, 3))
        jitter = axis_angle_to_rotmat(torch.from_numpy(axis_angle)).numpy()
        rotations = jitter @ rotations
    pose[..., :216] = rotations.reshape(*lead, 216)
    if noise.betas_std > 0:
        pose[..., 216:226] += rng.normal(0.0, noise.betas_std, size=(*lead, 10))
    valid = np.asarray(valid, bool)
    if noise.miss_prob > 0:
        valid = valid & (rng.uniform(size=lead) >= noise.miss_prob)
    return (pose * valid[..., None]).astype(np.float32), valid


def simulate_tracks(
    rng: np.random.Generator,
    num_tracks: int,
    track_length: int,
    body: BodyModelHandle,
    image_size: tuple[int, int] = (720, 1280),
    fps: float = 30.0,
    dropout: float = 0.05,
    motions: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Simulate walking tracks (or, with ``motions``, tracks of motions drawn uniformly from it).

    Returns:
        pose (K, T, 229), location (K, T, 99), valid (K, T) bool, all float32 except valid; with
        ``motions`` also ``motion`` (K,) int64, the index in ``motions`` of each track's motion.
    """
    import torch

    from phalp_lightning.utils.geometry import FOCAL_LENGTH, IMG_SIZE, project_to_padded_frame
    from phalp_lightning.utils.vectors import location_vector, pose_vector

    height, width = image_size
    focal = float(max(height, width))
    depth_scale = FOCAL_LENGTH * max(height, width) / (IMG_SIZE * focal)
    frames = np.arange(track_length, dtype=np.float64)
    poses, orients, betas_all, headings, speeds, labels = [], [], [], [], [], []
    for _ in range(num_tracks):
        if motions is None:  # the original walking-only stream (same draws, same data)
            gait = Gait.sample(rng, fps)
            heading = rng.uniform(-np.pi, np.pi) + rng.normal(0.0, 0.004) * frames
            poses.append(walking_body_pose(gait, frames))
        else:
            labels.append(int(rng.integers(len(motions))))
            body_pose, heading, speed = motion_track(rng, motions[labels[-1]], frames, fps)
            poses.append(body_pose)
            speeds.append(speed)
        orients.append(global_orientation(heading))
        betas_all.append(np.repeat(rng.normal(0.0, 0.5, (1, 10)), track_length, axis=0))
        headings.append(heading)
    body_pose = np.concatenate(poses)
    orient = np.concatenate(orients)
    betas = np.concatenate(betas_all)
    vertices, joints = body.pose(orient, body_pose, betas)
    lowest = vertices[..., 1].max(axis=1).reshape(num_tracks, track_length)
    joints = joints.reshape(num_tracks, track_length, -1, 3)

    translation = np.zeros((num_tracks, track_length, 3))
    for track in range(num_tracks):
        speed = rng.uniform(1.0, 1.6) / fps if motions is None else speeds[track]
        heading = headings[track]
        step = speed * np.stack([np.sin(heading), np.zeros_like(heading), -np.cos(heading)], axis=-1)
        depth = rng.uniform(5.0, 12.0)
        start = np.array([rng.uniform(-0.35, 0.35) * width / focal * depth, 0.0, depth])
        translation[track] = start + np.cumsum(step, axis=0) - step[0]
        # Keep the track in front of the camera even if it walks towards it.
        translation[track, :, 2] = np.maximum(translation[track, :, 2], 2.5)
    translation[..., 1] = CAMERA_HEIGHT_M - lowest

    cam_t = torch.tensor(translation * np.array([1.0, 1.0, depth_scale]), dtype=torch.float64).reshape(-1, 3)
    joints_45 = torch.cat([torch.tensor(joints, dtype=torch.float64).reshape(-1, joints.shape[2], 3), torch.zeros(len(cam_t), 1, 3, dtype=torch.float64)], dim=1)
    joints_2d = project_to_padded_frame(joints_45, cam_t)
    location = location_vector(joints_2d, cam_t).reshape(num_tracks, track_length, -1)
    pose = pose_vector(
        torch.tensor(orient, dtype=torch.float64).reshape(-1, 1, 3, 3),
        torch.tensor(body_pose, dtype=torch.float64),
        torch.tensor(betas, dtype=torch.float64),
        cam_t,
    ).reshape(num_tracks, track_length, -1)
    valid = rng.uniform(size=(num_tracks, track_length)) >= dropout
    pose = pose.numpy().astype(np.float32) * valid[..., None]
    location = location.numpy().astype(np.float32) * valid[..., None]
    out = {"pose": pose, "location": location, "valid": valid}
    if motions is not None:
        out["motion"] = np.asarray(labels, np.int64)
    return out


def write_synthetic_tracklets(
    out_dir: str | os.PathLike[str],
    num_train_tracks: int = 96,
    num_val_tracks: int = 24,
    track_length: int = 64,
    window: int = 32,
    shard_size: int = 128,
    seed: int = 0,
    image_size: tuple[int, int] = (720, 1280),
    fps: float = 30.0,
    dropout: float = 0.05,
    assets_root: str | os.PathLike[str] | None = None,
    body_model: BodyModelHandle | None = None,
    dataset: str = "synthetic",
    motions: tuple[str, ...] | None = None,
    noise_deg: tuple[float, ...] = (),
) -> dict[str, dict]:
    """Write ``train-*.tar`` / ``val-*.tar`` tracklet shards (windows of ``window`` frames) + manifest.

    Training windows overlap by half a window; validation windows do not overlap. With ``motions``
    (names from :data:`MOTIONS`) every sample also has ``actions`` (T, len(motions)) one-hot, and
    the manifest entries list ``action_names``. With ``noise_deg`` every track gets one level drawn
    uniformly from it, and its poses the errors of :meth:`PoseNoise.at_level` (the shards then hold
    noisy poses only, as real tracklets would).

    Returns:
        split -> {"shards", "pattern", "num_samples", "window"}.
    """
    from phalp_lightning.datamodules.shard_writing import (
        ShardWriter,
        encode_tracklet_sample,
        sample_key,
        write_manifest,
    )

    if window > track_length:
        raise ValueError(f"window ({window}) must not exceed track_length ({track_length})")
    unknown = sorted(set(motions or ()) - set(MOTIONS))
    if unknown:
        raise ValueError(f"unknown motions {unknown}; known: {list(MOTIONS)}")
    out_dir = Path(out_dir)
    body = body_model or BodyModelHandle(assets_root)
    entries = {}
    for split, count, stream, stride in (("train", num_train_tracks, 0, max(1, window // 2)), ("val", num_val_tracks, 1, window)):
        rng = np.random.default_rng([seed, stream])
        with ShardWriter(out_dir / split, max_count=shard_size) as writer:
            for first in range(0, count, 32):
                tracks = simulate_tracks(rng, min(32, count - first), track_length, body, image_size, fps, dropout, motions)
                if noise_deg:
                    levels = rng.choice(np.asarray(noise_deg, float), size=len(tracks["pose"]))
                    for index, level in enumerate(levels):
                        tracks["pose"][index], tracks["valid"][index] = corrupt_poses(
                            rng, tracks["pose"][index], tracks["valid"][index], PoseNoise.at_level(float(level))
                        )
                for offset in range(len(tracks["pose"])):
                    track_id = first + offset
                    actions = None
                    if motions is not None:
                        actions = np.zeros((window, len(motions)), np.uint8)
                        actions[:, tracks["motion"][offset]] = 1
                    for start in range(0, track_length - window + 1, stride):
                        part = slice(start, start + window)
                        writer.write(
                            encode_tracklet_sample(
                                sample_key(dataset, split, track_id, f"{start:06d}"),
                                pose=tracks["pose"][offset, part], location=tracks["location"][offset, part],
                                time=np.arange(start, start + window), valid=tracks["valid"][offset, part], actions=actions,
                                meta={"dataset": dataset, "sequence": split, "track_id": track_id, "start_frame": start},
                            )
                        )
        entries[split] = {"shards": [str(p) for p in writer.shards], "pattern": writer.brace_pattern(),
                          "num_samples": writer.count, "window": window}
        if motions is not None:
            entries[split]["action_names"] = list(motions)
        if noise_deg:
            entries[split]["noise_deg"] = [float(level) for level in noise_deg]
    write_manifest(out_dir, entries)
    return entries
