"""Synthetic people: the body model, a parametric walking gait, clothing colours and backgrounds.

Everything is deterministic given a ``numpy.random.Generator``. Conventions:

- body frame: the body model's (y up, +z = the body's front, +x = its left);
- camera frame: x right, y down, z forward (metres); a person is placed with
  ``R_x(pi) @ R_y(heading)`` as global orientation, so ``heading = +pi/2`` walks towards +x (right)
  and ``heading = 0`` faces the camera.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phalp_lightning.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)

# SMPL joints (body_pose index = joint - 1).
_L_HIP, _R_HIP, _SPINE1, _L_KNEE, _R_KNEE, _SPINE2 = 0, 1, 2, 3, 4, 5
_SPINE3, _NECK, _L_SHOULDER, _R_SHOULDER, _L_ELBOW, _R_ELBOW = 8, 11, 15, 16, 17, 18
_L_ANKLE, _R_ANKLE = 6, 7

# Clothing region of each SMPL joint (argmax skinning weight of a vertex picks its joint).
SKIN, SHIRT, SLEEVE, PANTS, SHOES, HAIR = 0, 1, 2, 3, 4, 5
_REGION_OF_JOINT = np.array(
    [PANTS, PANTS, PANTS, SHIRT, PANTS, PANTS, SHIRT, SHOES, SHOES, SHIRT, SHOES, SHOES,
     SKIN, SHIRT, SHIRT, SKIN, SLEEVE, SLEEVE, SLEEVE, SLEEVE, SKIN, SKIN, SKIN, SKIN]
)


def rot_x(angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about x by ``angle`` (...) radians."""
    angle = np.asarray(angle, np.float64)
    c, s, o, z = np.cos(angle), np.sin(angle), np.ones_like(angle), np.zeros_like(angle)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*angle.shape, 3, 3)


def rot_y(angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about y."""
    angle = np.asarray(angle, np.float64)
    c, s, o, z = np.cos(angle), np.sin(angle), np.ones_like(angle), np.zeros_like(angle)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*angle.shape, 3, 3)


def rot_z(angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) about z."""
    angle = np.asarray(angle, np.float64)
    c, s, o, z = np.cos(angle), np.sin(angle), np.ones_like(angle), np.zeros_like(angle)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*angle.shape, 3, 3)


@dataclass(frozen=True)
class Gait:
    """A person's walking style; angles in radians, ``frequency`` in gait cycles per frame."""

    frequency: float
    phase: float
    hip_swing: float
    knee_bend: float
    arm_swing: float
    arm_down: float
    elbow_bend: float
    torso_twist: float

    @staticmethod
    def sample(rng: np.random.Generator, fps: float = 30.0) -> Gait:
        """A random but natural gait (about 0.8-1.1 strides per second)."""
        return Gait(
            frequency=float(rng.uniform(0.8, 1.1)) / fps,
            phase=float(rng.uniform(0.0, 2.0 * np.pi)),
            hip_swing=float(rng.uniform(0.30, 0.50)),
            knee_bend=float(rng.uniform(0.50, 0.90)),
            arm_swing=float(rng.uniform(0.25, 0.55)),
            arm_down=float(rng.uniform(1.20, 1.40)),
            elbow_bend=float(rng.uniform(0.15, 0.45)),
            torso_twist=float(rng.uniform(0.03, 0.10)),
        )


def walking_body_pose(gait: Gait, frames: np.ndarray) -> np.ndarray:
    """Body pose rotation matrices (T, 23, 3, 3) of ``gait`` at the (T,) frame indices ``frames``."""
    angle = 2.0 * np.pi * gait.frequency * np.asarray(frames, np.float64) + gait.phase
    count = angle.shape[0]
    pose = np.broadcast_to(np.eye(3), (count, 23, 3, 3)).copy()
    swing = np.sin(angle)
    # Legs: flexing the hip swings the leg forward (-x rotation), the knee bends backward (+x).
    pose[:, _L_HIP] = rot_x(-gait.hip_swing * swing)
    pose[:, _R_HIP] = rot_x(gait.hip_swing * swing)
    pose[:, _L_KNEE] = rot_x(gait.knee_bend * np.clip(np.sin(angle - 1.2), 0.0, None) + 0.05)
    pose[:, _R_KNEE] = rot_x(gait.knee_bend * np.clip(np.sin(angle + np.pi - 1.2), 0.0, None) + 0.05)
    pose[:, _L_ANKLE] = rot_x(0.15 * np.cos(angle))
    pose[:, _R_ANKLE] = rot_x(-0.15 * np.cos(angle))
    # Arms down from the T-pose, swinging against the leg on the same side.
    pose[:, _L_SHOULDER] = rot_x(gait.arm_swing * swing) @ rot_z(np.full(count, -gait.arm_down))
    pose[:, _R_SHOULDER] = rot_x(-gait.arm_swing * swing) @ rot_z(np.full(count, gait.arm_down))
    pose[:, _L_ELBOW] = rot_y(np.full(count, -gait.elbow_bend) - 0.2 * np.clip(swing, 0, None))
    pose[:, _R_ELBOW] = rot_y(np.full(count, gait.elbow_bend) + 0.2 * np.clip(-swing, 0, None))
    pose[:, _SPINE2] = rot_y(gait.torso_twist * swing)
    pose[:, _SPINE3] = rot_y(-0.5 * gait.torso_twist * swing)
    pose[:, _NECK] = rot_y(0.5 * gait.torso_twist * swing)
    return pose


