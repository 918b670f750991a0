"""The PHALP tracker: frame-by-frame association of detections to 3D tracks.

``update(frame)`` runs PHALP's per-frame step (docs/tracker.md, Algorithm) on a
:class:`~phalp_lightning.structures.FrameDetections` and returns the :class:`FrameTracks` that are
complete. A newly confirmed track is back-filled into the ``n_init - 1`` frames before it, so each
frame is emitted ``n_init - 1`` frames late; ``finalize()`` flushes the rest at the end of a video.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from phalp_lightning.structures import ROW_FIELDS, FrameDetections, FrameTracks
from phalp_lightning.tracking.association import (
    EQ019_BETAS,
    EQ019_POSE_CLIP,
    AppearanceEncoder,
    Assignment,
    TrackFeatures,
    eq019_cost,
    gated_assignment,
    ground_truth_assignment,
    hungarian_assignment,
)
from phalp_lightning.tracking.cues import CueReliability, resolve_cues, spread_is_zero
from phalp_lightning.tracking.motion import MotionState, box_iou_numpy
from phalp_lightning.tracking.predictors import ConstantPosePredictor, PosePredictor, RidgeLocationPredictor
from phalp_lightning.tracking.track import DetectionRecord, TrackBank, TrackState

log = logging.getLogger(__name__)

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
    return replace(template, **gather_rows(parts, None))


def gather_rows(blocks: Sequence[FrameDetections], index: Sequence[int] | None) -> dict[str, Any]:
    """Per-row fields of the blocks concatenated, then rows ``index`` of that (None = all rows).

    A per-row field that is None in any block is None in the result.
    """
    values: dict[str, Any] = {}
    rows = None if index is None else torch.tensor(index, dtype=torch.int64)
    for name in ROW_FIELDS:
        column = [getattr(block, name) for block in blocks]
        if any(v is None for v in column):
            values[name] = None
            continue
        if rows is None:
            values[name] = torch.cat([v.to(column[0].device) for v in column])
            continue
        value = column[0] if len(column) == 1 else torch.cat([v.to(column[0].device) for v in column])
        values[name] = torch.index_select(value, 0, rows.to(value.device))
    return values


def _kept_rows(frame: FrameDetections) -> FrameDetections:
    """The frame without UV maps, its per-row tensors copied once.

    Records point into it by row and entries are gathered from it frames later (ghosts, back-fills,
    emission), so it must not change when the caller reuses its buffers for the next frame.
    """
    copies: dict[str, Any] = {"uv": None}
    for name in ROW_FIELDS:
        value = getattr(frame, name)
        if name != "uv" and isinstance(value, Tensor):
            copies[name] = value.clone()
    return replace(frame, **copies)


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
        association: ``auto`` (from the informative cues), ``eq019`` (the original's cost and
            assignment), ``eq019_motion`` (EQ_019 of the informative cues times the 2D motion
            factor, gated, in priority stages) or ``motion`` (2D motion cue alone, gated, in
            stages); ``reference_mode`` always uses ``eq019``. See :mod:`.cues`.
        hmar_trained: whether HMAR's weights are trained (the pipeline passes whether a checkpoint
            was loaded); None = decided from the first frame with >= 2 detections (poses and
            appearance codes identical for everyone = untrained).
        appearance_trained: whether the appearance encoder is trained; None = as HMAR.
        motion_beta: weight of the motion factor ``exp((1 - IoU) / motion_beta)`` in ``eq019_motion``.
        gate_iou: a track and a detection can only be matched when the IoU of the track's predicted
            box and the detection's box is at least this (gated modes).
        gate_height_ratio: ... and when the detection's height is within this factor of the
            predicted box's height (gated modes).
        gate_iou_tentative: the IoU gate of tentative tracks (no velocity estimate yet).
        smooth_boxes: in gated modes, a matched track's entry reports its box filter's corrected box
            instead of the raw detection box (as SORT/ByteTrack/BoT-SORT report theirs); the
            detection's other data are unchanged.
        second_stage_score: in gated modes, detections scoring below this only continue tracks seen
            in the previous frame (after every other stage) and never start tracks (ByteTrack's
            second stage); 0 = every detection is a first-stage detection.
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
        association: str = "auto",
        hmar_trained: bool | None = None,
        appearance_trained: bool | None = None,
        motion_beta: float = 0.25,
        gate_iou: float = 0.1,
        second_stage_score: float = 0.0,
        recent_age: int = 30,
        tentative_max_misses: int = 0,
        gate_height_ratio: float = 1.5,
        gate_iou_tentative: float = 0.3,
        smooth_boxes: bool = False,
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
        if not 0.0 <= gate_iou < 1.0 or motion_beta <= 0 or gate_height_ratio < 1.0:
            raise ValueError(
                f"need 0 <= gate_iou < 1, motion_beta > 0, gate_height_ratio >= 1; got {gate_iou}, {motion_beta}, {gate_height_ratio}"
            )
        self.association = association
        self.hmar_trained = hmar_trained
        self.appearance_trained = appearance_trained
        self.motion_beta = float(motion_beta)
        self.gate_iou = float(gate_iou)
        self.second_stage_score = float(second_stage_score)
        self.recent_age = int(recent_age)
        self.gate_height_ratio = float(gate_height_ratio)
        self.gate_iou_tentative = float(gate_iou_tentative)
        self.smooth_boxes = smooth_boxes
        self.tentative_max_misses = int(tentative_max_misses)
        self.cues: CueReliability | None = None
        if reference_mode or association != "auto" or hmar_trained is not None:
            self._set_cues(hmar_trained)
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
        self.motion = MotionState(self.device)
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
        steps = 1 if self._last_frame_index is None else frame.frame_index - self._last_frame_index
        self._last_frame_index = frame.frame_index
        bank = self.tracks
        rows = bank.rows()
        if rows.numel():
            # Every storage row ages; rows not in use are reset when a track takes them.
            bank.age += 1
            bank.time_since_update += 1
        if self.cues is None and len(frame) >= 2:
            self._set_cues(self._cues_look_trained(frame))
        uses_motion = self._active_cues().mode != "eq019"
        if uses_motion:
            self.motion.predict(rows, steps)

        start = time.perf_counter()
        assignment = self._associate(frame, rows)
        self.last_assignment = assignment
        self._tick("association", start)

        start = time.perf_counter()
        slim = _kept_rows(frame)
        if assignment.matches:
            track_index, detection_index = (
                torch.tensor(v, dtype=torch.int64) for v in zip(*assignment.matches, strict=True)
            )
            matched_rows = rows[track_index.to(rows.device)]
            if uses_motion:
                slim = self._correct_motion(frame, slim, matched_rows, detection_index)
            just_confirmed = self._update_matched(frame, slim, matched_rows, detection_index)
        else:
            matched_rows, just_confirmed = torch.zeros(0, dtype=torch.int64, device=self.device), []
        if assignment.unmatched_tracks:
            unmatched_rows = rows[torch.tensor(assignment.unmatched_tracks, dtype=torch.int64, device=rows.device)]
            self._mark_missed(unmatched_rows)
        else:
            unmatched_rows = torch.zeros(0, dtype=torch.int64, device=self.device)
        self._tick("update", start)

        start = time.perf_counter()
        self._predict(matched_rows, unmatched_rows)
        self._tick("prediction", start)

        start = time.perf_counter()
        created = assignment.unmatched_detections
        self._create_tracks(frame, slim, created)
        if uses_motion and created:
            self.motion.start(
                torch.tensor(bank.order[-len(created) :], dtype=torch.int64),
                frame.boxes[torch.tensor(created, dtype=torch.int64)],
            )
        states = bank.state[bank.rows()].tolist()
        if int(TrackState.DELETED) in states:
            bank.remove([row for row, state in zip(bank.order, states, strict=True) if state != TrackState.DELETED])
            states = [state for state in states if state != TrackState.DELETED]
        confirmed = [row for row, state in zip(bank.order, states, strict=True) if state == TrackState.CONFIRMED]
        self._record(slim, confirmed, just_confirmed)
        emitted = []
        while len(self._pending) > self._emission_delay():
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

    def _set_cues(self, hmar_trained: bool | None) -> None:
        """Resolve the informative cues and the association rule; say which (once per tracker)."""
        self.cues = resolve_cues(
            self.association,
            self.reference_mode,
            hmar_trained,
            self.appearance_trained,
            not isinstance(self.pose_predictor, ConstantPosePredictor),
        )
        message = self.cues.describe(self.betas, self.motion_beta, self.gate_iou)
        if self.cues.mode == "motion" and self.association == "auto":
            log.warning("tracker: %s", message)
        else:
            log.info("tracker: %s", message)

    def _correct_motion(
        self, frame: FrameDetections, slim: FrameDetections, matched_rows: Tensor, detection_index: Tensor
    ) -> FrameDetections:
        """Correct the matched tracks' box filters; with ``smooth_boxes`` their entries report the filtered box."""
        self.motion.correct(matched_rows, frame.boxes[detection_index])
        if not self.smooth_boxes:
            return slim
        boxes = frame.boxes.clone()
        boxes[detection_index] = self.motion.boxes(matched_rows).to(boxes)
        return replace(slim, boxes=boxes)

    def _emission_delay(self) -> int:
        """Frames held back for back-fills: n_init - 1, plus the misses a tentative track may have."""
        gated = self._active_cues().mode != "eq019"
        return self.n_init - 1 + (self.tentative_max_misses if gated else 0)

    def _active_cues(self) -> CueReliability:
        """The resolved cues; until they can be judged (no frame with 2 people yet), all are trusted."""
        if self.cues is not None:
            return self.cues
        return resolve_cues(self.association, self.reference_mode, True, self.appearance_trained,
                            not isinstance(self.pose_predictor, ConstantPosePredictor))

    @staticmethod
    def _cues_look_trained(frame: FrameDetections) -> bool:
        """Unknown HMAR: identical poses and appearance codes for different people mean untrained."""
        same_pose = spread_is_zero(frame.pose[:, :226].float())
        same_appearance = spread_is_zero(frame.appearance.float())
        if same_pose and same_appearance:
            log.warning("tracker: every detection has the same pose and appearance code: treating HMAR as untrained")
        return not (same_pose and same_appearance)

    def _association_betas(self) -> tuple[float, float, float, float]:
        """EQ_019 betas with the uninformative cues switched off (factor 1)."""
        beta_texture, beta_pose, beta_location, beta_depth = self.betas
        cues = self._active_cues()
        return (
            beta_texture if cues.texture else 0.0,
            beta_pose if cues.pose else 0.0,
            beta_location,
            beta_depth if cues.location_3d else float("inf"),
        )

    def _associate_gated(self, frame: FrameDetections, rows: Tensor) -> Assignment:
        """Gated association in priority stages (``motion`` and ``eq019_motion``; docs/tracker.md).

        The gates, the motion factor and the stages are a few (T, D) float64 operations: they run in
        NumPy on the host (the same IEEE operations as in torch, so the same values); the exponential
        and the logarithm stay in torch, whose results NumPy's do not always match to the last bit.
        """
        bank = self.tracks
        cues = self._active_cues()
        num_detections = len(frame)
        scores = frame.scores.cpu().numpy()
        first_stage = scores >= self.second_stage_score
        boxes = frame.boxes.cpu().numpy()
        predicted = self.motion.boxes(rows).cpu().numpy()
        iou = box_iou_numpy(predicted, boxes)
        # A person's apparent height cannot jump between frames: log height ratio within the gate.
        height_ratio = np.maximum((boxes[:, 3] - boxes[:, 1]).astype(np.float64), 1e-6)[None, :] / np.maximum(
            predicted[:, 3] - predicted[:, 1], 1e-6
        )[:, None]
        height_ok = torch.log(torch.from_numpy(height_ratio)).abs_().numpy() <= math.log(self.gate_height_ratio)
        state = bank.state[rows].cpu().numpy()
        since = bank.time_since_update[rows].cpu().numpy()  # already aged: 1 = matched in the previous frame
        tentative = state == TrackState.TENTATIVE
        # A young track has no velocity yet: it must overlap more (ByteTrack's unconfirmed stage).
        # The gates are torch's default-dtype numbers (float32) widened to float64, as always compared.
        gate_tentative, gate = torch.tensor([self.gate_iou_tentative, self.gate_iou]).double().tolist()
        min_iou = np.where(tentative, gate_tentative, gate)
        allowed = (iou >= min_iou[:, None]) & height_ok
        if cues.mode == "motion" or len(rows) == 0 or num_detections == 0:
            cost = 1.0 - iou
            threshold = 1.0 - self.gate_iou
        else:
            self.counters["candidate_pairs"] += len(rows) * num_detections
            use_uv = cues.texture and self.appearance_encoder is not None and frame.uv is not None and bank.uv is not None
            motion_factor = torch.exp(torch.from_numpy((1.0 - iou) / self.motion_beta)).numpy()
            threshold = self.hungarian_threshold
            if allowed.any():
                eq_cost = self._eq019_cost(frame, rows, use_uv, self._association_betas(), nan_cost=float("inf"))
                cost = eq_cost.cpu().numpy() * motion_factor
            else:
                cost = np.full_like(iou, float("inf"))
        cost = np.where(allowed, cost, float("inf"))
        self.last_cost = torch.from_numpy(cost)
        confirmed = state == TrackState.CONFIRMED
        # since - 1 frames missed; the prediction of a track missed for longer than recent_age is vague.
        recent = confirmed & (since - 1 <= self.recent_age)
        # Position alone cannot re-identify a person after a long absence: only appearance can.
        long_lost = confirmed & ~recent if cues.texture else np.zeros_like(recent)
        stages = [
            (recent, first_stage),
            (long_lost, first_stage),
            (tentative, first_stage),
            (confirmed & (since <= 1), ~first_stage),
        ]
        return gated_assignment(cost, threshold, stages, may_start_track=first_stage)

    def _associate(self, frame: FrameDetections, rows: Tensor) -> Assignment:
        bank = self.tracks
        set_order = self.reference_mode
        if self.use_gt and frame.gt_track_ids is not None:
            self.last_cost = None
            return ground_truth_assignment(bank.gt_id[rows], frame.gt_track_ids.to(self.device), set_order)
        if self._active_cues().mode != "eq019":
            return self._associate_gated(frame, rows)
        if len(rows) == 0 or len(frame) == 0:
            self.last_cost = torch.zeros(len(rows), len(frame), dtype=torch.float64)
            return hungarian_assignment(self.last_cost, self.hungarian_threshold, set_order)
        self.counters["candidate_pairs"] += len(rows) * len(frame)
        use_uv = self.appearance_encoder is not None and frame.uv is not None and bank.uv is not None
        # A NaN cost (e.g. a non-positive depth) is a perfect match in the original.
        cost = self._eq019_cost(frame, rows, use_uv, self.betas, nan_cost=0.0 if self.reference_mode else float("inf"))
        self.last_cost = cost
        return hungarian_assignment(cost, self.hungarian_threshold, set_order)

    def _eq019_cost(self, frame: FrameDetections, rows: Tensor, use_uv: bool, betas: Any, nan_cost: float) -> Tensor:
        """PHALP's combined cost of the tracks ``rows`` and ``frame``'s detections (both association paths).

        Texture is encoded only for pairs the other factors leave under the threshold (``gate_texture``),
        from the bank's masked maps and this frame's detection maps masked once.
        """
        bank = self.tracks
        features = TrackFeatures(
            pose=torch.index_select(bank.predicted_pose, 0, rows),
            location=torch.index_select(bank.predicted_location, 0, rows),
            # The texture distance replaces the appearance codes: no need to gather them.
            appearance=None if use_uv else torch.index_select(bank.appearance, 0, rows),
            uv=bank.uv if use_uv else None,
            uv_rows=rows,
        )
        return eq019_cost(
            features,
            frame.pose.to(self.device),
            frame.location.to(self.device),
            frame.appearance.to(self.device),
            bank.masked_detection_uv(frame.uv) if use_uv else None,
            self.appearance_encoder if use_uv else None,
            betas=betas,
            pose_clip=self.pose_clip,
            gate_threshold=self.hungarian_threshold if self.gate_texture else None,
            pairs_per_batch=self.pairs_per_batch,
            nan_cost=nan_cost,
            stats=self.counters,
            workspace=bank.workspace,
            uv_masked=True,
            uv_visibility=(
                (bank.visible_words, bank.detection_visibility(frame.uv))
                if use_uv and bank.visible_words is not None
                else None
            ),
        )

    def _update_matched(
        self, frame: FrameDetections, slim: FrameDetections, matched_rows: Tensor, detection_index: Tensor
    ) -> list[int]:
        """Apply the matched detections (``matched_rows[k]`` gets detection ``detection_index[k]``).

        Returns the rows confirmed by this hit (to back-fill).
        """
        bank = self.tracks
        detections = detection_index.to(self.device)
        bank.push_history(
            matched_rows,
            frame.frame_index,
            torch.index_select(frame.pose.to(self.device), 0, detections),
            torch.index_select(frame.location.to(self.device), 0, detections),
            reset_location=frame.shot,
        )
        if frame.uv is not None:
            weight = torch.square(torch.index_select(frame.scores.to(self.device), 0, detections).double()) * self.uv_alpha
            bank.blend_uv_rows(matched_rows, frame.uv, detections, weight)
        bank.appearance.index_copy_(0, matched_rows, torch.index_select(frame.appearance.to(self.device), 0, detections).float())
        gt_ids = None if frame.gt_track_ids is None else frame.gt_track_ids.to(self.device)[detections]
        if gt_ids is not None:
            bank.gt_id[matched_rows] = gt_ids
        hits = bank.hits[matched_rows] + 1
        bank.hits[matched_rows] = hits
        bank.time_since_update[matched_rows] = 0
        tentative = bank.state[matched_rows] == TrackState.TENTATIVE
        confirm = tentative & (hits >= self.n_init)
        if self.use_gt and gt_ids is not None:
            confirm |= tentative & (gt_ids >= 0)
        if bool(confirm.any()):
            bank.state[matched_rows[confirm]] = int(TrackState.CONFIRMED)
        # PHALP back-fills a track when its hits reach exactly n_init, i.e. when confirmed by hits.
        just_confirmed = matched_rows[confirm & (hits == self.n_init)].tolist()
        # A record refers to its frame's detections (without UV maps) by row.
        records = bank.records
        index = frame.frame_index
        for row, detection in zip(matched_rows.tolist(), detection_index.tolist(), strict=True):
            records[row].append(DetectionRecord(index, slim, detection))
        return just_confirmed

    def _mark_missed(self, unmatched_rows: Tensor) -> None:
        bank = self.tracks
        state = bank.state[unmatched_rows]
        misses = bank.time_since_update[unmatched_rows]
        # The original deletes a tentative track at its first miss; gated modes may allow a few.
        tentative_limit = self.tentative_max_misses if self._active_cues().mode != "eq019" else 0
        expired = ((state == TrackState.TENTATIVE) & (misses > tentative_limit)) | (misses > self.max_age)
        bank.state[unmatched_rows[expired]] = int(TrackState.DELETED)

    def _predict(self, matched_rows: Tensor, unmatched_rows: Tensor) -> None:
        """Next-frame location and pose predictions of the tracks that existed before this frame."""
        bank = self.tracks
        every = torch.cat([matched_rows, unmatched_rows])
        if every.numel() == 0:
            return
        alive = every[bank.state[every] != TrackState.DELETED]
        alive_times = torch.index_select(bank.history_time, 0, alive)
        if alive.numel():
            predicted_location = self.location_predictor.predict(
                torch.index_select(bank.history_location, 0, alive), alive_times, bank.time_since_update[alive]
            )
            bank.predicted_location.index_copy_(0, alive, predicted_location.to(bank.predicted_location.dtype))
        if self.reference_mode:
            # The original predicts the matched and the unmatched tracks in two batches, deleted
            # ones included, and a quirky predictor's output depends on the batch's first track.
            batches = [matched_rows, unmatched_rows]
        else:
            batches = [alive]
        if type(self.pose_predictor) is ConstantPosePredictor:
            # The newest history pose, without gathering whole histories.
            batch = every if self.reference_mode else alive
            if batch.numel():
                bank.predicted_pose.index_copy_(0, batch, torch.index_select(bank.history_pose[:, -1], 0, batch))
            return
        for batch in batches:
            if batch.numel() == 0:
                continue
            with torch.no_grad():
                predicted = self.pose_predictor.predict_next(
                    bank.history_pose[batch],
                    alive_times if batch is alive else bank.history_time[batch],
                    bank.time_since_update[batch],
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
        device_index = index.to(self.device)
        bank.add(
            track_ids=torch.arange(self.next_id, self.next_id + count, dtype=torch.int64),
            frame_index=frame.frame_index,
            pose=torch.index_select(frame.pose.to(self.device), 0, device_index),
            location=torch.index_select(frame.location.to(self.device), 0, device_index),
            appearance=torch.index_select(frame.appearance.to(self.device), 0, device_index),
            uv=frame.uv.to(self.device)[device_index] if frame.uv is not None else None,
            gt_ids=gt_ids.to(torch.int64),
            confirmed=confirmed,
            records=[DetectionRecord(frame.frame_index, slim, k) for k in detection_order],
        )
        self.next_id += count

    def _record(self, slim: FrameDetections, confirmed: list[int], just_confirmed: list[int]) -> None:
        """Add this frame's confirmed tracks (storage ``confirmed``, list order) and back-fill the newly confirmed ones."""
        bank = self.tracks
        pending = _PendingFrame(frame=slim)
        self._pending.append(pending)
        self._pending_by_index[slim.frame_index] = pending
        if confirmed:
            rows = torch.tensor(confirmed, dtype=torch.int64, device=self.device)
            pending.track_ids.extend(bank.track_id[rows].tolist())
            pending.time_since_update.extend(bank.time_since_update[rows].tolist())
            records = bank.records
            pending.records.extend([records[row][-1] for row in confirmed])
            # Advanced indexing copies: later updates of the bank do not reach these.
            pending.pose_parts.append(torch.index_select(bank.predicted_pose, 0, rows))
            pending.location_parts.append(torch.index_select(bank.predicted_location, 0, rows))
        for row in just_confirmed:
            # history[-2-k] for k = 0..n_init-2 are the detections that confirmed the track.
            track_id = int(bank.track_id[row])
            pose = bank.predicted_pose[row : row + 1].clone()
            location = bank.predicted_location[row : row + 1].clone()
            for record in list(bank.records[row])[:-1]:
                target = self._pending_by_index.get(record.frame_index)
                if target is None:  # already emitted: cannot happen with consecutive hits
                    continue
                target.track_ids.append(track_id)
                target.time_since_update.append(0)
                target.records.append(record)
                target.pose_parts.append(pose)
                target.location_parts.append(location)

    def _emit(self, pending: _PendingFrame) -> FrameTracks:
        self._pending_by_index.pop(pending.frame.frame_index, None)
        frame = pending.frame
        count = len(pending.track_ids)
        if count:
            # Each record refers to a row of one frame's detections: gather every per-row field at
            # once from the distinct source frames (concatenated when there are several).
            sources: dict[int, tuple[int, FrameDetections]] = {}
            index = []
            for record in pending.records:
                source = sources.get(id(record.detection))
                if source is None:
                    first = sum(len(block) for _, block in sources.values())
                    source = sources[id(record.detection)] = (first, record.detection)
                index.append(source[0] + record.row)
            detections = replace(frame, **gather_rows([block for _, block in sources.values()], index))
        else:
            detections = frame.select(torch.zeros(0, dtype=torch.int64))
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
