"""Which association cues separate people: judged per cue, from evidence.

PHALP's cost multiplies a texture, a pose, a location and a depth factor. A factor only helps when the
network behind it is trained: an untrained HMAR gives nearly the same SMPL pose and appearance code to
everyone (its heads start from small weights), and a camera whose depth only restates the box size.
Such a factor is (nearly) the same for every pair and adds nothing but noise to the product.

Each cue is judged on its own from the first frame with two or more people, by the spread of its
EQ_019 factor between different people (the median over pairs of ``factor - 1``):

* pose: ``beta_P min(d_P, clip)`` with the squared pose distance d_P;
* texture (appearance): ``beta_T r`` with the appearance-code distance r (the texture distance
  encodes the same network's codes);
* depth: ``d / beta_N``, where d is the difference of ``ln z + ln h`` (depth z, box height h) between
  two people, i.e. what the depth says beyond the box size that the 2D cue already has.

A cue whose median spread is below :data:`MIN_FACTOR_SPREAD` (1 %: the factor cannot change a
ranking that the other factors make) is not informative. With no checkpoint at all (``predict.py``
without ``ckpt``) nothing is measured: HMAR is known to be untrained and only the 2D motion cue is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from phalp_lightning.structures import FrameDetections

# A factor whose typical value between different people differs from 1 by less than this is
# uninformative (1 %: well above float noise, well below a trained HMAR's spread; docs/tracker.md).
MIN_FACTOR_SPREAD = 0.01


@dataclass(frozen=True)
class CueReliability:
    """Which cues separate people, and why.

    Attributes:
        texture: the texture / appearance-code distance.
        pose: the SMPL pose distance.
        depth: the depth term (what HMAR's camera adds to the box size).
        spreads: the measured median factor spread per cue (empty when nothing was measured).
        reason: one line saying how the cues were decided.
    """

    texture: bool
    pose: bool
    depth: bool
    spreads: dict[str, float]
    reason: str

    @property
    def any_3d(self) -> bool:
        """Whether any EQ_019 factor besides the location is used."""
        return self.texture or self.pose or self.depth

    def describe(self) -> str:
        def state(name: str, used: bool) -> str:
            spread = self.spreads.get(name)
            measured = "" if spread is None else f" (spread {spread:.3g})"
            return f"{name} {'used' if used else 'off'}{measured}"

        cues = ", ".join(state(n, u) for n, u in (("texture", self.texture), ("pose", self.pose), ("depth", self.depth)))
        return f"cues: {cues}, 2D motion used. {self.reason}"


def _median_off_diagonal(matrix: Tensor) -> float:
    count = matrix.shape[0]
    off = ~torch.eye(count, dtype=torch.bool)
    return float(matrix[off].double().median())


def measure_cue_spreads(frame: FrameDetections, betas: tuple[float, ...], pose_clip: float) -> dict[str, float]:
    """Median ``factor - 1`` over pairs of the frame's detections, per cue (frame with >= 2 detections)."""
    from phalp_lightning.tracking.association import appearance_code_distance, pose_distance

    beta_texture, beta_pose, _, beta_depth = betas
    pose = pose_distance(frame.pose, frame.pose).clamp_max(pose_clip) * beta_pose
    texture = appearance_code_distance(frame.appearance, frame.appearance) * beta_texture
    height = (frame.boxes[:, 3] - frame.boxes[:, 1]).double().clamp_min(1e-6)
    depth = frame.location[:, 92].double().abs().clamp_min(1e-12)
    beyond_box = torch.log(depth) + torch.log(height)
    depth_spread = (beyond_box[:, None] - beyond_box[None, :]).abs() / beta_depth
    return {
        "texture": _median_off_diagonal(texture),
        "pose": _median_off_diagonal(pose),
        "depth": _median_off_diagonal(depth_spread),
    }


def judge_cues(
    frame: FrameDetections | None,
    hmar_trained: bool | None,
    appearance_trained: bool | None,
    betas: tuple[float, ...],
    pose_clip: float,
) -> CueReliability:
    """Decide each cue.

    Args:
        frame: the first frame with two or more detections (None: nothing to measure yet).
        hmar_trained: False = known untrained (no checkpoint): every HMAR cue off without measuring;
            True or None = measured on ``frame``.
        appearance_trained: False switches the texture cue off whatever its spread.
        betas, pose_clip: the EQ_019 weights and pose clip the spreads are measured with.
    """
    if hmar_trained is False:
        return CueReliability(False, False, False, {}, "No HMAR checkpoint: pose, texture and depth are untrained.")
    if frame is None or len(frame) < 2:
        raise ValueError("judge_cues needs a frame with two or more detections")
    spreads = measure_cue_spreads(frame, betas, pose_clip)
    informative = {name: spread >= MIN_FACTOR_SPREAD for name, spread in spreads.items()}
    texture = informative["texture"] and appearance_trained is not False
    source = "checkpoint given" if hmar_trained else "no checkpoint information"
    reason = (
        f"Measured on frame {frame.frame_index} ({len(frame)} people, {source}): a cue is used when its median "
        f"factor spread between people is >= {MIN_FACTOR_SPREAD}"
        + ("; texture switched off by appearance_trained=false" if appearance_trained is False else "")
        + "."
    )
    return CueReliability(texture, informative["pose"], informative["depth"], spreads, reason)
