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


def _fake_detectron2(monkeypatch, zoo_root):
    """detectron2 stand-in: a model zoo that knows one config name (no real detectron2 here)."""
    import sys
    import types

    package = types.ModuleType("detectron2")
    zoo = types.ModuleType("detectron2.model_zoo")
    known = "new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ.py"

    def get_config_file(name):
        if name != known:
            raise RuntimeError(f"{name} not available in Model Zoo!")
        path = zoo_root / "model_zoo" / "configs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# config\n")
        return str(path)

    zoo.get_config_file = get_config_file
    zoo.get_checkpoint_url = lambda name: f"https://zoo.example/{name.replace('.py', '')}/model_final.pkl"
    package.model_zoo = zoo
    monkeypatch.setitem(sys.modules, "detectron2", package)
    monkeypatch.setitem(sys.modules, "detectron2.model_zoo", zoo)


def test_maskrcnn_model_zoo_name_resolves_and_missing_weights_say_where_to_get_them(compose_cfg, monkeypatch, tmp_path):
    from phalp_lightning.detection.detectron2 import DetectorSetupError
    from phalp_lightning.errors import find_user_error

    _fake_detectron2(monkeypatch, tmp_path)
    cfg = compose_cfg("predict", ["detector=maskrcnn", "video=x.mp4"])
    with pytest.raises(Exception) as info:
        hydra.utils.instantiate(cfg.detector)
    error = find_user_error(info.value)
    assert isinstance(error, DetectorSetupError)
    assert "detector.weights is not set" in str(error)
    assert "https://zoo.example/new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ/model_final.pkl" in str(error)
    cfg = compose_cfg("predict", ["detector=maskrcnn", "video=x.mp4", "detector.config_file=nowhere/unknown.py", "detector.weights=w.pkl"])
    with pytest.raises(Exception) as info:
        hydra.utils.instantiate(cfg.detector)
    assert "detector.config_file=nowhere/unknown.py: neither a file nor a config in detectron2's model zoo" in str(find_user_error(info.value))
