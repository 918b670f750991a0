"""Pinned copy of the PHALP tracker as it was before the speed work (commit d8cc10f).

The tracker benchmark and the equivalence test run this copy side by side with the current
`phalp_lightning.tracking` code on identical inputs: it is the "before" of every before/after ratio
and the reference that ids and emitted tracks are compared with. It is track.py, predictors.py,
association.py and phalp_tracker.py of that commit concatenated, with their intra-package imports
removed; do not edit it (only the package-level imports below differ).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import IntEnum
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from phalp_lightning.structures import FrameDetections, FrameTracks
from phalp_lightning.utils.vectors import LOCATION_DIM, LOCATION_JOINT, POSE_DIM, POSE_SMPL, location_point

# ----------------------------------------------------------------------------- track.py


class TrackState(IntEnum):
    """PHALP/deep_sort track states."""

    TENTATIVE = 0
    CONFIRMED = 1
    DELETED = 2


@dataclass
class DetectionRecord:
    """One past detection of a track: row ``row`` of ``detection`` (a block of one frame's rows).

    Blocks hold only the rows that tracks refer to (without UV maps), so memory stays bounded.
    """

    frame_index: int
    detection: FrameDetections
    row: int


def blend_uv(previous: Tensor, new: Tensor, weight: Tensor) -> Tensor:
    """PHALP's running UV texture update for K matched tracks at once.

    On texels visible in both maps the RGB becomes ``(1 - a) old + a new``; texels visible in one map
    keep that map's RGB; the rest become 0. The mask becomes +1 where either map is visible, else -1.

    Args:
        previous: (K, 4, S, S) track maps; new: (K, 4, S, S) detection maps (mask channel +-1).
        weight: (K,) blend rate ``a = alpha * score^2``.

    Returns:
        (K, 4, S, S) in ``previous``'s dtype.
    """
    new = new.to(previous.dtype)
    old_visible = (previous[:, 3:4] > 0.5).to(previous.dtype)
    new_visible = (new[:, 3:4] > 0.5).to(previous.dtype)
    a = weight.to(previous.dtype).view(-1, 1, 1, 1)
    # Per-texel weights: (1 - a, a) on the overlap, (1, 0) / (0, 1) where one map is visible, 0 elsewhere.
    old_weight = old_visible * ((1.0 - a) * new_visible + (1.0 - new_visible))
    new_weight = new_visible * (a * old_visible + (1.0 - old_visible))
    out = torch.empty_like(previous)
    torch.mul(previous[:, :3], old_weight, out=out[:, :3])
    out[:, :3].addcmul_(new[:, :3], new_weight)
    out[:, 3:4] = torch.where((old_visible + new_visible) > 0, 1.0, -1.0)
    return out


class TrackBank:
    """Structure-of-arrays storage of the tracker's tracks.

    Per storage row: ``track_id``, ``hits``, ``age``, ``time_since_update``, ``state``, ``gt_id``,
    the bounded histories (``history_time`` (C, H), ``history_pose`` (C, H, 229),
    ``history_location`` (C, H, 99)), the features matched against the next frame
    (``predicted_pose``, ``predicted_location``, ``appearance``, ``uv``) and, in Python,
    the last ``record_length`` :class:`DetectionRecord` (for ghosts and back-filling).

    Args:
        history_length: H (PHALP ``track_history`` = 7).
        record_length: detection records kept per track (``n_init``, the back-fill depth).
        device: storage device.
        uv_dtype: dtype of the blended UV maps (PHALP blends in float64).
    """

    def __init__(
        self,
        history_length: int = 7,
        record_length: int = 5,
        device: torch.device | str = "cpu",
        uv_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.history_length = history_length
        self.record_length = record_length
        self.device = torch.device(device)
        self.uv_dtype = uv_dtype
        self.capacity = 0
        self.order: list[int] = []
        self._free: list[int] = []
        self.records: list[deque[DetectionRecord]] = []
        # Sized by the first detections: the appearance width follows HMAR's crop size (4096 at 256 px).
        self.appearance: Tensor | None = None
        self.uv: Tensor | None = None
        self._allocate(16)

    def _allocate(self, capacity: int) -> None:
        def grow(old: Tensor | None, shape: tuple[int, ...], dtype: torch.dtype, fill: float = 0) -> Tensor:
            new = torch.full((capacity, *shape), fill, dtype=dtype, device=self.device)
            if old is not None:
                new[: old.shape[0]] = old
            return new

        first = self.capacity == 0
        h = self.history_length
        self.track_id = grow(None if first else self.track_id, (), torch.int64, -1)
        self.hits = grow(None if first else self.hits, (), torch.int64)
        self.age = grow(None if first else self.age, (), torch.int64)
        self.time_since_update = grow(None if first else self.time_since_update, (), torch.int64)
        self.state = grow(None if first else self.state, (), torch.int64, int(TrackState.DELETED))
        self.gt_id = grow(None if first else self.gt_id, (), torch.int64, -1)
        self.history_time = grow(None if first else self.history_time, (h,), torch.int64)
        self.history_pose = grow(None if first else self.history_pose, (h, POSE_DIM), torch.float32)
        self.history_location = grow(
            None if first else self.history_location, (h, LOCATION_DIM), torch.float32
        )
        self.predicted_pose = grow(None if first else self.predicted_pose, (POSE_DIM,), torch.float32)
        self.predicted_location = grow(
            None if first else self.predicted_location, (LOCATION_DIM,), torch.float32
        )
        if self.appearance is not None:
            self.appearance = grow(self.appearance, tuple(self.appearance.shape[1:]), torch.float32)
        if self.uv is not None:
            self.uv = grow(self.uv, tuple(self.uv.shape[1:]), self.uv_dtype)
        self._free.extend(range(self.capacity, capacity))
        self.records.extend(deque(maxlen=self.record_length) for _ in range(capacity - self.capacity))
        self.capacity = capacity

    def __len__(self) -> int:
        return len(self.order)

    def rows(self) -> Tensor:
        """(T,) int64 storage rows in tracker-list order."""
        return torch.tensor(self.order, dtype=torch.int64, device=self.device)

    def add(
        self,
        track_ids: Tensor,
        frame_index: int,
        pose: Tensor,
        location: Tensor,
        appearance: Tensor,
        uv: Tensor | None,
        gt_ids: Tensor,
        confirmed: Tensor,
        records: list[DetectionRecord],
    ) -> Tensor:
        """Create K tracks from K detections (appended in the given order); returns their rows.

        The history starts as H copies of the detection and its features are the first prediction.
        """
        count = int(track_ids.shape[0])
        while len(self._free) < count:
            self._allocate(max(2 * self.capacity, 16))
        # Lowest free rows first keeps storage compact; order is tracked separately.
        self._free.sort()
        new_rows = self._free[:count]
        del self._free[:count]
        rows = torch.tensor(new_rows, dtype=torch.int64, device=self.device)
        h = self.history_length
        self.track_id[rows] = track_ids.to(self.device)
        self.hits[rows] = 1
        self.age[rows] = 1
        self.time_since_update[rows] = 0
        self.state[rows] = torch.where(
            confirmed.to(self.device), int(TrackState.CONFIRMED), int(TrackState.TENTATIVE)
        )
        self.gt_id[rows] = gt_ids.to(self.device)
        self.history_time[rows] = frame_index
        self.history_pose[rows] = pose.float().unsqueeze(1).expand(-1, h, -1)
        self.history_location[rows] = location.float().unsqueeze(1).expand(-1, h, -1)
        self.predicted_pose[rows] = pose.float()
        self.predicted_location[rows] = location.float()
        if self.appearance is None:
            self.appearance = torch.zeros((self.capacity, appearance.shape[-1]), dtype=torch.float32, device=self.device)
        elif self.appearance.shape[-1] != appearance.shape[-1]:
            raise ValueError(
                f"appearance codes of width {appearance.shape[-1]} do not match the tracks' {self.appearance.shape[-1]}"
            )
        self.appearance[rows] = appearance.float()
        if uv is not None:
            if self.uv is None:
                self.uv = torch.zeros((self.capacity, *uv.shape[1:]), dtype=self.uv_dtype, device=self.device)
            elif tuple(self.uv.shape[1:]) != tuple(uv.shape[1:]):
                raise ValueError(
                    f"uv maps of shape {tuple(uv.shape[1:])} do not match the tracks' {tuple(self.uv.shape[1:])}"
                )
            self.uv[rows] = uv.to(self.device, self.uv_dtype)
        for row, record in zip(new_rows, records, strict=True):
            self.records[row].clear()
            self.records[row].append(record)
        self.order.extend(new_rows)
        return rows

    def push_history(
        self, rows: Tensor, frame_index: int, pose: Tensor, location: Tensor, reset_location: bool
    ) -> None:
        """Append one matched detection to the bounded histories of ``rows``.

        Args:
            rows: (K,) storage rows; pose: (K, 229); location: (K, 99).
            reset_location: a shot boundary: every history location becomes the new one, which
                restarts the location extrapolation.
        """
        h = self.history_length
        self.history_time[rows] = torch.cat(
            [
                self.history_time[rows, 1:],
                torch.full((rows.shape[0], 1), frame_index, dtype=torch.int64, device=self.device),
            ],
            1,
        )
        self.history_pose[rows] = torch.cat([self.history_pose[rows, 1:], pose.float().unsqueeze(1)], 1)
        if reset_location:
            self.history_location[rows] = location.float().unsqueeze(1).expand(-1, h, -1)
        else:
            self.history_location[rows] = torch.cat(
                [self.history_location[rows, 1:], location.float().unsqueeze(1)], 1
            )

    def remove(self, keep: list[int]) -> list[int]:
        """Keep only the rows in ``keep`` (a subset of ``order``); return the removed rows."""
        kept = set(keep)
        removed = [row for row in self.order if row not in kept]
        self.order = [row for row in self.order if row in kept]
        for row in removed:
            self.records[row].clear()
        self.state[torch.tensor(removed, dtype=torch.int64, device=self.device)] = int(TrackState.DELETED)
        self._free.extend(removed)
        return removed

# ----------------------------------------------------------------------------- predictors.py

# Focal length over the virtual image size: converts a normalised image offset times depth into
# a camera translation (spec tracker.md 5.1 / 7.1).
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

    def fit(self, time_history: Tensor, series: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Closed-form ridge fits of S series over K tracks.

        Args:
            time_history: (K, H) frame indices.
            series: (K, H, S) values, float64.

        Returns:
            slope (K, S), intercept (K, S), residual sum of squares (K, S) and
            ``S_tt = sum_k (t_k - mean t)^2`` (K,).
        """
        times = time_history.to(series.dtype)
        time_mean = times.mean(dim=1, keepdim=True)  # (K, 1)
        centred_time = times - time_mean  # (K, H)
        series_mean = series.mean(dim=1, keepdim=True)  # (K, 1, S)
        time_spread = (centred_time**2).sum(dim=1)  # (K,)
        covariance = (centred_time.unsqueeze(-1) * (series - series_mean)).sum(dim=1)  # (K, S)
        alphas = torch.tensor(self.alphas, dtype=series.dtype, device=series.device)
        slope = covariance / (time_spread.unsqueeze(-1) + alphas)
        intercept = series_mean.squeeze(1) - slope * time_mean
        fitted = intercept.unsqueeze(1) + slope.unsqueeze(1) * times.unsqueeze(-1)
        residual_ss = ((series - fitted) ** 2).sum(dim=1)
        return slope, intercept, residual_ss, time_spread

    def predict(self, location_history: Tensor, time_history: Tensor, time_since_update: Tensor) -> Tensor:
        """Predicted 99-d location vectors (layout in the class docstring and spec 7.1).

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
        history64 = location_history.to(torch.float64)
        series = torch.stack(
            [
                history64[..., _LOCATION_X],
                history64[..., _LOCATION_Y],
                torch.log(history64[..., _LOCATION_DEPTH]),
            ],
            dim=-1,
        )  # (K, H, 3)
        slope, intercept, residual_ss, time_spread = self.fit(time_history, series)
        times = time_history.to(torch.float64)
        time_mean = times.mean(dim=1)
        gap = torch.clamp(time_since_update.to(times.device), max=self.max_gap).to(torch.float64)
        target_time = times[:, -1] + gap + 1.0  # (K,)
        prediction = intercept + slope * target_time.unsqueeze(-1)  # (K, 3)

        sigma = torch.sqrt(residual_ss / (history_length - 2))
        leverage = (target_time - time_mean) ** 2 / time_spread
        if not self.reference_mode:
            # All times equal (a track never matched): the interval's time term is undefined.
            leverage = torch.where(time_spread > 0, leverage, torch.zeros_like(leverage))
        interval = self.quantile * sigma * torch.sqrt(1.0 + 1.0 / history_length + leverage).unsqueeze(-1)
        multiplicity = 1.0 + (time_history[:, 1:] == time_history[:, :-1]).sum(dim=1).to(torch.float64)

        x_hat, y_hat, log_depth = prediction.unbind(-1)
        depth = torch.exp(log_depth)
        out = torch.empty(num_tracks, LOCATION_DIM, dtype=torch.float64, device=location_history.device)
        out[:, :_LOCATION_X] = history64[:, -1, :_LOCATION_X]
        out[:, _LOCATION_X] = x_hat
        out[:, _LOCATION_Y] = y_hat
        out[:, 90] = (x_hat - 0.5) * depth * _FOCAL_OVER_IMAGE
        out[:, 91] = (y_hat - 0.5) * depth * _FOCAL_OVER_IMAGE
        out[:, 92] = depth
        out[:, 93] = interval[:, 0] / multiplicity
        out[:, 94] = interval[:, 1] / multiplicity
        out[:, 95] = torch.exp(interval[:, 2]) / multiplicity
        out[:, 96] = 1.0
        out[:, 97] = 1.0
        out[:, 98] = 0.0
        return out.to(torch.float32)

# ----------------------------------------------------------------------------- association.py

AppearanceEncoder = Callable[[Tensor], Tensor]

# PHALP EQ_019 weights (texture, pose, location, depth) and pose clip.
EQ019_BETAS = (4.0536, 1.3070, 0.3792, 4.1658)
EQ019_POSE_CLIP = 1.5
# Appearance codes are compared after division by 1000 (spec 10.2).
APPEARANCE_SCALE = 1000.0
TEXTURE_WEIGHT = 100.0
_FLOAT64_MAX = torch.finfo(torch.float64).max


def pose_distance(track_pose: Tensor, detection_pose: Tensor) -> Tensor:
    """Squared L2 distance over the SMPL part (first 226 entries) of the pose vectors.

    Computed as ``|a|^2 + |b|^2 - 2 a.b`` in float32 and clipped at 0, as PHALP does.

    Args:
        track_pose: (T, 229); detection_pose: (D, 229).

    Returns:
        (T, D) float32.
    """
    a = track_pose[:, POSE_SMPL].float()
    b = detection_pose[:, POSE_SMPL].float()
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return squared.clamp_min(0.0)


def location_terms(
    track_location: Tensor, detection_location: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Location distance, depth distance and the track's two uncertainties.

    Args:
        track_location: (T, 99) predicted (or, for a one-frame-old track, raw) location vectors.
        detection_location: (D, 99) raw location vectors.

    Returns:
        d_L (T, D) image distance of the location points, d_N (T, D) ``|ln(z_track / z_det)|``,
        c_xy (T,) ``sqrt(L[93]^2 + L[94]^2)`` and c_N (T,) ``|ln(1 / L[95])|``.
    """
    track_point = location_point(track_location).float()
    detection_point = location_point(detection_location).float()
    image_distance = torch.linalg.vector_norm(track_point[:, None, :] - detection_point[None, :, :], dim=-1)
    ratio = track_location[:, 92].float()[:, None] / detection_location[:, 92].float()[None, :]
    ratio = torch.where(ratio > 1, 1.0 / ratio, ratio)
    depth_distance = -torch.log(ratio)
    location_uncertainty = torch.sqrt(track_location[:, 93].float() ** 2 + track_location[:, 94].float() ** 2)
    depth_uncertainty = torch.abs(torch.log(1.0 / track_location[:, 95].float()))
    return image_distance, depth_distance, location_uncertainty, depth_uncertainty


def motion_cost(
    track_pose: Tensor,
    track_location: Tensor,
    detection_pose: Tensor,
    detection_location: Tensor,
    betas: Sequence[float] = EQ019_BETAS,
    pose_clip: float = EQ019_POSE_CLIP,
) -> Tensor:
    """The EQ_019 cost without its texture factor: pose, location and depth factors multiplied.

    Args:
        track_pose: (T, 229); track_location: (T, 99); detection_pose: (D, 229); detection_location: (D, 99).
        betas: (beta_T, beta_P, beta_L, beta_N).
        pose_clip: upper clip of the squared pose distance.

    Returns:
        (T, D) float64, every finite entry >= 1.
    """
    _, beta_pose, beta_location, beta_depth = betas
    pose_term = pose_distance(track_pose, detection_pose).clamp_max(pose_clip)
    image_distance, depth_distance, location_unc, depth_unc = location_terms(
        track_location, detection_location
    )
    location_factor = torch.exp(image_distance / (0.1 + torch.tanh(location_unc))[:, None] / beta_location)
    depth_factor = torch.exp(depth_distance / (0.1 + torch.tanh(depth_unc))[:, None] / beta_depth)
    pose_factor = 1.0 + beta_pose * pose_term
    return pose_factor.double() * location_factor.double() * depth_factor.double()


def masked_pair_maps(
    track_uv: Tensor, detection_uv: Tensor, pairs: Tensor, out: Tensor | None = None
) -> Tensor:
    """The pair-wise jointly visible UV maps that the texture distance encodes.

    Texels visible in both maps (mask channel > 0.5) are kept; all four channels are zeroed
    elsewhere, so the mask channel becomes 1/0.

    Args:
        track_uv: (T, 4, S, S); detection_uv: (D, 4, S, S); pairs: (P, 2) int64 (track, detection).
        out: optional (>= 2P, 4, S, S) float32 buffer to fill (avoids re-allocating per batch).

    Returns:
        (2P, 4, S, S) float32: the P masked track maps, then the P masked detection maps.
    """
    count = pairs.shape[0]
    shape = (2 * count, *track_uv.shape[1:])
    maps = (
        torch.empty(shape, dtype=torch.float32, device=track_uv.device) if out is None else out[: 2 * count]
    )
    maps[:count] = track_uv[pairs[:, 0]]
    maps[count:] = detection_uv[pairs[:, 1]]
    visible = (maps[:count, 3:4] > 0.5) & (maps[count:, 3:4] > 0.5)
    maps.view(2, count, *track_uv.shape[1:]).mul_(visible)
    return maps


def texture_distance(
    track_uv: Tensor,
    detection_uv: Tensor,
    pairs: Tensor,
    encoder: AppearanceEncoder,
    pairs_per_batch: int = 16,
) -> Tensor:
    """PHALP's per-pair texture distance ``r_T = 100 |enc(U_t * M) / 1000 - enc(U_d * M) / 1000|^2``.

    The mask M depends on the pair, so both maps of every pair are encoded; the 2P maps go through
    the encoder in batches of ``2 * pairs_per_batch`` (one forward per batch, never one per pair),
    assembled in one reused buffer.

    Args:
        track_uv: (T, 4, S, S); detection_uv: (D, 4, S, S).
        pairs: (P, 2) int64 (track index, detection index).
        encoder: maps (B, 4, S, S) -> (B, 4096) appearance codes (HMAR.encode_appearance).
        pairs_per_batch: pairs per encoder call; bounds memory at 2 * pairs_per_batch maps.

    Returns:
        (P,) float64.
    """
    total = pairs.shape[0]
    if total == 0:
        return torch.zeros(0, dtype=torch.float64, device=track_uv.device)
    buffer = torch.empty(
        (2 * min(pairs_per_batch, total), *track_uv.shape[1:]), dtype=torch.float32, device=track_uv.device
    )
    distances = []
    for start in range(0, total, pairs_per_batch):
        chunk = pairs[start : start + pairs_per_batch]
        maps = masked_pair_maps(track_uv, detection_uv, chunk, out=buffer)
        with torch.no_grad():
            codes = encoder(maps).double() / APPEARANCE_SCALE
        track_codes, detection_codes = codes.split(chunk.shape[0], dim=0)
        distances.append(
            TEXTURE_WEIGHT * ((track_codes - detection_codes) ** 2).sum(dim=1).to(track_uv.device)
        )
    return torch.cat(distances)


def appearance_code_distance(track_appearance: Tensor, detection_appearance: Tensor) -> Tensor:
    """Squared L2 between appearance codes divided by 1000 (PHALP's 'A' cue); (T, D) float64."""
    a = track_appearance.double() / APPEARANCE_SCALE
    b = detection_appearance.double() / APPEARANCE_SCALE
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T).clamp_min(0.0)


