"""HMAR heads: the SMPL regressor (iterative error feedback, 6-D rotations, crop camera) and the
UV-flow texture head (spectral-normalised residual decoder over the backbone skips).

Facts: docs/hmar.md, Architecture (SMPL head, texture head). Key names follow the official
modules so that ``hmar_v2_weights.pth`` loads strictly.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from phalp_lightning.errors import UserError
from phalp_lightning.utils.geometry import rot6d_to_rotmat

NUM_SMPL_JOINTS = 24  # global orientation + 23 body joints
POSE_6D_DIM = 6 * NUM_SMPL_JOINTS  # 144
NUM_BETAS = 10
CAMERA_DIM = 3


def read_smpl_mean_params(path: str | os.PathLike[str]) -> tuple[Tensor, Tensor, Tensor]:
    """Read ``smpl_mean_params.npz``: ``pose`` (144,), ``shape`` (10,), ``cam`` (3,) as float32 tensors."""
    try:
        with np.load(path) as data:
            missing = [key for key in ("pose", "shape", "cam") if key not in data]
            if missing:
                raise ValueError(f"{path}: SMPL mean-parameter file lacks keys {missing} (has {sorted(data.keys())})")
            pose, betas, camera = (
                torch.from_numpy(np.asarray(data[key], dtype=np.float32)).reshape(-1) for key in ("pose", "shape", "cam")
            )
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise UserError(
            f"SMPL mean-parameter file {path}: cannot be read ({type(error).__name__}: {error})",
            "copy it again, or regenerate the synthetic stand-in with `python -m phalp_lightning.assets generate`",
        ) from error
    if pose.numel() != POSE_6D_DIM or betas.numel() != NUM_BETAS or camera.numel() != CAMERA_DIM:
        raise ValueError(
            f"{path}: expected pose (144,), shape (10,), cam (3,); got {tuple(pose.shape)}, {tuple(betas.shape)}, {tuple(camera.shape)}"
        )
    return pose, betas, camera


class SMPLHead(nn.Module):
    """SMPL parameters and weak-perspective crop camera by iterative error feedback.

    State (pose 6-D (B,144), betas (B,10), camera (B,3)) starts at the mean parameters and is
    refined ``num_iterations`` times by residuals predicted from ``[feature, state]``.

    HMAR's head and the pose transformer's read-out heads are this module (same official key names).

    Args:
        mean_pose: (144,) mean 6-D rotations, joint-major, joint 0 = global orientation
            (None: identity rotations).
        mean_betas: (10,) mean shape (None: zeros).
        mean_camera: (3,) mean crop camera ``(s, tx, ty)`` (None: (0.9, 0, 0)).
        input_dim: feature size (2048 for ResNet-50).
        hidden_dim: width of fc1/fc2 (1024).
        num_iterations: IEF iterations (3).
        dropout: dropout after fc1 and fc2 (0.5 in the official head).
    """

    def __init__(
        self,
        mean_pose: Tensor | None = None,
        mean_betas: Tensor | None = None,
        mean_camera: Tensor | None = None,
        input_dim: int = 2048,
        hidden_dim: int = 1024,
        num_iterations: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if mean_pose is None:
            mean_pose = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).repeat(NUM_SMPL_JOINTS)
        if mean_betas is None:
            mean_betas = torch.zeros(NUM_BETAS)
        if mean_camera is None:
            mean_camera = torch.tensor([0.9, 0.0, 0.0])
        mean_pose = torch.as_tensor(mean_pose, dtype=torch.float32).reshape(1, -1)
        mean_betas = torch.as_tensor(mean_betas, dtype=torch.float32).reshape(1, -1)
        mean_camera = torch.as_tensor(mean_camera, dtype=torch.float32).reshape(1, -1)
        for name, value, dim in (
            ("pose", mean_pose, POSE_6D_DIM),
            ("betas", mean_betas, NUM_BETAS),
            ("camera", mean_camera, CAMERA_DIM),
        ):
            if value.shape[1] != dim:
                raise ValueError(f"mean {name} must have {dim} values, got {value.shape[1]}")
        self.num_iterations = num_iterations
        state_dim = POSE_6D_DIM + NUM_BETAS + CAMERA_DIM
        self.fc1 = nn.Linear(input_dim + state_dim, hidden_dim)
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.drop2 = nn.Dropout(dropout)
        self.decpose = nn.Linear(hidden_dim, POSE_6D_DIM)
        self.decshape = nn.Linear(hidden_dim, NUM_BETAS)
        self.deccam = nn.Linear(hidden_dim, CAMERA_DIM)
        # Small residuals at the start: the first prediction is (almost) the mean body.
        for layer in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(layer.weight, gain=0.01)
        self.register_buffer("init_body_pose", mean_pose)
        self.register_buffer("init_betas", mean_betas)
        self.register_buffer("init_cam", mean_camera)

    def forward(self, features: Tensor) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
        """Regress SMPL and camera.

        Args:
            features: (B, input_dim) pooled image feature.

        Returns:
            ``pose_smpl`` = dict(global_orient (B,1,3,3), body_pose (B,23,3,3), betas (B,10)),
            ``pred_cam`` (B,3), and the per-iteration states dict(pose_6d (N,B,144), betas (N,B,10),
            camera (N,B,3)) for deep supervision.
        """
        batch = features.shape[0]
        pose_6d = self.init_body_pose.expand(batch, -1)
        betas = self.init_betas.expand(batch, -1)
        camera = self.init_cam.expand(batch, -1)
        history: dict[str, list[Tensor]] = {"pose_6d": [], "betas": [], "camera": []}
        for _ in range(self.num_iterations):
            state = torch.cat([features, pose_6d, betas, camera], dim=1)
            hidden = self.drop1(F.relu(self.fc1(state)))
            hidden = self.drop2(F.relu(self.fc2(hidden)))
            pose_6d = pose_6d + self.decpose(hidden)
            betas = betas + self.decshape(hidden)
            camera = camera + self.deccam(hidden)
            history["pose_6d"].append(pose_6d)
            history["betas"].append(betas)
            history["camera"].append(camera)
        rotmats = rot6d_to_rotmat(pose_6d.reshape(batch, NUM_SMPL_JOINTS, 6))
        pose_smpl = {"global_orient": rotmats[:, :1], "body_pose": rotmats[:, 1:], "betas": betas}
        iterations = {name: torch.stack(values) for name, values in history.items()}
        return pose_smpl, camera, iterations


class ResnetBlock(nn.Module):
    """Pre-activation residual block (BN -> LeakyReLU(0.2) -> spectral-normalised 3x3 conv) x 2.

    A 1x1 spectral-normalised shortcut (no bias, BN before it, no activation) is learned when
    ``in_channels != out_channels``. Spectral norm is the legacy hook version, whose state-dict
    names (``weight_orig``, ``weight_u``, ``weight_v``) the official checkpoint uses.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        middle = min(in_channels, out_channels)
        self.learned_shortcut = in_channels != out_channels
        self.conv_0 = spectral_norm(nn.Conv2d(in_channels, middle, kernel_size=3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(middle, out_channels, kernel_size=3, padding=1))
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False))
        self.norm_0 = nn.BatchNorm2d(in_channels)
        self.norm_1 = nn.BatchNorm2d(middle)
        if self.learned_shortcut:
            self.norm_s = nn.BatchNorm2d(in_channels)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = self.conv_s(self.norm_s(x)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx), 0.2))
        return shortcut + dx


