"""Peer trackers for the real-video comparison, written from their papers' published algorithms.

* :class:`SortTracker`: SORT (Bewley et al. 2016): Kalman filter on (cx, cy, area, aspect), Hungarian
  on IoU >= 0.3, tracks die after one missed frame, shown after 3 hits; boxes are the filter's.
* :class:`ByteTracker`: ByteTrack (Zhang et al. 2022): Kalman filter on (cx, cy, aspect, height),
  IoU x score matching of high-score detections to tracked and lost tracks, a second stage for
  low-score detections, unconfirmed tracks last, 30 frames of track buffer; boxes are the filter's.
* ``ByteTracker(state="xywh", ...)``: BoT-SORT without re-id (Aharon et al. 2022): the same two-stage
  association with BoT-SORT's thresholds and its Kalman filter on (cx, cy, w, h). Camera-motion
  compensation is left out (the sequences here are filmed from a fixed camera).

Inputs per frame are (n, 5) arrays ``x, y, w, h, score``; outputs (m, 6) ``id, x, y, w, h, score``.
These run only in the experiment; the per-track Python objects follow the reference code's
structure, which is fine at a few dozen tracks.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (n, 4) and (m, 4) xywh boxes.

    Kept here, not phalp_lightning.utils.boxes.box_iou: the pinned baselines' figures were measured
    with this exact formula (union floored at 1e-9), and a baseline must not move with the library.
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a1, a2 = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    b1, b2 = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    inter = np.clip(np.minimum(a2, b2) - np.maximum(a1, b1), 0, None).prod(-1)
    union = a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - inter
    return inter / np.maximum(union, 1e-9)


def linear_assignment(cost: np.ndarray, threshold: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Min-cost matching in which leaving a pair unmatched costs ``threshold`` (lapjv's cost_limit)."""
    rows_n, cols_n = cost.shape
    if rows_n == 0 or cols_n == 0:
        return [], list(range(rows_n)), list(range(cols_n))
    gain = np.where(cost <= threshold, cost - threshold, 0.0)
    rows, cols = linear_sum_assignment(gain)
    matches = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= threshold]
    used_r = {r for r, _ in matches}
    used_c = {c for _, c in matches}
    return matches, [r for r in range(rows_n) if r not in used_r], [c for c in range(cols_n) if c not in used_c]


# --------------------------------------------------------------------------------------------- SORT


class _SortTrack:
    count = 0

    def __init__(self, box: np.ndarray) -> None:
        # State (cx, cy, s, r, vcx, vcy, vs), as in SORT's KalmanBoxTracker.
        self.F = np.eye(7)
        self.F[0, 4] = self.F[1, 5] = self.F[2, 6] = 1.0
        self.H = np.eye(4, 7)
        self.R = np.eye(4)
        self.R[2:, 2:] *= 10.0
        self.P = np.eye(7) * 10.0
        self.P[4:, 4:] *= 100.0  # 10 x 1000 overall, as SORT
        self.Q = np.eye(7)
        self.Q[-1, -1] *= 0.01
        self.Q[4:, 4:] *= 0.01
        self.x = np.zeros(7)
        self.x[:4] = self._measure(box)
        _SortTrack.count += 1
        self.id = _SortTrack.count
        self.time_since_update = 0
        self.hit_streak = 0

    @staticmethod
    def _measure(box: np.ndarray) -> np.ndarray:
        x, y, w, h = box
        return np.array([x + w / 2, y + h / 2, w * h, w / max(h, 1e-9)])

    def predict(self) -> np.ndarray:
        if self.x[6] + self.x[2] <= 0:
            self.x[6] = 0.0
        self.x = self.F @ self.x
        self.P = self.F @ self.P @ self.F.T + self.Q
        if self.time_since_update > 0:
            self.hit_streak = 0
        self.time_since_update += 1
        return self.box()

    def update(self, box: np.ndarray) -> None:
        self.time_since_update = 0
        self.hit_streak += 1
        innovation = self._measure(box) - self.H @ self.x
        s = self.H @ self.P @ self.H.T + self.R
        gain = self.P @ self.H.T @ np.linalg.inv(s)
        self.x = self.x + gain @ innovation
        self.P = (np.eye(7) - gain @ self.H) @ self.P

    def box(self) -> np.ndarray:
        cx, cy, s, r = self.x[:4]
        w = np.sqrt(max(s * r, 1e-9))
        h = max(s, 1e-9) / w
        return np.array([cx - w / 2, cy - h / 2, w, h])