@dataclass
class TrackFeatures:
    """Track-side features at matching time (T rows, tracker-list order)."""

    pose: Tensor  # (T, 229) predicted pose
    location: Tensor  # (T, 99) predicted location
    appearance: Tensor  # (T, 4096) last detection's appearance code
    uv: Tensor | None  # (C, 4, S, S) blended UV maps (the bank's storage), or None
    uv_rows: Tensor | None = None  # (T,) row of ``uv`` for each track; None = row t is track t


def eq019_cost(
    tracks: TrackFeatures,
    detection_pose: Tensor,
    detection_location: Tensor,
    detection_appearance: Tensor,
    detection_uv: Tensor | None,
    encoder: AppearanceEncoder | None,
    betas: Sequence[float] = EQ019_BETAS,
    pose_clip: float = EQ019_POSE_CLIP,
    gate_threshold: float | None = None,
    pairs_per_batch: int = 16,
    nan_cost: float = 0.0,
    stats: dict[str, int] | None = None,
) -> Tensor:
    """The full EQ_019 cost matrix.

    The texture distance is used when an encoder and both UV maps are available; otherwise the
    appearance codes are compared directly.

    Args:
        tracks: track-side features.
        detection_pose: (D, 229); detection_location: (D, 99); detection_appearance: (D, 4096);
        detection_uv: (D, 4, S, S) or None.
        encoder: appearance encoder for the texture distance, or None.
        betas: (beta_T, beta_P, beta_L, beta_N).
        pose_clip: clip of the squared pose distance.
        gate_threshold: when set, the texture is only encoded for pairs whose motion cost is
            <= this value. The texture factor is >= 1, so the skipped pairs cost more than the
            threshold anyway and the thresholded matrix is unchanged; their entry is the motion
            cost (a lower bound).
        pairs_per_batch: pairs per encoder call.
        nan_cost: value of NaN entries (PHALP's ``nan_to_num`` gives 0).
        stats: if given, ``stats["texture_pairs"]`` is increased by the number of pairs encoded.

    Returns:
        (T, D) float64; +inf becomes the largest float64, NaN becomes ``nan_cost``.
    """
    beta_texture = betas[0]
    motion = motion_cost(tracks.pose, tracks.location, detection_pose, detection_location, betas, pose_clip)
    num_tracks, num_detections = motion.shape
    use_texture = encoder is not None and tracks.uv is not None and detection_uv is not None
    if use_texture:
        if gate_threshold is None:
            candidates = torch.ones_like(motion, dtype=torch.bool)
        else:
            candidates = motion <= gate_threshold  # NaN compares False: stays NaN below
        pairs = candidates.nonzero()
        if stats is not None:
            stats["texture_pairs"] = stats.get("texture_pairs", 0) + int(pairs.shape[0])
        texture = torch.zeros_like(motion)
        if pairs.numel():
            storage_pairs = pairs.clone()
            if tracks.uv_rows is not None:
                storage_pairs[:, 0] = tracks.uv_rows[pairs[:, 0]]
            texture[pairs[:, 0], pairs[:, 1]] = texture_distance(
                tracks.uv, detection_uv, storage_pairs.to(tracks.uv.device), encoder, pairs_per_batch
            ).to(motion.device)
    else:
        texture = appearance_code_distance(tracks.appearance, detection_appearance)
    cost = (1.0 + beta_texture * texture) * motion
    return torch.nan_to_num(cost, nan=nan_cost, posinf=_FLOAT64_MAX)


