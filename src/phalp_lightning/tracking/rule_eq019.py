"""PHALP's own association rule: the EQ_019 cost and the clipping Hungarian assignment.

Every track competes with every detection in one rectangular assignment. Costs above
``hungarian_threshold`` are clipped to ``threshold + 1e-5`` before solving and assigned pairs above
the threshold are rejected (docs/tracker.md, Algorithm). With the tracker's ``reference_mode`` the
rule keeps the original's quirks: unmatched tracks in CPython set order and NaN costs as 0 (a
perfect match). A tentative track dies at its first miss; a lost confirmed track can be matched
until ``max_age``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from phalp_lightning.tracking.association import (
    EQ019_BETAS,
    EQ019_POSE_CLIP,
    Assignment,
    hungarian_assignment,
)
from phalp_lightning.tracking.rule import (
    AssociationInputs,
    AssociationRule,
    emission_delay,
    eq019_track_cost,
    uv_available,
)


@dataclass
class EQ019Rule(AssociationRule):
    """The original's rule; the settings are those of ``configs/tracker/association/eq019.yaml``.

    Args:
        hungarian_threshold: largest accepted cost (PHALP's 100).
        betas: EQ_019 weights (texture, pose, location, depth).
        pose_clip: clip of the squared pose distance.
        gate_texture: encode the texture only of pairs whose cost without texture is within the
            threshold (exact: the texture factor is >= 1, so the others cannot be accepted anyway).
        pairs_per_batch: track-detection pairs per appearance-encoder call.
    """

    hungarian_threshold: float = 100.0
    betas: tuple[float, float, float, float] = EQ019_BETAS
    pose_clip: float = EQ019_POSE_CLIP
    gate_texture: bool = True
    pairs_per_batch: int = 16

    name = "eq019"

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if len(self.betas) != 4:
            raise ValueError(f"betas must have 4 entries (texture, pose, location, depth), got {list(self.betas)}")
        self.hungarian_threshold = float(self.hungarian_threshold)

    @property
    def uses_box_filter(self) -> bool:
        return False

    def associate(self, inputs: AssociationInputs) -> tuple[Assignment, Tensor | None]:
        rows, frame = inputs.rows, inputs.frame
        set_order = inputs.reference_mode
        if len(rows) == 0 or len(frame) == 0:
            cost = torch.zeros(len(rows), len(frame), dtype=torch.float64)
            return hungarian_assignment(cost, self.hungarian_threshold, set_order), cost
        inputs.counters["candidate_pairs"] += len(rows) * len(frame)
        cost = eq019_track_cost(
            inputs,
            self.betas,
            self.pose_clip,
            self.hungarian_threshold if self.gate_texture else None,
            self.pairs_per_batch,
            use_uv=uv_available(inputs),
            # A NaN cost (e.g. a non-positive depth) is a perfect match in the original.
            nan_cost=0.0 if inputs.reference_mode else float("inf"),
        )
        return hungarian_assignment(cost, self.hungarian_threshold, set_order), cost

    def describe(self, n_init: int, max_age: int) -> str:
        b_t, b_p, b_l, b_n = self.betas
        return (
            "association eq019 (PHALP's rule): cost = (1 + {bt} r_T)(1 + {bp} min(d_P, {clip})) "
            "exp(d_L / (0.1 + tanh c_xy) / {bl}) exp(d_N / (0.1 + tanh c_N) / {bn}) with every cue as given "
            "(texture from UV maps when an encoder and maps are there, else appearance codes); one stage: every "
            "track against every detection, costs above {thr} clipped, rectangular Hungarian, assigned pairs above "
            "{thr} rejected; no gates; a tentative track dies at its first miss; a lost track can be matched until "
            "max_age={age}; confirmed after n_init={n} hits; emission delay {delay} frames; boxes reported as "
            "detected. Texture encoded {which}."
        ).format(
            bt=b_t, bp=b_p, clip=self.pose_clip, bl=b_l, bn=b_n, thr=self.hungarian_threshold, age=max_age, n=n_init,
            delay=emission_delay(n_init, self.tentative_max_misses),
            which="only for pairs that can be accepted (gate_texture)" if self.gate_texture else "for every pair",
        )
