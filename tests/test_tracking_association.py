"""EQ_019 cost, texture distance, UV blending and the thresholded assignment."""

from __future__ import annotations

import math

import pytest
import torch
from phalp_lightning.datamodules.synthetic.scenes import StandInAppearanceEncoder

from phalp_lightning.tracking.association import (
    TrackFeatures,
    appearance_code_distance,
    cpython_set_order_difference,
    eq019_cost,
    ground_truth_assignment,
    hungarian_assignment,
    pose_location_depth_cost,
    texture_distance,
)
from phalp_lightning.tracking.track import blend_uv


def _location(x: float, y: float, depth: float, unc_x: float, unc_y: float, unc_depth: float) -> torch.Tensor:
    location = torch.zeros(99)
    location[88], location[89] = x, y
    location[90:93] = torch.tensor([0.0, 0.0, depth])
    location[93:96] = torch.tensor([unc_x, unc_y, unc_depth])
    location[96:99] = torch.tensor([1.0, 1.0, 0.0])
    return location


def _hand_example() -> tuple[TrackFeatures, torch.Tensor, torch.Tensor, torch.Tensor]:
    track_location = _location(0.5, 0.5, 40.0, 0.03, 0.04, 2.0)  # c_xy = 0.05, c_N = ln 2
    detection_location = _location(0.52, 0.5, 50.0, 0.0, 0.0, 1.0)  # d_L = 0.02, d_N = ln(50/40)
    detection_pose = torch.zeros(1, 229)
    detection_pose[0, 0] = 0.5  # d_P = 0.25
    detection_pose[0, 228] = 7.0  # camera entries are not part of the pose distance
    detection_appearance = torch.zeros(1, 4096)
    detection_appearance[0, 0] = 1000.0  # r_T = (1000 / 1000)^2 = 1
    tracks = TrackFeatures(
        pose=torch.zeros(1, 229), location=track_location[None], appearance=torch.zeros(1, 4096), uv=None
    )
    return tracks, detection_pose, detection_location[None], detection_appearance


def test_eq019_cost_matches_hand_computed_value():
    tracks, pose, location, appearance = _hand_example()
    cost = eq019_cost(tracks, pose, location, appearance, None, None)
    # texture 1 + 4.0536 * 1 = 5.0536; pose 1 + 1.307 * 0.25 = 1.32675;
    # location exp(0.02 / (0.1 + tanh 0.05) / 0.3792) = 1.4215034;
    # depth exp(ln 1.25 / (0.1 + tanh ln 2 = 0.6) / 4.1658) = 1.0795262; product 10.288950.
    assert cost.shape == (1, 1)
    assert cost.dtype == torch.float64
    assert cost.item() == pytest.approx(10.288950, rel=1e-5)
    motion = pose_location_depth_cost(tracks.pose, tracks.location, pose, location)
    assert motion.item() == pytest.approx(1.32675 * 1.4215034 * 1.0795262, rel=1e-5)


def test_pose_distance_is_clipped_at_1_5():
    tracks, pose, location, appearance = _hand_example()
    pose[0, 0] = 2.0  # d_P = 4 -> clipped to 1.5 -> factor 1 + 1.307 * 1.5 = 2.9605
    cost = eq019_cost(tracks, pose, location, appearance, None, None)
    assert cost.item() == pytest.approx(5.0536 * 2.9605 * 1.4215034 * 1.0795262, rel=1e-5)


def test_nan_cost_becomes_zero_like_nan_to_num():
    tracks, pose, location, appearance = _hand_example()
    location[0, 92] = -1.0  # negative depth: log of a negative ratio is NaN
    assert eq019_cost(tracks, pose, location, appearance, None, None).item() == 0.0
    assert math.isinf(
        eq019_cost(tracks, pose, location, appearance, None, None, nan_cost=float("inf")).item()
    )


