"""Training HMAR with Lightning, and loading HMAR weights for inference.

``HMARModule`` consumes crop batches (``datamodules/schema.py``):
image (B,4,S,S), keypoints_2d (B,44,3), keypoints_3d (B,44,4), has_keypoints_3d (B,),
smpl_global_orient (B,1,3,3), smpl_body_pose (B,23,3,3), smpl_betas (B,10), has_smpl (B,),
camera (B,3), has_camera (B,).

Losses (weights from config, ``loss_weights``; see ``models/losses.py``):
``keypoints_2d`` (projected with the predicted crop camera), ``keypoints_3d`` (pelvis aligned),
``smpl_pose``, ``smpl_betas``, ``camera``, ``appearance`` (autoencoder reconstruction of the
detached UV map) and ``uv_flow`` (the texture head's sampling grid against the grid obtained by
projecting each UV texel's point on the ground-truth mesh, or on the detached predicted mesh when
the sample has no SMPL truth).

Checkpoints carry the network's constructor arguments (``hmar_config``), so :func:`load_hmar`
rebuilds the network without the training config.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from phalp_lightning.assets import resolve
from phalp_lightning.models import losses
from phalp_lightning.models.components.hmar import HMAR, crop_keypoints
from phalp_lightning.models.convert_hmar import (
    CONFIG_KEY,
    STATE_PREFIX,
    HMARCheckpointError,
    check_state_dict,
    load_official_state_dict,
    torch_load,
)
from phalp_lightning.models.keypoint_metrics import MPJPE, PCK2D

DEFAULT_LOSS_WEIGHTS: dict[str, float] = {
    "keypoints_2d": 1.0,
    "keypoints_3d": 1.0,
    "smpl_pose": 1.0,
    "smpl_betas": 0.001,
    "camera": 0.1,
    "appearance": 0.1,
    "uv_flow": 0.1,
}
BATCH_KEYS = (
    "image", "keypoints_2d", "keypoints_3d", "has_keypoints_3d", "smpl_global_orient", "smpl_body_pose",
    "smpl_betas", "has_smpl", "camera", "has_camera",
)  # fmt: skip


class UVTexelAtlas(nn.Module):
    """Where each UV texel lies on the body surface: face index and barycentric weights.

    Built from ``fmap_256`` / ``bmap_256`` and subsampled (texel centres) to the training crop side.
    Buffers are non-persistent: they come from the asset files, never from checkpoints.
    """

    def __init__(self, faces: np.ndarray, fmap: np.ndarray, bmap: np.ndarray, size: int) -> None:
        super().__init__()
        rows = ((np.arange(size) + 0.5) * fmap.shape[0] / size).astype(np.int64)
        cols = ((np.arange(size) + 0.5) * fmap.shape[1] / size).astype(np.int64)
        face_index = fmap[np.ix_(rows, cols)].astype(np.int64)
        valid = face_index >= 0
        vertex_ids = np.asarray(faces, dtype=np.int64)[np.where(valid, face_index, 0)]  # (S, S, 3)
        self.register_buffer("vertex_ids", torch.from_numpy(vertex_ids.reshape(-1, 3)), persistent=False)
        self.register_buffer(
            "barycentric",
            torch.from_numpy(bmap[np.ix_(rows, cols)].reshape(-1, 3).astype(np.float32)),
            persistent=False,
        )
        self.register_buffer("valid", torch.from_numpy(valid.reshape(1, 1, size, size)), persistent=False)
        self.size = size

    def target_grid(self, vertices: Tensor, crop_cam: Tensor) -> tuple[Tensor, Tensor]:
        """Sampling grid (B,2,S,S) that reads each texel's surface point from the crop, and validity (B,1,S,S)."""
        batch = vertices.shape[0]
        corners = vertices[:, self.vertex_ids]  # (B, S*S, 3, 3)
        points = (corners * self.barycentric[None, :, :, None]).sum(2)  # (B, S*S, 3)
        grid = crop_keypoints(points, crop_cam) * 2.0  # crop units [-0.5, 0.5] -> grid units [-1, 1]
        grid = grid.transpose(1, 2).reshape(batch, 2, self.size, self.size)
        return grid, self.valid.expand(batch, -1, -1, -1)