def random_body_pose(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 23, 3, 3) varied poses: a random gait phase plus joint noise (for crop datasets)."""
    poses = np.empty((count, 23, 3, 3))
    for index in range(count):
        poses[index] = walking_body_pose(Gait.sample(rng), np.array([rng.uniform(0, 60)]))[0]
    return axis_angle(rng.normal(0.0, 0.12, size=(count, 23, 3))) @ poses


def axis_angle(vectors: np.ndarray) -> np.ndarray:
    """Rodrigues: axis-angle vectors (..., 3) -> rotation matrices (..., 3, 3)."""
    angle = np.linalg.norm(vectors, axis=-1)[..., None, None]
    axis = vectors / np.maximum(angle[..., 0], 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    skew = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*vectors.shape[:-1], 3, 3)
    return np.eye(3) + np.sin(angle) * skew + (1.0 - np.cos(angle)) * (skew @ skew)


def global_orientation(heading: np.ndarray, lean: np.ndarray | float = 0.0) -> np.ndarray:
    """(..., 3, 3) camera-frame orientation of an upright body walking with ``heading`` (radians)."""
    heading = np.asarray(heading, np.float64)
    lean = np.broadcast_to(np.asarray(lean, np.float64), heading.shape)
    return rot_x(np.full(heading.shape, np.pi)) @ rot_y(heading) @ rot_x(lean)


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255.0


@dataclass
class Clothing:
    """Per-person colours (RGB 0-255) and texture parameters."""

    colors: np.ndarray  # (6, 3) one colour per region (SKIN .. HAIR)
    stripe_frequency: float
    stripe_strength: float
    pattern: str  # "stripes" | "checks" | "plain"

    @staticmethod
    def sample(rng: np.random.Generator) -> Clothing:
        """Saturated, fairly dark clothes: they contrast with the light backgrounds."""
        colors = np.empty((6, 3))
        skin_tone = rng.uniform(0.25, 0.85)
        colors[SKIN] = np.array([230, 190, 160]) * skin_tone + np.array([90, 55, 35]) * (1 - skin_tone)
        colors[SHIRT] = _hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.25, 0.75))
        colors[SLEEVE] = colors[SHIRT] if rng.uniform() < 0.6 else colors[SKIN]
        colors[PANTS] = _hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 0.9), rng.uniform(0.10, 0.45))
        colors[SHOES] = _hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.5), rng.uniform(0.05, 0.30))
        colors[HAIR] = _hsv_to_rgb(rng.uniform(0.02, 0.12), rng.uniform(0.3, 0.8), rng.uniform(0.05, 0.35))
        pattern = str(rng.choice(["stripes", "checks", "plain"]))
        return Clothing(colors, float(rng.uniform(12.0, 30.0)), float(rng.uniform(0.25, 0.5)), pattern)

    def vertex_colors(self, rest_vertices: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """(V, 3) colours of the body's vertices from their rest positions and clothing regions."""
        colors = self.colors[regions].copy()
        height, across = rest_vertices[:, 1], rest_vertices[:, 0]
        if self.pattern != "plain":
            wave = np.sin(height * self.stripe_frequency * 2 * np.pi)
            if self.pattern == "checks":
                wave = wave * np.sign(np.sin(across * self.stripe_frequency * 2 * np.pi))
            textured = (regions == SHIRT) | (regions == SLEEVE)
            colors[textured] *= 1.0 + self.stripe_strength * np.sign(wave[textured])[:, None] * 0.5
        # Hair: the back and top of the head.
        head = regions == SKIN
        hair = head & (height > 0.43) | head & (height > 0.36) & (rest_vertices[:, 2] < -0.02)
        colors[hair] = self.colors[HAIR]
        return np.clip(colors, 0, 255)


