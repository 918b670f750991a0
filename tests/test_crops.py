"""Crop construction (docs/geometry.md, "Person crops") against OpenCV's warpAffine, and the detection filters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phalp_lightning.detection.base import score_filter, small_box_filter
from phalp_lightning.structures import Detections
from phalp_lightning.utils.image import IMAGENET_MEAN, IMAGENET_STD, normalize_rgb
from phalp_lightning.utils.person_crops import crop_affine, crop_people, crop_sampling_axes, expand_to_aspect


def reference_crop(image: np.ndarray, center: np.ndarray, side: float, size: int) -> np.ndarray:
    import cv2

    source = np.float32([center, center + [0, side / 2], center + [side / 2, 0]])
    target = np.float32([[size / 2, size / 2], [size / 2, size], [size, size / 2]])
    matrix = cv2.getAffineTransform(source, target)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def test_crops_match_opencv_warp_affine_for_every_person():
    # A smooth image: OpenCV quantises sampling positions to 1/32 px, which only matters on sharp edges.
    yy, xx = np.mgrid[0:90, 0:120].astype(np.float32)
    image = np.stack([127 + 120 * np.sin(xx / 9), 127 + 120 * np.cos(yy / 7), (xx + yy)], axis=-1).astype(np.uint8)
    boxes = torch.tensor([[10.0, 5.0, 40.0, 80.0], [70.5, 20.25, 130.0, 60.0]])  # second runs off the frame
    masks = torch.zeros(2, 90, 120, dtype=torch.bool)
    masks[0, 10:70, 15:35] = True
    masks[1, 25:55, 80:119] = True
    crops = crop_people(torch.from_numpy(image), boxes, masks, crop_size=32)
    assert crops.images.shape == (2, 4, 32, 32)
    for k in range(2):
        center, side = crops.center[k].numpy(), float(crops.side[k])
        expected_rgb = (reference_crop(image.astype(np.float32), center, side, 32) - IMAGENET_MEAN) / IMAGENET_STD
        expected_mask = reference_crop(masks[k].numpy().astype(np.float32) * 255, center, side, 32)
        np.testing.assert_allclose(crops.images[k, :3].permute(1, 2, 0).numpy(), expected_rgb, atol=0.05)
        # Mask edges are sharp: 1/32 px position quantisation in OpenCV is worth up to 255/32.
        np.testing.assert_allclose(crops.images[k, 3].numpy(), expected_mask, atol=255 / 32)
    # Outside the frame the image channels are the normalised black, -mean/std.
    np.testing.assert_allclose(crops.images[1, :3, 16, -1].numpy(), -np.array(IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5)


def test_box_shaped_mask_when_the_detector_gives_none():
    image = torch.zeros(100, 100, 3, dtype=torch.uint8)
    crops = crop_people(image, torch.tensor([[40.0, 20.0, 60.0, 80.0]]), None, crop_size=60)
    mask = crops.images[0, 3]
    assert set(mask.unique().tolist()) == {0.0, 255.0}
    # Side 60 around centre (50, 50): one crop pixel per frame pixel, the box spans columns 20..40.
    assert mask[30, 20:41].eq(255).all() and mask[30, :19].eq(0).all() and mask[30, 42:].eq(0).all()


def test_aspect_expansion_follows_4d_humans():
    boxes = torch.tensor([[0.0, 0.0, 30.0, 100.0], [0.0, 0.0, 100.0, 100.0]])
    expanded = expand_to_aspect(boxes, (192, 256))
    wh = expanded[:, 2:] - expanded[:, :2]
    torch.testing.assert_close(wh, torch.tensor([[75.0, 100.0], [100.0, 100 * 256 / 192]]))
    torch.testing.assert_close((expanded[:, :2] + expanded[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2)


def test_filters_drop_low_scores_and_small_boxes():
    detections = Detections(
        boxes=torch.tensor([[0.0, 0.0, 60.0, 120.0], [0.0, 0.0, 49.0, 200.0], [0.0, 0.0, 80.0, 99.0], [0.0, 0.0, 50.0, 100.0]]),
        scores=torch.tensor([0.9, 0.95, 0.99, 0.8]),
    )
    kept, index = small_box_filter(detections)
    assert index.tolist() == [0, 3]
    assert score_filter(kept, 0.8).scores.tolist() == pytest.approx([0.9])  # strict >, as PHALP


def test_crops_from_separable_axes_equal_the_full_grid_computation_bit_for_bit():
    # The crop path builds the sampling grid and the box mask from per-axis vectors; the result must be
    # exactly what sampling on the full (N, S, S, 2) grid gives.
    import torch.nn.functional as F

    from phalp_lightning.utils.person_crops import crop_sampling_grid

    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (72, 130, 3), dtype=torch.uint8, generator=generator)
    boxes = torch.tensor([[3.3, 4.1, 40.7, 70.2], [60.0, -5.0, 140.5, 50.25], [20.0, 10.0, 31.0, 33.0]])
    crops = crop_people(image, boxes, crop_size=48)

    grid = crop_sampling_grid(crops.center, crops.side, 48)
    normalised = (2 * grid + 1) / torch.tensor([130.0, 72.0]) - 1
    rgb = F.grid_sample(image.permute(2, 0, 1)[None].float().expand(3, 3, 72, 130), normalised, mode="bilinear", padding_mode="zeros", align_corners=False)
    rgb = (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x, y = grid[..., 0], grid[..., 1]
    inside = (x >= boxes[:, 0, None, None]) & (x <= boxes[:, 2, None, None]) & (y >= boxes[:, 1, None, None]) & (y <= boxes[:, 3, None, None])
    assert torch.equal(crops.images[:, :3], rgb)
    assert torch.equal(crops.images[:, 3], inside.float() * 255.0)
    assert 0 < crops.images[:, 3].count_nonzero() < crops.images[:, 3].numel()


def test_crop_affine_inverts_the_sampling_axes():
    center, side = torch.tensor([[30.5, 41.0], [-3.0, 7.25]]), torch.tensor([37.0, 90.0])
    xs, ys = crop_sampling_axes(center, side, 16)
    affine = crop_affine(center, side, 16)
    columns = affine[:, 0, 0, None] * xs + affine[:, 0, 2, None]
    rows = affine[:, 1, 1, None] * ys + affine[:, 1, 2, None]
    torch.testing.assert_close(columns, torch.arange(16.0).expand(2, 16))
    torch.testing.assert_close(rows, torch.arange(16.0).expand(2, 16))
    assert (affine[:, 0, 1] == 0).all() and (affine[:, 1, 0] == 0).all()


def test_normalize_rgb_is_the_imagenet_normalisation_for_torch_and_numpy():
    pixels = np.array([[[0, 128, 255]]], np.uint8)  # (1, 1, 3) H, W, C
    expected = (np.array([0.0, 128.0, 255.0]) - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    from_numpy = normalize_rgb(pixels)
    assert from_numpy.dtype == np.float32
    np.testing.assert_allclose(from_numpy[0, 0], expected, rtol=1e-6)
    # The 0-1 scale statistics give the same values (a uint8 image divided by 255 first).
    np.testing.assert_allclose(from_numpy[0, 0], (pixels[0, 0] / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], rtol=1e-6)
    channels_first = normalize_rgb(torch.from_numpy(pixels).permute(2, 0, 1)[None], channel_axis=1)
    assert channels_first.dtype == torch.float32 and channels_first.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(channels_first.flatten().numpy(), expected, rtol=1e-6)