@dataclass
class Assignment:
    """Result of the thresholded assignment, in PHALP's list orders."""

    matches: list[tuple[int, int]]  # (track index, detection index), ascending track index
    unmatched_tracks: list[int]
    unmatched_detections: list[int]  # unassigned columns ascending, then rejected pairs' columns


def cpython_set_order_difference(num_tracks: int, matched_tracks: Sequence[int]) -> list[int]:
    """``list(set(range(num_tracks)) - set(matched_tracks))``: PHALP's unmatched-track order.

    The iteration order of a CPython set of small ints is hash-slot order (``i & mask`` of the
    result set's table), not ascending: {3, 9, 12} iterates as [9, 3, 12]. Building the same set
    expression with Python ints reproduces the original's order exactly on CPython.
    """
    return list(set(range(num_tracks)) - {int(index) for index in matched_tracks})


def hungarian_assignment(cost: Tensor, threshold: float, set_order: bool = False) -> Assignment:
    """Rectangular min-sum assignment with PHALP's threshold rules (spec 11.2).

    Costs above ``threshold`` are clipped to ``threshold + 1e-5`` before solving; assigned pairs
    with cost above the threshold are rejected.

    Args:
        cost: (T, D) cost matrix.
        threshold: largest accepted cost (PHALP 100).
        set_order: order the unmatched tracks as a CPython set (reference) instead of ascending.

    Returns:
        The :class:`Assignment`.
    """
    from scipy.optimize import linear_sum_assignment

    num_tracks, num_detections = cost.shape
    if num_tracks == 0 or num_detections == 0:
        unmatched_tracks = (
            cpython_set_order_difference(num_tracks, []) if set_order else list(range(num_tracks))
        )
        return Assignment([], unmatched_tracks, list(range(num_detections)))
    clipped = cost.detach().double().cpu().numpy().copy()
    clipped[clipped > threshold] = threshold + 1e-5
    rows, cols = linear_sum_assignment(clipped)
    accepted = clipped[rows, cols] <= threshold
    matches = [(int(r), int(c)) for r, c, ok in zip(rows, cols, accepted, strict=True) if ok]
    assigned_cols = set(int(c) for c in cols)
    unmatched_detections = [c for c in range(num_detections) if c not in assigned_cols]
    unmatched_detections += [int(c) for c, ok in zip(cols, accepted, strict=True) if not ok]
    matched_rows = [r for r, _ in matches]
    if set_order:
        unmatched_tracks = cpython_set_order_difference(num_tracks, matched_rows)
    else:
        matched = set(matched_rows)
        unmatched_tracks = [r for r in range(num_tracks) if r not in matched]
    return Assignment(matches, unmatched_tracks, unmatched_detections)


