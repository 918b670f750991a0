"""Next-frame predictors used by the PHALP tracker: location (closed-form ridge) and pose.

Both work on a batch of K tracks at once. Histories are oldest first, with H entries (PHALP: 7), and
carry the absolute frame index of each entry; a new track's history is H copies of its first
detection, so duplicate times are normal.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from phalp_lightning.utils.vectors import LOCATION_DIM, LOCATION_JOINT

# Focal length over the virtual image size: converts a normalised image offset times depth into
# a camera translation (docs/geometry.md, The location vector).
_FOCAL_OVER_IMAGE = 256.0 / 5000.0
_LOCATION_X = 2 * LOCATION_JOINT  # 88
_LOCATION_Y = 2 * LOCATION_JOINT + 1  # 89
_LOCATION_DEPTH = 92  # t_z of the first camera copy


@runtime_checkable
class PosePredictor(Protocol):
    """Anything that predicts the next 229-d pose vector of each track (the pose transformer)."""

    def predict_next(self, pose_history: Tensor, time_history: Tensor, time_since_update: Tensor) -> Tensor:
        """Predict the pose at ``time_history[:, -1] + time_since_update + 1``.

        Args:
            pose_history: (K, H, 229) pose vectors, oldest first, natural units.
            time_history: (K, H) int64 absolute frame indices of the history entries.
            time_since_update: (K,) int64 frames since each track was last matched.

        Returns:
            (K, 229) predicted pose vectors.
        """
        ...


class ConstantPosePredictor:
    """Predicts that the pose stays as last observed: returns the newest history entry."""

    def predict_next(self, pose_history: Tensor, time_history: Tensor, time_since_update: Tensor) -> Tensor:
        """See :class:`PosePredictor`; (K, H, 229) -> (K, 229)."""
        return pose_history[:, -1].clone()


def student_t_quantile(probability: float, degrees_of_freedom: int) -> float:
    """Quantile of Student's t distribution (0.975 with 5 dof = 2.5705818...)."""
    from scipy.stats import t as student_t  # scipy.stats is slow to import; only needed once per tracker

    return float(student_t.ppf(probability, degrees_of_freedom))


