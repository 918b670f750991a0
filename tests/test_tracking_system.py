"""TrackingSystem's speed knobs: the float32 default is exactly HMAR's own forward, bf16 and channels_last
stay within their stated tolerances, and frames batched together give what they give one by one."""

from __future__ import annotations

import copy

import pytest
import torch

from phalp_lightning.detection.base import NoDetector
from phalp_lightning.models.components.hmar import HMAR
from phalp_lightning.models.tracking_system import TrackingSystem
from phalp_lightning.structures import Detections
from phalp_lightning.utils.geometry import IMG_SIZE, box_center_scale_in_padded_frame

SIZE = 64
FRAME = (120, 160)


@pytest.fixture(scope="module")
def hmar(synthetic_assets):
    torch.manual_seed(0)
    return HMAR(assets_dir=synthetic_assets, img_size=SIZE).eval()


@pytest.fixture(scope="module")
def crops():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(3, 4, SIZE, SIZE, generator=generator)
    images[:, 3] = 0.0
    images[:, 3, 8:56, 20:44] = 255.0
    boxes = torch.tensor([[10.0, 20.0, 60.0, 110.0], [70.0, 5.0, 100.0, 60.0], [110.0, 30.0, 150.0, 118.0]])
    return images, boxes


def reference_features(hmar, images, boxes):
    """What the float32 path must equal: HMAR's forward, appearance code and 3-D parameters, directly."""
    with torch.inference_mode():
        out = hmar(images)
        center, scale = box_center_scale_in_padded_frame(boxes, *FRAME, IMG_SIZE)
        params = hmar.get_3d_parameters(out["pose_smpl"], out["pred_cam"], center, scale, img_size=IMG_SIZE)
        return {
            "appearance": hmar.encode_appearance(out["uv_vector"]),
            "uv": out["uv_vector"],
            "camera_bbox": out["pred_cam"],
            "joints_3d": params["joints_3d"],
        }


def system_features(hmar, images, boxes, **options):
    system = TrackingSystem(NoDetector(), copy.deepcopy(hmar), **options)
    with torch.inference_mode():
        return system, system.hmar_features(images, boxes, FRAME)


def relative_error(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def test_default_float32_path_is_exactly_hmars_forward(hmar, crops):
    images, boxes = crops
    reference = reference_features(hmar, images, boxes)
    system, features = system_features(hmar, images, boxes)
    for key, value in reference.items():
        assert torch.equal(features[key], value), key
    uv = torch.rand(2, 4, SIZE, SIZE)
    with torch.inference_mode():
        assert torch.equal(system.encode_appearance(uv), hmar.encode_appearance(uv))


def test_bf16_weights_stay_within_the_stated_tolerance_and_outputs_are_float32(hmar, crops):
    images, boxes = crops
    reference = reference_features(hmar, images, boxes)
    system, features = system_features(hmar, images, boxes, precision="bf16", channels_last=True)
    assert system.hmar.backbone.conv1.weight.dtype == torch.bfloat16
    assert system.hmar.smpl_head.fc1.weight.dtype == torch.float32  # the SMPL regressor stays float32
    for key in reference:
        assert features[key].dtype == torch.float32, key
        assert torch.isfinite(features[key]).all(), key
    # docs/predict.md: bf16 keeps appearance codes, cameras and joints within a few percent of float32.
    assert relative_error(features["appearance"], reference["appearance"]) < 0.05
    assert relative_error(features["camera_bbox"], reference["camera_bbox"]) < 0.05
    assert relative_error(features["joints_3d"], reference["joints_3d"]) < 0.05
    assert not torch.equal(features["appearance"], reference["appearance"])  # bf16 really ran
    uv = torch.rand(2, 4, SIZE, SIZE)
    with torch.inference_mode():
        encoded = system.encode_appearance(uv)
        assert encoded.dtype == torch.float32
        assert relative_error(encoded, hmar.encode_appearance(uv)) < 0.05


def test_channels_last_in_float32_differs_by_summation_order_only(hmar, crops):
    images, boxes = crops
    reference = reference_features(hmar, images, boxes)
    _, features = system_features(hmar, images, boxes, channels_last=True)
    for key, value in reference.items():
        assert torch.allclose(features[key], value, rtol=1e-4, atol=1e-4), key


def test_unknown_precision_is_refused(hmar):
    with pytest.raises(ValueError, match="precision"):
        TrackingSystem(NoDetector(), copy.deepcopy(hmar), precision="fp8")


def test_frames_batched_through_hmar_keep_their_order_and_values(hmar):
    # Three frames with 2, 0 and 1 people: one HMAR pass over all crops must hand each frame its own rows.
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (3, *FRAME, 3), dtype=torch.uint8, generator=generator)
    boxes = [torch.tensor([[10.0, 5.0, 70.0, 115.0], [80.0, 10.0, 140.0, 112.0]]), torch.zeros(0, 4), torch.tensor([[40.0, 2.0, 100.0, 110.0]])]
    given = [Detections(boxes=b, scores=torch.ones(len(b))) if len(b) else None for b in boxes]
    system = TrackingSystem(NoDetector(), copy.deepcopy(hmar), min_box_width=1, min_box_height=1)

    def batch(frames):
        return {"video": "v", "images": images[frames], "given": [given[i] for i in frames],
                "frame_index": torch.tensor(frames), "frame_name": [f"{i}.jpg" for i in frames]}

    with torch.inference_mode():
        together = system.predict_step(batch([0, 1, 2]))
        alone = [system.predict_step(batch([i])).frames[0] for i in range(3)]
    assert together.error is None
    assert [len(f.boxes) for f in together.frames] == [2, 0, 1]
    for joint, single in zip(together.frames, alone, strict=True):
        assert joint.frame_index == single.frame_index
        assert torch.equal(joint.boxes, single.boxes)
        for name in ("appearance", "pose", "location"):
            assert torch.allclose(getattr(joint, name), getattr(single, name), rtol=1e-4, atol=1e-4), name
