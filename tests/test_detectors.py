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
        ("torchvision_maskrcnn", ["detector.weights=w.pth"], "torchvision cannot be imported"),
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
    message = str(find_user_error(info.value))
    assert "detector.config_file=nowhere/unknown.py: neither a file, nor a config shipped here" in message
    assert "nor a config in detectron2's model zoo" in message


def test_hog_windows_map_to_the_person_box_inside_them():
    detector = HOGDetector(person_box=(0.5, 0.55, 0.5, 0.75))
    windows = np.array([[10.0, 20.0, 64.0, 128.0], [100.0, 0.0, 32.0, 64.0]])
    boxes = detector.person_boxes(windows)
    # centre (10 + 32, 20 + 0.55 * 128), size (32, 96)
    np.testing.assert_allclose(boxes[0], [26.0, 42.4, 58.0, 138.4], rtol=1e-6)
    np.testing.assert_allclose(boxes[1], [108.0, 11.2, 124.0, 59.2], rtol=1e-6)
    whole = HOGDetector(person_box=(0.5, 0.5, 1.0, 1.0)).person_boxes(windows)
    np.testing.assert_allclose(whole, np.concatenate([windows[:, :2], windows[:, :2] + windows[:, 2:]], axis=1))
    with pytest.raises(ValueError, match="person_box"):
        HOGDetector(person_box=(0.5, 0.5, 0.0, 1.0))


def test_hog_upsamples_to_reach_small_people_within_the_side_cap():
    # The window's person is 128 * 0.75 = 96 px tall: reaching 48 px people needs 2x.
    detector = HOGDetector(person_box=(0.5, 0.5, 0.5, 0.75), min_person_height=48, max_side=None)
    assert detector.resize_factor(480, 640) == pytest.approx(2.0)
    assert HOGDetector(person_box=(0.5, 0.5, 0.5, 0.75), min_person_height=48, max_side=960).resize_factor(480, 640) == pytest.approx(1.5)
    assert HOGDetector(person_box=(0.5, 0.5, 0.5, 0.75), min_person_height=200, max_side=None).resize_factor(480, 640) == 1.0
    assert HOGDetector(min_person_height=None, max_side=640).resize_factor(720, 1280) == pytest.approx(0.5)


def test_hog_nms_keeps_the_best_of_overlapping_windows_and_drops_low_scores():
    detector = HOGDetector(score_threshold=0.2, nms_threshold=0.5, person_box=(0.5, 0.5, 1.0, 1.0))
    windows = np.array([[0, 0, 64, 128], [4, 4, 64, 128], [200, 0, 64, 128], [400, 0, 64, 128]], dtype=np.float32)
    margins = np.array([1.0, 3.0, 0.5, 0.1], dtype=np.float32)  # scores 0.5, 0.75, 0.33, 0.09
    found = detector.select(windows, margins, height=300, width=500)
    torch.testing.assert_close(found.scores, torch.tensor([0.75, 1 / 3]))
    torch.testing.assert_close(found.boxes, torch.tensor([[4.0, 4.0, 68.0, 132.0], [200.0, 0.0, 264.0, 128.0]]))


def test_hog_on_frames_smaller_than_its_window_finds_nobody_instead_of_crashing():
    # OpenCV's detectMultiScale segfaults on images smaller than the 64 x 128 window.
    found = HOGDetector()(torch.zeros(2, 64, 64, 3, dtype=torch.uint8))
    assert [len(detections.boxes) for detections in found] == [0, 0]


# --------------------------------------------------------------------------------------------------
# Detector weights are read without code-running unpicklers (detection/weights.py); no detectron2 needed.


class _NotData:
    """A class a weights file has no business pickling (the unpickler would import and build it)."""


def _write_pickle(path, content):
    import pickle

    with path.open("wb") as handle:
        pickle.dump(content, handle, protocol=4)
    return path


