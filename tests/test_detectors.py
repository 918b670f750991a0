"""Detector configs build, optional backends fail with a clear message, HOG's output contract."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch

from phalp_lightning.detection.base import Detector, NoDetector
from phalp_lightning.detection.hog import HOGDetector


def test_hog_and_given_boxes_configs_instantiate(compose_cfg):
    for option, kind in [("hog", HOGDetector), ("given_boxes", NoDetector)]:
        detector = hydra.utils.instantiate(compose_cfg("predict", [f"detector={option}", "video=x.mp4"]).detector)
        assert isinstance(detector, kind) and isinstance(detector, Detector)


@pytest.mark.parametrize(
    "option, overrides, message",
    [
        ("vitdet", ["detector.config_file=a.py", "detector.weights=w.pkl"], "detectron2 is not installed"),
        ("torchvision_maskrcnn", ["detector.weights=w.pth"], "torchvision is not installed"),
    ],
)
def test_optional_backends_name_what_is_missing(compose_cfg, option, overrides, message):
    try:
        __import__({"vitdet": "detectron2", "torchvision_maskrcnn": "torchvision"}[option])
        pytest.skip("backend installed here")
    except ImportError:
        pass
    cfg = compose_cfg("predict", [f"detector={option}", "video=x.mp4", *overrides])
    with pytest.raises(Exception, match=message):
        hydra.utils.instantiate(cfg.detector)


def test_hog_returns_sorted_detections_per_frame_and_nothing_on_a_blank_frame():
    detector = HOGDetector(score_threshold=0.0, max_side=None)
    frames = torch.zeros(2, 160, 120, 3, dtype=torch.uint8)
    rng = np.random.default_rng(0)
    frames[1] = torch.from_numpy(rng.integers(0, 255, (160, 120, 3), dtype=np.uint8))
    results = detector(frames)
    assert len(results) == 2 and len(results[0]) == 0
    for found in results:
        assert found.boxes.shape == (len(found), 4) and found.masks is None
        assert torch.all(found.scores[:-1] >= found.scores[1:])
        assert torch.all((found.scores > 0) & (found.scores < 1))
