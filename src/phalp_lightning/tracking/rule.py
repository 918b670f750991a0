"""What an association rule is and what it sees (the tracker chooses its rule: ``phalp_tracker.select_rule``).

A rule decides, for one frame, which live tracks take which detections (an :class:`Assignment`), and
owns the lifecycle settings that only make sense together with its assignment: how many misses a
tentative track survives, how long a lost track can still be matched, whether the 2D box filter runs
and whether entries report its box. :class:`~phalp_lightning.tracking.phalp_tracker.PHALPTracker`
keeps the tracks, the predictions and the emission and asks its rule for the rest.

Rules (one file and one ``configs/tracker/association/*.yaml`` each):

* :class:`~phalp_lightning.tracking.rule_eq019.EQ019Rule` (``association=eq019``): PHALP's EQ_019 cost
  and its clipping Hungarian assignment, with the reference quirks when ``reference_mode`` is on.
* :class:`~phalp_lightning.tracking.rule_gated.GatedRule` (``association=gated``, the default): the
  2D motion cue alone or times the EQ_019 factors of the cues measured to be informative, gated,
  assigned in priority stages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any

from torch import Tensor

from phalp_lightning.structures import FrameDetections
from phalp_lightning.tracking.association import AppearanceEncoder, Assignment, TrackFeatures, eq019_cost
from phalp_lightning.tracking.cues import CueReliability
from phalp_lightning.tracking.motion import MotionState
from phalp_lightning.tracking.track import TrackBank


@dataclass
class AssociationInputs:
    """What a rule sees of the tracker in one frame."""

    frame: FrameDetections
    rows: Tensor  # (T,) storage rows of the live tracks, tracker-list (ascending id) order
    bank: TrackBank
    motion: MotionState  # the box filters, predicted to this frame (only kept when the rule uses them)
    appearance_encoder: AppearanceEncoder | None
    counters: dict[str, int]  # pairs scored / encoded, increased by the rule
    reference_mode: bool


class AssociationRule(ABC):
    """One association rule: its typed settings are the dataclass fields of the subclass."""

    name: str = "rule"

    @property
    @abstractmethod
    def uses_box_filter(self) -> bool:
        """Whether the tracker must keep a box filter per track (predicted, corrected, started)."""

    @property
    def tentative_max_misses(self) -> int:
        """Misses in a row a tentative track survives (0: dies at its first miss, the original's rule)."""
        return 0

    @property
    def reports_filtered_boxes(self) -> bool:
        """Whether a detected entry reports its track's filtered box instead of the detection's."""
        return False

    def lost_track_horizon(self, max_age: int) -> int:
        """A confirmed track missed for more than this many frames is deleted (it can no longer match)."""
        return max_age

    @property
    def cues_in_use(self) -> CueReliability | None:
        """The cues the rule uses, once judged (None: not judged yet, or the rule uses every cue as given)."""
        return None

    def needs_cue_evidence(self) -> bool:
        """Whether the rule still waits for a frame with two or more people to judge its cues."""
        return False

    def needs_3d_cues(self) -> bool:
        """Whether the rule reads HMAR's 3D cues even when they are known untrained (no checkpoint).

        A rule that uses every cue as given does; one that judges its cues runs on boxes alone then.
        """
        return True

    def judge_cues(self, frame: FrameDetections | None, hmar_trained: bool | None, appearance_trained: bool | None) -> None:
        """Decide the cues (:func:`~phalp_lightning.tracking.cues.judge_cues`); ``frame`` has two or more people."""
        return None  # a rule that uses every cue as given has nothing to judge

    @abstractmethod
    def associate(self, inputs: AssociationInputs) -> tuple[Assignment, Tensor | None]:
        """The frame's assignment and the cost matrix it was decided on (for ``tracker.last_cost``)."""

    @abstractmethod
    def describe(self, n_init: int, max_age: int) -> str:
        """Every setting that acts, in words: gates, stages in order, horizons, emission, cues."""

    def settings(self) -> dict[str, Any]:
        """The rule's typed settings, as in its config file."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


def emission_delay(n_init: int, tentative_max_misses: int) -> int:
    """Frames held back so that every detection of a track that gets confirmed can be back-filled.

    A tentative track needs ``n_init`` hits and may miss up to ``tentative_max_misses`` frames in each
    of the ``n_init - 1`` gaps between them (the count restarts at every hit), so its first hit lies at
    most ``(n_init - 1) (tentative_max_misses + 1)`` frames before the hit that confirms it.
    """
    return (n_init - 1) * (tentative_max_misses + 1)


def eq019_track_cost(
    inputs: AssociationInputs,
    betas: tuple[float, float, float, float],
    pose_clip: float,
    texture_gate: float | None,
    pairs_per_batch: int,
    use_uv: bool,
    nan_cost: float,
) -> Tensor:
    """PHALP's EQ_019 cost of the live tracks and the frame's detections (T, D) float64.

    Texture is encoded only for pairs that the other factors leave at or under ``texture_gate``
    (None: every pair), from the bank's masked maps and the frame's maps masked once.
    """
    bank, frame, rows = inputs.bank, inputs.frame, inputs.rows
    device = bank.device
    features = TrackFeatures(
        pose=bank.predicted_pose.index_select(0, rows),
        location=bank.predicted_location.index_select(0, rows),
        # The texture distance replaces the appearance codes: no need to gather them.
        appearance=None if use_uv else bank.appearance.index_select(0, rows),
        uv=bank.uv if use_uv else None,
        uv_rows=rows,
    )
    return eq019_cost(
        features,
        frame.pose.to(device),
        frame.location.to(device),
        frame.appearance.to(device),
        bank.masked_detection_uv(frame.uv) if use_uv else None,
        inputs.appearance_encoder if use_uv else None,
        betas=betas,
        pose_clip=pose_clip,
        gate_threshold=texture_gate,
        pairs_per_batch=pairs_per_batch,
        nan_cost=nan_cost,
        stats=inputs.counters,
        workspace=bank.workspace,
        uv_masked=True,
        uv_visibility=(
            (bank.visible_words, bank.detection_visibility(frame.uv))
            if use_uv and bank.visible_words is not None
            else None
        ),
    )


def uv_available(inputs: AssociationInputs) -> bool:
    """Whether the texture distance can be computed (an encoder, this frame's maps and the tracks' maps)."""
    return inputs.appearance_encoder is not None and inputs.frame.uv is not None and inputs.bank.uv is not None
