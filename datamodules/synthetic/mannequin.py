"""A synthetic body-model asset set with SMPL's exact array names and shapes.

The mesh is a mannequin: 17 capsule-shaped body parts placed where an adult's segments are in
SMPL's rest pose (T-pose, metres, y up, +x = the body's left), joined by small bridge strips so
that it has exactly 6890 vertices and 13776 faces (a closed genus-0 mesh has F = 2V - 4, and each
of the 16 bridges adds the 4 faces that the extra components would otherwise lack). Joints are
regressed from rings of vertices, so they sit inside the mesh where a person's joints are; the
vertex ids smplx reads for the nose, eyes, ears, toes, heels and fingertips are moved onto the
matching spots. Skinning is rigid per part with a blend near each joint. Pose blend shapes are
zero (a mannequin has no corrective shapes); the ten shape directions are named, smooth
deformations (size, girth, limb lengths, ...). Everything is deterministic.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phalp_lightning.assets import ASSETS, SYNTHETIC_MARKER
from phalp_lightning.assets.stand_ins import record_stand_ins
from phalp_lightning.utils.io import atomic_output

NUM_VERTICES = 6890
NUM_FACES = 13776
NUM_JOINTS = 24
PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])

# Rest-pose joint positions (metres), close to SMPL's neutral template.
JOINTS_REST = np.array(
    [
        [0.000, -0.225, 0.025],  # 0 pelvis
        [0.070, -0.315, 0.020],  # 1 left hip
        [-0.070, -0.315, 0.020],  # 2 right hip
        [0.000, -0.105, 0.000],  # 3 spine1
        [0.105, -0.680, 0.015],  # 4 left knee
        [-0.105, -0.680, 0.015],  # 5 right knee
        [0.000, 0.030, 0.010],  # 6 spine2
        [0.090, -1.095, -0.030],  # 7 left ankle
        [-0.090, -1.095, -0.030],  # 8 right ankle
        [0.000, 0.085, 0.025],  # 9 spine3
        [0.118, -1.150, 0.090],  # 10 left foot
        [-0.118, -1.150, 0.090],  # 11 right foot
        [0.000, 0.290, -0.010],  # 12 neck
        [0.078, 0.200, -0.005],  # 13 left collar
        [-0.078, 0.200, -0.005],  # 14 right collar
        [0.000, 0.370, 0.030],  # 15 head
        [0.175, 0.225, -0.015],  # 16 left shoulder
        [-0.175, 0.225, -0.015],  # 17 right shoulder
        [0.437, 0.212, -0.040],  # 18 left elbow
        [-0.437, 0.212, -0.040],  # 19 right elbow
        [0.685, 0.216, -0.040],  # 20 left wrist
        [-0.685, 0.216, -0.040],  # 21 right wrist
        [0.768, 0.212, -0.045],  # 22 left hand
        [-0.768, 0.212, -0.045],  # 23 right hand
    ]
)

# Where smplx picks its 21 extra joints (vertex ids of smplx.vertex_ids['smplh']) and the spot on
# the mannequin each one should sit on.
SELECTED_VERTICES = {
    332: [0.000, 0.440, 0.105],  # nose
    6260: [-0.032, 0.470, 0.088],  # right eye
    2800: [0.032, 0.470, 0.088],  # left eye
    4071: [-0.088, 0.445, 0.010],  # right ear
    583: [0.088, 0.445, 0.010],  # left ear
    3216: [0.100, -1.160, 0.200],  # left big toe
    3226: [0.140, -1.160, 0.190],  # left small toe
    3387: [0.090, -1.170, -0.070],  # left heel
    6617: [-0.100, -1.160, 0.200],  # right big toe
    6624: [-0.140, -1.160, 0.190],  # right small toe
    6787: [-0.090, -1.170, -0.070],  # right heel
    2746: [0.800, 0.212, 0.000],  # left thumb
    2319: [0.860, 0.212, -0.020],  # left index
    2445: [0.870, 0.212, -0.040],  # left middle
    2556: [0.865, 0.212, -0.060],  # left ring
    2673: [0.850, 0.212, -0.075],  # left pinky
    6191: [-0.800, 0.212, 0.000],  # right thumb
    5782: [-0.860, 0.212, -0.020],  # right index
    5905: [-0.870, 0.212, -0.040],  # right middle
    6016: [-0.865, 0.212, -0.060],  # right ring
    6133: [-0.850, 0.212, -0.075],  # right pinky
}

# The 19 extra joints of SMPL_to_J19 (LSP 14 + neck, head top, pelvis, thorax, spine, jaw, head).
J19_TARGETS = np.array(
    [
        JOINTS_REST[8], JOINTS_REST[5], JOINTS_REST[2], JOINTS_REST[1], JOINTS_REST[4], JOINTS_REST[7],
        JOINTS_REST[21], JOINTS_REST[19], JOINTS_REST[17], JOINTS_REST[16], JOINTS_REST[18], JOINTS_REST[20],
        [0.0, 0.300, 0.000], [0.0, 0.540, 0.010], JOINTS_REST[0], [0.0, 0.220, 0.000],
        [0.0, 0.000, 0.000], [0.0, 0.360, 0.080], [0.0, 0.440, 0.020],
    ]
)


@dataclass(frozen=True)
class _Part:
    name: str
    joint: int  # skinning joint
    start: tuple[float, float, float]
    end: tuple[float, float, float]
    radius: tuple[float, float]  # radial half-widths (across, depth)
    segments: int
    rings: int


def _mirror(part: _Part, name: str, joint: int) -> _Part:
    flip = lambda p: (-p[0], p[1], p[2])  # noqa: E731
    return _Part(name, joint, flip(part.start), flip(part.end), part.radius, part.segments, part.rings)


def _parts() -> list[_Part]:
    left = [
        _Part("l_upperarm", 16, (0.165, 0.222, -0.015), (0.437, 0.212, -0.040), (0.052, 0.048), 16, 20),
        _Part("l_forearm", 18, (0.437, 0.212, -0.040), (0.685, 0.216, -0.040), (0.042, 0.038), 16, 18),
        _Part("l_hand", 20, (0.685, 0.216, -0.040), (0.830, 0.212, -0.040), (0.020, 0.045), 12, 12),
        _Part("l_thigh", 1, (0.080, -0.300, 0.020), (0.105, -0.680, 0.015), (0.080, 0.082), 20, 24),
        _Part("l_shin", 4, (0.105, -0.680, 0.015), (0.090, -1.095, -0.030), (0.055, 0.058), 16, 26),
        _Part("l_foot", 7, (0.090, -1.140, -0.060), (0.115, -1.150, 0.190), (0.045, 0.030), 12, 14),
    ]
    mirrored = [_mirror(p, "r" + p.name[1:], j) for p, j in zip(left, [17, 19, 21, 2, 5, 8], strict=True)]
    centre = [
        _Part("pelvis", 0, (0.000, -0.240, 0.010), (0.000, -0.240, 0.010), (0.165, 0.110), 32, 20),
        _Part("abdomen", 3, (0.000, -0.200, 0.010), (0.000, 0.030, 0.010), (0.140, 0.105), 32, 20),
        _Part("chest", 9, (0.000, 0.030, 0.005), (0.000, 0.200, -0.005), (0.165, 0.110), 32, 22),
        _Part("neck", 12, (0.000, 0.230, -0.010), (0.000, 0.345, 0.000), (0.048, 0.050), 16, 10),
        _Part("head", 15, (0.000, 0.420, 0.020), (0.000, 0.470, 0.020), (0.080, 0.095), 32, 30),
    ]
    return centre + left + mirrored


# Bridges: child part -> parent part, each adds four faces.
_BRIDGES = {
    "abdomen": "pelvis", "chest": "abdomen", "neck": "chest", "head": "neck",
    "l_upperarm": "chest", "l_forearm": "l_upperarm", "l_hand": "l_forearm",
    "r_upperarm": "chest", "r_forearm": "r_upperarm", "r_hand": "r_forearm",
    "l_thigh": "pelvis", "l_shin": "l_thigh", "l_foot": "l_shin",
    "r_thigh": "pelvis", "r_shin": "r_thigh", "r_foot": "r_shin",
}


def _fit_vertex_budget(parts: list[_Part]) -> list[_Part]:
    """Adjust the head's ring count and segments so that the total is exactly NUM_VERTICES."""
    others = [p for p in parts if p.name != "head"]
    used = sum(p.segments * p.rings + 2 for p in others)
    remaining = NUM_VERTICES - used - 2
    for segments in range(32, 64):
        if remaining % segments == 0:
            head = next(p for p in parts if p.name == "head")
            fitted = _Part(head.name, head.joint, head.start, head.end, head.radius, segments, remaining // segments)
            return [fitted if p.name == "head" else p for p in parts]
    raise RuntimeError("no head tessellation fits the SMPL vertex budget")  # pragma: no cover


def _frame(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to ``direction``: 'across' and 'depth'."""
    reference = np.array([0.0, 0.0, 1.0]) if abs(direction[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    across = np.cross(reference, direction)
    across /= np.linalg.norm(across)
    depth = np.cross(direction, across)
    return across, depth


def _capsule(part: _Part) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, faces (local indices), per-vertex axial fraction t in [0, 1] and ring ids."""
    start, end = np.asarray(part.start, float), np.asarray(part.end, float)
    axis = end - start
    length = float(np.linalg.norm(axis))
    direction = axis / length if length > 1e-9 else np.array([0.0, 1.0, 0.0])
    across, depth = _frame(direction)
    cap = float(np.mean(part.radius))
    profile = np.pi * cap + length
    # Arc-length positions of the rings along the capsule's profile, poles excluded.
    arc = profile * np.arange(1, part.rings + 1) / (part.rings + 1)
    half = np.pi * cap / 2.0
    axial = np.where(arc < half, -cap * np.cos(arc / cap), np.where(arc <= half + length, arc - half, length + cap * np.sin((arc - half - length) / cap)))
    radial = np.where(arc < half, np.sin(arc / cap), np.where(arc <= half + length, 1.0, np.cos((arc - half - length) / cap)))
    phi = 2.0 * np.pi * np.arange(part.segments) / part.segments
    ring_offsets = np.cos(phi)[:, None] * across * part.radius[0] + np.sin(phi)[:, None] * depth * part.radius[1]
    ring_points = start + axial[:, None, None] * direction + radial[:, None, None] * ring_offsets[None]
    poles = np.stack([start - cap * direction, end + cap * direction])
    vertices = np.concatenate([ring_points.reshape(-1, 3), poles])
    rings, segs = part.rings, part.segments
    index = np.arange(rings * segs).reshape(rings, segs)
    nxt = np.roll(index, -1, axis=1)
    quads_a = np.stack([index[:-1], index[1:], nxt[1:]], -1).reshape(-1, 3)
    quads_b = np.stack([index[:-1], nxt[1:], nxt[:-1]], -1).reshape(-1, 3)
    south, north = rings * segs, rings * segs + 1
    fan_south = np.stack([np.full(segs, south), index[0], nxt[0]], -1)
    fan_north = np.stack([np.full(segs, north), nxt[-1], index[-1]], -1)
    faces = np.concatenate([fan_south, quads_a, quads_b, fan_north])
    t_axis = np.clip(np.concatenate([np.repeat(axial, segs), [-cap, length + cap]]) / max(length, 1e-9), 0.0, 1.0)
    if length < 1e-9:
        t_axis = np.full(len(vertices), 0.5)
    ring_id = np.concatenate([np.repeat(np.arange(rings), segs), [-1, -1]])
    return vertices, faces, t_axis, ring_id


@dataclass
class _Mannequin:
    vertices: np.ndarray  # (6890, 3)
    faces: np.ndarray  # (13776, 3)
    weights: np.ndarray  # (6890, 24)
    part_of_vertex: np.ndarray  # (6890,)
    uv: np.ndarray  # (6890, 2)
    rings: list[np.ndarray]  # vertex ids of every ring, for joint regressors
    axis_points: np.ndarray  # (6890, 3) nearest point on the part axis (girth direction)


def build_mannequin() -> _Mannequin:
    """Assemble the mannequin mesh with exactly SMPL's vertex and face counts."""
    parts = _fit_vertex_budget(_parts())
    names = [p.name for p in parts]
    vertices, faces, weights, part_ids, uvs, rings, axis_points = [], [], [], [], [], [], []
    offset = 0
    first_ring_ends: dict[str, tuple[int, int]] = {}
    tiles = int(np.ceil(np.sqrt(len(parts))))
    for number, part in enumerate(parts):
        verts, local_faces, t_axis, ring_id = _capsule(part)
        count = len(verts)
        vertices.append(verts)
        faces.append(local_faces + offset)
        # Blend the first 15 % of a part towards its parent's joint so bends stay smooth.
        part_weights = np.zeros((count, NUM_JOINTS))
        parent = PARENTS[part.joint]
        own = np.clip(0.5 + t_axis / 0.3, 0.5, 1.0) if parent >= 0 and part.name != "pelvis" else np.ones(count)
        part_weights[:, part.joint] = own
        if parent >= 0 and part.name != "pelvis":
            part_weights[:, parent] += 1.0 - own
        weights.append(part_weights)
        part_ids.append(np.full(count, number))
        start, end = np.asarray(part.start), np.asarray(part.end)
        axis_points.append(start + t_axis[:, None] * (end - start))
        # UV: one tile of the atlas per part, (angle, height) inside it.
        segs = part.segments
        local = np.arange(count)
        u = np.where(ring_id >= 0, (local % segs) / segs, 0.5)
        v = np.where(ring_id >= 0, (ring_id + 1) / (part.rings + 1), np.where(local == count - 2, 0.0, 1.0))
        tile_u, tile_v = number % tiles, number // tiles
        uvs.append(np.stack([(tile_u + 0.05 + 0.9 * u) / tiles, (tile_v + 0.05 + 0.9 * v) / tiles], -1))
        for ring in range(part.rings):
            rings.append(offset + ring * segs + np.arange(segs))
        first_ring_ends[part.name] = (offset, offset + segs)
        offset += count
    vertices_all = np.concatenate(vertices)
    faces_all = [np.concatenate(faces)]
    # Bridge strips: two triangles each side between a child's first ring and its parent's nearest vertices.
    for child, parent in _BRIDGES.items():
        ring_start, _ = first_ring_ends[child]
        child_ids = ring_start + np.array([0, 1, 2])
        parent_ids = np.flatnonzero(np.concatenate(part_ids) == names.index(parent))
        nearest = parent_ids[np.argsort(np.linalg.norm(vertices_all[parent_ids] - vertices_all[child_ids[1]], axis=1))[:3]]
        faces_all.append(
            np.array(
                [
                    [child_ids[0], child_ids[1], nearest[0]],
                    [child_ids[1], nearest[1], nearest[0]],
                    [child_ids[1], child_ids[2], nearest[1]],
                    [child_ids[2], nearest[2], nearest[1]],
                ]
            )
        )
    faces_cat = np.concatenate(faces_all)
    weights_all = np.concatenate(weights)
    weights_all /= weights_all.sum(1, keepdims=True)
    mannequin = _Mannequin(
        vertices=vertices_all, faces=faces_cat, weights=weights_all, part_of_vertex=np.concatenate(part_ids),
        uv=np.concatenate(uvs), rings=rings, axis_points=np.concatenate(axis_points),
    )
    _orient_faces_outward(mannequin, names)
    _place_selected_vertices(mannequin)
    assert mannequin.vertices.shape == (NUM_VERTICES, 3) and mannequin.faces.shape == (NUM_FACES, 3)
    return mannequin


def _orient_faces_outward(mannequin: _Mannequin, names: list[str]) -> None:
    tri = mannequin.vertices[mannequin.faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = tri.mean(1) - mannequin.axis_points[mannequin.faces].mean(1)
    flip = (normal * outward).sum(1) < 0
    mannequin.faces[flip] = mannequin.faces[flip][:, [0, 2, 1]]


def _place_selected_vertices(mannequin: _Mannequin) -> None:
    """Permute vertex ids so smplx's hard-coded landmark ids fall on the matching spots."""
    permutation = np.arange(NUM_VERTICES)  # new id -> old id
    taken: set[int] = set()
    for vertex_id, target in SELECTED_VERTICES.items():
        distance = np.linalg.norm(mannequin.vertices - np.asarray(target), axis=1)
        distance[list(taken)] = np.inf
        old = int(np.argmin(distance))
        taken.add(old)
        where_old = int(np.flatnonzero(permutation == old)[0])
        permutation[where_old], permutation[vertex_id] = permutation[vertex_id], permutation[where_old]
    inverse = np.empty_like(permutation)
    inverse[permutation] = np.arange(NUM_VERTICES)
    mannequin.vertices = mannequin.vertices[permutation]
    mannequin.weights = mannequin.weights[permutation]
    mannequin.part_of_vertex = mannequin.part_of_vertex[permutation]
    mannequin.uv = mannequin.uv[permutation]
    mannequin.axis_points = mannequin.axis_points[permutation]
    mannequin.faces = inverse[mannequin.faces]
    mannequin.rings = [inverse[ring] for ring in mannequin.rings]


def _ring_regressor(mannequin: _Mannequin, targets: np.ndarray) -> np.ndarray:
    """Each target point regressed as the mean of the vertex ring whose centre is nearest to it."""
    centres = np.stack([mannequin.vertices[ring].mean(0) for ring in mannequin.rings])
    regressor = np.zeros((len(targets), NUM_VERTICES))
    for row, target in enumerate(targets):
        ring = mannequin.rings[int(np.argmin(np.linalg.norm(centres - target, axis=1)))]
        regressor[row, ring] = 1.0 / len(ring)
    return regressor


def _shape_directions(mannequin: _Mannequin) -> np.ndarray:
    """Ten smooth, named shape directions (6890, 3, 10)."""
    v = mannequin.vertices
    girth = v - mannequin.axis_points
    dirs = np.zeros((NUM_VERTICES, 3, 10))
    dirs[:, :, 0] = 0.06 * v  # overall size
    dirs[:, :, 1] = 0.20 * girth  # girth
    legs = np.clip((-0.30 - v[:, 1]) / 0.80, 0.0, 1.0)
    dirs[:, 1, 2] = -0.06 * legs  # leg length
    arms = np.clip((np.abs(v[:, 0]) - 0.17) / 0.65, 0.0, 1.0) * (v[:, 1] > 0.1)
    dirs[:, 0, 3] = 0.05 * arms * np.sign(v[:, 0])  # arm length
    shoulders = (v[:, 1] > 0.1) * (np.abs(v[:, 0]) > 0.09)
    dirs[:, 0, 4] = 0.03 * shoulders * np.sign(v[:, 0])  # shoulder width
    hips = (v[:, 1] < -0.15) * (v[:, 1] > -0.45)
    dirs[:, 0, 5] = 0.03 * hips * np.sign(v[:, 0]) * np.abs(v[:, 0]) / 0.15  # hip width
    dirs[:, 1, 6] = 0.05 * np.clip((v[:, 1] + 0.2) / 0.6, 0.0, 1.0)  # torso length
    head = np.clip((v[:, 1] - 0.34) / 0.1, 0.0, 1.0)
    dirs[:, :, 7] = 0.15 * head[:, None] * (v - np.array([0.0, 0.44, 0.02]))  # head size
    belly = np.exp(-(((v[:, 1] + 0.08) / 0.12) ** 2)) * (v[:, 2] > 0) * (np.abs(v[:, 0]) < 0.16)
    dirs[:, 2, 8] = 0.04 * belly  # belly
    dirs[:, 1, 9] = 0.03 * np.clip((v[:, 1] - 0.22) / 0.12, 0.0, 1.0)  # neck length
    return dirs


def _uv_maps(uv: np.ndarray, faces: np.ndarray, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise faces in UV space: barycentric coordinates and face index per texel (-1 outside)."""
    bmap = np.zeros((size, size, 3), dtype=np.float32)
    fmap = np.full((size, size), -1, dtype=np.int64)
    pixels = uv[faces] * size - 0.5  # texel centres at integer coordinates
    for face, tri in enumerate(pixels):
        lo, hi = np.floor(tri.min(0)).astype(int), np.ceil(tri.max(0)).astype(int)
        if (hi - lo).max() > size // 4:  # faces that wrap round a part's seam
            continue
        xs, ys = np.meshgrid(np.arange(max(lo[0], 0), min(hi[0], size - 1) + 1), np.arange(max(lo[1], 0), min(hi[1], size - 1) + 1))
        if xs.size == 0:
            continue
        (x0, y0), (x1, y1), (x2, y2) = tri
        det = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
        if abs(det) < 1e-12:
            continue
        w0 = ((y1 - y2) * (xs - x2) + (x2 - x1) * (ys - y2)) / det
        w1 = ((y2 - y0) * (xs - x2) + (x0 - x2) * (ys - y2)) / det
        w2 = 1.0 - w0 - w1
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        fmap[ys[inside], xs[inside]] = face
        bmap[ys[inside], xs[inside]] = np.stack([w0[inside], w1[inside], w2[inside]], -1)
    return bmap, fmap


def _mean_pose_6d() -> np.ndarray:
    """Mean pose in 6-D: the body rotated by pi about x (image y points down), other joints at rest."""
    identity = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    upside_down = np.array([1.0, 0.0, 0.0, 0.0, -1.0, 0.0])
    return np.concatenate([upside_down, np.tile(identity, 23)]).astype(np.float32)


def synthetic_arrays() -> dict[str, object]:
    """All generated assets in memory, keyed by asset name."""
    mannequin = build_mannequin()
    kintree = np.stack([np.where(PARENTS < 0, 4294967295, PARENTS), np.arange(NUM_JOINTS)]).astype(np.int64)
    smpl = {
        "v_template": mannequin.vertices.astype(np.float64),
        "shapedirs": _shape_directions(mannequin),
        "posedirs": np.zeros((NUM_VERTICES, 3, 207)),
        "J_regressor": _ring_regressor(mannequin, JOINTS_REST),
        "weights": mannequin.weights,
        "kintree_table": kintree,
        "f": mannequin.faces.astype(np.uint32),
        SYNTHETIC_MARKER: True,
    }
    bmap, fmap = _uv_maps(mannequin.uv, mannequin.faces)
    head_part = 4  # index of "head" in _parts()
    head_faces = np.flatnonzero((mannequin.part_of_vertex[mannequin.faces] == head_part).all(1))
    return {
        "smpl_neutral": smpl,
        "smpl_to_j19": _ring_regressor(mannequin, J19_TARGETS),
        "smpl_mean_params": {"pose": _mean_pose_6d(), "shape": np.zeros(10, np.float32), "cam": np.array([0.9, 0.0, 0.0], np.float32)},
        "texture": {"smpl_faces": mannequin.faces.astype(np.int64), "vt": mannequin.uv.astype(np.float64), "ft": mannequin.faces.astype(np.int64)},
        "head_faces": head_faces.astype(np.int64),
        # Identity normalisation over the full 229-d pose vector.
        "mean_std": np.stack([np.zeros((1, 229)), np.ones((1, 229))]).astype(np.float32),
        "bmap_256": bmap,
        "fmap_256": fmap,
    }


def _atomic_write(path: Path, writer) -> None:
    with atomic_output(path) as temporary, temporary.open("wb") as handle:
        writer(handle)


def write_synthetic_assets(root: str | os.PathLike[str], overwrite: bool = False) -> list[Path]:
    """Write the generated body-model set under ``root``; existing files are kept unless ``overwrite``."""
    root = Path(root)
    arrays = synthetic_arrays()
    written = []
    for name, value in arrays.items():
        path = root / ASSETS[name].relpath
        if path.exists() and not overwrite:
            continue
        if path.suffix == ".pkl":
            _atomic_write(path, lambda handle, value=value: pickle.dump(value, handle, protocol=4))
        elif path.suffix == ".npz":
            _atomic_write(path, lambda handle, value=value: np.savez(handle, **value))
        else:
            _atomic_write(path, lambda handle, value=value: np.save(handle, value))
        written.append(path)
    if written:
        record_stand_ins(root, written)
    return written
