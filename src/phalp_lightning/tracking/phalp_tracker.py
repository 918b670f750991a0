"""The PHALP tracker: frame-by-frame association of detections to 3D tracks.

``update(frame)`` runs PHALP's per-frame step (docs/tracker.md, Algorithm) on a
:class:`~phalp_lightning.structures.FrameDetections` and returns the :class:`FrameTracks` that are
complete. Which track takes which detection is the association rule's decision (``tracker.rule``,
:mod:`.rule`); the tracker keeps the tracks' life cycle, their predictions and the emission. A newly
confirmed track is back-filled into the frames of the detections that confirmed it, so each frame is
emitted ``emission_delay`` updates late; ``finalize()`` flushes the rest at the end of a video.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from phalp_lightning.structures import ROW_FIELDS, FrameDetections, FrameTracks
from phalp_lightning.tracking.association import AppearanceEncoder, Assignment, ground_truth_assignment
from phalp_lightning.tracking.motion import MotionState
from phalp_lightning.tracking.predictors import ConstantPosePredictor, PosePredictor, RidgeLocationPredictor
from phalp_lightning.tracking.rule import AssociationInputs, AssociationRule, emission_delay
from phalp_lightning.tracking.rule_eq019 import EQ019Rule
from phalp_lightning.tracking.rule_gated import GatedRule
from phalp_lightning.tracking.track import DetectionRecord, TrackBank, TrackState

log = logging.getLogger(__name__)


def select_rule(rule: AssociationRule | None, reference_mode: bool) -> AssociationRule:
    """The rule the tracker runs (the one place where it is chosen).

    The configured rule (None: the gated rule with its defaults, i.e. ``association/gated.yaml``);
    ``reference_mode`` reproduces the original tracker, whose rule is EQ_019: another configured rule
    is replaced by :class:`EQ019Rule` with its defaults, and the log says so.
    """
    chosen = GatedRule() if rule is None else rule
    if reference_mode and not isinstance(chosen, EQ019Rule):
        log.info("tracker: reference_mode runs the original's rule: %s replaced by eq019 (its defaults)", chosen.name)
        chosen = EQ019Rule()
    return chosen


@dataclass
class _PendingFrame:
    """A processed frame whose entries may still receive back-filled tracks."""

    frame: FrameDetections  # the frame's detections without UV maps (frame-level fields + template)
    track_ids: list[int] = field(default_factory=list)
    time_since_update: list[int] = field(default_factory=list)
    records: list[DetectionRecord] = field(default_factory=list)
    pose_parts: list[Tensor] = field(default_factory=list)  # predicted poses, aligned with track_ids
    location_parts: list[Tensor] = field(default_factory=list)


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
    """PHALP tracking: tentative/confirmed/deleted tracks, predictors, back-filling, emission.

    Which track takes which detection is decided by the association rule (:mod:`.rule`), one object
    chosen by :func:`select_rule` and printed in full at start. The
    defaults below are those of ``configs/tracker/phalp.yaml`` (a test checks that they agree).

    Args:
        n_init: consecutive hits that confirm a tentative track; also the back-fill depth + 1.
        max_age: a confirmed track is deleted once ``time_since_update > max_age`` (or earlier, when
            its rule can no longer match it).
        track_history: length H of the per-track detection history used by the predictors.
        uv_alpha: UV blending rate; a matched detection with score c blends with ``uv_alpha * c^2``.
        location_alpha_x, location_alpha_y, location_alpha_depth: ridge penalties of the location
            predictor's x, y and log-depth series.
        max_prediction_gap: cap on the location extrapolation gap.
        association: the association rule (:class:`~.rule_gated.GatedRule`,
            :class:`~.rule_eq019.EQ019Rule`); None = ``GatedRule()``, the shipped default.
        pose_predictor: a :class:`PosePredictor` (the pose transformer); None -> constant pose.
        appearance_encoder: (K, 4, S, S) -> (K, 4096) encoder for the per-pair texture distance
            (``HMAR.encode_appearance``); None (or a frame without ``uv``) -> appearance codes.
        reference_mode: reproduce the original's order-dependent quirks so that identical inputs give
            identical ids (the EQ_019 rule, unmatched tracks in CPython set order, the pose predictor
            read at the first track's slot in two batches, NaN costs as 0); see docs/tracker.md.
        use_gt: when a frame carries ``gt_track_ids``, match tracks to detections by those ids instead
            of by the rule, and confirm tracks created from an id >= 0 immediately.
        hmar_trained: False = HMAR is known untrained (``predict.py`` without ``ckpt``): the rule
            uses no 3D cue; True / None = each cue is measured on the first frame with two people.
        appearance_trained: False switches the texture cue off; None = as measured.
        device: where track state lives and the cost is computed.
    """

    def __init__(
        self,
        n_init: int = 5,
        max_age: int = 50,
        track_history: int = 7,
        uv_alpha: float = 0.1,
        location_alpha_x: float = 1.2,
        location_alpha_y: float = 2.0,
        location_alpha_depth: float = 5.0,
        max_prediction_gap: int = 48,
        association: AssociationRule | None = None,
        pose_predictor: PosePredictor | None = None,
        appearance_encoder: AppearanceEncoder | None = None,
        reference_mode: bool = False,
        use_gt: bool = False,
        hmar_trained: bool | None = None,
        appearance_trained: bool | None = None,
        device: str = "cpu",
    ) -> None:
        if n_init < 1 or max_age < 0 or track_history < 3:
            raise ValueError(
                f"need n_init >= 1, max_age >= 0, track_history >= 3; got {n_init}, {max_age}, {track_history}"
            )
        self.n_init = n_init
        self.max_age = max_age
        self.track_history = track_history
        self.uv_alpha = uv_alpha
        self.reference_mode = reference_mode
        self.use_gt = use_gt
        self.hmar_trained = hmar_trained
        self.appearance_trained = appearance_trained
        self.device = torch.device(device)
        self.appearance_encoder = appearance_encoder
        self.pose_predictor: PosePredictor = (
            pose_predictor if pose_predictor is not None else ConstantPosePredictor()
        )
        if reference_mode:
            enable_reference_quirks(self.pose_predictor)
        self.rule = select_rule(association, reference_mode)
        if self.rule.needs_cue_evidence() and hmar_trained is False:
            self.rule.judge_cues(None, False, appearance_trained)
        self.location_predictor = RidgeLocationPredictor(
            alpha_x=location_alpha_x,
            alpha_y=location_alpha_y,
            alpha_depth=location_alpha_depth,
            max_gap=max_prediction_gap,
            history_length=track_history,
            reference_mode=reference_mode,
        )
        pose = "pose predictor " + type(self.pose_predictor).__name__ if not isinstance(
            self.pose_predictor, ConstantPosePredictor) else "constant (last pose)"
        log.info("tracker: %s Pose prediction: %s.%s", self.describe(), pose,
                 " use_gt: frames with given ids are matched by id, not by the rule." if use_gt else "")
        self.stage_seconds: dict[str, float] = {}
        self.counters: dict[str, int] = {}
        self.reset()

    def describe(self) -> str:
        """The association rule and the lifecycle in words (logged at start)."""
        return self.rule.describe(self.n_init, self.max_age)

    @property
    def emission_delay(self) -> int:
        """Updates a frame waits before it is emitted: long enough for every back-fill (:func:`.rule.emission_delay`)."""
        return emission_delay(self.n_init, self.rule.tentative_max_misses)

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
            Zero or more :class:`FrameTracks` (each frame is returned once, ``emission_delay`` calls late).
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
        if self.rule.needs_cue_evidence() and len(frame) >= 2:
            self.rule.judge_cues(frame, self.hmar_trained, self.appearance_trained)
            log.info("tracker: %s", self.rule.cues_in_use.describe())  # type: ignore[union-attr]
        filtered = self.rule.uses_box_filter
        if filtered:
            self.motion.predict(rows, steps)

        start = time.perf_counter()
        if self.use_gt and frame.gt_track_ids is not None:
            self.last_cost = None
            assignment = ground_truth_assignment(bank.gt_id[rows], frame.gt_track_ids.to(self.device), self.reference_mode)
        else:
            assignment, self.last_cost = self.rule.associate(
                AssociationInputs(frame, rows, bank, self.motion, self.appearance_encoder, self.counters, self.reference_mode)
            )
        self.last_assignment = assignment
        self._tick("association", start)

        start = time.perf_counter()
        slim = _kept_rows(frame)
        if assignment.matches:
            track_index, detection_index = (
                torch.tensor(v, dtype=torch.int64) for v in zip(*assignment.matches, strict=True)
            )
            matched_rows = rows[track_index.to(rows.device)]
            if filtered:
                slim = self._correct_boxes(frame, slim, matched_rows, detection_index)
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
        if filtered and created:
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
        delay = self.emission_delay
        while len(self._pending) > delay:
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

    def _correct_boxes(
        self, frame: FrameDetections, slim: FrameDetections, matched_rows: Tensor, detection_index: Tensor
    ) -> FrameDetections:
        """Correct the matched tracks' box filters; entries report the filtered box when the rule says so."""
        self.motion.correct(matched_rows, frame.boxes[detection_index])
        if not self.rule.reports_filtered_boxes:
            return slim
        boxes = frame.boxes.clone()
        boxes[detection_index] = self.motion.boxes(matched_rows).to(boxes)
        return replace(slim, boxes=boxes)

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
        expired = ((state == TrackState.TENTATIVE) & (misses > self.rule.tentative_max_misses)) | (
            misses > self.rule.lost_track_horizon(self.max_age)
        )
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
                # The emission delay covers the longest tentative life (rule.emission_delay).
                assert target is not None, f"back-fill target frame {record.frame_index} already emitted"
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
            blocks = [block for _, block in sources.values()]
            detections = FrameDetections.cat(blocks, frame).select(torch.tensor(index, dtype=torch.int64))
        else:
            detections = frame.empty()
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


def tracker_from_config(tracker_config: Any, hmar_checkpoint: bool | None, **objects: Any) -> PHALPTracker:
    """The tracker of a composed ``tracker`` config, as ``predict.py`` builds it.

    Args:
        tracker_config: the ``tracker`` node (``configs/tracker/phalp.yaml`` with its association group).
        hmar_checkpoint: whether HMAR weights were loaded; fills ``hmar_trained`` when the config leaves
            it null (False: the 3D cues are known untrained; True: each is measured on the first frame).
        objects: ``appearance_encoder``, ``pose_predictor`` (objects, not config).
    """
    import hydra
    from omegaconf import OmegaConf

    # Another tracker class configured in its place may not know the key.
    if "hmar_trained" in tracker_config and tracker_config.hmar_trained is None and hmar_checkpoint is not None:
        tracker_config = OmegaConf.merge(tracker_config, {"hmar_trained": bool(hmar_checkpoint)})
    return hydra.utils.instantiate(tracker_config, **objects)