class RidgeLocationPredictor:
    """PHALP's location predictor: per-series ridge regression on time, with prediction intervals.

    For each track three series are fitted against the history times with uniform weights: the
    location point x (joint 44, index 88), its y (89) and the log depth ``ln t_z`` (92). The fit is
    scikit-learn's ``Ridge(fit_intercept=True)`` in closed form: slope
    ``b = S_ts / (S_tt + alpha)``, intercept ``a = mean(s) - b mean(t)``. It is extrapolated to
    ``t* = t_last + min(time_since_update, max_gap) + 1`` with the 95 % prediction interval
    ``q sigma sqrt(1 + 1/H + (t* - mean t)^2 / S_tt)``, ``sigma^2 = sum(residual^2) / (H - 2)``,
    each divided by the multiplicity ``m = 1 + #(t_k == t_{k-1})``.

    Args:
        alpha_x: ridge penalty of the x series (PHALP 1.2).
        alpha_y: ridge penalty of the y series (PHALP 2.0).
        alpha_depth: ridge penalty of the log-depth series (PHALP 5.0).
        max_gap: cap on the extrapolation gap ``time_since_update`` (PHALP 48).
        history_length: H, the number of history entries (PHALP 7); fixes the t quantile's dof.
        interval_probability: one-sided quantile of the prediction interval (0.975 -> 95 %).
        reference_mode: True keeps the NaN interval of a history whose times are all equal
            (0 * inf); False treats the undefined ``(t* - mean t)^2 / S_tt`` term as 0.
    """

    def __init__(
        self,
        alpha_x: float = 1.2,
        alpha_y: float = 2.0,
        alpha_depth: float = 5.0,
        max_gap: int = 48,
        history_length: int = 7,
        interval_probability: float = 0.975,
        reference_mode: bool = False,
    ) -> None:
        if history_length < 3:
            raise ValueError(f"history_length must be >= 3 for a prediction interval, got {history_length}")
        self.alphas = (alpha_x, alpha_y, alpha_depth)
        self.max_gap = max_gap
        self.history_length = history_length
        self.quantile = student_t_quantile(interval_probability, history_length - 2)
        self.reference_mode = reference_mode
        self._alphas: dict[tuple[torch.dtype, torch.device], Tensor] = {}
        self._series_columns: dict[torch.device, Tensor] = {}

    def fit(self, time_history: Tensor, series: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Closed-form ridge fits of S series over K tracks.

        Args:
            time_history: (K, H) frame indices.
            series: (K, H, S) values, float64.

        Returns:
            slope (K, S), intercept (K, S), residual sum of squares (K, S) and
            ``S_tt = sum_k (t_k - mean t)^2`` (K,).
        """
        return self._fit(time_history.to(series.dtype), series)[:4]

    def _fit(self, times: Tensor, series: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """:meth:`fit` on times already in the series' dtype; also returns the mean time (K, 1)."""
        time_mean = times.mean(dim=1, keepdim=True)  # (K, 1)
        centred_time = times - time_mean  # (K, H)
        series_mean = series.mean(dim=1, keepdim=True)  # (K, 1, S)
        time_spread = torch.square(centred_time).sum(dim=1)  # (K,)
        covariance = (centred_time.unsqueeze(-1) * (series - series_mean)).sum(dim=1)  # (K, S)
        alphas = self._alphas.get((series.dtype, series.device))
        if alphas is None:
            alphas = self._alphas[(series.dtype, series.device)] = torch.tensor(
                self.alphas, dtype=series.dtype, device=series.device
            )
        slope = covariance / (time_spread.unsqueeze(-1) + alphas)
        intercept = series_mean.squeeze(1) - slope * time_mean
        fitted = intercept.unsqueeze(1) + slope.unsqueeze(1) * times.unsqueeze(-1)
        residual_ss = torch.square(series - fitted).sum(dim=1)
        return slope, intercept, residual_ss, time_spread, time_mean

    def predict(self, location_history: Tensor, time_history: Tensor, time_since_update: Tensor) -> Tensor:
        """Predicted 99-d location vectors (layout in the class docstring and docs/geometry.md).

        Args:
            location_history: (K, H, 99) location vectors, oldest first.
            time_history: (K, H) int64 frame indices.
            time_since_update: (K,) int64.

        Returns:
            (K, 99) float32: joints 0..43 of the newest entry, predicted joint 44 at [88:90], predicted
            camera translation at [90:93], intervals/m at [93:96], then (1, 1, 0).
        """
        num_tracks, history_length, _ = location_history.shape
        if history_length != self.history_length:
            raise ValueError(
                f"location_history has {history_length} entries, predictor expects {self.history_length}"
            )
        # Only x, y and the depth of the history are fitted: (K, H, 3) float64, depth as its log.
        columns = self._series_columns.get(location_history.device)
        if columns is None:
            columns = self._series_columns[location_history.device] = torch.tensor(
                [_LOCATION_X, _LOCATION_Y, _LOCATION_DEPTH], device=location_history.device
            )
        series = torch.index_select(location_history, 2, columns).to(torch.float64)
        series[..., 2] = torch.log(series[..., 2])
        times = time_history.to(torch.float64)
        slope, intercept, residual_ss, time_spread, time_mean = self._fit(times, series)
        gap = torch.clamp(time_since_update.to(times.device), max=self.max_gap).to(torch.float64)
        target_time = times[:, -1] + gap + 1.0  # (K,)
        prediction = intercept + slope * target_time.unsqueeze(-1)  # (K, 3)

        sigma = torch.sqrt(residual_ss / (history_length - 2))
        leverage = torch.square(target_time - time_mean.squeeze(1)) / time_spread
        if not self.reference_mode:
            # All times equal (a track never matched): the interval's time term is undefined.
            leverage = torch.where(time_spread > 0, leverage, 0.0)
        interval = sigma * self.quantile * torch.sqrt(leverage + (1.0 + 1.0 / history_length)).unsqueeze(-1)
        multiplicity = ((time_history[:, 1:] == time_history[:, :-1]).sum(dim=1).to(torch.float64) + 1.0)[:, None]

        depth = torch.exp(prediction[:, 2:])  # (K, 1)
        # [88:96]: x, y, camera x, y (x, y offsets times depth), depth, intervals of x, y and depth.
        tail = torch.cat(
            [
                prediction[:, :2],
                (prediction[:, :2] - 0.5) * depth * _FOCAL_OVER_IMAGE,
                depth,
                interval[:, :2] / multiplicity,
                torch.exp(interval[:, 2:]) / multiplicity,
            ],
            dim=1,
        )
        out = torch.empty(num_tracks, LOCATION_DIM, dtype=torch.float32, device=location_history.device)
        out[:, :_LOCATION_X] = location_history[:, -1, :_LOCATION_X]
        out[:, _LOCATION_X:96] = tail  # rounded to float32 as a float64 result converted at the end
        out[:, 96:98] = 1.0
        out[:, 98] = 0.0
        return out