class _TinyConvEncoder(torch.nn.Module):
    """A non-linear encoder (conv + ReLU), so batched and per-pair encoding must really agree."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(4, 16, 3, padding=1)

    def forward(self, uv: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(uv)), 16).flatten(1) * 1000


def _random_uv(count: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.rand(count, 3, size, size, generator=generator) / 5
    mask = torch.rand(count, 1, size, size, generator=generator) > 0.4
    return torch.cat([rgb * mask, torch.where(mask, 1.0, -1.0)], dim=1)


@pytest.mark.parametrize(
    "encoder", [StandInAppearanceEncoder(), _TinyConvEncoder()], ids=["stand_in", "conv"]
)
def test_texture_distance_batched_equals_per_pair_loop(encoder):
    track_uv, detection_uv = _random_uv(3, 32, 0), _random_uv(4, 32, 1)
    pairs = torch.cartesian_prod(torch.arange(3), torch.arange(4))
    batched = texture_distance(track_uv, detection_uv, pairs, encoder, pairs_per_batch=5)
    looped = []
    for track_index, detection_index in pairs.tolist():
        visible = (track_uv[track_index, 3] > 0.5) & (detection_uv[detection_index, 3] > 0.5)
        track_code = encoder((track_uv[track_index] * visible)[None]).double() / 1000
        detection_code = encoder((detection_uv[detection_index] * visible)[None]).double() / 1000
        looped.append(100 * ((track_code - detection_code) ** 2).sum())
    torch.testing.assert_close(batched, torch.stack(looped), rtol=1e-5, atol=1e-9)
    assert batched.min() > 0  # different random maps


def test_texture_gating_leaves_the_thresholded_matrix_unchanged():
    generator = torch.Generator().manual_seed(3)
    tracks = TrackFeatures(
        pose=torch.rand(5, 229, generator=generator) * 0.1,
        location=torch.stack([_location(0.1 * k, 0.5, 30.0, 0.01, 0.01, 1.5) for k in range(5)]),
        appearance=torch.zeros(5, 4096),
        uv=_random_uv(5, 16, 4),
    )
    detection_location = torch.stack([_location(0.1 * k + 0.01, 0.5, 31.0, 0, 0, 1) for k in (0, 2, 4, 9)])
    # Detections 0-2 show the textures of tracks 0, 2, 4; detection 3 is far away.
    detection_uv = torch.cat([tracks.uv[[0, 2, 4]], _random_uv(1, 16, 5)])
    args = (
        torch.rand(4, 229, generator=generator) * 0.1,
        detection_location,
        torch.zeros(4, 4096),
        detection_uv,
    )
    encoder = StandInAppearanceEncoder()
    full = eq019_cost(tracks, *args, encoder)
    gated = eq019_cost(tracks, *args, encoder, gate_threshold=100.0)
    assert (full > 100).any() and (full <= 100).any()
    clip = lambda cost: torch.where(cost > 100, torch.full_like(cost, 100 + 1e-5), cost)  # noqa: E731
    torch.testing.assert_close(clip(gated), clip(full))


def test_appearance_code_distance_hand_value():
    a = torch.zeros(1, 4096)
    b = torch.zeros(2, 4096)
    b[0, :2] = torch.tensor([3000.0, 4000.0])  # (3^2 + 4^2) = 25
    assert appearance_code_distance(a, b).tolist() == [[25.0, 0.0]]


def test_hungarian_threshold_and_detection_order():
    cost = torch.tensor(
        [
            [1.0, 500.0, 500.0, 500.0],
            [500.0, 500.0, 500.0, 500.0],  # its assigned pair is rejected
            [500.0, 500.0, 2.0, 500.0],
        ],
        dtype=torch.float64,
    )
    result = hungarian_assignment(cost, threshold=100.0)
    assert result.matches == [(0, 0), (2, 2)]
    assert result.unmatched_tracks == [1]
    # Unassigned columns ascending first, then the column of the rejected assigned pair.
    rejected_column = [c for c in (1, 3) if c not in result.unmatched_detections[:1]][0]
    assert result.unmatched_detections[0] in (1, 3)
    assert result.unmatched_detections == [result.unmatched_detections[0], rejected_column]
    assert sorted(result.unmatched_detections) == [1, 3]


def test_hungarian_rejected_pair_detection_comes_after_unassigned():
    cost = torch.tensor([[150.0, 200.0, 300.0]], dtype=torch.float64)
    result = hungarian_assignment(cost, threshold=100.0)
    # All entries clip to 100 + 1e-5; SciPy assigns column 0, which is rejected and goes last.
    assert result.matches == []
    assert result.unmatched_detections == [1, 2, 0]
    assert result.unmatched_tracks == [0]


def test_hungarian_empty_inputs():
    assert hungarian_assignment(torch.zeros(0, 3), 100.0).unmatched_detections == [0, 1, 2]
    result = hungarian_assignment(torch.zeros(2, 0), 100.0)
    assert result.unmatched_tracks == [0, 1] and result.matches == []


def test_cpython_set_order_matches_the_spec_example():
    matched = [k for k in range(13) if k not in (3, 9, 12)]
    assert cpython_set_order_difference(13, matched) == [9, 3, 12]
    cost = torch.full((13, 10), 500.0, dtype=torch.float64)
    for column, row in enumerate(matched):
        cost[row, column] = 1.0
    assert hungarian_assignment(cost, 100.0, set_order=True).unmatched_tracks == [9, 3, 12]
    assert hungarian_assignment(cost, 100.0, set_order=False).unmatched_tracks == [3, 9, 12]


def test_ground_truth_assignment_matches_equal_ids_once():
    result = ground_truth_assignment(torch.tensor([4, 7, 9]), torch.tensor([7, 7, 5, -1]))
    assert result.matches == [(1, 0)]
    assert result.unmatched_tracks == [0, 2]
    assert result.unmatched_detections == [1, 2, 3]


def test_blend_uv_hand_values_and_batch_equals_loop():
    previous = torch.tensor(
        [[0.2, 0.4, 0.0, 0.0], [0.2, 0.4, 0.0, 0.0], [0.2, 0.4, 0.0, 0.0], [1, 1, -1, -1]]
    ).view(1, 4, 2, 2)
    new = torch.tensor(
        [[1.0, 0.0, 0.6, 0.0], [1.0, 0.0, 0.6, 0.0], [1.0, 0.0, 0.6, 0.0], [1, -1, 1, -1]]
    ).view(1, 4, 2, 2)
    blended = blend_uv(previous.double(), new, torch.tensor([0.1 * 0.5**2]))  # a = 0.025
    # both visible: 0.975 * 0.2 + 0.025 * 1.0 = 0.22; old only: 0.4; new only: 0.6; neither: 0.
    torch.testing.assert_close(
        blended[0, 0].flatten(), torch.tensor([0.22, 0.4, 0.6, 0.0], dtype=torch.float64)
    )
    assert blended[0, 3].flatten().tolist() == [1.0, 1.0, 1.0, -1.0]
    assert blended.dtype == torch.float64

    many_previous, many_new = _random_uv(4, 8, 7), _random_uv(4, 8, 8)
    weights = torch.tensor([0.01, 0.05, 0.09, 0.1])
    batched = blend_uv(many_previous, many_new, weights)
    looped = torch.cat(
        [blend_uv(many_previous[k : k + 1], many_new[k : k + 1], weights[k : k + 1]) for k in range(4)]
    )
    torch.testing.assert_close(batched, looped)


def test_cost_matrix_equals_per_pair_costs():
    generator = torch.Generator().manual_seed(11)
    tracks = TrackFeatures(
        pose=torch.rand(3, 229, generator=generator),
        location=torch.stack(
            [_location(0.3 + 0.1 * k, 0.5, 30.0 + k, 0.02 * k, 0.01, 1.2 + k) for k in range(3)]
        ),
        appearance=torch.rand(3, 4096, generator=generator) * 100,
        uv=_random_uv(3, 16, 12),
    )
    detection_pose = torch.rand(4, 229, generator=generator)
    detection_location = torch.stack(
        [_location(0.32 + 0.05 * k, 0.48, 28.0 + 2 * k, 0, 0, 1) for k in range(4)]
    )
    detection_appearance = torch.rand(4, 4096, generator=generator) * 100
    detection_uv = _random_uv(4, 16, 13)
    encoder = StandInAppearanceEncoder(scale=10.0)
    for uv, enc in ((None, None), (detection_uv, encoder)):
        matrix = eq019_cost(tracks, detection_pose, detection_location, detection_appearance, uv, enc)
        for i in range(3):
            single = TrackFeatures(
                tracks.pose[i : i + 1],
                tracks.location[i : i + 1],
                tracks.appearance[i : i + 1],
                tracks.uv[i : i + 1],
            )
            for j in range(4):
                expected = eq019_cost(
                    single,
                    detection_pose[j : j + 1],
                    detection_location[j : j + 1],
                    detection_appearance[j : j + 1],
                    None if uv is None else uv[j : j + 1],
                    enc,
                )
                assert matrix[i, j].item() == pytest.approx(expected.item(), rel=1e-5)