class SortTracker:
    """SORT: IoU Hungarian with a Kalman box filter (max_age 1, min_hits 3, IoU 0.3)."""

    name = "SORT (IoU)"

    def __init__(self, max_age: int = 1, min_hits: int = 3, iou_threshold: float = 0.3) -> None:
        self.max_age, self.min_hits, self.iou_threshold = max_age, min_hits, iou_threshold
        self.tracks: list[_SortTrack] = []
        self.frame_count = 0
        _SortTrack.count = 0

    def update(self, detections: np.ndarray) -> np.ndarray:
        self.frame_count += 1
        predicted = np.array([t.predict() for t in self.tracks]).reshape(-1, 4)
        keep = np.isfinite(predicted).all(1)
        self.tracks = [t for t, ok in zip(self.tracks, keep, strict=True) if ok]
        predicted = predicted[keep]
        iou = iou_matrix(detections[:, :4], predicted)
        matches, unmatched_dets, _ = [], list(range(len(detections))), []
        if iou.size:
            rows, cols = linear_sum_assignment(-iou)
            matches = [(r, c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= self.iou_threshold]
            matched = {r for r, _ in matches}
            unmatched_dets = [d for d in range(len(detections)) if d not in matched]
        for d, t in matches:
            self.tracks[t].update(detections[d, :4])
        for d in unmatched_dets:
            self.tracks.append(_SortTrack(detections[d, :4]))
        out = []
        for track in self.tracks:
            if track.time_since_update < 1 and (track.hit_streak >= self.min_hits or self.frame_count <= self.min_hits):
                out.append([track.id, *track.box(), 1.0])
        self.tracks = [t for t in self.tracks if t.time_since_update <= self.max_age]
        return np.array(out).reshape(-1, 6)


# ------------------------------------------------------------------------------ ByteTrack / BoT-SORT


class _KalmanXYAH:
    """DeepSORT/ByteTrack's constant-velocity filter; ``state="xywh"`` is BoT-SORT's variant."""

    def __init__(self, state: str = "xyah") -> None:
        self.state = state
        self.F = np.eye(8)
        for i in range(4):
            self.F[i, 4 + i] = 1.0
        self.H = np.eye(4, 8)
        self.std_position, self.std_velocity = 1.0 / 20, 1.0 / 160

    def _std(self, mean: np.ndarray, position: float, velocity: float, aspect: tuple[float, float]) -> np.ndarray:
        if self.state == "xyah":
            h = mean[3]
            return np.array([position * h, position * h, aspect[0], position * h,
                             velocity * h, velocity * h, aspect[1], velocity * h])
        w, h = mean[2], mean[3]
        return np.array([position * w, position * h, position * w, position * h,
                         velocity * w, velocity * h, velocity * w, velocity * h])

    def measure(self, box: np.ndarray) -> np.ndarray:
        x, y, w, h = box
        if self.state == "xyah":
            return np.array([x + w / 2, y + h / 2, w / max(h, 1e-9), h])
        return np.array([x + w / 2, y + h / 2, w, h])

    def box(self, mean: np.ndarray) -> np.ndarray:
        cx, cy, a, h = mean[:4]
        w = a * h if self.state == "xyah" else a
        return np.array([cx - w / 2, cy - h / 2, w, h])

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.r_[measurement, np.zeros(4)]
        std = self._std(mean, 2 * self.std_position, 10 * self.std_velocity, (1e-2, 1e-5))
        return mean, np.diag(std**2)

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        std = self._std(mean, self.std_position, self.std_velocity, (1e-2, 1e-5))
        return self.F @ mean, self.F @ cov @ self.F.T + np.diag(std**2)

    def update(self, mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        noise = np.diag(self._std(mean, self.std_position, 0.0, (1e-1, 0.0))[:4] ** 2)
        s = self.H @ cov @ self.H.T + noise
        gain = cov @ self.H.T @ np.linalg.inv(s)
        return mean + gain @ (measurement - self.H @ mean), cov - gain @ s @ gain.T


TRACKED, LOST, REMOVED = 0, 1, 2


class _STrack:
    def __init__(self, box: np.ndarray, score: float) -> None:
        self.box_in, self.score = box, score
        self.mean: np.ndarray | None = None
        self.cov: np.ndarray | None = None
        self.state, self.activated, self.id = TRACKED, False, 0
        self.end_frame = self.start_frame = 0
        self.length = 0

    def box(self, kf: _KalmanXYAH) -> np.ndarray:
        return self.box_in if self.mean is None else kf.box(self.mean)


class ByteTracker:
    """ByteTrack (``state="xyah"``, its defaults) or BoT-SORT without re-id (``state="xywh"``)."""

    def __init__(
        self,
        state: str = "xyah",
        high_threshold: float = 0.5,
        low_threshold: float = 0.1,
        new_track_threshold: float = 0.6,
        match_threshold: float = 0.8,
        buffer: int = 30,
        name: str = "ByteTrack",
    ) -> None:
        self.kf = _KalmanXYAH(state)
        self.high, self.low, self.new_threshold = high_threshold, low_threshold, new_track_threshold
        self.match_threshold, self.buffer, self.name = match_threshold, buffer, name
        self.tracked: list[_STrack] = []
        self.lost: list[_STrack] = []
        self.frame = 0
        self.next_id = 1

    @classmethod
    def botsort(cls) -> ByteTracker:
        return cls(state="xywh", high_threshold=0.6, low_threshold=0.1, new_track_threshold=0.7, name="BoT-SORT (no re-id)")

    def _distance(self, tracks: list[_STrack], boxes: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
        track_boxes = np.array([t.box(self.kf) for t in tracks]).reshape(-1, 4)
        iou = iou_matrix(track_boxes, boxes)
        if scores is not None:
            iou = iou * scores[None, :]
        return 1.0 - iou

    def _activate(self, track: _STrack) -> None:
        track.id, self.next_id = self.next_id, self.next_id + 1
        track.mean, track.cov = self.kf.initiate(self.kf.measure(track.box_in))
        track.state, track.activated = TRACKED, self.frame == 1
        track.start_frame = track.end_frame = self.frame

    def _update(self, track: _STrack, box: np.ndarray, score: float) -> None:
        track.mean, track.cov = self.kf.update(track.mean, track.cov, self.kf.measure(box))
        track.state, track.activated, track.score = TRACKED, True, score
        track.end_frame = self.frame
        track.length += 1

    def update(self, detections: np.ndarray) -> np.ndarray:
        self.frame += 1
        boxes, scores = detections[:, :4], detections[:, 4]
        high = scores >= self.high
        low = (scores > self.low) & ~high
        high_boxes, high_scores = boxes[high], scores[high]
        low_boxes, low_scores = boxes[low], scores[low]

        unconfirmed = [t for t in self.tracked if not t.activated]
        tracked = [t for t in self.tracked if t.activated]
        pool = tracked + [t for t in self.lost if t not in tracked]
        for track in pool:
            mean = track.mean.copy()
            if track.state != TRACKED:
                mean[7] = 0.0
            track.mean, track.cov = self.kf.predict(mean, track.cov)

        activated, refound, lost = [], [], []
        matches, unmatched_tracks, unmatched_dets = linear_assignment(
            self._distance(pool, high_boxes, high_scores), self.match_threshold
        )
        for t, d in matches:
            track = pool[t]
            (activated if track.state == TRACKED else refound).append(track)
            self._update(track, high_boxes[d], high_scores[d])
        remaining = [pool[t] for t in unmatched_tracks if pool[t].state == TRACKED]
        matches, unmatched_second, _ = linear_assignment(self._distance(remaining, low_boxes, None), 0.5)
        for t, d in matches:
            self._update(remaining[t], low_boxes[d], low_scores[d])
            activated.append(remaining[t])
        for t in unmatched_second:
            remaining[t].state = LOST
            lost.append(remaining[t])
        left_boxes, left_scores = high_boxes[unmatched_dets], high_scores[unmatched_dets]
        matches, unmatched_unconfirmed, new_dets = linear_assignment(
            self._distance(unconfirmed, left_boxes, left_scores), 0.7
        )
        for t, d in matches:
            self._update(unconfirmed[t], left_boxes[d], left_scores[d])
            activated.append(unconfirmed[t])
        for t in unmatched_unconfirmed:
            unconfirmed[t].state = REMOVED
        for d in new_dets:
            if left_scores[d] < self.new_threshold:
                continue
            track = _STrack(left_boxes[d], float(left_scores[d]))
            self._activate(track)
            activated.append(track)
        for track in self.lost:
            if self.frame - track.end_frame > self.buffer:
                track.state = REMOVED

        self.tracked = [t for t in self.tracked if t.state == TRACKED]
        self.tracked += [t for t in activated + refound if t not in self.tracked]
        self.lost = [t for t in self.lost + lost if t.state == LOST and t not in self.tracked]
        self._remove_duplicates()
        out = [[t.id, *t.box(self.kf), t.score] for t in self.tracked if t.activated]
        return np.array(out).reshape(-1, 6)

    def _remove_duplicates(self) -> None:
        if not self.tracked or not self.lost:
            return
        distance = self._distance(self.tracked, np.array([t.box(self.kf) for t in self.lost]), None)
        drop_tracked, drop_lost = set(), set()
        for p, q in zip(*np.nonzero(distance < 0.15), strict=True):
            age_p = self.frame - self.tracked[p].start_frame
            age_q = self.frame - self.lost[q].start_frame
            (drop_lost if age_p > age_q else drop_tracked).add(q if age_p > age_q else p)
        self.tracked = [t for i, t in enumerate(self.tracked) if i not in drop_tracked]
        self.lost = [t for i, t in enumerate(self.lost) if i not in drop_lost]
