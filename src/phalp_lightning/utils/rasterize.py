"""A small CPU mesh rasteriser (numpy z-buffer) for synthetic data and mesh overlays.

Two levels:

- :func:`rasterize` works in pixel space: vertices ``(x, y, depth)`` with x, y continuous pixel
  coordinates (pixel ``(row i, col j)`` covers ``[j, j+1) x [i, i+1)`` and is sampled at its centre
  ``(j + 0.5, i + 0.5)``) and depth > 0 along the viewing direction, one flat colour per face.
- :func:`render_meshes` works in camera space (x right, y down, z forward, metres): it projects with a
  pinhole camera, culls back faces, shades faces with a Lambertian light and calls :func:`rasterize`.

Several meshes are drawn at once; the output ``mask`` holds the index of the mesh seen at each pixel
(-1 for background), which gives exact per-person masks and occlusion.

The z-buffer is vectorised: every face is expanded to the pixel centres of its bounding box, the
barycentric test and perspective-correct depth run on all candidates at once, and the nearest
candidate per pixel wins (a lexicographic sort), in bounded-size chunks of faces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Candidate (face, pixel) pairs processed per chunk: bounds peak memory to a few hundred MB.
_MAX_CANDIDATES = 4_000_000
_NEAR = 1e-6


@dataclass
class RasterOutput:
    """The result of rasterising meshes into an H x W image.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) int32 index of the mesh visible at each pixel, -1 where none is.
        depth: (H, W) float32 depth of the visible surface, ``inf`` where no mesh is.
        coverage: (M,) int64 number of in-image pixels each mesh covers ignoring the others
            (its amodal area), so ``visible / coverage`` is its visibility.
    """

    image: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    coverage: np.ndarray

    def person_mask(self, index: int) -> np.ndarray:
        """(H, W) bool mask of the pixels where mesh ``index`` is visible."""
        return self.mask == index

    def visible_pixels(self) -> np.ndarray:
        """(M,) number of pixels where each mesh is visible."""
        counts = np.bincount(self.mask[self.mask >= 0].ravel(), minlength=len(self.coverage))
        return counts[: len(self.coverage)]


def _background(background: np.ndarray | Sequence[int] | None, height: int, width: int) -> np.ndarray:
    if background is None:
        return np.zeros((height, width, 3), np.uint8)
    background = np.asarray(background)
    if background.ndim == 1:
        return np.broadcast_to(background.astype(np.uint8), (height, width, 3)).copy()
    if background.shape != (height, width, 3):
        raise ValueError(f"background must be (H, W, 3) = ({height}, {width}, 3), got {background.shape}")
    return background.astype(np.uint8, copy=True)


def rasterize(
    vertices: np.ndarray | Sequence[np.ndarray],
    faces: np.ndarray | Sequence[np.ndarray],
    face_colors: np.ndarray | Sequence[np.ndarray],
    height: int,
    width: int,
    background: np.ndarray | Sequence[int] | None = None,
    face_mask: np.ndarray | Sequence[np.ndarray] | None = None,
) -> RasterOutput:
    """Z-buffer rasterisation of one or several triangle meshes given in pixel space.

    Args:
        vertices: (V, 3) ``(x, y, depth)`` or a list of M such arrays, one per mesh.
        faces: (F, 3) vertex ids (shared by all meshes) or a list of M arrays.
        face_colors: (F, 3) RGB in [0, 255] per face, or a list of M arrays.
        height, width: output size in pixels.
        background: (H, W, 3) uint8 image, an RGB triple, or None (black).
        face_mask: optional (F,) bool (or a list) of faces to draw, e.g. the front faces.

    Returns:
        :class:`RasterOutput` with image, mesh-index mask, depth and per-mesh coverage.
    """
    vertex_list = [vertices] if isinstance(vertices, np.ndarray) and vertices.ndim == 2 else list(vertices)
    num_meshes = len(vertex_list)
    face_list = [faces] * num_meshes if isinstance(faces, np.ndarray) else list(faces)
    color_list = [face_colors] * num_meshes if isinstance(face_colors, np.ndarray) and face_colors.ndim == 2 else list(face_colors)
    mask_list = [face_mask] * num_meshes if face_mask is None or isinstance(face_mask, np.ndarray) else list(face_mask)
    if not (len(face_list) == len(color_list) == len(mask_list) == num_meshes):
        raise ValueError("vertices, faces, face_colors and face_mask must describe the same number of meshes")

    triangles, colors, mesh_ids = [], [], []
    for index, (verts, tri, color, keep) in enumerate(zip(vertex_list, face_list, color_list, mask_list, strict=True)):
        verts = np.asarray(verts, np.float64)
        tri = np.asarray(tri, np.int64)
        color = np.asarray(color, np.float64)
        if verts.ndim != 2 or verts.shape[1] != 3:
            raise ValueError(f"mesh {index}: vertices must be (V, 3), got {verts.shape}")
        if color.shape != (len(tri), 3):
            raise ValueError(f"mesh {index}: face_colors must be ({len(tri)}, 3), got {color.shape}")
        if keep is not None:
            tri, color = tri[np.asarray(keep, bool)], color[np.asarray(keep, bool)]
        triangles.append(verts[tri])
        colors.append(color)
        mesh_ids.append(np.full(len(tri), index, np.int32))
    triangles_all = np.concatenate(triangles) if triangles else np.zeros((0, 3, 3))
    colors_all = np.concatenate(colors) if colors else np.zeros((0, 3))
    mesh_all = np.concatenate(mesh_ids) if mesh_ids else np.zeros(0, np.int32)

    image = _background(background, height, width)
    depth = np.full(height * width, np.inf)
    winner = np.full(height * width, -1, np.int64)
    covered = np.zeros(max(num_meshes, 1) * height * width, bool)

    # Faces in front of the camera with a pixel-centre range that is not empty.
    in_front = (triangles_all[:, :, 2] > _NEAR).all(axis=1)
    xs, ys = triangles_all[:, :, 0], triangles_all[:, :, 1]
    x0 = np.clip(np.ceil(xs.min(1) - 0.5), 0, width).astype(np.int64)
    x1 = np.clip(np.floor(xs.max(1) - 0.5), -1, width - 1).astype(np.int64)
    y0 = np.clip(np.ceil(ys.min(1) - 0.5), 0, height).astype(np.int64)
    y1 = np.clip(np.floor(ys.max(1) - 0.5), -1, height - 1).astype(np.int64)
    span_x, span_y = x1 - x0 + 1, y1 - y0 + 1
    area = (xs[:, 1] - xs[:, 0]) * (ys[:, 2] - ys[:, 0]) - (xs[:, 2] - xs[:, 0]) * (ys[:, 1] - ys[:, 0])
    drawable = np.flatnonzero(in_front & (span_x > 0) & (span_y > 0) & (np.abs(area) > 1e-12))
    counts = (span_x * span_y)[drawable]

    start = 0
    while start < len(drawable):
        # Grow the chunk until it holds about _MAX_CANDIDATES candidates (at least one face).
        stop = start + max(1, int(np.searchsorted(np.cumsum(counts[start:]), _MAX_CANDIDATES)))
        chunk = drawable[start:stop]
        chunk_counts = counts[start:stop]
        start = stop
        face = np.repeat(chunk, chunk_counts)
        local = np.arange(int(chunk_counts.sum())) - np.repeat(np.cumsum(chunk_counts) - chunk_counts, chunk_counts)
        px = x0[face] + local % span_x[face]
        py = y0[face] + local // span_x[face]
        cx, cy = px + 0.5, py + 0.5
        tx, ty, tz = triangles_all[face, :, 0], triangles_all[face, :, 1], triangles_all[face, :, 2]
        w1 = ((cx - tx[:, 0]) * (ty[:, 2] - ty[:, 0]) - (tx[:, 2] - tx[:, 0]) * (cy - ty[:, 0])) / area[face]
        w2 = ((tx[:, 1] - tx[:, 0]) * (cy - ty[:, 0]) - (cx - tx[:, 0]) * (ty[:, 1] - ty[:, 0])) / area[face]
        w0 = 1.0 - w1 - w2
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        face, px, py = face[inside], px[inside], py[inside]
        w0, w1, w2, tz = w0[inside], w1[inside], w2[inside], tz[inside]
        # Perspective-correct depth: 1/z is linear in screen space.
        z = 1.0 / (w0 / tz[:, 0] + w1 / tz[:, 1] + w2 / tz[:, 2])
        pixel = py * width + px
        covered[mesh_all[face].astype(np.int64) * height * width + pixel] = True
        order = np.lexsort((z, pixel))
        pixel_sorted = pixel[order]
        first = np.ones(len(order), bool)
        first[1:] = pixel_sorted[1:] != pixel_sorted[:-1]
        best = order[first]
        nearer = z[best] < depth[pixel[best]]
        best = best[nearer]
        depth[pixel[best]] = z[best]
        winner[pixel[best]] = face[best]

    drawn = winner >= 0
    flat_image = image.reshape(-1, 3)
    flat_image[drawn] = np.clip(np.rint(colors_all[winner[drawn]]), 0, 255).astype(np.uint8)
    mask = np.full(height * width, -1, np.int32)
    mask[drawn] = mesh_all[winner[drawn]]
    coverage = covered.reshape(max(num_meshes, 1), -1).sum(1)[:num_meshes].astype(np.int64)
    return RasterOutput(
        image=image,
        mask=mask.reshape(height, width),
        depth=depth.reshape(height, width).astype(np.float32),
        coverage=coverage,
    )


def project_points(points: np.ndarray, focal_length: float | Sequence[float], principal_point: Sequence[float]) -> np.ndarray:
    """Pinhole projection of camera-space points (..., 3) to ``(x, y, depth)`` in pixels (..., 3)."""
    points = np.asarray(points, np.float64)
    focal = np.broadcast_to(np.asarray(focal_length, np.float64), (2,))
    depth = points[..., 2]
    safe = np.where(np.abs(depth) < _NEAR, _NEAR, depth)
    x = points[..., 0] / safe * focal[0] + principal_point[0]
    y = points[..., 1] / safe * focal[1] + principal_point[1]
    return np.stack([x, y, depth], axis=-1)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals (F, 3) of the faces of a camera-space mesh (counter-clockwise = outward)."""
    tri = vertices[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return normal / np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)


