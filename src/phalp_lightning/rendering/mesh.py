"""Body meshes of tracked people drawn over their frame: pyrender (GL, optional) or the CPU rasteriser.

Geometry (docs/geometry.md, Rendering canvas): a track's SMPL mesh is posed from its 229-d pose vector and moved by
its camera translation, which lives in PHALP's virtual camera (a 256 px image of the zero-padded
square frame, focal 5000). In pixels of the original H x W frame that camera has focal
``5000 * S / 256`` and principal point ``(S/2 - left, S/2 - top)``, ``S = max(H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from phalp_lightning.structures import FrameTracks
from phalp_lightning.utils.colours import track_colours
from phalp_lightning.utils.geometry import FOCAL_LENGTH, IMG_SIZE
from phalp_lightning.utils.logging import get_logger
from phalp_lightning.utils.vectors import split_pose_vector

log = get_logger(__name__)


@dataclass
class FrameMeshes:
    """The meshes of one frame in the camera frame (x right, y down, z forward) and its pinhole camera."""

    vertices: np.ndarray  # (M, V, 3)
    faces: np.ndarray  # (F, 3)
    colours: np.ndarray  # (M, 3) uint8 RGB
    focal: float  # pixels of the original frame
    principal_point: tuple[float, float]  # (cx, cy) pixels of the original frame


def frame_camera(height: int, width: int) -> tuple[float, tuple[float, float]]:
    """Focal length and principal point, in original-frame pixels, of PHALP's virtual camera."""
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return FOCAL_LENGTH * side / IMG_SIZE, (side / 2 - left, side / 2 - top)


class MeshBuilder:
    """Poses the body model for the detected entries of a frame.

    Args:
        body_model: a :class:`~phalp_lightning.body_model.BodyModel` (or the same interface).
    """

    def __init__(self, body_model: torch.nn.Module) -> None:
        self.body_model = body_model.eval()

    @torch.no_grad()
    def __call__(self, tracks: FrameTracks) -> FrameMeshes:
        detected = tracks.detected
        pose = tracks.detections.pose[detected].float().cpu()
        smpl, cam_t = split_pose_vector(pose)
        if len(pose):
            vertices: Tensor = self.body_model(smpl.global_orient, smpl.body_pose, smpl.betas).vertices + cam_t[:, None]
        else:
            vertices = torch.zeros(0, 6890, 3)
        focal, principal = frame_camera(*tracks.image_size)
        return FrameMeshes(
            vertices=vertices.numpy(),
            faces=np.asarray(self.body_model.faces, dtype=np.int64),
            colours=track_colours(tracks.track_ids[detected].cpu().numpy()),
            focal=focal,
            principal_point=principal,
        )


class PyrenderMeshRenderer:
    """Offscreen pyrender (EGL/OSMesa) rendering with PHALP's material and lights, alpha-composited."""

    def __init__(self, builder: MeshBuilder) -> None:
        import pyrender  # noqa: F401 - fail early when GL is missing
        import trimesh  # noqa: F401

        self.builder = builder
        self._renderer: Any = None
        self._size: tuple[int, int] | None = None

    def render(self, image: np.ndarray, tracks: FrameTracks) -> np.ndarray:
        import pyrender
        import trimesh

        meshes = self.builder(tracks)
        height, width = image.shape[:2]
        if self._size != (height, width):
            if self._renderer is not None:
                self._renderer.delete()
            self._renderer = pyrender.OffscreenRenderer(viewport_width=width, viewport_height=height)
            self._size = (height, width)
        scene = pyrender.Scene(bg_color=[0, 0, 0, 0], ambient_light=[0.3, 0.3, 0.3])
        # OpenGL looks down -z with y up: rotate the OpenCV-frame meshes 180 degrees about x.
        flip = np.diag([1.0, -1.0, -1.0])
        for vertices, colour in zip(meshes.vertices, meshes.colours, strict=True):
            material = pyrender.MetallicRoughnessMaterial(metallicFactor=0.0, roughnessFactor=0.7, baseColorFactor=(*(colour / 255.0), 1.0))
            mesh = trimesh.Trimesh(vertices @ flip.T, meshes.faces, process=False)
            scene.add(pyrender.Mesh.from_trimesh(mesh, material=material))
        cx, cy = meshes.principal_point
        scene.add(pyrender.IntrinsicsCamera(fx=meshes.focal, fy=meshes.focal, cx=cx, cy=cy, zfar=1e4), pose=np.eye(4))
        for azimuth in np.linspace(0, 2 * np.pi, 5, endpoint=False):
            light_pose = np.eye(4)
            light_pose[:3, 3] = 12 * np.array([np.cos(azimuth) * np.sin(np.pi / 3), np.sin(azimuth) * np.sin(np.pi / 3), np.cos(np.pi / 3)])
            scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=1.0), pose=light_pose)
        scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=1.0), pose=np.eye(4))
        colour, _ = self._renderer.render(scene, flags=pyrender.RenderFlags.RGBA)
        alpha = colour[..., 3:4].astype(np.float32) / 255.0
        return (colour[..., :3] * alpha + image * (1 - alpha)).astype(np.uint8)


class RasterMeshRenderer:
    """The CPU z-buffer rasteriser (:mod:`phalp_lightning.utils.rasterize`): no GL needed, slower."""

    def __init__(self, builder: MeshBuilder) -> None:
        self.builder = builder

    def render(self, image: np.ndarray, tracks: FrameTracks) -> np.ndarray:
        """Draw the meshes of the detected tracks over ``image`` (H, W, 3) uint8 RGB."""
        from phalp_lightning.utils.rasterize import render_meshes

        meshes = self.builder(tracks)
        if len(meshes.vertices) == 0:
            return image
        num_vertices = meshes.vertices.shape[1]
        colours = [np.broadcast_to(colour.astype(np.float64), (num_vertices, 3)) for colour in meshes.colours]
        height, width = image.shape[:2]
        output = render_meshes(
            list(meshes.vertices), meshes.faces, colours, meshes.focal, meshes.principal_point, height, width, background=image
        )
        return output.image


def build_mesh_renderer(backend: str = "auto", assets_dir: str | None = None) -> Any:
    """A mesh renderer for ``backend`` ("auto", "pyrender", "cpu").

    "auto" tries pyrender first (needs the ``render`` extra and a working EGL/OSMesa), then the CPU
    rasteriser; a missing body model raises :class:`~phalp_lightning.assets.AssetMissingError`.
    """
    from phalp_lightning.body_model import BodyModel

    if backend not in ("auto", "pyrender", "cpu"):
        raise ValueError(f"mesh backend must be 'auto', 'pyrender' or 'cpu', got {backend!r}")
    model_path = None if assets_dir is None else f"{assets_dir}/3D/models/smpl/SMPL_NEUTRAL.pkl"
    extra = None if assets_dir is None else f"{assets_dir}/3D/SMPL_to_J19.pkl"
    builder = MeshBuilder(BodyModel(model_path=model_path, joint_regressor_extra=extra, persistent=False))
    if backend in ("auto", "pyrender"):
        try:
            return PyrenderMeshRenderer(builder)
        except (ImportError, OSError, RuntimeError) as error:  # no pyrender, or no GL context
            if backend == "pyrender":
                raise
            log.info("pyrender unavailable (%s); using the CPU rasteriser", error)
    return RasterMeshRenderer(builder)