def vertex_regions(skinning_weights: np.ndarray) -> np.ndarray:
    """(V,) clothing region of every vertex from its (V, 24) skinning weights."""
    return _REGION_OF_JOINT[np.asarray(skinning_weights).argmax(axis=1)]


def random_background(rng: np.random.Generator, height: int, width: int, horizon: float | None = None) -> np.ndarray:
    """(H, W, 3) uint8 light, textured background: a wall above ``horizon`` (row) and a tiled floor below."""
    import cv2

    horizon = height / 2.0 if horizon is None else horizon
    rows = np.arange(height, dtype=np.float64)[:, None, None]
    wall = _hsv_to_rgb(rng.uniform(), rng.uniform(0.05, 0.3), rng.uniform(0.75, 0.95))
    floor = _hsv_to_rgb(rng.uniform(), rng.uniform(0.05, 0.3), rng.uniform(0.6, 0.85))
    image = np.where(rows < horizon, wall, floor) * np.ones((1, width, 1))
    # Low-frequency blotches so the background is not flat (the detector must not fire on it).
    noise = rng.normal(0.0, 1.0, size=(max(2, height // 32), max(2, width // 32))).astype(np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    image = image * (1.0 + 0.05 * noise)
    # Floor tiles: faint lines that converge to the horizon.
    cols = np.arange(width, dtype=np.float64)[None, :]
    below = np.clip(rows[..., 0] - horizon, 1e-3, None)
    lines = (np.abs(((cols - width / 2) / below * 8.0) % 1.0 - 0.5) < 0.03) & (rows[..., 0] > horizon + 2)
    image[lines] *= 0.9
    return np.clip(image, 0, 255).astype(np.uint8)


class BodyModelHandle:
    """The body model plus what the generator needs from it (faces, rest vertices, regions).

    Args:
        assets_root: folder of body-model assets; None uses $PHALP_ASSETS / the default cache, and
            when those have no body model, the generated mannequin is written to a temporary folder.
    """

    def __init__(self, assets_root: str | os.PathLike[str] | None = None) -> None:
        import torch

        from phalp_lightning.assets import AssetMissingError, asset_path, resolve
        from phalp_lightning.body_model import BodyModel

        try:
            model_path, regressor_path = resolve("smpl_neutral", assets_root), resolve("smpl_to_j19", assets_root)
            self.model = BodyModel(model_path, regressor_path)
        except AssetMissingError:
            from phalp_lightning.datamodules.synthetic.mannequin import write_synthetic_assets

            log.info("no body model under the assets folder: using the generated mannequin")
            with tempfile.TemporaryDirectory() as folder:
                write_synthetic_assets(folder)
                self.model = BodyModel(asset_path("smpl_neutral", folder), asset_path("smpl_to_j19", folder))
        self.model.eval()
        self.faces = np.asarray(self.model.faces, np.int64)
        self.rest_vertices = self.model.smpl.v_template.detach().cpu().numpy().astype(np.float64)
        self.regions = vertex_regions(self.model.smpl.lbs_weights.detach().cpu().numpy())
        self._torch = torch

    def pose(self, global_orient: np.ndarray, body_pose: np.ndarray, betas: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (B, V, 3) and joints (B, 44, 3) in the body frame rotated by ``global_orient``.

        Args:
            global_orient: (B, 3, 3) or (B, 1, 3, 3); body_pose: (B, 23, 3, 3); betas: (B, 10).
        """
        torch = self._torch
        count = len(betas)
        vertices, joints = [], []
        with torch.no_grad():
            for first in range(0, count, chunk):
                part = slice(first, first + chunk)
                output = self.model(
                    torch.tensor(np.asarray(global_orient[part]), dtype=torch.float32).reshape(-1, 1, 3, 3),
                    torch.tensor(np.asarray(body_pose[part]), dtype=torch.float32),
                    torch.tensor(np.asarray(betas[part]), dtype=torch.float32),
                )
                vertices.append(output.vertices.numpy().astype(np.float64))
                joints.append(output.joints.numpy().astype(np.float64))
        if not vertices:
            return np.zeros((0, len(self.rest_vertices), 3)), np.zeros((0, 44, 3))
        return np.concatenate(vertices), np.concatenate(joints)


def save_jpeg(path: Path, image_rgb: np.ndarray, quality: int = 95) -> None:
    """Write an RGB image as JPEG atomically."""
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not encode {path}")
    atomic_write_bytes(path, data.tobytes())