class UVFlowDecoder(nn.Module):
    """Decoder from the four backbone skips to a 2-channel flow in [-1, 1] at the input resolution."""

    def __init__(self, nf: int = 8) -> None:
        super().__init__()
        self.G_middle_0 = ResnetBlock(2048, 8 * nf)
        self.G_middle_1 = ResnetBlock(8 * nf, 8 * nf)
        self.G_middle_2 = ResnetBlock(1024, 8 * nf)
        self.G_middle_2_1 = ResnetBlock(16 * nf, 8 * nf)
        self.G_middle_3 = ResnetBlock(512, 8 * nf)
        self.G_middle_3_1 = ResnetBlock(16 * nf, 8 * nf)
        self.G_middle_4 = ResnetBlock(256, 4 * nf)
        self.G_middle_4_1 = ResnetBlock(8 * nf, 4 * nf)
        self.up_0 = ResnetBlock(8 * nf, 4 * nf)
        self.up_1 = ResnetBlock(4 * nf, 4 * nf)
        self.up_2 = ResnetBlock(4 * nf, 2 * nf)
        self.up_3 = ResnetBlock(2 * nf, nf)
        self.conv_img = nn.Conv2d(nf, 2, kernel_size=3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")

    def forward(self, skips: list[Tensor]) -> Tensor:
        """skips [x1, x2, x3, x4] at S/4..S/32 -> (B, 2, S, S) = tanh(conv_img(...))."""
        x1, x2, x3, x4 = skips
        x = self.G_middle_0(x4)
        x = self.up(x)
        x = self.G_middle_1(self.G_middle_2_1(torch.cat([x, self.G_middle_2(x3)], dim=1)))
        x = self.up(x)
        x = self.up_0(self.G_middle_3_1(torch.cat([x, self.G_middle_3(x2)], dim=1)))
        x = self.up(x)
        x = self.up_1(self.G_middle_4_1(torch.cat([x, self.G_middle_4(x1)], dim=1)))
        x = self.up_2(self.up(x))
        x = self.up_3(self.up(x))
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class TextureHead(nn.Module):
    """UV-flow head: for each UV texel, where to sample the crop.

    The official head applies tanh on top of the decoder's own tanh, so the flow lies in
    +-tanh(1) = +-0.7616 (the central part of the crop); kept for parity.
    """

    def __init__(self, nf: int = 8) -> None:
        super().__init__()
        self.decoder = UVFlowDecoder(nf)

    def forward(self, skips: list[Tensor]) -> Tensor:
        """skips -> flow (B, 2, S, S), channel 0 = x, channel 1 = y in grid_sample units."""
        return torch.tanh(self.decoder(skips))
