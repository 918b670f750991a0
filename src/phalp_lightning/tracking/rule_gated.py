"""The gated association rule: the 2D motion cue alone, or times the informative EQ_019 factors.

Per frame (docs/tracker.md, "Association that cannot be hijacked"):

1. **Cost.** ``1 - IoU(predicted box, detection)`` with the 2D motion cue alone; with informative
   3D cues, the EQ_019 factors of those cues times ``exp((1 - IoU) / motion_beta)``.
2. **Gates.** A pair is impossible when the IoU is below ``gate_iou`` (``gate_iou_tentative`` for a
   tentative track, which has no velocity yet), or when the detection's height is not within
   ``gate_height_ratio`` of the predicted box's; with ``gate_height_ratio_max`` above it, each track's
   ratio is widened by the largest height jump its own detections have made (``ratio x jump``, at most
   ``gate_height_ratio_max``), so a detector's scale jitter does not split that track.
3. **Stages**, each a margin-maximising assignment on what is still free (:func:`gated_assignment`):
   (1) confirmed tracks missed for at most ``recent_age`` frames, (2) longer-lost confirmed tracks,
   re-identified by appearance only (when the texture cue is informative) under their own gates,
   (3) tentative tracks, (4) detections scoring below ``second_stage_score`` against tracks seen in
   the previous frame.

Lifecycle: a tentative track survives ``tentative_max_misses`` misses in a row; a lost confirmed
track ends after ``recent_age`` misses when nothing can re-identify it (no informative texture).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from phalp_lightning.structures import FrameDetections
from phalp_lightning.tracking.association import EQ019_BETAS, EQ019_POSE_CLIP, Assignment, gated_assignment
from phalp_lightning.tracking.cues import CueReliability, judge_cues
from phalp_lightning.tracking.rule import (
    AssociationInputs,
    AssociationRule,
    emission_delay,
    eq019_track_cost,
    uv_available,
)
from phalp_lightning.tracking.track import TrackState
from phalp_lightning.utils.boxes import box_iou

CUE_CHOICES = ("auto", "motion", "all")


@dataclass
class GatedRule(AssociationRule):
    """Gated, staged association; the settings are those of ``configs/tracker/association/gated.yaml``.

    Args:
        cues: ``auto`` (each 3D cue used when measured informative, :mod:`.cues`), ``motion`` (the 2D
            motion cue alone) or ``all`` (every EQ_019 factor times the motion factor).
        motion_beta: weight of the motion factor ``exp((1 - IoU) / motion_beta)`` next to EQ_019 factors.
        gate_iou: least IoU of a confirmed track's predicted box and a detection.
        gate_iou_tentative: the same for tentative tracks.
        gate_height_ratio: largest ratio between a detection's height and the track's box height.
        gate_height_ratio_max: per-track widening: a track whose consecutive detections jumped in height
            by up to ``j`` allows ``min(gate_height_ratio * j, gate_height_ratio_max)`` (equal to
            ``gate_height_ratio`` or below = off; the start-up line says which).
        second_stage_score: detections scoring below only continue tracks seen in the previous frame
            and never start tracks (0 = off).
        recent_age: confirmed tracks missed for up to this many frames compete in the first stage;
            longer-lost ones only by appearance (and end when appearance is not informative).
        tentative_max_misses: misses in a row a tentative track survives.
        smooth_boxes: detected entries report the box filter's corrected box.
        max_cost: largest accepted cost when EQ_019 factors are used (the motion cue alone accepts
            up to ``1 - gate_iou``; then max_cost does not act, and the start-up line says so).
        betas, pose_clip: EQ_019 weights and pose clip of the 3D factors.
        reid_max_speed: long-lost stage: largest plausible centre displacement, in track heights per
            frame lost.
        gate_texture: encode the texture only of pairs that can be accepted (exact).
        pairs_per_batch: track-detection pairs per appearance-encoder call.
    """

    cues: str = "auto"
    motion_beta: float = 0.25
    gate_iou: float = 0.1
    gate_iou_tentative: float = 0.3
    gate_height_ratio: float = 1.25
    gate_height_ratio_max: float = 1.5
    second_stage_score: float = 0.0
    recent_age: int = 30
    tentative_max_misses: int = 3  # type: ignore[assignment]  (a setting here, a property on the base)
    smooth_boxes: bool = True
    max_cost: float = 100.0
    betas: tuple[float, float, float, float] = EQ019_BETAS
    pose_clip: float = EQ019_POSE_CLIP
    reid_max_speed: float = 0.1
    gate_texture: bool = True
    pairs_per_batch: int = 16

    name = "gated"

    def __post_init__(self) -> None:
        if self.cues not in CUE_CHOICES:
            raise ValueError(f"gated rule: cues must be one of {CUE_CHOICES}, got {self.cues!r}")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if len(self.betas) != 4:
            raise ValueError(f"betas must have 4 entries (texture, pose, location, depth), got {list(self.betas)}")
        if not 0.0 <= self.gate_iou < 1.0 or not 0.0 <= self.gate_iou_tentative < 1.0:
            raise ValueError(f"need 0 <= gate_iou, gate_iou_tentative < 1; got {self.gate_iou}, {self.gate_iou_tentative}")
        if self.motion_beta <= 0 or self.gate_height_ratio < 1.0 or self.tentative_max_misses < 0:
            raise ValueError(
                "need motion_beta > 0, gate_height_ratio >= 1, tentative_max_misses >= 0; got "
                f"{self.motion_beta}, {self.gate_height_ratio}, {self.tentative_max_misses}"
            )
        self._cues: CueReliability | None = None
        if self.cues != "auto":
            on = self.cues == "all"
            self._cues = CueReliability(on, on, on, {}, f"cues={self.cues} set in the config.")

    # ------------------------------------------------------------------ lifecycle settings

    @property
    def uses_box_filter(self) -> bool:
        return True

    @property
    def reports_filtered_boxes(self) -> bool:
        return self.smooth_boxes

    @property
    def cues_in_use(self) -> CueReliability | None:
        return self._cues

    def needs_cue_evidence(self) -> bool:
        return self._cues is None

    def needs_3d_cues(self) -> bool:
        return self.cues == "all"

    def judge_cues(self, frame: FrameDetections | None, hmar_trained: bool | None, appearance_trained: bool | None) -> None:
        self._cues = judge_cues(frame, hmar_trained, appearance_trained, self.betas, self.pose_clip)

    def _assumed_cues(self) -> CueReliability:
        # Until a frame with two people is seen, the 3D cues are trusted (as a checkpoint promises).
        return self._cues or CueReliability(True, True, True, {}, "not judged yet")

    def lost_track_horizon(self, max_age: int) -> int:
        # Without appearance a track lost for longer than recent_age can never match again.
        return max_age if self._assumed_cues().texture else min(max_age, self.recent_age)

    # ------------------------------------------------------------------ association

    def associate(self, inputs: AssociationInputs) -> tuple[Assignment, Tensor | None]:
        bank, frame, rows = inputs.bank, inputs.frame, inputs.rows
        cues = self._assumed_cues()
        first_stage = frame.scores.cpu().numpy() >= self.second_stage_score
        boxes = frame.boxes.cpu().numpy().astype(np.float64)
        predicted = inputs.motion.boxes(rows).cpu().numpy()
        state = bank.state[rows].cpu().numpy()
        since = bank.time_since_update[rows].cpu().numpy()  # already aged: 1 = matched in the previous frame
        tentative = state == TrackState.TENTATIVE
        confirmed = state == TrackState.CONFIRMED
        recent = confirmed & (since - 1 <= self.recent_age)
        long_lost = confirmed & ~recent if cues.texture else np.zeros_like(recent)

        # The 1e-12 floor on the union is the tracker's (bit-identical to its earlier own IoU).
        iou = box_iou(predicted, boxes, min_union=1e-12)
        # The gates are torch's default-dtype numbers (float32) widened to float64, as always compared.
        gate_tentative, gate = torch.tensor([self.gate_iou_tentative, self.gate_iou]).double().tolist()
        jumps = inputs.motion.height_jumps(rows).cpu().numpy()
        allowed = (iou >= np.where(tentative, gate_tentative, gate)[:, None]) & self._height_ok(predicted, boxes, jumps)
        motion_only = not cues.any_3d
        if motion_only or len(rows) == 0 or len(frame) == 0:
            cost = 1.0 - iou
            threshold = 1.0 - self.gate_iou
        else:
            inputs.counters["candidate_pairs"] += len(rows) * len(frame)
            threshold = self.max_cost
            if allowed.any():
                eq_cost = eq019_track_cost(
                    inputs, self._betas(cues), self.pose_clip, self._texture_gate(), self.pairs_per_batch,
                    use_uv=cues.texture and uv_available(inputs), nan_cost=float("inf"),
                ).cpu().numpy()
                cost = eq_cost * torch.exp(torch.from_numpy((1.0 - iou) / self.motion_beta)).numpy()
            else:
                cost = np.full_like(iou, float("inf"))
        cost = np.where(allowed, cost, float("inf"))
        if long_lost.any() and len(frame):
            cost[long_lost] = self._reidentification_cost(inputs, long_lost, boxes, since, threshold)
        stages = [
            (recent, first_stage),
            (long_lost, first_stage),
            (tentative, first_stage),
            (confirmed & (since <= 1), ~first_stage),
        ]
        return gated_assignment(cost, threshold, stages, may_start_track=first_stage), torch.from_numpy(cost)

    def _height_ok(self, track_boxes: np.ndarray, boxes: np.ndarray, jumps: np.ndarray) -> np.ndarray:
        """(T, D): a person's apparent height cannot jump between frames (log ratio within the gate).

        ``jumps`` (T,): each track's largest |log height ratio| between its consecutive detections; the
        gate of that track widens by it, up to ``gate_height_ratio_max``.
        """
        limit = np.minimum(math.log(self.gate_height_ratio) + jumps, math.log(self.gate_height_ratio_max))
        ratio = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)[None, :] / np.maximum(
            track_boxes[:, 3] - track_boxes[:, 1], 1e-6
        )[:, None]
        return torch.log(torch.from_numpy(ratio)).abs_().numpy() <= np.maximum(limit, math.log(self.gate_height_ratio))[:, None]

    def _reidentification_cost(
        self, inputs: AssociationInputs, lost: np.ndarray, boxes: np.ndarray, since: np.ndarray, threshold: float
    ) -> np.ndarray:
        """Cost rows of long-lost tracks: appearance alone, gated by size and plausible displacement.

        The track's last detected box (its size frozen, not extrapolated) must be of the detection's
        height within ``gate_height_ratio`` and its centre within ``reid_max_speed`` heights per frame
        lost. The texture factor is scaled so that ``max_cost`` maps to the stage's threshold.
        """
        lost_rows = inputs.rows[torch.from_numpy(np.flatnonzero(lost)).to(inputs.rows.device)]
        last = inputs.motion.last_seen(lost_rows).cpu().numpy()
        height = np.maximum(last[:, 3] - last[:, 1], 1e-6)
        shift = np.hypot(
            (boxes[None, :, 0] + boxes[None, :, 2] - last[:, None, 0] - last[:, None, 2]) / 2,
            (boxes[None, :, 1] + boxes[None, :, 3] - last[:, None, 1] - last[:, None, 3]) / 2,
        )
        plausible = shift <= (self.reid_max_speed * height * since[lost])[:, None]
        allowed = plausible & self._height_ok(last, boxes, inputs.motion.height_jumps(lost_rows).cpu().numpy())
        if not allowed.any():
            return np.full(allowed.shape, float("inf"))
        sub = AssociationInputs(
            inputs.frame, lost_rows, inputs.bank, inputs.motion, inputs.appearance_encoder, inputs.counters,
            inputs.reference_mode,
        )
        # Texture factor alone: pose, location and depth factors 1 (their weights 0, inf, inf).
        betas = (self.betas[0], 0.0, float("inf"), float("inf"))
        texture = eq019_track_cost(
            sub, betas, self.pose_clip, self.max_cost if self.gate_texture else None, self.pairs_per_batch,
            use_uv=uv_available(sub), nan_cost=float("inf"),
        ).cpu().numpy()
        return np.where(allowed, texture * (threshold / self.max_cost), float("inf"))

    def _betas(self, cues: CueReliability) -> tuple[float, float, float, float]:
        """EQ_019 betas with the uninformative cues switched off (factor 1)."""
        beta_texture, beta_pose, beta_location, beta_depth = self.betas
        return (
            beta_texture if cues.texture else 0.0,
            beta_pose if cues.pose else 0.0,
            beta_location,
            beta_depth if cues.depth else float("inf"),
        )

    def _texture_gate(self) -> float | None:
        # The motion factor is >= 1, so pairs whose EQ_019 part is above max_cost cannot be accepted.
        return self.max_cost if self.gate_texture else None

    # ------------------------------------------------------------------ start-up line

    def _height_gate_text(self) -> str:
        if self.gate_height_ratio_max <= self.gate_height_ratio:
            return f"{self.gate_height_ratio} (gate_height_ratio_max={self.gate_height_ratio_max}: no per-track widening)"
        return (f"{self.gate_height_ratio} x the track's largest height jump between its own detections, at most "
                f"gate_height_ratio_max={self.gate_height_ratio_max}")

    def describe(self, n_init: int, max_age: int) -> str:
        cues = self._cues
        if cues is None:
            cue_text = "cues: judged per cue on the first frame with two people (3D cues trusted until then)"
        else:
            cue_text = cues.describe()
        uses_3d = cues is None or cues.any_3d
        if uses_3d:
            cost = (f"cost = EQ_019 factors of the used cues (betas texture/pose/location/depth = {list(self.betas)}, "
                    f"pose clip {self.pose_clip}) x exp((1 - IoU) / {self.motion_beta}); accepted up to max_cost={self.max_cost}")
        else:
            cost = (f"cost = 1 - IoU(predicted box, detection); accepted up to 1 - gate_iou = {1 - self.gate_iou:g} "
                    f"(max_cost={self.max_cost}, motion_beta={self.motion_beta}, betas and pose_clip do not act: no 3D cue)")
        reid = "appearance only, " if (cues is None or cues.texture) else "not run (no informative texture), "
        horizon = self.lost_track_horizon(max_age)
        second = (f"(4) detections scoring < {self.second_stage_score} against tracks seen in the previous frame, never start tracks"
                  if self.second_stage_score > 0 else "(4) low-score stage off (second_stage_score=0)")
        return (
            f"association gated: {cost}. Gates: IoU >= {self.gate_iou} (tentative tracks >= {self.gate_iou_tentative}), "
            f"height ratio <= {self._height_gate_text()}. Stages in order: (1) confirmed tracks missed <= recent_age="
            f"{self.recent_age} frames, (2) longer-lost confirmed tracks: {reid}gates: height ratio <= "
            f"{self._height_gate_text()} and centre shift <= {self.reid_max_speed} x height x frames lost from the last "
            f"detected box, (3) tentative tracks, {second}; each stage maximises the summed margin. Lifecycle: "
            f"confirmed after n_init={n_init} hits, a tentative track survives {self.tentative_max_misses} misses in a "
            f"row, a lost confirmed track ends after {horizon} missed frames (max_age={max_age}); emission delay "
            f"{emission_delay(n_init, self.tentative_max_misses)} frames; boxes reported "
            f"{'filtered (Kalman posterior)' if self.smooth_boxes else 'as detected'}. {cue_text}"
        )
