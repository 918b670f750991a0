"""Synthetic person-crop shards for HMAR with exact SMPL, camera, 2-D and 3-D keypoint targets.

Each crop shows one body-model person in a random pose, shape, orientation and clothing over a
random background, rendered with HMAR's crop camera: a pinhole of focal ``5000 / 256 * S`` pixels
at the crop centre and translation ``(tx, ty, 2 * 5000 / (256 * s))`` for the weak-perspective
crop camera ``(s, tx, ty)`` (docs/geometry.md), so ``crop_cam_to_full_translation`` with the
crop as the whole image (centre 128, scale 256) gives back the rendering translation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from phalp_lightning.datamodules.synthetic.people import (
    BodyModelHandle,
    Clothing,
    global_orientation,
    random_background,
    random_body_pose,
)


def render_crop_samples(
    rng: np.random.Generator, count: int, crop_size: int, body: BodyModelHandle, dataset: str, split: str, first_index: int = 0
) -> list[dict]:
    """Render ``count`` crops and return encoded crop-shard samples (see schema.py)."""
    from phalp_lightning.datamodules.shard_writing import encode_crop_sample, sample_key

    from phalp_lightning.utils.geometry import FOCAL_LENGTH, IMG_SIZE
    from phalp_lightning.utils.rasterize import project_points, render_meshes

    body_pose = random_body_pose(rng, count)
    orient = global_orientation(rng.uniform(-np.pi, np.pi, count), rng.normal(0.0, 0.08, count))
    betas = np.concatenate([rng.normal(0, 0.6, (count, 2)), rng.normal(0, 0.4, (count, 8))], axis=1)
    vertices, joints = body.pose(orient, body_pose, betas)
    focal = FOCAL_LENGTH / IMG_SIZE * crop_size
    centre = (crop_size / 2.0, crop_size / 2.0)
    samples = []
    for index in range(count):
        scale = float(rng.uniform(0.8, 1.05))
        # Centre the body's extent in the crop (plus jitter), as a detector box would.
        middle = (vertices[index].min(0) + vertices[index].max(0)) / 2.0
        offset = -middle[:2] + rng.normal(0.0, 0.04, 2)
        camera = np.array([scale, offset[0], offset[1]])
        translation = np.array([offset[0], offset[1], 2.0 * FOCAL_LENGTH / (IMG_SIZE * scale)])
        mesh = vertices[index] + translation
        colors = Clothing.sample(rng).vertex_colors(body.rest_vertices, body.regions)
        background = random_background(rng, crop_size, crop_size, horizon=rng.uniform(0.3, 0.7) * crop_size)
        raster = render_meshes([mesh], body.faces, [colors], focal, centre, crop_size, crop_size, background)
        projected = project_points(joints[index] + translation, focal, centre)[:, :2]
        inside = ((projected >= 0) & (projected < crop_size)).all(axis=1)
        keypoints_2d = np.concatenate([projected, inside[:, None]], axis=1)
        keypoints_3d = np.concatenate([joints[index], np.ones((len(joints[index]), 1))], axis=1)
        mesh_pixels = project_points(mesh, focal, centre)[:, :2]
        low = np.clip(mesh_pixels.min(0), 0, crop_size)
        high = np.clip(mesh_pixels.max(0), 0, crop_size)
        number = first_index + index
        samples.append(
            encode_crop_sample(
                sample_key(dataset, split, f"{number:06d}", "000"),
                crop=raster.image,
                mask=raster.mask == 0,
                keypoints_2d=keypoints_2d,
                meta={"dataset": dataset, "sequence": split, "frame": number, "track_id": 0,
                      "box_xyxy": [float(low[0]), float(low[1]), float(high[0]), float(high[1])],
                      "image_size": [crop_size, crop_size]},
                keypoints_3d=keypoints_3d,
                smpl={"global_orient": orient[index][None], "body_pose": body_pose[index], "betas": betas[index]},
                camera=camera,
            )
        )
    return samples


def write_synthetic_crops(
    out_dir: str | os.PathLike[str],
    num_train: int = 512,
    num_val: int = 128,
    crop_size: int = 128,
    shard_size: int = 128,
    seed: int = 0,
    assets_root: str | os.PathLike[str] | None = None,
    body_model: BodyModelHandle | None = None,
    dataset: str = "synthetic",
) -> dict[str, dict]:
    """Write ``train-*.tar`` and ``val-*.tar`` crop shards plus ``manifest.json`` under ``out_dir``.

    Deterministic by ``seed`` (train and val use independent streams of it).

    Returns:
        The manifest entries: split -> {"shards": [...], "pattern", "num_samples", "crop_size"}.
    """
    from phalp_lightning.datamodules.shard_writing import ShardWriter, write_manifest

    out_dir = Path(out_dir)
    body = body_model or BodyModelHandle(assets_root)
    entries = {}
    for split, count, stream in (("train", num_train, 0), ("val", num_val, 1)):
        rng = np.random.default_rng([seed, stream])
        with ShardWriter(out_dir / split, max_count=shard_size) as writer:
            for first in range(0, count, 64):
                for sample in render_crop_samples(rng, min(64, count - first), crop_size, body, dataset, split, first):
                    writer.write(sample)
        entries[split] = {"shards": [str(p) for p in writer.shards], "pattern": writer.brace_pattern(),
                          "num_samples": writer.count, "crop_size": crop_size}
    write_manifest(out_dir, entries)
    return entries