class HMARModule(L.LightningModule):
    """Lightning training module for :class:`HMAR`.

    Args:
        net: the network, or its ``config`` dict (how checkpoints rebuild it).
        optimizer: ``functools.partial`` of a torch optimizer (Hydra ``_partial_: true``).
        scheduler: optional partial of an LR scheduler taking the optimizer.
        loss_weights: weight per loss name (see ``losses.LOSS_NAMES``); missing names use the
            defaults, 0 switches a loss off.
        pck_threshold: 2-D PCK threshold in crop units.
        scheduler_monitor: metric the scheduler watches (ReduceLROnPlateau).
        assets_dir: assets root used when ``net`` is a config dict and for the UV atlas.
    """

    def __init__(
        self,
        net: HMAR | Mapping[str, Any],
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        loss_weights: Mapping[str, float] | None = None,
        pck_threshold: float = 0.05,
        scheduler_monitor: str = "val/loss",
        assets_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        unknown = set(loss_weights or {}) - set(losses.LOSS_NAMES)
        if unknown:
            raise ValueError(
                f"loss_weights: unknown loss name(s) {sorted(unknown)}; known: {list(losses.LOSS_NAMES)}"
            )
        # A plain dict (not Hydra's DictConfig), so checkpoints load with torch's weights-only loader.
        loss_weights = {**DEFAULT_LOSS_WEIGHTS, **{str(k): float(v) for k, v in (loss_weights or {}).items()}}
        self.loss_weights = loss_weights
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer", "scheduler", "assets_dir"])
        self.net = net if isinstance(net, HMAR) else HMAR(assets_dir=assets_dir, **dict(net))
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_monitor = scheduler_monitor
        self.atlas: UVTexelAtlas | None = None
        if self.loss_weights["uv_flow"] > 0:
            with np.load(resolve("texture", assets_dir)) as texture:
                faces = texture["smpl_faces"]
            self.atlas = UVTexelAtlas(
                faces,
                np.load(resolve("fmap_256", assets_dir)),
                np.load(resolve("bmap_256", assets_dir)),
                self.net.img_size,
            )
        # Per stage: MPJPE (mm), PA-MPJPE (mm), 2-D PCK.
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleList([MPJPE(), MPJPE(procrustes=True), PCK2D(pck_threshold)])
                for stage in ("val", "test")
            }
        )

    def forward(self, image: Tensor) -> dict[str, Any]:
        """HMAR forward (see :meth:`HMAR.forward`)."""
        return self.net(image)

    def _check_batch(self, batch: Mapping[str, Tensor]) -> None:
        missing = [key for key in BATCH_KEYS if key not in batch]
        if missing:
            raise KeyError(f"HMAR batch lacks key(s) {missing}; crop batches follow datamodules/schema.py")

    def _losses(self, batch: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        self._check_batch(batch)
        output = self.net(batch["image"])
        pose_smpl, pred_cam = output["pose_smpl"], output["pred_cam"]
        vertices, joints = self.net.body(pose_smpl)
        keypoints_2d = crop_keypoints(joints, pred_cam, self.net.focal_length)
        weights = self.loss_weights
        terms: dict[str, Tensor] = {}
        terms["keypoints_2d"] = losses.keypoint_2d_loss(keypoints_2d, batch["keypoints_2d"])
        terms["keypoints_3d"] = losses.keypoint_3d_loss(
            joints, batch["keypoints_3d"], batch["has_keypoints_3d"]
        )
        terms["smpl_pose"] = losses.smpl_pose_loss(
            pose_smpl["global_orient"],
            pose_smpl["body_pose"],
            batch["smpl_global_orient"],
            batch["smpl_body_pose"],
            batch["has_smpl"],
        )
        terms["smpl_betas"] = losses.smpl_betas_loss(
            pose_smpl["betas"], batch["smpl_betas"], batch["has_smpl"]
        )
        terms["camera"] = losses.camera_loss(pred_cam, batch["camera"], batch["has_camera"])
        if weights["appearance"] > 0:
            # Detached: the texture head must not learn to make the UV map easy to reconstruct.
            uv_vector = output["uv_vector"].detach()
            terms["appearance"] = losses.appearance_loss(self.net.encoding_head(uv_vector), uv_vector)
        if weights["uv_flow"] > 0 and self.atlas is not None:
            terms["uv_flow"] = losses.uv_flow_loss(
                output["flow"], *self._flow_target(batch, vertices, pred_cam)
            )
        terms = {name: value for name, value in terms.items() if weights[name] > 0}
        predictions = {"joints_3d": joints, "keypoints_2d": keypoints_2d}
        return terms, predictions

    @torch.no_grad()
    def _flow_target(
        self, batch: Mapping[str, Tensor], vertices: Tensor, pred_cam: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Target grid from the true mesh and camera where known, else from the detached prediction."""
        assert self.atlas is not None
        has_smpl = batch["has_smpl"].bool()
        if has_smpl.any():
            true_vertices, _ = self.net.body(
                {
                    "global_orient": batch["smpl_global_orient"],
                    "body_pose": batch["smpl_body_pose"],
                    "betas": batch["smpl_betas"],
                }
            )
            vertices = torch.where(has_smpl[:, None, None], true_vertices, vertices)
        camera = torch.where((batch["has_camera"].bool() & has_smpl)[:, None], batch["camera"], pred_cam)
        return self.atlas.target_grid(vertices, camera)

    def _total(self, terms: Mapping[str, Tensor]) -> Tensor:
        return sum(self.loss_weights[name] * value for name, value in terms.items())  # type: ignore[return-value]

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        terms, _ = self._losses(batch)
        loss = self._total(terms)
        batch_size = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log_dict({f"train/loss_{name}": value for name, value in terms.items()}, batch_size=batch_size)
        return loss

    def _evaluation_step(self, batch: Mapping[str, Tensor], stage: str) -> None:
        terms, predictions = self._losses(batch)
        batch_size = batch["image"].shape[0]
        self.log(f"{stage}/loss", self._total(terms), prog_bar=stage == "val", batch_size=batch_size)
        self.log_dict({f"{stage}/loss_{name}": value for name, value in terms.items()}, batch_size=batch_size)
        mpjpe, pa_mpjpe, pck = self.metrics[stage]
        mpjpe.update(predictions["joints_3d"], batch["keypoints_3d"], batch["has_keypoints_3d"])
        pa_mpjpe.update(predictions["joints_3d"], batch["keypoints_3d"], batch["has_keypoints_3d"])
        pck.update(predictions["keypoints_2d"], batch["keypoints_2d"])
        self.log(f"{stage}/mpjpe", mpjpe, prog_bar=stage == "val", batch_size=batch_size)
        self.log(f"{stage}/pa_mpjpe", pa_mpjpe, batch_size=batch_size)
        self.log(f"{stage}/pck", pck, batch_size=batch_size)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError(
                "HMARModule.optimizer is not set; give model.optimizer (a _partial_ optimizer) to train"
            )
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.scheduler_monitor, "interval": "epoch"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The network's own arguments travel with the weights, so load_hmar and load_from_checkpoint
        # rebuild it without the training config.
        checkpoint[CONFIG_KEY] = dict(self.net.config)
        checkpoint.setdefault("hyper_parameters", {})["net"] = dict(self.net.config)


def load_hmar(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    assets_dir: str | os.PathLike[str] | None = None,
    trusted: bool = False,
) -> HMAR:
    """Load HMAR weights for inference (eval mode).

    Accepts a checkpoint of this package (from training or ``convert_hmar``: ``state_dict`` with
    ``net.`` keys and ``hmar_config``) or the official ``hmar_v2_weights.pth`` (``{"model": ...}``,
    mapped as PHALP does, see :mod:`phalp_lightning.models.convert_hmar`). Loading is strict;
    mismatching keys raise :class:`HMARCheckpointError` listing them. The file is read safely
    (:func:`phalp_lightning.models.checkpoints.load_checkpoint`); ``trusted=True`` allows the
    code-running unpickler for a file the safe reader refuses, with a warning.
    """
    checkpoint = torch_load(path, map_location=map_location, trusted=trusted)
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        config = checkpoint.get(CONFIG_KEY) or checkpoint.get("hyper_parameters", {}).get("net")
        if not isinstance(config, Mapping):
            raise HMARCheckpointError(
                f"{path}: checkpoint has a state_dict but no '{CONFIG_KEY}' (not an HMAR checkpoint?)"
            )
        net = HMAR(assets_dir=assets_dir, **dict(config))
        state = {
            key[len(STATE_PREFIX) :]: value
            for key, value in checkpoint["state_dict"].items()
            if key.startswith(STATE_PREFIX)
        }
        other = [key for key in checkpoint["state_dict"] if not key.startswith(STATE_PREFIX)]
        if other:
            raise HMARCheckpointError(f"{path}: state_dict keys outside '{STATE_PREFIX}': {other[:25]}")
        check_state_dict(state, net.state_dict(), str(path))
        net.load_state_dict(state, strict=True)
    elif isinstance(checkpoint, Mapping) and "model" in checkpoint:
        net = HMAR(assets_dir=assets_dir)
        load_official_state_dict(net, checkpoint, source=str(path))
    else:
        found = sorted(checkpoint)[:10] if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise HMARCheckpointError(
            f"{path}: neither an HMAR Lightning checkpoint ('state_dict') nor the official file ('model'); found {found}"
        )
    return net.to(map_location).eval()
