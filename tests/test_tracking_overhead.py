"""The tracker's cheap per-frame paths give exactly what the general ones give (synthetic data only).

The per-frame bookkeeping avoids tiny torch operations: NumPy for the gates and the staged
assignment, index_select/index_copy_ for rows, a direct read of the newest pose for the constant
pose predictor, cached Kalman transitions, records that point into whole frames. Each test
compares such a path with the general formula or path, bit for bit.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from phalp_lightning.datamodules.synthetic.scenes import (
    StandInAppearanceEncoder,
    detection_stream,
    street_scene,
)

from phalp_lightning.structures import ROW_FIELDS
from phalp_lightning.tracking.association import gated_assignment, hungarian_assignment
from phalp_lightning.tracking.motion import BoxKalmanFilter
from phalp_lightning.tracking.phalp_tracker import PHALPTracker
from phalp_lightning.tracking.predictors import ConstantPosePredictor, RidgeLocationPredictor
from phalp_lightning.tracking.rule_eq019 import EQ019Rule
from phalp_lightning.tracking.rule_gated import GatedRule

BASELINE = Path(__file__).resolve().parents[1] / "experiments" / "tracker_benchmark" / "baseline_tracker.py"


def _random_boxes(count: int, generator: torch.Generator) -> torch.Tensor:
    corner = 100 * torch.rand(count, 2, generator=generator, dtype=torch.float64)
    size = 40 * torch.rand(count, 2, generator=generator, dtype=torch.float64) - 5  # some inverted
    boxes = torch.cat([corner, corner + size], dim=1)
    boxes[0] = boxes[1]  # identical boxes
    boxes[2, 2] = boxes[2, 0]  # zero width
    return boxes


def test_gated_assignment_takes_arrays_or_tensors_alike():
    generator = torch.Generator().manual_seed(1)
    cost = 150 * torch.rand(7, 6, generator=generator, dtype=torch.float64)
    cost[cost > 120] = float("inf")
    cost[0, 0] = float("nan")
    tracks = torch.rand(7, generator=generator) > 0.4
    detections = torch.rand(6, generator=generator) > 0.3
    stages = [(tracks, detections), (~tracks, detections), (torch.ones(7, dtype=torch.bool), ~detections)]
    from_tensors = gated_assignment(cost, 100.0, stages, may_start_track=detections)
    from_arrays = gated_assignment(
        cost.numpy(), 100.0, [(t.numpy(), d.numpy()) for t, d in stages], may_start_track=detections.numpy()
    )
    assert from_tensors == from_arrays
    assert from_tensors.matches and all(cost[t, d] <= 100.0 for t, d in from_tensors.matches)
    assert all(isinstance(i, int) for pair in from_tensors.matches for i in pair)


def test_hungarian_lists_follow_the_original_orders():
    # 3 tracks x 4 detections: track 2 -> detection 3 is assigned but above the threshold.
    cost = torch.tensor(
        [[1.0, 50.0, 90.0, 99.0], [60.0, 2.0, 90.0, 99.0], [200.0, 200.0, 200.0, 150.0]], dtype=torch.float64
    )
    result = hungarian_assignment(cost, 100.0)
    assert result.matches == [(0, 0), (1, 1)]
    assert result.unmatched_tracks == [2]
    assigned_above = [c for r, c in zip(*_solver(cost, 100.0), strict=True) if r == 2]
    assert result.unmatched_detections == sorted({0, 1, 2, 3} - {0, 1, *assigned_above}) + assigned_above
    assert all(type(i) is int for i in result.unmatched_detections + result.unmatched_tracks)


def _solver(cost: torch.Tensor, threshold: float):
    from scipy.optimize import linear_sum_assignment

    clipped = cost.numpy().copy()
    clipped[clipped > threshold] = threshold + 1e-5
    return linear_sum_assignment(clipped)


def test_kalman_transition_cache_equals_fresh_transitions():
    generator = torch.Generator().manual_seed(2)
    kf = BoxKalmanFilter()
    for count in (3, 5, 3):  # a cached count comes back
        mean, covariance = kf.initiate(_random_boxes(count, generator).abs() + 1)
        mean[:, 4:] = torch.randn(count, 4, generator=generator, dtype=torch.float64)
        for steps in (1, 2, 1):
            cached = kf.predict(mean, covariance, steps)
            fresh = kf.predict(mean, covariance, torch.full((count,), steps))
            assert torch.equal(cached[0], fresh[0]) and torch.equal(cached[1], fresh[1])
    assert not torch.equal(kf.predict(mean, covariance, 1)[0], kf.predict(mean, covariance, 2)[0])


def _stepwise_location_prediction(predictor, history, times, since):
    """The ridge prediction with every step written out in float64 (docs/tracker.md), as reference."""
    history64 = history.double()
    series = torch.stack([history64[..., 88], history64[..., 89], torch.log(history64[..., 92])], dim=-1)
    t = times.double()
    t_mean = t.mean(dim=1, keepdim=True)
    centred = t - t_mean
    s_mean = series.mean(dim=1, keepdim=True)
    spread = (centred**2).sum(dim=1)
    covariance = (centred.unsqueeze(-1) * (series - s_mean)).sum(dim=1)
    slope = covariance / (spread.unsqueeze(-1) + torch.tensor(predictor.alphas, dtype=torch.float64))
    intercept = s_mean.squeeze(1) - slope * t_mean
    fitted = intercept.unsqueeze(1) + slope.unsqueeze(1) * t.unsqueeze(-1)
    residual = ((series - fitted) ** 2).sum(dim=1)
    target = t[:, -1] + torch.clamp(since, max=predictor.max_gap).double() + 1.0
    prediction = intercept + slope * target.unsqueeze(-1)
    sigma = torch.sqrt(residual / (history.shape[1] - 2))
    leverage = (target - t.mean(dim=1)) ** 2 / spread
    if not predictor.reference_mode:
        leverage = torch.where(spread > 0, leverage, torch.zeros_like(leverage))
    interval = predictor.quantile * sigma * torch.sqrt(1.0 + 1.0 / history.shape[1] + leverage).unsqueeze(-1)
    multiplicity = 1.0 + (times[:, 1:] == times[:, :-1]).sum(dim=1).double()
    x, y, log_depth = prediction.unbind(-1)
    depth = torch.exp(log_depth)
    out = torch.empty(history.shape[0], 99, dtype=torch.float64)
    out[:, :88] = history64[:, -1, :88]
    out[:, 88], out[:, 89] = x, y
    out[:, 90] = (x - 0.5) * depth * (256.0 / 5000.0)
    out[:, 91] = (y - 0.5) * depth * (256.0 / 5000.0)
    out[:, 92] = depth
    out[:, 93], out[:, 94] = interval[:, 0] / multiplicity, interval[:, 1] / multiplicity
    out[:, 95] = torch.exp(interval[:, 2]) / multiplicity
    out[:, 96:98], out[:, 98] = 1.0, 0.0
    return out.float()


@pytest.mark.parametrize("reference_mode", [False, True])
def test_location_predictor_equals_the_stepwise_formula_bit_for_bit(reference_mode):
    generator = torch.Generator().manual_seed(3)
    count, length = 9, 7
    history = torch.rand(count, length, 99, generator=generator) + 0.5
    times = torch.sort(torch.randint(0, 40, (count, length), generator=generator), dim=1).values
    times[0], history[0] = 12, history[0, :1]  # a track never matched: H copies of one detection
    times[1, :4] = times[1, 4]  # repeated times
    since = torch.randint(0, 60, (count,), generator=generator)
    predictor = RidgeLocationPredictor(history_length=length, reference_mode=reference_mode)
    expected = _stepwise_location_prediction(predictor, history, times, since)
    actual = predictor.predict(history, times, since)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)
    assert bool(actual[0].isnan().any()) == reference_mode


class _GeneralConstantPredictor(ConstantPosePredictor):
    """The constant predictor seen through the general predictor path (not the shortcut)."""


def _emitted(tracker, frames) -> list:
    out = []
    for frame in frames:
        out += tracker.update(frame)
    return out + tracker.finalize()


def _same_frames(before, after) -> None:
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        assert torch.equal(old.track_ids, new.track_ids)
        assert torch.equal(old.time_since_update, new.time_since_update)
        assert torch.equal(old.predicted_pose, new.predicted_pose)
        assert torch.equal(old.predicted_location, new.predicted_location)
        for name in ROW_FIELDS:
            a, b = getattr(old.detections, name), getattr(new.detections, name)
            assert (a is None and b is None) or torch.equal(a, b), name


@pytest.mark.parametrize("reference_mode", [False, True])
def test_constant_pose_shortcut_equals_the_predictor_path(reference_mode):
    def frames():
        return detection_stream(6, 20, seed=4, uv_size=16, miss_probability=0.3)

    shortcut = _emitted(
        PHALPTracker(appearance_encoder=StandInAppearanceEncoder(), reference_mode=reference_mode), frames()
    )
    general = _emitted(
        PHALPTracker(
            appearance_encoder=StandInAppearanceEncoder(),
            reference_mode=reference_mode,
            pose_predictor=_GeneralConstantPredictor(),
        ),
        frames(),
    )
    assert sum(int((f.time_since_update > 0).sum()) for f in general) > 0  # ghosts were predicted
    _same_frames(shortcut, general)


def _load_baseline():
    spec = importlib.util.spec_from_file_location("tracker_baseline_for_overhead_tests", BASELINE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("reference_mode", [False, True])
def test_emitted_rows_of_ghosts_and_back_fills_match_the_pinned_tracker(reference_mode):
    """Records point into whole frames; every emitted per-row field must still be the original's."""
    baseline = _load_baseline()

    def frames():
        return detection_stream(5, 30, seed=5, uv_size=16, miss_probability=0.25)

    # The pinned tracker has the original's rule only: compare with the same rule.
    before = _emitted(
        baseline.PHALPTracker(appearance_encoder=StandInAppearanceEncoder(), reference_mode=reference_mode), frames()
    )
    after = _emitted(
        PHALPTracker(appearance_encoder=StandInAppearanceEncoder(), reference_mode=reference_mode, association=EQ019Rule()),
        frames(),
    )
    assert sum(int((f.time_since_update > 0).sum()) for f in after) > 0
    _same_frames(before, after)


