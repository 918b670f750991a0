"""Location (ridge) and constant pose predictors against direct computations of the formulas in docs/tracker.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phalp_lightning.tracking.predictors import ConstantPosePredictor, PosePredictor, RidgeLocationPredictor

T_975_DOF5 = 2.5705818356363146


def _spec_prediction(location: np.ndarray, times: np.ndarray, gap: int) -> np.ndarray:
    """One track, written out from docs/tracker.md with plain NumPy loops (no shared code)."""
    alphas = {"x": 1.2, "y": 2.0, "n": 5.0}
    series = {"x": location[:, 88], "y": location[:, 89], "n": np.log(location[:, 92])}
    t = times.astype(np.float64)
    t_star = t[-1] + min(gap, 48) + 1
    t_mean = t.mean()
    s_tt = sum((tk - t_mean) ** 2 for tk in t)
    predicted, interval = {}, {}
    for name, s in series.items():
        s = s.astype(np.float64)
        s_mean = s.mean()
        slope = sum((t[k] - t_mean) * (s[k] - s_mean) for k in range(7)) / (s_tt + alphas[name])
        intercept = s_mean - slope * t_mean
        residual = [s[k] - (intercept + slope * t[k]) for k in range(7)]
        sigma = math.sqrt(sum(r * r for r in residual) / 5)
        predicted[name] = intercept + slope * t_star
        interval[name] = T_975_DOF5 * sigma * math.sqrt(1 + 1 / 7 + (t_star - t_mean) ** 2 / s_tt)
    m = 1 + sum(1 for k in range(1, 7) if times[k] == times[k - 1])
    out = np.zeros(99)
    out[:88] = location[-1, :88]
    depth = math.exp(predicted["n"])
    out[88], out[89] = predicted["x"], predicted["y"]
    out[90] = (predicted["x"] - 0.5) * depth * 256 / 5000
    out[91] = (predicted["y"] - 0.5) * depth * 256 / 5000
    out[92] = depth
    out[93], out[94], out[95] = interval["x"] / m, interval["y"] / m, math.exp(interval["n"]) / m
    out[96:] = (1, 1, 0)
    return out


def test_quantile_is_student_t_975_with_5_dof():
    assert RidgeLocationPredictor().quantile == pytest.approx(T_975_DOF5, rel=1e-12)


def test_ridge_batch_equals_per_track_spec_formulas():
    rng = np.random.default_rng(0)
    histories = [
        np.array([3, 3, 3, 4, 5, 6, 7]),  # new track filled with copies, then 4 hits
        np.array([10, 11, 12, 13, 14, 15, 16]),
        np.array([0, 2, 5, 9, 10, 30, 31]),  # gaps
        np.array([5, 5, 5, 5, 5, 5, 6]),
    ]
    gaps = [0, 3, 60, 1]  # 60 exercises the cap at 48
    locations = rng.uniform(0.2, 0.8, size=(4, 7, 99))
    locations[..., 92] = rng.uniform(20, 60, size=(4, 7))
    predictor = RidgeLocationPredictor()
    batched = predictor.predict(
        torch.tensor(locations, dtype=torch.float32), torch.tensor(np.stack(histories)), torch.tensor(gaps)
    )
    assert batched.shape == (4, 99) and batched.dtype == torch.float32
    for k in range(4):
        expected = _spec_prediction(locations[k].astype(np.float32).astype(np.float64), histories[k], gaps[k])
        np.testing.assert_allclose(batched[k].numpy(), expected, rtol=2e-5, atol=1e-6)


def test_ridge_hand_values_for_linear_motion():
    times = torch.arange(7)[None]
    location = torch.zeros(1, 7, 99)
    location[0, :, 88] = 0.5 + 0.01 * torch.arange(7)  # x moves 0.01 per frame
    location[0, :, 89] = 0.3
    location[0, :, 92] = 40.0
    out = RidgeLocationPredictor().predict(location, times, torch.tensor([0]))[0]
    # slope = 0.01 * 28 / (28 + 1.2) = 0.0095890; intercept = 0.53 - 3 * slope; x(7) = 0.5683562.
    assert out[88].item() == pytest.approx(0.5683562, abs=1e-6)
    assert out[89].item() == pytest.approx(0.3, abs=1e-6)
    assert out[92].item() == pytest.approx(40.0, rel=1e-5)
    assert out[90].item() == pytest.approx((0.5683562 - 0.5) * 40 * 256 / 5000, rel=1e-5)
    assert out[94].item() == pytest.approx(0.0, abs=1e-6)  # y is constant: no residual
    assert out[95].item() == pytest.approx(1.0, abs=1e-6)  # exp(0) / m, m = 1


def test_all_equal_times_nan_only_in_reference_mode():
    location = torch.full((1, 7, 99), 0.5)
    location[..., 92] = 30.0
    times = torch.full((1, 7), 4)
    default = RidgeLocationPredictor().predict(location, times, torch.tensor([2]))
    reference = RidgeLocationPredictor(reference_mode=True).predict(location, times, torch.tensor([2]))
    assert torch.isfinite(default).all()
    assert default[0, 93].item() == 0.0 and default[0, 95].item() == pytest.approx(1 / 7)  # m = 7
    assert not torch.isfinite(reference[0, 93:96]).any()  # 0 * inf (NaN) or tiny * inf (inf), as in NumPy


def test_constant_pose_predictor_returns_newest_pose():
    history = torch.randn(3, 7, 229)
    predictor = ConstantPosePredictor()
    assert isinstance(predictor, PosePredictor)
    out = predictor.predict_next(
        history, torch.zeros(3, 7, dtype=torch.int64), torch.zeros(3, dtype=torch.int64)
    )
    torch.testing.assert_close(out, history[:, -1])