def ground_truth_assignment(
    track_gt_ids: Tensor, detection_gt_ids: Tensor, set_order: bool = False
) -> Assignment:
    """Match tracks and detections that carry the same given id (PHALP's ``use_gt``).

    Each track takes the first detection with its id and each detection is used once (PHALP would
    update a track twice on duplicate ids).

    Args:
        track_gt_ids: (T,) id of each track's latest detection (-1 = none).
        detection_gt_ids: (D,) given ids (-1 = none).
        set_order: CPython set order for the unmatched tracks.
    """
    num_tracks, num_detections = track_gt_ids.shape[0], detection_gt_ids.shape[0]
    equal = (track_gt_ids[:, None] == detection_gt_ids[None, :]) & (detection_gt_ids[None, :] >= 0)
    matches: list[tuple[int, int]] = []
    used: set[int] = set()
    for track_index, detection_index in equal.nonzero().tolist():
        if detection_index in used or (matches and matches[-1][0] == track_index):
            continue
        matches.append((track_index, detection_index))
        used.add(detection_index)
    matched_rows = [r for r, _ in matches]
    if set_order:
        unmatched_tracks = cpython_set_order_difference(num_tracks, matched_rows)
    else:
        unmatched_tracks = sorted(set(range(num_tracks)) - set(matched_rows))
    unmatched_detections = [c for c in range(num_detections) if c not in used]
    return Assignment(matches, unmatched_tracks, unmatched_detections)

