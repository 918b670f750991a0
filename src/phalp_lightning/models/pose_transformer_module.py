"""Masked-token training of the pose transformer on tracklet windows (LART recipe, PHALP network).

Each batch (datamodules/schema.py, tracklets) holds windows of a track: ``pose`` (B,W,229) in natural
units, ``time`` (B,W) frame indices and ``valid`` (B,W). A window is laid out in the network's
``frame_length`` slots by time (slot = time - time of the window's first step, as the tracker does),
then:

- a random ``mask_ratio`` of the observed slots become mask tokens (BERT-style, as LART's 'random'
  masking);
- with probability ``future_mask_prob`` the last 1..``max_future_frames`` observed slots are masked
  too, so the network learns the tracker's task: decode the slots after a history;
- slots without an observation are mask tokens that exist (the tracker's 'zero' masking), not
  absent tokens as in LART's 'random' mode, so training sees the layout ``predict_next`` builds;
- the loss compares the decoded vectors with the raw targets at the observed slots (or only at the
  masked ones with ``loss_on_masked_only``): squared error on the SMPL rotation matrices and on the
  betas, L1 on the camera, each summed over dims and divided by (number of slots + 1), as in LART.

Validation (and test) runs the tracker's exact inference path, :meth:`PoseTransformer.predict_next`,
on each window's first ``history_length`` valid steps and scores the prediction ``h`` steps later
(h in ``future_horizons``) against three baselines that need no network: the constant pose (newest
history entry), the constant velocity (rotations continue their last relative rotation for a
fractional number of steps, betas and camera extrapolate linearly) and a damped/capped constant
velocity. Logged: ``val/future{h}/{model,constant_pose,constant_velocity,damped_velocity}/
{pose_l2,rot_deg}`` and ``val/future{h}/model_vs_constant_pose`` (ratio of pose_l2; < 1 means the
model wins). ``pose_l2`` is the tracker's pose distance (squared L2 over the first 226 dims);
``rot_deg`` is the mean geodesic angle over the 24 SMPL joints.

The token masks and the normalisation statistics are :mod:`.pose_transformer_data`'s, the learning-rate
schedule :mod:`.schedules`'s, and the loader of a trained network
:func:`~phalp_lightning.models.convert_pose_transformer.load_pose_transformer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer
from torchmetrics import MeanMetric
from torchmetrics.classification import MultilabelAveragePrecision

from phalp_lightning.errors import UserError
from phalp_lightning.models.components.pose_transformer import (
    BASELINE_PREDICTORS,
    PoseTransformer,
    baseline_prediction,
    extrapolate_pose,
    scatter_to_slots,
)
from phalp_lightning.models.convert_pose_transformer import CONFIG_KEY, NORMALISATION_KEY
from phalp_lightning.models.pose_transformer_data import (
    future_token_mask,
    history_token_mask,
    random_token_mask,
)
from phalp_lightning.models.schedules import WarmupCosine  # noqa: F401 - its name before models.schedules
from phalp_lightning.utils.distributed import global_sum
from phalp_lightning.utils.vectors import NUM_BODY_JOINTS, POSE_BETAS, POSE_CAMERA, POSE_SMPL

log = logging.getLogger(__name__)

ROTATIONS = slice(0, 9 * (NUM_BODY_JOINTS + 1))  # global orient + body pose rotation matrices
BASELINES = ("model", *BASELINE_PREDICTORS)
NONFINITE_POLICIES = ("fail", "skip")


class NonFiniteTrainingError(UserError, FloatingPointError):
    """A training batch (or its loss) holds NaN or infinity."""


def rotation_angle_deg(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean geodesic angle (degrees) between the 24 rotation matrices of two pose vectors (..., 229) -> (...)."""
    lead = predicted.shape[:-1]
    pred = predicted[..., ROTATIONS].reshape(*lead, NUM_BODY_JOINTS + 1, 3, 3)
    true = target[..., ROTATIONS].reshape(*lead, NUM_BODY_JOINTS + 1, 3, 3)
    cosine = ((pred.transpose(-1, -2) @ true).diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.rad2deg(torch.acos(cosine.clamp(-1.0, 1.0))).mean(dim=-1)


def pose_distance(predicted: Tensor, target: Tensor) -> Tensor:
    """The tracker's pose distance: squared L2 over rotations and betas (first 226 dims); (...,)."""
    return (predicted[..., POSE_SMPL] - target[..., POSE_SMPL]).pow(2).sum(dim=-1)


def constant_velocity(previous: Tensor, newest: Tensor, steps: Tensor) -> Tensor:
    """Extrapolate two pose vectors (N,229) ``steps`` (N,) times the last step ahead (fractional steps).

    Rotations continue their last relative rotation raised to the power ``steps`` (through
    axis-angle, so a missed detection between the two entries gives a fractional step, not a
    rounded one); betas and camera continue linearly.
    """
    return extrapolate_pose(previous, newest, steps)


class PoseTransformerModule(L.LightningModule):
    """Trains :class:`PoseTransformer` on tracklet windows; the network is held as ``self.encoder``.

    ``encoder`` mirrors the official checkpoint's ``encoder.`` prefix, so our checkpoints and the
    official one go through the same loader.

    Args:
        net: the network.
        optimizer: partial optimizer, called with the parameters.
        scheduler: optional partial LR scheduler, called with the optimizer.
        scheduler_interval: "step" or "epoch".
        mask_ratio: fraction of observed slots masked per window (LART: 0.4).
        future_mask_prob: probability that a window also has its last observed slots masked.
        max_future_frames: at most this many trailing slots are masked as the future.
        rotation_weight: weight of the rotation-matrix loss.
        betas_weight: weight of the betas loss.
        camera_weight: weight of the camera L1 loss.
        loss_on_masked_only: restrict the loss to the masked slots (LART ``masked``; default False).
        history_length: history entries given to ``predict_next`` in validation (PHALP: 7).
        future_horizons: frames ahead scored in validation (1 = the next frame; larger values act
            like a track that missed detections).
        history_mask_prob: probability that a window is masked as the tracker uses the network:
            its first n observed slots visible (n uniform in ``history_range``), all later ones
            masked. The remaining windows get the random + future masking above.
        history_range: (min, max) visible slots of such a window.
        action_weight: weight of the action loss (binary cross-entropy per slot over the action
            classes). Used when the network has an action head and the batch carries ``actions``
            (windows with ``has_actions`` False are left out).
        nonfinite: what a training batch with NaN/inf in a valid pose, or a non-finite loss, does:
            "fail" raises naming the batch and the windows; "skip" skips the batch with a warning
            and counts it (``train/skipped_nonfinite``).
        mask_seed: seed of the masking; each step's masks come from a generator seeded with
            (mask_seed, global step, rank), so a resumed run draws exactly the masks of an
            uninterrupted one.
        horizon_weight_power: p; a slot d slots after the newest visible slot before it weighs
            ``d ** -p`` in the pose losses (visible slots: 1). Far slots have errors orders of
            magnitude larger than the next frame's; p > 0 keeps them from drowning it.
        damped_velocity_max_steps, damped_velocity_decay: the third validation baseline, a
            constant velocity whose i-th step moves decay^(i-1) of the last motion, capped at
            max_steps steps (``components.pose_transformer.damped_steps``).
        action_label_map: AVA label map (``.pbtxt``) of the evaluated classes: the batch's 80-wide
            AVA labels are mapped to these classes (column i = the i-th id in ascending order), and
            the network's action names are set from it when it has none.
    """

    def __init__(
        self,
        net: PoseTransformer,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "step",
        mask_ratio: float = 0.4,
        future_mask_prob: float = 0.5,
        max_future_frames: int = 8,
        rotation_weight: float = 1.0,
        betas_weight: float = 1.0,
        camera_weight: float = 1.0,
        loss_on_masked_only: bool = False,
        history_length: int = 7,
        future_horizons: Sequence[int] = (1,),
        history_mask_prob: float = 0.0,
        history_range: Sequence[int] = (2, 12),
        action_weight: float = 1.0,
        nonfinite: str = "fail",
        mask_seed: int = 0,
        horizon_weight_power: float = 0.0,
        damped_velocity_max_steps: float = 3.0,
        damped_velocity_decay: float = 1.0,
        action_label_map: str | None = None,
    ) -> None:
        super().__init__()
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
        if len(history_range) != 2 or not 1 <= history_range[0] <= history_range[1]:
            raise ValueError(f"history_range must be (min, max) with 1 <= min <= max, got {history_range}")
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if history_length < 2:
            raise ValueError(
                f"history_length must be >= 2 (the constant-velocity baseline needs two), got {history_length}"
            )
        future_horizons = tuple(int(horizon) for horizon in future_horizons)
        if not future_horizons or min(future_horizons) < 1:
            raise ValueError(f"future_horizons must be positive integers, got {future_horizons}")
        self.save_hyperparameters(logger=False, ignore=["net"])
        self.encoder = net
        self.future_metrics = torch.nn.ModuleDict(
            {
                f"{horizon}__{name}__{measure}": MeanMetric()
                for horizon in future_horizons
                for name in BASELINES
                for measure in ("pose_l2", "rot_deg")
            }
        )
        num_actions = getattr(net, "config", {}).get("num_action_classes", 0)
        self.action_columns: Tensor | None = None
        if action_label_map is not None:
            from phalp_lightning.datamodules.formats.ava import AVAClassMapping

            mapping = AVAClassMapping.from_label_map(action_label_map)
            if len(mapping.ids) != num_actions:
                raise UserError(
                    f"{action_label_map}: {len(mapping.ids)} evaluated classes, the action head has {num_actions}",
                    "set model.net.num_action_classes to the label map's class count",
                )
            self.action_columns = torch.as_tensor(mapping.columns)
            if net.action_names is None:  # names travel with the checkpoint (config), so predict writes them
                net.action_names = list(mapping.names)
                net.config["action_names"] = list(mapping.names)
        # Per-class AP over the slots of windows that carry labels (LART's AVA metric is mAP).
        self.action_ap = (
            MultilabelAveragePrecision(num_labels=num_actions, average=None) if num_actions > 0 else None
        )
        self.skipped_nonfinite = 0

    # ------------------------------------------------------------------ data layout
    def layout_windows(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Place a batch's windows in the network's slots by time.

        Returns:
            target (B, T, 229) raw pose vectors, observed (B, T) bool.
        """
        pose, time, valid = batch["pose"], batch["time"].long(), batch["valid"].bool()
        if (
            pose.ndim != 3
            or pose.shape[-1] != 229
            or time.shape != pose.shape[:2]
            or valid.shape != pose.shape[:2]
        ):
            raise ValueError(
                f"tracklet batch must have pose (B,W,229), time (B,W), valid (B,W); got pose {tuple(pose.shape)}, "
                f"time {tuple(time.shape)}, valid {tuple(valid.shape)}"
            )
        slots = time - time[:, :1]
        keep = valid & (slots >= 0) & (slots < self.encoder.frame_length)
        return scatter_to_slots(pose.float(), slots.clamp(min=0), keep, self.encoder.frame_length)

    def mask_generator(self) -> torch.Generator:
        """The masking's random source for this step: seeded with (mask_seed, global step, rank)."""
        seed = (int(self.hparams.mask_seed) * 1_000_003 + int(self.global_step)) * 1_009 + int(self.global_rank)
        return torch.Generator().manual_seed(seed % (2**63))

    def training_masks(self, observed: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Per window, the tracker's history masking or a random BERT-style mask plus trailing
        'future' slots; (B, T) bool. Draws only from ``generator`` (default: :meth:`mask_generator`)."""
        generator = generator if generator is not None else self.mask_generator()
        device = observed.device
        masked = random_token_mask(observed, self.hparams.mask_ratio, generator)
        batch = observed.shape[0]
        available = (observed.sum(dim=1) - 1).clamp(min=0)  # keep at least one visible slot
        wanted = torch.randint(1, self.hparams.max_future_frames + 1, (batch,), generator=generator).to(device)
        use_future = torch.rand(batch, generator=generator).to(device) < self.hparams.future_mask_prob
        num_future = torch.where(use_future, torch.minimum(wanted, available), torch.zeros_like(wanted))
        masked = masked | future_token_mask(observed, num_future)
        low, high = (int(value) for value in self.hparams.history_range)
        num_history = torch.randint(low, high + 1, (batch,), generator=generator).to(device)
        use_history = torch.rand(batch, generator=generator).to(device) < self.hparams.history_mask_prob
        return torch.where(use_history[:, None], history_token_mask(observed, num_history), masked)

    # ------------------------------------------------------------------ losses
    def compute_losses(
        self,
        predicted: Tensor,
        target: Tensor,
        loss_slots: Tensor,
        across_ranks: bool = False,
        slot_weight: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """LART-style losses over ``loss_slots`` (B,T) bool; predicted/target (B,T,229).

        ``across_ranks`` (training): normalise by the slot count summed over all DDP ranks, so N
        ranks with B/N windows each train exactly like 1 process with B. Off for evaluation, where
        ranks may run different batch counts (a collective would wait forever).
        """
        weight = loss_slots.float()[..., None] if slot_weight is None else (loss_slots * slot_weight)[..., None]
        if across_ranks:
            total_slots, world_size = global_sum(loss_slots.sum().float())
            normaliser = (total_slots + 1.0) / world_size
        else:
            normaliser = loss_slots.sum() + 1.0
        # No nan_to_num: a non-finite loss must be seen (training_step applies the nonfinite policy).
        error = torch.where(weight > 0, predicted - target, torch.zeros_like(predicted))
        losses = {
            "rotation": (error[..., ROTATIONS].pow(2) * weight).sum() / normaliser,
            "betas": (error[..., POSE_BETAS].pow(2) * weight).sum() / normaliser,
            "camera": (error[..., POSE_CAMERA].abs() * weight).sum() / normaliser,
        }
        losses["total"] = (
            self.hparams.rotation_weight * losses["rotation"]
            + self.hparams.betas_weight * losses["betas"]
            + self.hparams.camera_weight * losses["camera"]
        )
        return losses

    def masked_step(
        self, batch: Mapping[str, Tensor], masked: Tensor | None = None, across_ranks: bool = False
    ) -> dict[str, Tensor]:
        target, observed = self.layout_windows(batch)
        if masked is None:
            masked = self.training_masks(observed)
        # As in the tracker ('zero' mode): every slot exists, unobserved slots are mask tokens.
        decoded = self.encoder.decode(target, observed & ~masked)
        loss_slots = observed & masked if self.hparams.loss_on_masked_only else observed
        slot_weight = None
        if self.hparams.horizon_weight_power:
            visible = observed & ~masked
            positions = torch.arange(visible.shape[1], device=visible.device).expand_as(visible)
            newest = torch.where(visible, positions, torch.full_like(positions, -1)).cummax(dim=1).values
            distance = torch.where(newest >= 0, positions - newest, positions + 1).clamp(min=1).float()
            slot_weight = distance.pow(-float(self.hparams.horizon_weight_power))
        losses = self.compute_losses(decoded["pose"], target, loss_slots, across_ranks, slot_weight)
        actions = self.action_targets(batch)
        if actions is not None and "action_logits" in decoded:
            labels, labelled = actions
            # Only annotated slots (AVA: the 1 Hz keyframes) are supervised; the others are unknown, not negatives.
            slots = observed & labelled
            logits = decoded["action_logits"][slots]
            if logits.numel():
                losses["action"] = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[slots])
            else:
                losses["action"] = decoded["action_logits"].sum() * 0.0
            losses["total"] = losses["total"] + self.hparams.action_weight * losses["action"]
            losses["_action_logits"], losses["_action_labels"] = logits.detach(), labels[slots]
        return losses

    def action_targets(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor] | None:
        """Per-slot action labels (B, T, A) laid out like the poses, and which slots are annotated (B, T).

        A slot is annotated when its window carries labels (``has_actions``) and its stored label
        row has a positive: every person box AVA annotates has at least one of the 80 actions (its
        pose class), and frames between the 1 Hz keyframes are stored as zeros. The 80 AVA ids are
        mapped to the evaluated classes with ``action_label_map``; otherwise the stored width must
        equal the head's classes.
        """
        if "actions" not in batch or self.action_ap is None:
            return None
        num_classes = self.action_ap.num_labels
        actions = batch["actions"].float()
        if self.action_columns is not None:
            if actions.shape[-1] <= int(self.action_columns.max()):
                raise UserError(
                    f"tracklet batch has {actions.shape[-1]} action columns, the label map needs AVA's 80",
                    "set data.num_actions=80 for AVA shards",
                )
            annotated = actions.amax(dim=-1) > 0
            actions = actions[..., self.action_columns.to(actions.device)]
        elif actions.shape[-1] != num_classes:
            raise UserError(
                f"tracklet batch has {actions.shape[-1]} action classes, the action head {num_classes}",
                "set data.num_actions to the head's model.net.num_action_classes, or for AVA labels "
                "model.action_label_map=<label map of the evaluated classes> (maps the 80 ids to them)",
            )
        else:
            annotated = actions.amax(dim=-1) > 0
        time, valid = batch["time"].long(), batch["valid"].bool()
        slots = time - time[:, :1]
        keep = valid & (slots >= 0) & (slots < self.encoder.frame_length)
        both = torch.cat([actions, annotated[..., None].float()], dim=-1)
        laid_out, _ = scatter_to_slots(both, slots.clamp(min=0), keep, self.encoder.frame_length)
        labelled = batch.get("has_actions", torch.ones(len(actions), dtype=torch.bool)).bool().to(actions.device)
        return laid_out[..., :-1], (laid_out[..., -1] > 0) & labelled[:, None]

    def check_finite_batch(self, batch: Mapping[str, Tensor], batch_idx: int) -> str | None:
        """Which windows of a batch hold a NaN/inf pose at a valid step, as a message, else None."""
        pose, valid = batch["pose"], batch["valid"].bool()
        bad_steps = ~torch.isfinite(pose).all(dim=-1) & valid
        if not bad_steps.any():
            return None
        windows = bad_steps.any(dim=1).nonzero().flatten().tolist()
        keys = batch.get("__key__") or batch.get("key")
        named = [keys[i] for i in windows] if isinstance(keys, list | tuple) else None
        return (
            f"training batch {batch_idx} (epoch {self.current_epoch}, step {self.global_step}): "
            f"non-finite pose values in window(s) {windows[:10]}"
            + (f", samples {named[:10]}" if named else "")
        )

    def handle_nonfinite(self, message: str) -> None:
        """Apply the ``nonfinite`` policy: raise, or warn and count the skipped batch."""
        if self.hparams.nonfinite == "fail":
            raise NonFiniteTrainingError(
                message,
                "fix or drop those samples (the shard and window above), or train with "
                "model.nonfinite=skip to skip such batches (they are counted and warned about)",
            )
        self.skipped_nonfinite += 1
        log.warning("%s: batch skipped (model.nonfinite=skip; %d skipped so far)", message, self.skipped_nonfinite)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor | None:
        batch_size = batch["pose"].shape[0]
        problem = self.check_finite_batch(batch, batch_idx)
        if problem is None:
            losses = self.masked_step(batch, across_ranks=True)
            if not torch.isfinite(losses["total"]):
                terms = {name: float(value.detach()) for name, value in losses.items() if not name.startswith("_")}
                problem = f"training batch {batch_idx} (epoch {self.current_epoch}, step {self.global_step}): non-finite loss {terms}"
        if problem is not None:
            self.handle_nonfinite(problem)
            self.log("train/skipped_nonfinite", float(self.skipped_nonfinite), batch_size=batch_size)
            return None  # Lightning skips the optimiser step
        self.log("train/loss", losses["total"], prog_bar=True, batch_size=batch_size)
        for name in ("rotation", "betas", "camera", "action"):
            if name in losses:
                self.log(f"train/loss/{name}", losses[name], batch_size=batch_size)
        return losses["total"]

    # ------------------------------------------------------------------ evaluation
    def future_predictions(self, batch: Mapping[str, Tensor], horizon: int) -> dict[str, Tensor] | None:
        """Predictions ``horizon`` steps after a ``history_length``-entry history, as the tracker makes them.

        The history is each window's first ``history_length`` valid steps (missed detections leave
        gaps, as in a track's history); the target is the step ``horizon`` positions after the
        newest history entry, when it is valid. ``predict_next`` gets
        ``time_since_update = t_target - t_newest - 1``.

        Returns:
            dict with ``target`` and one (N,229) tensor per entry of BASELINES, or None if no window qualifies.
        """
        history = self.hparams.history_length
        pose, time, valid = batch["pose"].float(), batch["time"].long(), batch["valid"].bool()
        width = pose.shape[1]
        positions = torch.arange(width, device=pose.device).expand_as(valid)
        # Valid positions first, in order: the first `history` columns index each window's history.
        order = torch.where(valid, positions, positions + width).argsort(dim=1)[:, :history]
        if order.shape[1] < history:
            return None
        target_position = order[:, -1] + horizon
        usable = valid.sum(dim=1) >= history
        usable &= target_position < width
        rows = torch.arange(len(pose), device=pose.device)
        target_position = target_position.clamp(max=width - 1)
        usable &= valid[rows, target_position]
        usable &= time[rows, target_position] - time[rows, order[:, 0]] < self.encoder.frame_length
        if not usable.any():
            return None
        rows, order, target_position = rows[usable], order[usable], target_position[usable]
        pose_history, time_history = pose[rows[:, None], order], time[rows[:, None], order]
        target_time = time[rows, target_position]
        # Noisy tracks may carry their noise-free poses: the error is then measured against the truth.
        truth = batch["clean_pose"].float() if "clean_pose" in batch else pose
        time_since_update = target_time - time_history[:, -1] - 1
        last_gap = (time_history[:, -1] - time_history[:, -2]).clamp(min=1).float()
        steps = (target_time - time_history[:, -1]).float() / last_gap
        previous, newest = pose_history[:, -2], pose_history[:, -1]
        cap, decay = float(self.hparams.damped_velocity_max_steps), float(self.hparams.damped_velocity_decay)
        out = {"target": truth[rows, target_position], "model": self.encoder.predict_next(pose_history, time_history, time_since_update)}
        for name in BASELINE_PREDICTORS:
            out[name] = baseline_prediction(name, previous, newest, steps, cap, decay)
        return out

    def _evaluation_step(self, batch: Mapping[str, Tensor], stage: str) -> None:
        _, observed = self.layout_windows(batch)
        # Deterministic masking: every observed slot after the first `history_length` is future.
        masked = observed & (observed.long().cumsum(dim=1) > self.hparams.history_length)
        losses = self.masked_step(batch, masked=masked)
        self.log(f"{stage}/loss", losses["total"], prog_bar=True, batch_size=batch["pose"].shape[0])
        self.update_action_ap(batch)
        for horizon in self.hparams.future_horizons:
            predictions = self.future_predictions(batch, horizon)
            if predictions is None:
                continue
            for name in BASELINES:
                error = pose_distance(predictions[name], predictions["target"])
                angle = rotation_angle_deg(predictions[name], predictions["target"])
                self.future_metrics[f"{horizon}__{name}__pose_l2"].update(error)
                self.future_metrics[f"{horizon}__{name}__rot_deg"].update(angle)

    def update_action_ap(self, batch: Mapping[str, Tensor]) -> None:
        """Score the annotated slots (keyframes) of labelled windows as predict does: every detection visible."""
        actions = self.action_targets(batch)
        if actions is None:
            return
        labels, annotated = actions
        target, observed = self.layout_windows(batch)
        annotated = annotated & observed
        if not annotated.any():
            return
        logits = self.encoder.decode(target, observed)["action_logits"]
        self.action_ap.update(logits[annotated].sigmoid(), labels[annotated].round().long())

    def _log_action_metrics(self, stage: str) -> None:
        if self.action_ap is None or not self.action_ap.update_count:
            return
        per_class = self.action_ap.compute()
        self.action_ap.reset()
        names = list(self.encoder.action_names or [str(i) for i in range(len(per_class))])
        for name, value in zip(names, per_class, strict=False):
            self.log(f"{stage}/action_ap/{name}", value)
        # Classes without a positive give NaN (torchmetrics warns); the mean is over the others.
        self.log(f"{stage}/action_map", per_class[~per_class.isnan()].mean() if (~per_class.isnan()).any() else per_class.new_tensor(float("nan")))

    def _log_future_metrics(self, stage: str) -> None:
        self._log_action_metrics(stage)
        values = {}
        for key, metric in self.future_metrics.items():
            if metric.update_count == 0:
                continue
            values[key] = metric.compute()
            horizon, name, measure = key.split("__")
            self.log(f"{stage}/future{horizon}/{name}/{measure}", values[key])
            metric.reset()
        for horizon in self.hparams.future_horizons:
            if f"{horizon}__model__pose_l2" in values:
                ratio = values[f"{horizon}__model__pose_l2"] / values[
                    f"{horizon}__constant_pose__pose_l2"
                ].clamp(min=1e-12)
                self.log(f"{stage}/future{horizon}/model_vs_constant_pose", ratio)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_future_metrics("val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_future_metrics("test")

    # ------------------------------------------------------------------ optimisation and checkpoints
    def configure_optimizers(self) -> Any:
        optimizer = self.hparams.optimizer(params=self.parameters())
        if self.hparams.scheduler is None:
            return optimizer
        scheduler = self.hparams.scheduler(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # What load_pose_transformer needs besides the weights: the split of heads/dim_head and
        # stride/pad, and the normalisation (non-persistent, as in the original).
        checkpoint[CONFIG_KEY] = dict(self.encoder.config)
        checkpoint[NORMALISATION_KEY] = {
            "mean": self.encoder.mean.detach().cpu(),
            "std": self.encoder.std.detach().cpu(),
        }
