"""Which association cues are informative, and how the tracker combines them.

PHALP's cost multiplies a texture, a pose, a location and a depth factor. Each factor only helps when
the network behind it was trained: an untrained HMAR gives every person the same SMPL pose, the same
appearance code and an invisible UV map, so those distances are 0 for every pair and the cost reduces
to the box-derived location. The tracker therefore resolves, once, which cues carry information and
picks the association rule:

* ``eq019``: PHALP's cost and assignment exactly (clip at the threshold, rectangular Hungarian),
  always used with ``reference_mode``;
* ``eq019_motion``: the EQ_019 factors of the informative cues times the 2D motion factor
  ``exp((1 - IoU) / motion_beta)``, with gating and priority stages (docs/tracker.md);
* ``motion``: the 2D motion cue alone (cost ``1 - IoU`` against the box filter's prediction), with
  gating and priority stages, ByteTrack-like. The default when no 3D cue is informative.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from torch import Tensor

log = logging.getLogger(__name__)

ASSOCIATION_MODES = ("auto", "eq019", "eq019_motion", "motion")


@dataclass(frozen=True)
class CueReliability:
    """Which cues separate people, and the association rule that follows.

    Attributes:
        texture: the texture / appearance-code distance (a trained HMAR appearance encoder).
        pose: the SMPL pose distance (a trained HMAR).
        location_3d: the depth term and the 3D camera location (a trained HMAR's camera).
        pose_prediction: poses are predicted by a pose predictor (False: the last pose is kept).
        motion: the 2D box motion cue (always available).
        mode: the resolved association rule (``eq019``, ``eq019_motion`` or ``motion``).
        reason: one line saying why.
    """

    texture: bool
    pose: bool
    location_3d: bool
    pose_prediction: bool
    motion: bool
    mode: str
    reason: str

    def describe(self, betas: tuple[float, ...], motion_beta: float, gate_min_iou: float) -> str:
        """The rule and its weights, as printed when the tracker starts."""
        used = [name for name in ("texture", "pose", "location_3d", "motion") if getattr(self, name)]
        if self.mode == "eq019":
            rule = f"EQ_019 cost (betas texture/pose/location/depth = {list(betas)}), original assignment"
        elif self.mode == "eq019_motion":
            parts = [f"texture b={betas[0]}" if self.texture else None,
                     f"pose b={betas[1]}" if self.pose else None,
                     f"location b={betas[2]}", f"depth b={betas[3]}" if self.location_3d else None,
                     f"motion exp((1-IoU)/{motion_beta})"]
            rule = "EQ_019 x motion: " + ", ".join(p for p in parts if p) + f"; gate IoU >= {gate_min_iou}"
        else:
            rule = f"2D motion: cost 1 - IoU(predicted box, detection); gate IoU >= {gate_min_iou}"
        return (f"association {self.mode}: {rule}. Informative cues: {', '.join(used) or 'none'}; "
                f"pose prediction: {'pose predictor' if self.pose_prediction else 'constant (last pose)'}. {self.reason}")


def spread_is_zero(values: Tensor, tolerance: float = 1e-6) -> bool:
    """True when every row of ``values`` (N >= 2 rows) is the same: such a cue cannot separate anyone."""
    if values.shape[0] < 2:
        return False
    return bool((values - values[:1]).abs().amax() <= tolerance * (1.0 + values[:1].abs().amax()))


def resolve_cues(
    association: str,
    reference_mode: bool,
    hmar_trained: bool | None,
    appearance_trained: bool | None,
    has_pose_predictor: bool,
) -> CueReliability:
    """Resolve the informative cues and the association rule from what the caller knows.

    Args:
        association: ``auto`` or a fixed mode (:data:`ASSOCIATION_MODES`).
        reference_mode: the original's behaviour: always ``eq019``.
        hmar_trained: whether HMAR's weights are trained (a checkpoint was loaded); None = unknown,
            decided from the first frame with two or more detections (identical poses and
            appearance codes mean untrained).
        appearance_trained: whether the appearance encoder is trained; None = same as HMAR.
        has_pose_predictor: a pose predictor is used (else the last pose is kept).
    """
    if association not in ASSOCIATION_MODES:
        raise ValueError(f"association must be one of {ASSOCIATION_MODES}, got {association!r}")
    trained = bool(hmar_trained)
    texture = trained if appearance_trained is None else bool(appearance_trained)
    pose = trained
    if reference_mode:
        return CueReliability(texture, pose, trained, has_pose_predictor, False, "eq019",
                              "reference_mode: the original's cost and assignment.")
    if association != "auto":
        return CueReliability(texture, pose, trained, has_pose_predictor, association != "eq019", association,
                              f"association={association} set in the config.")
    if texture or pose:
        return CueReliability(texture, pose, trained, has_pose_predictor, True, "eq019_motion",
                              "Trained HMAR cues are combined with the 2D motion cue.")
    return CueReliability(False, False, False, has_pose_predictor, True, "motion",
                          "No trained HMAR: pose, texture and depth do not separate people, so the 2D motion cue decides.")
