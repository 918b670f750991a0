"""The 2D motion cue: a constant-velocity Kalman filter on image boxes, and IoU against its prediction.

In the spirit of SORT, ByteTrack and BoT-SORT: each track carries a filter on (cx, cy, w, h) and
their velocities (BoT-SORT's parametrisation: noise proportional to the box's width for x and w and
to its height for y and h). Before association every track's box is predicted to the current frame;
the cue is the IoU of that predicted box with each detection. It needs nothing but boxes, so it is
informative whatever the 3D network was trained on, and it is what makes far pairs impossible
(:func:`phalp_lightning.utils.boxes.box_iou` below a gate).

Everything works on all tracks at once: means (K, 8) and covariances (K, 8, 8), float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Noise of the filter, relative to the box size (BoT-SORT / ByteTrack values).
STD_POSITION = 1.0 / 20.0
STD_VELOCITY = 1.0 / 160.0


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(K, 4) x1, y1, x2, y2 -> cx, cy, w, h (float64)."""
    boxes = boxes.double()
    size = boxes[:, 2:] - boxes[:, :2]
    return torch.cat([boxes[:, :2] + size / 2, size], dim=1)


def cxcywh_to_xyxy(state: Tensor) -> Tensor:
    """(K, >=4) cx, cy, w, h[, ...] -> (K, 4) x1, y1, x2, y2."""
    centre, half = state[:, :2], state[:, 2:4].clamp_min(0.0) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def _noise_scale(mean: Tensor) -> Tensor:
    """(K, 4): the box (w, h, w, h) that scales the noise of (cx, cy, w, h)."""
    size = mean[:, 2:4].clamp_min(1.0)
    return torch.cat([size, size], dim=1)


