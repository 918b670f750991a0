"""Synthetic tracker inputs: detection streams of people moving in 3D, and a stand-in encoder.

Used by the tracker tests and ``experiments/tracker_benchmark``. Every person has a fixed pose
vector, appearance code and UV texture (plus per-frame noise), a constant-velocity trajectory in the
image (bouncing off the borders) and a depth; detections are emitted in descending score order.
The feature layouts are the real ones (:mod:`phalp_lightning.utils.vectors`), so the tracker's cost
behaves as on real data: location dominates, pose and texture separate nearby people.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from phalp_lightning.structures import FrameDetections
from phalp_lightning.utils.vectors import APPEARANCE_DIM, LOCATION_JOINT, NUM_LOCATION_JOINTS, POSE_DIM

_FOCAL_OVER_IMAGE = 256.0 / 5000.0


class StandInAppearanceEncoder:
    """A deterministic, cheap stand-in for HMAR's appearance encoder.

    Average-pools the 4-channel UV map to 32 x 32 (4 x 32 x 32 = 4096 values) and multiplies by
    ``scale`` so that distances between different textures have the magnitude of real codes. The real
    encoder is a 6-layer conv net run twice per track-detection pair, so real association costs more.
    """

    def __init__(self, scale: float = 100.0) -> None:
        self.scale = scale

    def __call__(self, uv: Tensor) -> Tensor:
        """(K, 4, S, S) -> (K, 4096)."""
        height, width = uv.shape[-2:]
        if height % 32 == 0 and width % 32 == 0:
            # Fixed-kernel pooling is faster on CPU than adaptive pooling.
            return F.avg_pool2d(uv.float(), (height // 32, width // 32)).flatten(1) * self.scale
        return F.adaptive_avg_pool2d(uv.float(), 32).flatten(1) * self.scale


@dataclass
class SyntheticPeople:
    """Per-person constants of a synthetic stream (P people)."""

    position: Tensor  # (P, 2) location point at frame 0, [0, 1] units of the padded frame
    velocity: Tensor  # (P, 2) per frame
    depth: Tensor  # (P,) camera t_z
    pose: Tensor  # (P, 229) pose vector (camera part overwritten per frame)
    appearance: Tensor  # (P, 4096)
    texture: Tensor  # (P, 3, S, S) UV RGB (already /5)
    visible: Tensor  # (P, S, S) bool: texels seen from the camera
    joint_offsets: Tensor  # (P, 45, 2) joint offsets around the location point at depth 30


def make_people(num_people: int, uv_size: int = 64, seed: int = 0, speed: float = 0.004) -> SyntheticPeople:
    """Random people for :func:`detection_stream`."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    coarse = uniform(-1.0, 1.0, num_people, 3, 4, 4)
    texture = F.interpolate(coarse, size=(uv_size, uv_size), mode="bilinear", align_corners=False) / 5.0
    rows = torch.arange(uv_size).view(-1, 1).expand(uv_size, uv_size)
    visible = (rows < uv_size * 3 // 4).unsqueeze(0).expand(num_people, -1, -1).clone()
    joint_offsets = uniform(-0.05, 0.05, num_people, NUM_LOCATION_JOINTS, 2)
    joint_offsets[:, LOCATION_JOINT] = 0.0
    return SyntheticPeople(
        position=torch.stack([uniform(0.1, 0.9, num_people), uniform(0.3, 0.7, num_people)], dim=1),
        velocity=uniform(-speed, speed, num_people, 2),
        depth=uniform(20.0, 60.0, num_people),
        pose=uniform(-0.5, 0.5, num_people, POSE_DIM),
        appearance=uniform(0.0, 20.0, num_people, APPEARANCE_DIM),
        texture=texture,
        visible=visible,
        joint_offsets=joint_offsets,
    )


def trajectories(people: SyntheticPeople, num_frames: int) -> Tensor:
    """(F, P, 2) location points, bouncing off the [0.05, 0.95] box."""
    steps = torch.arange(num_frames, dtype=torch.float32).view(-1, 1, 1)
    raw = people.position.unsqueeze(0) + steps * people.velocity.unsqueeze(0)
    # Reflect into [low, high] (a triangle wave), so people stay in view.
    low, high = 0.05, 0.95
    span = high - low
    folded = torch.remainder(raw - low, 2 * span)
    return low + torch.where(folded > span, 2 * span - folded, folded)


def frame_detections(
    people: SyntheticPeople,
    points: Tensor,
    present: Tensor,
    frame_index: int,
    generator: torch.Generator,
    noise: float = 0.002,
    image_size: tuple[int, int] = (720, 1280),
    with_uv: bool = True,
    video: str = "synthetic",
) -> FrameDetections:
    """One frame's detections of the people in ``present``.

    Args:
        people: the people.
        points: (P, 2) this frame's location points.
        present: (P,) bool, who is detected.
        frame_index: the frame's index.
        generator: noise source.
        noise: std of the location noise (normalised units); pose/appearance/texture noise scale with it.
        image_size: (H, W).
        with_uv: include UV maps.
    """
    index = present.nonzero().flatten()
    count = int(index.numel())
    scores = 0.85 + 0.15 * torch.rand(count, generator=generator)
    order = torch.argsort(scores, descending=True)
    index, scores = index[order], scores[order]

    def jitter(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator)

    point = points[index] + noise * jitter(count, 2)
    depth = people.depth[index] * (1.0 + noise * jitter(count))
    camera = torch.stack(
        [
            (point[:, 0] - 0.5) * depth * _FOCAL_OVER_IMAGE,
            (point[:, 1] - 0.5) * depth * _FOCAL_OVER_IMAGE,
            depth,
        ],
        dim=1,
    )
    joints = point.unsqueeze(1) + people.joint_offsets[index] * (30.0 / depth).view(-1, 1, 1)
    location = torch.cat([joints.reshape(count, 2 * NUM_LOCATION_JOINTS), camera, camera, camera], dim=1)
    pose = people.pose[index] + 5 * noise * jitter(count, POSE_DIM)
    pose[:, 226:229] = torch.stack([camera[:, 0], camera[:, 1], camera[:, 2] / 200.0], dim=1)
    appearance = people.appearance[index] + 50 * noise * jitter(count, APPEARANCE_DIM)
    height, width = image_size
    side = max(height, width)
    centre = point * side - torch.tensor([(side - width) / 2, (side - height) / 2])
    half_width = 0.05 * side * 30.0 / depth
    boxes = torch.stack(
        [
            centre[:, 0] - half_width,
            centre[:, 1] - 2 * half_width,
            centre[:, 0] + half_width,
            centre[:, 1] + 2 * half_width,
        ],
        1,
    )
    uv = None
    if with_uv:
        uv_size = people.texture.shape[-1]
        rgb = people.texture[index] + 5 * noise * jitter(count, 3, uv_size, uv_size)
        mask = people.visible[index].unsqueeze(1)
        uv = torch.cat([torch.where(mask, rgb, torch.zeros_like(rgb)), torch.where(mask, 1.0, -1.0)], dim=1)
    return FrameDetections(
        video=video,
        frame_index=frame_index,
        frame_name=f"{frame_index:06d}.jpg",
        image_size=image_size,
        boxes=boxes,
        scores=scores,
        appearance=appearance,
        pose=pose,
        location=location,
        uv=uv,
        center=centre,
        scale=4 * half_width / side,
        gt_track_ids=index.to(torch.int64) + 1,
    )


def detection_stream(
    num_people: int,
    num_frames: int,
    seed: int = 0,
    uv_size: int = 64,
    miss_probability: float = 0.05,
    with_uv: bool = True,
    noise: float = 0.002,
) -> Iterator[FrameDetections]:
    """Frames of a synthetic video; ``gt_track_ids`` holds the true person id (1..P) of each row.

    Args:
        num_people: P.
        num_frames: frames to yield.
        seed: makes the stream reproducible.
        uv_size: S of the UV maps.
        miss_probability: chance that a person is not detected in a frame.
        with_uv: include UV maps.
        noise: observation noise scale.
    """
    people = make_people(num_people, uv_size=uv_size, seed=seed)
    points = trajectories(people, num_frames)
    generator = torch.Generator().manual_seed(seed + 1)
    for frame_index in range(num_frames):
        present = torch.rand(num_people, generator=generator) >= miss_probability
        yield frame_detections(
            people, points[frame_index], present, frame_index, generator, noise=noise, with_uv=with_uv
        )


@dataclass
class StreetScene:
    """A street-like synthetic video: frames of detections plus the ground truth behind them."""

    frames: list[FrameDetections]
    gt_rows: Tensor  # (N, 6) frame (0-based), person id (1..P), x, y, w, h of every visible person


def street_scene(
    num_people: int = 10,
    num_frames: int = 60,
    seed: int = 0,
    image_size: tuple[int, int] = (480, 640),
    camera_height: float = 3.0,
    focal: float = 500.0,
    horizon: float = 140.0,
    drop_rate: float = 0.1,
    jitter: float = 0.03,
    false_positives: int = 3,
    occlusion_drop: float = 0.6,
    trained_cues: bool = False,
) -> StreetScene:
    """People of similar build walking across a street seen from a raised camera, as real footage shows them.

    What separated trackers on real street video, reproduced: people 1.65-1.85 m tall (so boxes at
    the same depth look alike), walking sideways in both directions at 2-14 m so that they cross
    and pass in front of each other, a camera ``camera_height`` metres up (people further away are
    smaller and higher in the image), detections dropped when a nearer person hides more than
    ``occlusion_drop`` of a box, a random ``drop_rate`` of misses, centre/size jitter of ``jitter``
    times the box size, and ``false_positives`` person-sized boxes at random places. With
    ``trained_cues=False`` the 3D features are what an untrained HMAR gives: every detection has the
    same pose and appearance code, the location point is the box centre and the depth follows the
    box size; with True each person has a distinct pose and appearance code.

    Returns:
        The frames (score 1, ``gt_track_ids`` = person id, -1 for false positives) and the ground truth.
    """
    generator = torch.Generator().manual_seed(seed)
    height, width = image_size

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    distance = uniform(5.0, 14.0, num_people)
    stature = uniform(1.65, 1.85, num_people)
    direction = torch.where(torch.rand(num_people, generator=generator) < 0.5, -1.0, 1.0).double()
    speed = uniform(1.0, 1.6, num_people) / 25.0  # metres per frame at 25 fps
    # Lateral positions (metres) chosen so that everybody is in view for part of the video.
    half_view = width / 2 / focal * distance
    start = uniform(-1.0, 1.0, num_people) * half_view * 0.9
    times = torch.arange(num_frames, dtype=torch.float64)
    lateral = start[None, :] + direction[None, :] * speed[None, :] * times[:, None]  # (F, P)
    box_height = focal * stature / distance  # (P,)
    box_width = 0.38 * box_height
    foot = horizon + focal * camera_height / distance
    cx = width / 2 + focal * lateral / distance[None, :]
    boxes = torch.stack(
        [cx - box_width / 2, (foot - box_height).expand_as(cx), cx + box_width / 2, foot.expand_as(cx)], dim=-1
    )  # (F, P, 4)
    inside = (boxes[..., 0] >= 0) & (boxes[..., 2] <= width)

    # Occlusion: the share of each box covered by nearer people's boxes (pairwise overlap, capped at 1).
    nearer = distance[None, :] < distance[:, None]  # [p, q]: q is nearer than p
    top_left = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    bottom_right = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    overlap = (bottom_right - top_left).clamp_min(0).prod(-1)  # (F, P, P)
    area = (boxes[..., 2:] - boxes[..., :2]).prod(-1)
    visible_in_view = inside[:, None, :] & nearer[None]
    hidden = ((overlap * visible_in_view).sum(-1) / area).clamp_max(1.0)

    pose = uniform(-0.5, 0.5, num_people, POSE_DIM).float()
    appearance = uniform(0.0, 20.0, num_people, APPEARANCE_DIM).float()
    gt_rows, frames = [], []
    for t in range(num_frames):
        in_view = inside[t]
        gt = in_view.nonzero().flatten()
        gt_box = boxes[t, gt]
        gt_rows.append(torch.cat([torch.full((len(gt), 1), t, dtype=torch.float64), (gt + 1)[:, None].double(),
                                  gt_box[:, :2], gt_box[:, 2:] - gt_box[:, :2]], dim=1))
        detected = in_view & (hidden[t] <= occlusion_drop) & (torch.rand(num_people, generator=generator) >= drop_rate)
        index = detected.nonzero().flatten()
        box = boxes[t, index].clone()
        size = box[:, 2:] - box[:, :2]
        centre = box[:, :2] + size / 2 + jitter * size * torch.randn(len(index), 2, generator=generator, dtype=torch.float64)
        size = size * (1 + jitter * torch.randn(len(index), 2, generator=generator, dtype=torch.float64))
        box = torch.cat([centre - size / 2, centre + size / 2], dim=1)
        ids = index + 1
        fp_count = int((torch.rand(1, generator=generator) < false_positives / num_frames).item())
        if fp_count:
            fp_h = uniform(40.0, 140.0, 1)
            fp_c = torch.stack([uniform(30.0, width - 30.0, 1), uniform(horizon, height - fp_h.item() / 2, 1)], 1)
            fp_box = torch.cat([fp_c - torch.stack([0.19 * fp_h, fp_h / 2], 1), fp_c + torch.stack([0.19 * fp_h, fp_h / 2], 1)], 1)
            box = torch.cat([box, fp_box])
            ids = torch.cat([ids, torch.tensor([-1])])
        frames.append(_box_detections(box.float(), ids, t, image_size, pose, appearance, trained_cues))
    return StreetScene(frames=frames, gt_rows=torch.cat(gt_rows))


def _box_detections(
    boxes: Tensor, ids: Tensor, t: int, image_size: tuple[int, int], pose: Tensor, appearance: Tensor, trained_cues: bool
) -> FrameDetections:
    """FrameDetections for boxes: features from the box (untrained HMAR) or per person (trained)."""
    count = boxes.shape[0]
    height, width = image_size
    side = max(height, width)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    point = (centre + torch.tensor([(side - width) / 2, (side - height) / 2])) / side
    depth = 2 * 5000.0 / (256.0 * (boxes[:, 3] - boxes[:, 1]).clamp_min(1.0) / side)
    camera = torch.stack([(point[:, 0] - 0.5) * depth * _FOCAL_OVER_IMAGE, (point[:, 1] - 0.5) * depth * _FOCAL_OVER_IMAGE, depth], 1)
    joints = point[:, None, :].expand(count, NUM_LOCATION_JOINTS, 2).reshape(count, 2 * NUM_LOCATION_JOINTS)
    location = torch.cat([joints, camera, camera, camera], dim=1)
    person = (ids - 1).clamp_min(0)
    if trained_cues:
        pose_rows = pose[person].clone()
        appearance_rows = appearance[person].clone()
        fake = ids < 0
        pose_rows[fake] = 0.0
        appearance_rows[fake] = 0.0
    else:
        pose_rows = torch.zeros(count, POSE_DIM)
        appearance_rows = torch.full((count, APPEARANCE_DIM), 5.0)
    pose_rows[:, 226:229] = torch.stack([camera[:, 0], camera[:, 1], camera[:, 2] / 200.0], dim=1)
    return FrameDetections(
        video="street",
        frame_index=t,
        frame_name=f"{t:06d}.jpg",
        image_size=image_size,
        boxes=boxes,
        scores=torch.ones(count),
        appearance=appearance_rows,
        pose=pose_rows,
        location=location,
        gt_track_ids=ids.to(torch.int64),
    )