# ----------------------------------------------------------------------------- phalp_tracker.py

log = logging.getLogger(__name__)

_FRAME_FIELDS = {"video", "frame_index", "frame_name", "image_size", "shot", "extra"}


@dataclass
class _PendingFrame:
    """A processed frame whose entries may still receive back-filled tracks."""

    frame: FrameDetections  # the frame's detections without UV maps (frame-level fields + template)
    track_ids: list[int] = field(default_factory=list)
    time_since_update: list[int] = field(default_factory=list)
    records: list[DetectionRecord] = field(default_factory=list)
    pose_parts: list[Tensor] = field(default_factory=list)  # predicted poses, aligned with track_ids
    location_parts: list[Tensor] = field(default_factory=list)


def concat_detections(parts: Sequence[FrameDetections], template: FrameDetections) -> FrameDetections:
    """Row-wise concatenation of detection blocks; frame-level fields come from ``template``.

    A per-row field that is None in any block is None in the result.
    """
    if not parts:
        return template.select(torch.zeros(0, dtype=torch.int64))
    values: dict[str, Any] = {}
    for f in fields(FrameDetections):
        if f.name in _FRAME_FIELDS:
            continue
        column = [getattr(part, f.name) for part in parts]
        values[f.name] = (
            None if any(v is None for v in column) else torch.cat([v.to(column[0].device) for v in column])
        )
    return replace(template, **values)