class BoxKalmanFilter:
    """Constant-velocity Kalman filter on (cx, cy, w, h), batched over K boxes."""

    def __init__(self, std_position: float = STD_POSITION, std_velocity: float = STD_VELOCITY) -> None:
        self.std_position = std_position
        self.std_velocity = std_velocity
        # Transition matrices by (count, steps, dtype, device): the same few are used frame after frame.
        self._transitions: dict[tuple, Tensor] = {}

    def initiate(self, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Filters started at K xyxy boxes with zero velocity: mean (K, 8), covariance (K, 8, 8)."""
        measurement = xyxy_to_cxcywh(boxes)
        mean = torch.cat([measurement, torch.zeros_like(measurement)], dim=1)
        scale = _noise_scale(mean)
        std = torch.cat([2 * self.std_position * scale, 10 * self.std_velocity * scale], dim=1)
        return mean, torch.diag_embed(std**2)

    def predict(self, mean: Tensor, covariance: Tensor, steps: Tensor | int = 1) -> tuple[Tensor, Tensor]:
        """Advance K filters by ``steps`` frames (an int or a (K,) tensor of non-negative ints)."""
        count = mean.shape[0]
        if isinstance(steps, int):
            key = (count, steps, mean.dtype, mean.device)
            transition = self._transitions.get(key)
            if transition is None:
                if len(self._transitions) > 64:
                    self._transitions.clear()
                transition = self._transitions[key] = self._transition(count, steps, mean)
            step_factor: Tensor | float = float(steps)
        else:
            transition = self._transition(count, steps, mean)
            step_factor = torch.as_tensor(steps, dtype=mean.dtype, device=mean.device).expand(count)[:, None, None]
        scale = _noise_scale(mean)
        # Process noise of one step, added once per step (a good approximation over short gaps).
        std = torch.cat([scale * self.std_position, scale * self.std_velocity], dim=1)
        noise = torch.diag_embed(torch.square(std)) * step_factor
        new_mean = (transition @ mean.unsqueeze(-1)).squeeze(-1)
        new_covariance = transition @ covariance @ transition.transpose(1, 2) + noise
        return new_mean, new_covariance

    @staticmethod
    def _transition(count: int, steps: Tensor | int, like: Tensor) -> Tensor:
        """(K, 8, 8) constant-velocity transitions over ``steps`` frames."""
        steps_t = torch.as_tensor(steps, dtype=like.dtype, device=like.device).expand(count)
        transition = torch.eye(8, dtype=like.dtype, device=like.device).repeat(count, 1, 1)
        idx = torch.arange(4, device=like.device)
        transition[:, idx, idx + 4] = steps_t[:, None]
        return transition

    def update(self, mean: Tensor, covariance: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        """Correct K filters with K xyxy detections."""
        measurement = xyxy_to_cxcywh(boxes).to(mean)
        measurement_noise = torch.diag_embed(torch.square(_noise_scale(mean) * self.std_position))
        projected = covariance[:, :4, :4] + measurement_noise
        cross = covariance[:, :, :4]  # P H^T
        gain = torch.linalg.solve(projected, cross.transpose(1, 2)).transpose(1, 2)  # (K, 8, 4)
        innovation = measurement - mean[:, :4]
        new_mean = mean + (gain @ innovation.unsqueeze(-1)).squeeze(-1)
        new_covariance = covariance - gain @ projected @ gain.transpose(1, 2)
        return new_mean, new_covariance


class MotionState:
    """Per-track box filters, stored by the track bank's storage row (grown on demand).

    Args:
        device: where the filter state lives.
        filter: the Kalman filter (default :class:`BoxKalmanFilter`).
    """

    def __init__(self, device: torch.device | str = "cpu", filter: BoxKalmanFilter | None = None) -> None:
        self.device = torch.device(device)
        self.filter = filter or BoxKalmanFilter()
        self.mean = torch.zeros(0, 8, dtype=torch.float64, device=self.device)
        self.covariance = torch.zeros(0, 8, 8, dtype=torch.float64, device=self.device)
        self.last_box = torch.zeros(0, 4, dtype=torch.float64, device=self.device)  # last detected xyxy box
        # Largest |log height ratio| between consecutive detections of each track (a detector's scale jitter).
        self.height_jump = torch.zeros(0, dtype=torch.float64, device=self.device)

    def _ensure(self, rows: Tensor) -> None:
        needed = int(rows.max()) + 1 if rows.numel() else 0
        if needed > self.mean.shape[0]:
            capacity = max(needed, 2 * self.mean.shape[0], 16)
            mean = torch.zeros(capacity, 8, dtype=torch.float64, device=self.device)
            covariance = torch.eye(8, dtype=torch.float64, device=self.device).repeat(capacity, 1, 1)
            last_box = torch.zeros(capacity, 4, dtype=torch.float64, device=self.device)
            mean[: self.mean.shape[0]] = self.mean
            covariance[: self.covariance.shape[0]] = self.covariance
            last_box[: self.last_box.shape[0]] = self.last_box
            height_jump = torch.zeros(capacity, dtype=torch.float64, device=self.device)
            height_jump[: self.height_jump.shape[0]] = self.height_jump
            self.mean, self.covariance, self.last_box, self.height_jump = mean, covariance, last_box, height_jump

    def start(self, rows: Tensor, boxes: Tensor) -> None:
        """New tracks in ``rows`` start at their xyxy ``boxes``."""
        if rows.numel() == 0:
            return
        self._ensure(rows)
        rows = rows.to(self.device)
        self.mean[rows], self.covariance[rows] = self.filter.initiate(boxes.to(self.device))
        self.last_box[rows] = boxes.to(self.device, torch.float64)
        self.height_jump[rows] = 0.0

    def predict(self, rows: Tensor, steps: int = 1) -> None:
        """Advance the tracks in ``rows`` to the next frame (``steps`` frames later)."""
        if rows.numel() == 0 or steps <= 0:
            return
        self._ensure(rows)
        rows = rows.to(self.device)
        self.mean[rows], self.covariance[rows] = self.filter.predict(
            torch.index_select(self.mean, 0, rows), torch.index_select(self.covariance, 0, rows), steps
        )

    def correct(self, rows: Tensor, boxes: Tensor) -> None:
        """Matched tracks in ``rows`` see their xyxy ``boxes``."""
        if rows.numel() == 0:
            return
        self._ensure(rows)
        rows = rows.to(self.device)
        self.mean[rows], self.covariance[rows] = self.filter.update(
            torch.index_select(self.mean, 0, rows), torch.index_select(self.covariance, 0, rows), boxes.to(self.device)
        )
        new = boxes.to(self.device, torch.float64)
        old = torch.index_select(self.last_box, 0, rows)
        jump = torch.log((new[:, 3] - new[:, 1]).clamp_min(1e-6) / (old[:, 3] - old[:, 1]).clamp_min(1e-6)).abs()
        self.height_jump[rows] = torch.maximum(torch.index_select(self.height_jump, 0, rows), jump)
        self.last_box[rows] = new

    def boxes(self, rows: Tensor) -> Tensor:
        """(K, 4) xyxy boxes of the filters' current state."""
        self._ensure(rows)
        return cxcywh_to_xyxy(torch.index_select(self.mean, 0, rows.to(self.device)))

    def height_jumps(self, rows: Tensor) -> Tensor:
        """(K,) the largest |log height ratio| between consecutive detected boxes of each track so far."""
        self._ensure(rows)
        return torch.index_select(self.height_jump, 0, rows.to(self.device))

    def last_seen(self, rows: Tensor) -> Tensor:
        """(K, 4) xyxy: each track's last detected box (size frozen, nothing extrapolated)."""
        self._ensure(rows)
        return torch.index_select(self.last_box, 0, rows.to(self.device))