def test_a_detectron2_pickle_of_arrays_is_read_by_the_restricted_unpickler(tmp_path):
    from phalp_lightning.detection.weights import as_tensors, read_weights

    arrays = {
        "backbone.w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "roi_heads.b": np.zeros(4, np.float32),
        "backbone.bn.num_batches_tracked": np.array(7),  # 0-d stays 0-d
        "backbone.t": np.arange(6, dtype=np.float32).reshape(2, 3).T,  # not C-contiguous
    }
    path = _write_pickle(tmp_path / "model_final.pkl", {"model": arrays, "__author__": "someone"})
    content = read_weights(path)
    assert content["__author__"] == "someone"
    tensors = as_tensors(content["model"])
    torch.testing.assert_close(tensors["backbone.w"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    assert tensors["backbone.bn.num_batches_tracked"].shape == () and tensors["backbone.bn.num_batches_tracked"].item() == 7
    torch.testing.assert_close(tensors["backbone.t"], torch.arange(6, dtype=torch.float32).reshape(2, 3).T)


def test_a_pickle_needing_other_classes_is_refused_unless_trusted(tmp_path, caplog):
    from phalp_lightning.detection.weights import DetectorWeightsError, read_weights

    path = _write_pickle(tmp_path / "model_final.pkl", {"model": {"w": np.zeros(2, np.float32)}, "extra": _NotData()})
    with pytest.raises(DetectorWeightsError) as info:
        read_weights(path)
    message = str(info.value)
    assert "\n" not in message and f"detector.weights={path}" in message
    assert "test_detectors._NotData" in message and "ckpt_trusted=true" in message
    with caplog.at_level("WARNING"):
        content = read_weights(path, trusted=True)
    assert isinstance(content["extra"], _NotData)
    assert any("UNSAFE LOAD" in record.getMessage() for record in caplog.records)


def test_a_torch_file_needing_other_classes_is_refused_unless_trusted(tmp_path):
    from phalp_lightning.detection.weights import DetectorWeightsError, read_weights

    path = tmp_path / "model_final.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "trainer": _NotData()}, path)
    with pytest.raises(DetectorWeightsError, match=r"safe reader refuses .*_NotData.*ckpt_trusted=true"):
        read_weights(path)
    assert isinstance(read_weights(path, trusted=True)["trainer"], _NotData)
    plain = tmp_path / "state.pth"
    torch.save({"w": torch.ones(3)}, plain)
    torch.testing.assert_close(read_weights(plain)["w"], torch.ones(3))


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_truncated_empty_and_missing_weights_files_are_one_line(tmp_path, suffix):
    from phalp_lightning.detection.weights import DetectorWeightsError, read_weights

    whole = tmp_path / f"whole{suffix}"
    if suffix == ".pkl":
        _write_pickle(whole, {"model": {"w": np.zeros(1000, np.float32)}})
    else:
        torch.save({"model": {"w": torch.zeros(1000)}}, whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[:-500])
    with pytest.raises(DetectorWeightsError, match="truncated, corrupt or not a weights file"):
        read_weights(cut, trusted=True)  # trust does not make a broken file readable
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    with pytest.raises(DetectorWeightsError, match="the file is empty"):
        read_weights(tmp_path / f"empty{suffix}")
    with pytest.raises(DetectorWeightsError, match="no such file"):
        read_weights(tmp_path / f"absent{suffix}")


def test_layout_mismatch_names_missing_parameters_and_other_shapes():
    from phalp_lightning.detection.weights import layout_mismatch

    expected = {"a": (2, 3), "b": (4,), "pixel_mean": (3, 1, 1)}
    assert layout_mismatch({"a": np.zeros((2, 3)), "b": np.zeros(4), "extra": np.zeros(1)}, expected, ignore_missing=("pixel_mean",)) is None
    assert layout_mismatch({"a": np.zeros((2, 3)), "b": np.zeros(4)}, {**expected, "bn.num_batches_tracked": ()}, ("pixel_mean", "num_batches_tracked")) is None
    problem = layout_mismatch({"a": np.zeros((3, 2))}, expected, ignore_missing=("pixel_mean",))
    assert problem == "1 of the network's 3 parameters are missing (e.g. b); 1 have another shape (e.g. a (3, 2) instead of (2, 3))"


def test_the_shipped_vitdet_layout_is_vit_h_with_a_three_stage_cascade():
    from phalp_lightning.detection.detectron2 import SHIPPED_CONFIGS, shipped_layout

    layout = shipped_layout("cascade_mask_rcnn_vitdet_h.py")
    assert (SHIPPED_CONFIGS / "cascade_mask_rcnn_vitdet_h.py").is_file()
    assert layout["backbone.net.patch_embed.proj.weight"] == (1280, 3, 16, 16)
    assert max(int(name.split(".")[3]) for name in layout if name.startswith("backbone.net.blocks.")) == 31
    assert [layout[f"roi_heads.box_predictor.{stage}.cls_score.weight"] for stage in range(3)] == [(81, 1024)] * 3
    assert layout["roi_heads.mask_head.predictor.weight"] == (80, 256, 1, 1)
    # Global-attention blocks see the whole 64 x 64 token grid, window blocks 14 x 14.
    assert layout["backbone.net.blocks.7.attn.rel_pos_h"] == (127, 80) and layout["backbone.net.blocks.6.attn.rel_pos_h"] == (27, 80)


def test_vitdet_config_reads_the_weights_from_the_assets_folder_and_follows_ckpt_trusted(compose_cfg, tmp_path):
    from omegaconf import OmegaConf

    cfg = compose_cfg("predict", ["detector=vitdet", "video=x.mp4", f"paths.assets_dir={tmp_path}", "ckpt_trusted=true"])
    OmegaConf.resolve(cfg)
    assert cfg.detector.weights is None and cfg.detector.weights_asset == "vitdet_weights"
    assert cfg.detector.assets_dir == str(tmp_path) and cfg.detector.trusted is True
    assert cfg.detector.config_file == "cascade_mask_rcnn_vitdet_h.py"
    assert compose_cfg("predict", ["detector=vitdet", "video=x.mp4"]).detector.trusted is False


def test_predict_names_the_detector_download_command_before_building_anything(compose_cfg, tmp_path):
    from phalp_lightning.assets import AssetMissingError
    from phalp_lightning.pipelines.assets.for_run import prepare_run_assets

    cfg = compose_cfg("predict", ["detector=vitdet", "video=x.mp4", f"paths.assets_dir={tmp_path}"])
    with pytest.raises(AssetMissingError, match=r"detector\.weights=.*model_final_f05665\.pkl: no such file.*download detector"):
        prepare_run_assets(cfg)
    # Given weights are the user's choice: nothing implied from the assets folder.
    weights = tmp_path / "mine.pkl"
    weights.write_bytes(b"x")
    prepare_run_assets(compose_cfg("predict", ["detector=vitdet", "video=x.mp4", f"paths.assets_dir={tmp_path}", f"detector.weights={weights}"]))