def enable_reference_quirks(predictor: PosePredictor) -> bool:
    """Switch a pose predictor (or the module a wrapper holds as ``.module``) to ``reference_quirks``.

    The original reads every track of a predictor batch at the first track's slot; the pose
    transformer reproduces that when its ``reference_quirks`` attribute is True. Returns whether a
    predictor with that attribute was found (a constant predictor has no slots and needs none).
    """
    for candidate in (predictor, getattr(predictor, "module", None)):
        if candidate is not None and hasattr(candidate, "reference_quirks"):
            candidate.reference_quirks = True
            log.info("reference_mode: %s switched to reference_quirks=True", type(candidate).__name__)
            return True
    if not isinstance(predictor, ConstantPosePredictor):
        log.warning(
            "reference_mode: pose predictor %s has no reference_quirks attribute", type(predictor).__name__
        )
    return False


class PHALPTracker:
    """PHALP association with tentative/confirmed/deleted tracks, predictors and back-filling.

    Args:
        n_init: consecutive hits that confirm a tentative track; also the back-fill depth + 1.
        max_age: a confirmed track is deleted once ``time_since_update > max_age``.
        track_history: length H of the per-track detection history used by the predictors.
        hungarian_threshold: largest accepted association cost.
        betas: EQ_019 weights (texture, pose, location, depth).
        pose_clip: clip of the squared pose distance.
        uv_alpha: UV blending rate; a matched detection with score c blends with ``uv_alpha * c^2``.
        location_alpha_x, location_alpha_y, location_alpha_depth: ridge penalties of the location
            predictor's x, y and log-depth series.
        max_prediction_gap: cap on the location extrapolation gap.
        pose_predictor: a :class:`PosePredictor` (the pose transformer); None -> constant pose.
        appearance_encoder: (K, 4, S, S) -> (K, 4096) encoder for the per-pair texture distance
            (``HMAR.encode_appearance``); None (or a frame without ``uv``) -> appearance codes.
        reference_mode: reproduce the original's order-dependent quirks so that identical inputs give
            identical ids (unmatched tracks in CPython set order, the pose predictor read at the first
            track's slot in two batches, NaN costs as 0); see docs/tracker.md.
        use_gt: when a frame carries ``gt_track_ids``, match tracks to detections by those ids instead
            of by cost, and confirm tracks created from an id >= 0 immediately.
        gate_texture: only encode the texture of pairs whose motion cost is within the threshold
            (exact: the other pairs cannot be accepted whatever their texture).
        pairs_per_batch: track-detection pairs per appearance-encoder call.
        device: where track state lives and the cost is computed.
    """

    def __init__(
        self,
        n_init: int = 5,
        max_age: int = 50,
        track_history: int = 7,
        hungarian_threshold: float = 100.0,
        betas: Sequence[float] = EQ019_BETAS,
        pose_clip: float = EQ019_POSE_CLIP,
        uv_alpha: float = 0.1,
        location_alpha_x: float = 1.2,
        location_alpha_y: float = 2.0,
        location_alpha_depth: float = 5.0,
        max_prediction_gap: int = 48,
        pose_predictor: PosePredictor | None = None,
        appearance_encoder: AppearanceEncoder | None = None,
        reference_mode: bool = False,
        use_gt: bool = False,
        gate_texture: bool = True,
        pairs_per_batch: int = 16,
        device: str = "cpu",
    ) -> None:
        if n_init < 1 or max_age < 0 or track_history < 3:
            raise ValueError(
                f"need n_init >= 1, max_age >= 0, track_history >= 3; got {n_init}, {max_age}, {track_history}"
            )
        if len(betas) != 4:
            raise ValueError(f"betas must have 4 entries (texture, pose, location, depth), got {list(betas)}")
        self.n_init = n_init
        self.max_age = max_age
        self.track_history = track_history
        self.hungarian_threshold = float(hungarian_threshold)
        self.betas = tuple(float(b) for b in betas)
        self.pose_clip = pose_clip
        self.uv_alpha = uv_alpha
        self.reference_mode = reference_mode
        self.use_gt = use_gt
        self.gate_texture = gate_texture
        self.pairs_per_batch = pairs_per_batch
        self.device = torch.device(device)
        self.appearance_encoder = appearance_encoder
        self.pose_predictor: PosePredictor = (
            pose_predictor if pose_predictor is not None else ConstantPosePredictor()
        )
        if reference_mode:
            enable_reference_quirks(self.pose_predictor)
        self.location_predictor = RidgeLocationPredictor(
            alpha_x=location_alpha_x,
            alpha_y=location_alpha_y,
            alpha_depth=location_alpha_depth,
            max_gap=max_prediction_gap,
            history_length=track_history,
            reference_mode=reference_mode,
        )
        self.stage_seconds: dict[str, float] = {}
        self.counters: dict[str, int] = {}
        self.reset()

    # ------------------------------------------------------------------ public API

    def reset(self) -> None:
        """Forget all tracks and pending frames; ids restart at 1 (call between videos).

        Also zeroes ``stage_seconds`` (time per stage) and ``counters`` (pairs scored, pairs whose
        texture was encoded).
        """
        self.tracks = TrackBank(
            history_length=self.track_history,
            record_length=self.n_init,
            device=self.device,
            uv_dtype=torch.float64 if self.reference_mode else torch.float32,
        )
        self.next_id = 1
        self._pending: deque[_PendingFrame] = deque()
        self._pending_by_index: dict[int, _PendingFrame] = {}
        self._last_frame_index: int | None = None
        self.last_cost: Tensor | None = None
        self.last_assignment: Assignment | None = None
        self.stage_seconds = {"association": 0.0, "update": 0.0, "prediction": 0.0, "recording": 0.0}
        self.counters: dict[str, int] = {"texture_pairs": 0, "candidate_pairs": 0}

    def update(self, frame: FrameDetections) -> list[FrameTracks]:
        """Track one frame; return the frames that are now complete, oldest first.

        Args:
            frame: this frame's detections; ``frame_index`` must increase from call to call.

        Returns:
            Zero or more :class:`FrameTracks` (each frame is returned once, ``n_init - 1`` calls late).
        """
        frame.validate()
        if frame.uv is not None and (frame.uv.ndim != 4 or frame.uv.shape[1] != 4):
            raise ValueError(
                f"{frame.video} frame {frame.frame_name}: uv has shape {tuple(frame.uv.shape)}, expected (N, 4, S, S)"
            )
        if self._last_frame_index is not None and frame.frame_index <= self._last_frame_index:
            raise ValueError(
                f"{frame.video} frame {frame.frame_name}: frame_index {frame.frame_index} does not increase "
                f"(previous {self._last_frame_index}); call reset() between videos"
            )
        self._last_frame_index = frame.frame_index
        bank = self.tracks
        rows = bank.rows()
        bank.age[rows] += 1
        bank.time_since_update[rows] += 1

        start = time.perf_counter()
        assignment = self._associate(frame, rows)
        self.last_assignment = assignment
        self._tick("association", start)

        start = time.perf_counter()
        slim = replace(frame, uv=None)
        matched_rows, just_confirmed = self._update_matched(frame, slim, rows, assignment)
        unmatched_rows = rows[torch.tensor(assignment.unmatched_tracks, dtype=torch.int64)]
        self._mark_missed(unmatched_rows)
        self._tick("update", start)

        start = time.perf_counter()
        self._predict(matched_rows, unmatched_rows)
        self._tick("prediction", start)

        start = time.perf_counter()
        self._create_tracks(frame, slim, assignment.unmatched_detections)
        order = bank.rows()
        bank.remove(order[bank.state[order] != TrackState.DELETED].tolist())
        self._record(slim, just_confirmed)
        emitted = []
        while len(self._pending) > self.n_init - 1:
            emitted.append(self._emit(self._pending.popleft()))
        self._tick("recording", start)
        return emitted

    def finalize(self) -> list[FrameTracks]:
        """Emit every frame still waiting for back-fills (end of the video)."""
        emitted = [self._emit(pending) for pending in self._pending]
        self._pending.clear()
        self._pending_by_index.clear()
        return emitted

    # ------------------------------------------------------------------ steps

    def _tick(self, stage: str, start: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + time.perf_counter() - start

    def _associate(self, frame: FrameDetections, rows: Tensor) -> Assignment:
        bank = self.tracks
        set_order = self.reference_mode
        if self.use_gt and frame.gt_track_ids is not None:
            self.last_cost = None
            return ground_truth_assignment(bank.gt_id[rows], frame.gt_track_ids.to(self.device), set_order)
        if len(rows) == 0 or len(frame) == 0:
            self.last_cost = torch.zeros(len(rows), len(frame), dtype=torch.float64)
            return hungarian_assignment(self.last_cost, self.hungarian_threshold, set_order)
        self.counters["candidate_pairs"] += len(rows) * len(frame)
        use_uv = self.appearance_encoder is not None and frame.uv is not None and bank.uv is not None
        features = TrackFeatures(
            pose=bank.predicted_pose[rows],
            location=bank.predicted_location[rows],
            appearance=bank.appearance[rows],
            uv=bank.uv if use_uv else None,
            uv_rows=rows,
        )
        cost = eq019_cost(
            features,
            frame.pose.to(self.device),
            frame.location.to(self.device),
            frame.appearance.to(self.device),
            frame.uv.to(self.device) if use_uv else None,
            self.appearance_encoder if use_uv else None,
            betas=self.betas,
            pose_clip=self.pose_clip,
            gate_threshold=self.hungarian_threshold if self.gate_texture else None,
            pairs_per_batch=self.pairs_per_batch,
            # A NaN cost (e.g. a non-positive depth) is a perfect match in the original.
            nan_cost=0.0 if self.reference_mode else float("inf"),
            stats=self.counters,
        )
        self.last_cost = cost
        return hungarian_assignment(cost, self.hungarian_threshold, set_order)

    def _update_matched(
        self, frame: FrameDetections, slim: FrameDetections, rows: Tensor, assignment: Assignment
    ) -> tuple[Tensor, list[int]]:
        """Apply the matched detections; returns the matched rows (match order) and newly confirmed rows."""
        bank = self.tracks
        if not assignment.matches:
            return torch.zeros(0, dtype=torch.int64, device=self.device), []
        track_index, detection_index = (
            torch.tensor(v, dtype=torch.int64) for v in zip(*assignment.matches, strict=True)
        )
        matched_rows = rows[track_index]
        detections = detection_index.to(self.device)
        bank.push_history(
            matched_rows,
            frame.frame_index,
            frame.pose.to(self.device)[detections],
            frame.location.to(self.device)[detections],
            reset_location=frame.shot,
        )
        if frame.uv is not None:
            uv = frame.uv.to(self.device)[detections]
            if bank.uv is None:
                bank.uv = torch.zeros((bank.capacity, *uv.shape[1:]), dtype=bank.uv_dtype, device=self.device)
            weight = self.uv_alpha * frame.scores.to(self.device)[detections].double() ** 2
            bank.uv.index_copy_(0, matched_rows, blend_uv(bank.uv[matched_rows], uv, weight))
        bank.appearance[matched_rows] = frame.appearance.to(self.device)[detections].float()
        if frame.gt_track_ids is not None:
            bank.gt_id[matched_rows] = frame.gt_track_ids.to(self.device)[detections]
        bank.hits[matched_rows] += 1
        bank.time_since_update[matched_rows] = 0
        tentative = bank.state[matched_rows] == TrackState.TENTATIVE
        confirm = tentative & (bank.hits[matched_rows] >= self.n_init)
        if self.use_gt and frame.gt_track_ids is not None:
            confirm |= tentative & (frame.gt_track_ids.to(self.device)[detections] >= 0)
        bank.state[matched_rows[confirm]] = int(TrackState.CONFIRMED)
        # PHALP back-fills a track when its hits reach exactly n_init, i.e. when confirmed by hits.
        backfill = confirm & (bank.hits[matched_rows] == self.n_init)
        just_confirmed = matched_rows[backfill].tolist()

        block = slim.select(detection_index)
        for position, row in enumerate(matched_rows.tolist()):
            bank.records[row].append(DetectionRecord(frame.frame_index, block, position))
        return matched_rows, just_confirmed

    def _mark_missed(self, unmatched_rows: Tensor) -> None:
        bank = self.tracks
        state = bank.state[unmatched_rows]
        expired = (state == TrackState.TENTATIVE) | (bank.time_since_update[unmatched_rows] > self.max_age)
        bank.state[unmatched_rows[expired]] = int(TrackState.DELETED)

    def _predict(self, matched_rows: Tensor, unmatched_rows: Tensor) -> None:
        """Next-frame location and pose predictions of the tracks that existed before this frame."""
        bank = self.tracks
        every = torch.cat([matched_rows, unmatched_rows])
        if every.numel() == 0:
            return
        alive = every[bank.state[every] != TrackState.DELETED]
        if alive.numel():
            bank.predicted_location[alive] = self.location_predictor.predict(
                bank.history_location[alive], bank.history_time[alive], bank.time_since_update[alive]
            )
        if self.reference_mode:
            # The original predicts the matched and the unmatched tracks in two batches, deleted
            # ones included, and a quirky predictor's output depends on the batch's first track.
            batches = [matched_rows, unmatched_rows]
        else:
            batches = [alive]
        for batch in batches:
            if batch.numel() == 0:
                continue
            with torch.no_grad():
                predicted = self.pose_predictor.predict_next(
                    bank.history_pose[batch], bank.history_time[batch], bank.time_since_update[batch]
                )
            bank.predicted_pose[batch] = predicted.to(self.device, torch.float32)

    def _create_tracks(
        self, frame: FrameDetections, slim: FrameDetections, detection_order: list[int]
    ) -> None:
        if not detection_order:
            return
        bank = self.tracks
        index = torch.tensor(detection_order, dtype=torch.int64)
        count = len(detection_order)
        gt_ids = (
            frame.gt_track_ids[index]
            if frame.gt_track_ids is not None
            else torch.full((count,), -1, dtype=torch.int64)
        )
        confirmed = (gt_ids >= 0) if self.use_gt else torch.zeros(count, dtype=torch.bool)
        block = slim.select(index)
        device_index = index.to(self.device)
        bank.add(
            track_ids=torch.arange(self.next_id, self.next_id + count, dtype=torch.int64),
            frame_index=frame.frame_index,
            pose=frame.pose.to(self.device)[device_index],
            location=frame.location.to(self.device)[device_index],
            appearance=frame.appearance.to(self.device)[device_index],
            uv=frame.uv.to(self.device)[device_index] if frame.uv is not None else None,
            gt_ids=gt_ids.to(torch.int64),
            confirmed=confirmed,
            records=[DetectionRecord(frame.frame_index, block, k) for k in range(count)],
        )
        self.next_id += count

    def _record(self, slim: FrameDetections, just_confirmed: list[int]) -> None:
        """Add this frame's confirmed tracks and back-fill the newly confirmed ones."""
        bank = self.tracks
        pending = _PendingFrame(frame=slim)
        self._pending.append(pending)
        self._pending_by_index[slim.frame_index] = pending
        order = bank.rows()
        rows = order[bank.state[order] == TrackState.CONFIRMED]
        if rows.numel():
            confirmed = rows.tolist()
            pending.track_ids.extend(bank.track_id[rows].tolist())
            pending.time_since_update.extend(bank.time_since_update[rows].tolist())
            pending.records.extend(bank.records[row][-1] for row in confirmed)
            pending.pose_parts.append(bank.predicted_pose[rows].clone())
            pending.location_parts.append(bank.predicted_location[rows].clone())
        for row in just_confirmed:
            # history[-2-k] for k = 0..n_init-2 are the detections that confirmed the track.
            records = list(bank.records[row])[:-1]
            for record in records:
                target = self._pending_by_index.get(record.frame_index)
                if target is None:  # already emitted: cannot happen with consecutive hits
                    continue
                target.track_ids.append(int(bank.track_id[row]))
                target.time_since_update.append(0)
                target.records.append(record)
                target.pose_parts.append(bank.predicted_pose[row : row + 1].clone())
                target.location_parts.append(bank.predicted_location[row : row + 1].clone())

    def _emit(self, pending: _PendingFrame) -> FrameTracks:
        self._pending_by_index.pop(pending.frame.frame_index, None)
        frame = pending.frame
        # Gather detection rows block by block (one select per source frame), then restore entry order.
        groups: dict[int, tuple[FrameDetections, list[int], list[int]]] = {}
        for position, record in enumerate(pending.records):
            group = groups.setdefault(id(record.detection), (record.detection, [], []))
            group[1].append(record.row)
            group[2].append(position)
        parts = [
            block.select(torch.tensor(block_rows, dtype=torch.int64))
            for block, block_rows, _ in groups.values()
        ]
        detections = concat_detections(parts, frame)
        if parts:
            positions = torch.tensor(
                [p for _, _, group_positions in groups.values() for p in group_positions]
            )
            detections = detections.select(torch.argsort(positions))
        detections = replace(detections, **{name: getattr(frame, name) for name in _FRAME_FIELDS})
        count = len(pending.track_ids)
        return FrameTracks(
            video=frame.video,
            frame_index=frame.frame_index,
            frame_name=frame.frame_name,
            image_size=frame.image_size,
            track_ids=torch.tensor(pending.track_ids, dtype=torch.int64),
            time_since_update=torch.tensor(pending.time_since_update, dtype=torch.int64),
            detections=detections,
            predicted_pose=torch.cat(pending.pose_parts).cpu() if count else torch.zeros(0, 229),
            predicted_location=torch.cat(pending.location_parts).cpu() if count else torch.zeros(0, 99),
            shot=frame.shot,
        )
