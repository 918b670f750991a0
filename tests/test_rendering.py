"""Mesh and 2-D overlays of tracks: the mesh lands where PHALP's camera puts it."""

from __future__ import annotations

import math

import numpy as np
import torch

from phalp_lightning.structures import FrameDetections, FrameTracks
from phalp_lightning.utils.geometry import axis_angle_to_rotmat
from phalp_lightning.utils.vectors import location_vector, pose_vector


def one_person(height: int, width: int, cam_t: tuple[float, float, float]) -> FrameTracks:
    upright = axis_angle_to_rotmat(torch.tensor([[math.pi, 0.0, 0.0]]))[:, None]  # (1, 1, 3, 3)
    cam = torch.tensor([cam_t])
    pose = pose_vector(upright, torch.eye(3).expand(1, 23, 3, 3), torch.zeros(1, 10), cam)
    joints = torch.full((1, 45, 2), 128.0)
    detections = FrameDetections(
        video="v", frame_index=0, frame_name="v/000001.jpg", image_size=(height, width),
        boxes=torch.tensor([[100.0, 40.0, 160.0, 220.0]]), scores=torch.ones(1), appearance=torch.zeros(1, 4096),
        pose=pose, location=location_vector(joints, cam),
    )
    return FrameTracks(video="v", frame_index=0, frame_name="v/000001.jpg", image_size=(height, width),
                       track_ids=torch.tensor([3]), time_since_update=torch.zeros(1, dtype=torch.long), detections=detections)


def test_cpu_mesh_is_drawn_around_the_camera_translation(assets_env):
    from phalp_lightning.rendering.mesh import RasterMeshRenderer, build_mesh_renderer

    renderer = build_mesh_renderer("cpu")
    assert isinstance(renderer, RasterMeshRenderer)
    # 256 x 192 (H x W) frame: padded square side 256, left offset 32. tx = 0.1 m at 50 m -> 10 px right.
    image = np.zeros((256, 192, 3), np.uint8)
    drawn = renderer.render(image, one_person(256, 192, (0.1, 0.0, 50.0)))
    changed = np.abs(drawn.astype(int) - image).sum(-1) > 0
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 500
    # The body centre projects to x = 128 + 5000 * 0.1 / 50 - 32 (left pad) = 106 in frame pixels.
    assert abs(np.median(xs) - 106) < 8
    assert 60 < ys.max() - ys.min() < 250  # a ~1.7 m mannequin at 50 m with f = 5000 is ~170 px tall


def test_overlay_draws_boxes_of_detected_tracks_only():
    from phalp_lightning.rendering.overlay import draw_tracks, track_colours

    tracks = one_person(256, 256, (0.0, 0.0, 50.0))
    image = np.zeros((256, 256, 3), np.uint8)
    drawn = draw_tracks(image, tracks)
    colour = track_colours(np.array([3]))[0]
    assert (drawn[130, 100] == colour).all()  # left edge of the box
    ghost = FrameTracks(**{**tracks.__dict__, "time_since_update": torch.ones(1, dtype=torch.long)})
    assert not (draw_tracks(image, ghost)[130, 100] == colour).all()
    assert (track_colours(np.array([3, 3, 4]))[0] == track_colours(np.array([3]))[0]).all()
