"""SMPL body model as PHALP uses it: smplx's SMPL layer plus the J19 extra-joint regressor.

Joints (docs/geometry.md, Joints): smplx returns 45 joints (24 SMPL + 21 vertex picks);
``JOINT_MAP`` selects the 25 OpenPose BODY-25 joints, then the 19 joints of the extra regressor are
appended, giving 44. ``get_3d_parameters`` later appends the SMPL origin as joint 45.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from phalp_lightning.assets import resolve
from phalp_lightning.errors import UserError

JOINT_MAP = [24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34]
NUM_JOINTS = len(JOINT_MAP) + 19


@dataclass
class BodyOutput:
    """Output of :class:`BodyModel` for a batch of B bodies."""

    vertices: Tensor  # (B, 6890, 3) metres, body frame (no translation)
    joints: Tensor  # (B, 44, 3) BODY-25 then J19


class BodyModelFileError(UserError, ValueError):
    """A body-model file exists but cannot be read (truncated, corrupt, not the expected content)."""

    def __init__(self, path: Path, error: BaseException) -> None:
        super().__init__(
            f"body-model file {path}: cannot be read, truncated or corrupt ({type(error).__name__}: {error})",
            "copy it again (or re-run `python -m phalp_lightning.assets convert-smpl`, or regenerate the synthetic "
            "stand-in with `python -m phalp_lightning.assets generate`)",
        )


class BodyModel(nn.Module):
    """Neutral SMPL (rotation-matrix input) with PHALP's 44-joint set.

    Args:
        model_path: the SMPL_NEUTRAL.pkl file or the folder holding it (``None``: the assets registry).
        joint_regressor_extra: the SMPL_to_J19.pkl file (``None``: the assets registry).
        persistent: register the model arrays as persistent buffers; parents that must keep a fixed
            checkpoint key set (HMAR) pass False.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        joint_regressor_extra: str | os.PathLike[str] | None = None,
        persistent: bool = True,
    ) -> None:
        super().__init__()
        import smplx

        model_file = Path(model_path) if model_path is not None else resolve("smpl_neutral")
        if model_file.is_dir():
            model_file = model_file / "SMPL_NEUTRAL.pkl"
        if not model_file.is_file():
            raise FileNotFoundError(f"SMPL model file not found: {model_file}")
        extra_file = Path(joint_regressor_extra) if joint_regressor_extra is not None else resolve("smpl_to_j19")
        if not extra_file.is_file():
            raise FileNotFoundError(f"extra joint regressor (SMPL_to_J19.pkl) not found: {extra_file}")
        try:
            # smplx prints "WARNING: ... only 10 shape coefficients" for every SMPL model, though 10 is what
            # is asked for: that line is dropped (once per body model it read as trouble); any other is kept.
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                self.smpl = smplx.SMPLLayer(model_path=str(model_file), gender="neutral", num_betas=10)
            for line in printed.getvalue().splitlines():
                if "shape coefficients" not in line:
                    print(line)
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
            raise BodyModelFileError(model_file, error) from error
        try:
            with extra_file.open("rb") as handle:
                extra = np.asarray(pickle.load(handle, encoding="latin1"), dtype=np.float32)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
            raise BodyModelFileError(extra_file, error) from error
        if extra.shape != (19, self.smpl.get_num_verts()):
            raise ValueError(f"{extra_file}: expected a (19, {self.smpl.get_num_verts()}) regressor, got {extra.shape}")
        self.register_buffer("joint_regressor_extra", torch.from_numpy(extra), persistent=persistent)
        self.register_buffer("joint_map", torch.tensor(JOINT_MAP, dtype=torch.long), persistent=False)
        if not persistent:
            # All submodules: smplx's vertex_joint_selector holds a buffer of its own.
            for module in self.smpl.modules():
                for name, buffer in list(module.named_buffers(recurse=False)):
                    module.register_buffer(name, buffer, persistent=False)

    @property
    def faces(self) -> np.ndarray:
        """(13776, 3) triangle vertex ids."""
        return self.smpl.faces

    def forward(self, global_orient: Tensor, body_pose: Tensor, betas: Tensor) -> BodyOutput:
        """Pose the body.

        Args:
            global_orient: (B, 1, 3, 3) rotation matrix.
            body_pose: (B, 23, 3, 3) rotation matrices.
            betas: (B, 10) shape coefficients.
        """
        output = self.smpl(global_orient=global_orient, body_pose=body_pose, betas=betas, pose2rot=False)
        extra = torch.einsum("jv,bvc->bjc", self.joint_regressor_extra, output.vertices)
        joints = torch.cat([output.joints[:, self.joint_map], extra], dim=1)
        return BodyOutput(vertices=output.vertices, joints=joints)