def test_gated_rules_with_smoothed_boxes_and_low_scores_run_on_the_host_paths():
    scene = street_scene(8, 40, seed=1, trained_cues=True)
    generator = torch.Generator().manual_seed(6)
    frames = []
    for frame in scene.frames:
        low = torch.rand(len(frame), generator=generator) < 0.2
        frame.scores = torch.where(low, 0.3, 0.9).to(frame.scores.dtype)
        frames.append(frame)
    tracker = PHALPTracker(
        association=GatedRule(cues="all", smooth_boxes=True, tentative_max_misses=3, second_stage_score=0.5)
    )
    emitted = _emitted(tracker, frames)
    assert len(emitted) == 40
    assert isinstance(tracker.last_cost, torch.Tensor) and tracker.last_cost.dtype == torch.float64
    ids = {int(i) for f in emitted for i in f.track_ids}
    assert 4 <= len(ids) <= 20


def test_emitted_entries_do_not_change_when_the_caller_reuses_its_buffers():
    """Records point into the tracker's own copy of each frame, not into the caller's tensors."""

    def frames():
        return list(detection_stream(4, 16, seed=7, uv_size=16, miss_probability=0.2))

    untouched = _emitted(PHALPTracker(appearance_encoder=StandInAppearanceEncoder()), frames())
    tracker = PHALPTracker(appearance_encoder=StandInAppearanceEncoder())
    reused = []
    for frame in frames():
        reused += tracker.update(frame)
        for name in ("boxes", "scores", "pose", "location", "appearance"):
            getattr(frame, name).fill_(-7.0)  # the caller overwrites its buffers for the next frame
    reused += tracker.finalize()
    assert sum(len(f.track_ids) for f in reused) > 20
    _same_frames(untouched, reused)