def render_meshes(
    vertices: Sequence[np.ndarray],
    faces: np.ndarray,
    vertex_colors: Sequence[np.ndarray],
    focal_length: float | Sequence[float],
    principal_point: Sequence[float],
    height: int,
    width: int,
    background: np.ndarray | Sequence[int] | None = None,
    light_direction: Sequence[float] = (0.3, -0.6, -0.75),
    ambient: float = 0.45,
    cull_backfaces: bool = True,
) -> RasterOutput:
    """Render camera-space meshes with flat Lambertian shading.

    Args:
        vertices: list of M (V, 3) arrays in camera space (x right, y down, z forward; metres).
        faces: (F, 3) vertex ids shared by the meshes, counter-clockwise seen from outside
            in a right-handed body frame.
        vertex_colors: list of M (V, 3) RGB arrays in [0, 255]; a face takes its vertices' mean.
        focal_length: pixels, scalar or (fx, fy); principal_point: (cx, cy) pixels.
        height, width: image size.
        background: (H, W, 3) uint8, an RGB triple or None.
        light_direction: direction *towards* the light in camera space.
        ambient: the share of the colour that is lit regardless of the normal.
        cull_backfaces: skip faces that point away from the camera (faster; the z-buffer is exact
            either way for closed meshes).

    Returns:
        :class:`RasterOutput`; ``mask`` indexes ``vertices``.
    """
    faces = np.asarray(faces, np.int64)
    light = np.asarray(light_direction, np.float64)
    light = light / np.linalg.norm(light)
    pixel_vertices, face_colors, front_masks = [], [], []
    for verts, colors in zip(vertices, vertex_colors, strict=True):
        verts = np.asarray(verts, np.float64)
        normals = face_normals(verts, faces)
        centres = verts[faces].mean(axis=1)
        # Camera at the origin: a face is seen from its front when its normal points at the camera.
        front = (normals * centres).sum(axis=1) < 0.0
        lambert = np.clip(normals @ light, 0.0, 1.0)
        shade = ambient + (1.0 - ambient) * lambert
        face_colors.append(np.asarray(colors, np.float64)[faces].mean(axis=1) * shade[:, None])
        pixel_vertices.append(project_points(verts, focal_length, principal_point))
        front_masks.append(front if cull_backfaces else None)
    return rasterize(pixel_vertices, [faces] * len(pixel_vertices), face_colors, height, width, background, front_masks)
