"""The real detector backends (detectron2 ViTDet-H and Mask R-CNN, torchvision Mask R-CNN) on random weights.

Marked ``real_backends``: they run in CI's second stage (scripts/backends_ci.sh builds the environment
with the CUDA build of torch from PyPI, torchvision, timm and detectron2) and skip, with the reason,
wherever a backend is missing. Weights are random but saved in the real layouts: a detectron2
model-zoo pickle of numpy arrays (``{'model': {name: ndarray}, '__author__': ...}``), a detectron2
training ``.pth`` (``{'model': state_dict, 'iteration': ...}``) and a torchvision state dict. The
person class is made to win (its class-score bias raised) so that everything downstream of the
detector runs. ViT-H is slow on a CPU: its tests use a 256 px network input and 20 proposals.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch

from phalp_lightning.errors import UserError, find_user_error

pytestmark = pytest.mark.real_backends

FRAME_HEIGHT, FRAME_WIDTH = 720, 1280
# Keep the CPU time small: a ~256-544 px network input, 20 proposals and 5 detections per image (the
# released settings: 1024 px, 1000 proposals, 100 detections).
FEW = ["detector.num_proposals=20", "detector.max_detections=5"]
VITDET_FAST = ["detector.input_size=256", *FEW]
MASKRCNN_FAST = ["detector.input_size=320", *FEW]
TORCHVISION_FAST = ["detector.min_size=320", "detector.max_size=544", *FEW]
# Random weights' top proposals are often smaller than PHALP's 50 x 100 px floor: lower it.
PREDICT_FAST = ["+hmar.img_size=64", "progress_bar=false", "trainer.accelerator=cpu", "tracker.n_init=2", "ckpt=null",
                "system.min_box_width=20", "system.min_box_height=20"]
# A person-class logit this far above the others wins after the softmax over 81 (80 + background) classes.
PERSON_LOGIT_BOOST = 12.0


def require(*modules: str) -> None:
    """Skip, naming what is missing and where it is installed, unless every module imports."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: the real-backend CI stage (scripts/backends_ci.sh) installs the backends")
    try:
        for name in modules:
            __import__(name)
    except (ImportError, RuntimeError) as error:  # torchvision beside a torch whose ops it does not match
        pytest.skip(f"{modules} do not import here ({type(error).__name__}): see scripts/backends_ci.sh")


def random_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 arrays for a network layout, scaled like a fresh network's (norms 1, biases 0)."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in layout.items():
        if name.endswith(".bias") or "rel_pos" in name:
            state[name] = np.zeros(shape, np.float32)
        elif "norm" in name and len(shape) == 1:
            state[name] = np.ones(shape, np.float32)
        else:
            state[name] = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32, copy=False)
    return state


def make_person_win(state: dict, person: int, head: str = "") -> None:
    """Every box predictor answers "person", at its proposal's box, whatever it sees (in place).

    Class-score and box-delta weights (box heads and RPN) are zeroed, so the logits are the biases (the
    person's raised above the others) and the boxes are the anchors themselves: a random backbone's
    features are large, and random deltas collapse boxes to slivers.
    """
    for name in [name for name in state if name.endswith(f"{head}cls_score.weight")]:
        state[name][:] = 0
        bias = state[name.removesuffix("weight") + "bias"]
        bias[:] = 0
        bias[person] = PERSON_LOGIT_BOOST
    for name in [name for name in state if ".bbox_pred." in name or ".anchor_deltas." in name]:
        state[name][:] = 0


def frame(seed: int = 0) -> torch.Tensor:
    """A (1, 720, 1280, 3) uint8 frame: smooth colour gradients with noise (a real frame's size)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:FRAME_HEIGHT, 0:FRAME_WIDTH]
    image = np.stack([x * 255 // FRAME_WIDTH, y * 255 // FRAME_HEIGHT, (x + y) % 256], axis=-1)
    image = (image + rng.integers(0, 40, image.shape)).clip(0, 255).astype(np.uint8)
    return torch.from_numpy(image)[None]


def write_video(path: Path, frames: int = 3, height: int = 360, width: int = 640) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (width, height))
    image = np.ascontiguousarray(frame()[0].numpy()[:: FRAME_HEIGHT // height, :: FRAME_WIDTH // width][..., ::-1])
    for _ in range(frames):
        writer.write(image)  # the same frame: random-weight detections repeat, so tracks are confirmed
    writer.release()
    return path


def assert_people_in_frame_coordinates(found, height: int, width: int, network_side: int) -> None:
    """Boxes/scores/masks of one frame: dtypes, shapes, order, and boxes in frame (not network) pixels."""
    assert len(found) > 0, "the person class was made to win: there must be detections"
    assert found.boxes.dtype == torch.float32 and found.boxes.shape == (len(found), 4)
    assert found.scores.dtype == torch.float32 and torch.all(found.scores > 0.8)
    assert torch.all(found.scores[:-1] >= found.scores[1:])
    assert found.masks is not None and found.masks.dtype == torch.bool and found.masks.shape == (len(found), height, width)
    boxes = found.boxes
    assert torch.all(boxes[:, 2] >= boxes[:, 0]) and torch.all(boxes[:, 3] >= boxes[:, 1])
    assert torch.all(boxes[:, [0, 2]] >= 0) and torch.all(boxes[:, [0, 2]] <= width)
    assert torch.all(boxes[:, [1, 3]] >= 0) and torch.all(boxes[:, [1, 3]] <= height)
    # The network saw the frame with its longer side at network_side: boxes beyond it are rescaled ones.
    assert boxes[:, 2].max() > network_side * 1.2


# --------------------------------------------------------------------------------------------------
# Weight files in the real layouts.


@pytest.fixture(scope="module")
def vitdet_assets(tmp_path_factory) -> Path:
    """An assets folder: the generated body model, and random ViTDet-H weights as the released pickle."""
    require("detectron2", "timm")
    from phalp_lightning.datamodules.synthetic.mannequin import write_synthetic_assets

    from phalp_lightning.assets import asset_path
    from phalp_lightning.detection.detectron2 import PERSON_CLASS, shipped_layout

    root = tmp_path_factory.mktemp("vitdet_assets")
    write_synthetic_assets(root)
    state = random_state(shipped_layout("cascade_mask_rcnn_vitdet_h.py"))
    make_person_win(state, PERSON_CLASS)
    path = asset_path("vitdet_weights", root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        pickle.dump({"model": state, "__author__": "phalp_lightning tests (random weights)"}, handle, protocol=4)
    return root


@pytest.fixture(scope="module")
def maskrcnn_pth(tmp_path_factory) -> Path:
    """Random weights of the model zoo's Mask R-CNN RegNetY-4GF as a detectron2 training output (.pth)."""
    require("detectron2", "pkg_resources")
    from detectron2 import model_zoo

    from phalp_lightning.detection.detectron2 import PERSON_CLASS, build_model

    torch.manual_seed(0)
    model = build_model(model_zoo.get_config_file("new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ.py"), 0.5, None)
    state = {name: value.clone() for name, value in model.state_dict().items()}
    make_person_win(state, PERSON_CLASS)
    path = tmp_path_factory.mktemp("maskrcnn") / "model_final.pth"
    torch.save({"model": state, "iteration": 12345}, path)
    return path


@pytest.fixture(scope="module")
def torchvision_pth(tmp_path_factory) -> Path:
    """Random weights of torchvision's maskrcnn_resnet50_fpn as a plain state dict."""
    require("torchvision")
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    from phalp_lightning.detection.torchvision_maskrcnn import PERSON_LABEL

    torch.manual_seed(0)
    state = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    make_person_win(state, PERSON_LABEL, "box_predictor.")
    path = tmp_path_factory.mktemp("torchvision") / "maskrcnn_resnet50_fpn_random.pth"
    torch.save(state, path)
    return path


# --------------------------------------------------------------------------------------------------
# Detectors built from the shipped configs.


def test_vitdet_reads_the_released_layout_from_the_assets_folder_and_finds_people_in_frame_pixels(compose_cfg, vitdet_assets):
    from phalp_lightning.detection.detectron2 import Detectron2Detector, shipped_layout

    cfg = compose_cfg("predict", ["video=x.mp4", "detector=vitdet", f"paths.assets_dir={vitdet_assets}", *VITDET_FAST])
    detector = hydra.utils.instantiate(cfg.detector)
    assert isinstance(detector, Detectron2Detector)
    # The shipped layout table (the assets check's reference) is the shipped config's network.
    built = {name: tuple(value.shape) for name, value in detector.model.state_dict().items()}
    assert built == shipped_layout("cascade_mask_rcnn_vitdet_h.py")
    net = detector.model.backbone.net
    assert (len(net.blocks), net.patch_embed.proj.out_channels) == (32, 1280)
    assert [index for index, block in enumerate(net.blocks) if block.window_size == 0] == [7, 15, 23, 31]
    assert [predictor.test_score_thresh for predictor in detector.model.roi_heads.box_predictor] == [0.5, 0.5, 0.5]
    with open(vitdet_assets / "detector" / "model_final_f05665.pkl", "rb") as handle:
        stored = pickle.load(handle)["model"]["roi_heads.box_predictor.2.cls_score.bias"]
    np.testing.assert_array_equal(detector.model.roi_heads.box_predictor[2].cls_score.bias.numpy(), stored)
    (found,) = detector(frame())
    assert_people_in_frame_coordinates(found, FRAME_HEIGHT, FRAME_WIDTH, network_side=256)


def test_the_assets_check_confirms_vitdet_weights_fit_and_refuses_another_network(vitdet_assets, maskrcnn_pth, tmp_path):
    from phalp_lightning.assets import asset_path
    from phalp_lightning.pipelines.assets.checks import AssetContentError, check_asset

    summary = check_asset("vitdet_weights", asset_path("vitdet_weights", vitdet_assets))
    assert "fits ViTDet-H" in summary and "561 arrays" in summary
    # Mask R-CNN's weights as a model-zoo pickle: complete, arrays only, but another network.
    other = tmp_path / "model_final_f05665.pkl"
    state = torch.load(maskrcnn_pth, weights_only=True)["model"]
    with other.open("wb") as handle:
        pickle.dump({"model": {name: value.numpy() for name, value in state.items()}, "__author__": "x"}, handle, protocol=4)
    with pytest.raises(AssetContentError, match=r"does not fit the ViTDet-H cascade Mask R-CNN config: \d+ of the network's 561 parameters are missing"):
        check_asset("vitdet_weights", other)


def test_maskrcnn_from_the_model_zoo_loads_a_pth_and_finds_people(compose_cfg, maskrcnn_pth):
    nms = "detector.config_overrides=['model.roi_heads.box_predictor.test_nms_thresh=0.3']"
    cfg = compose_cfg("predict", ["video=x.mp4", "detector=maskrcnn", f"detector.weights={maskrcnn_pth}", nms, *MASKRCNN_FAST])
    detector = hydra.utils.instantiate(cfg.detector)
    assert detector.model.roi_heads.box_predictor.test_nms_thresh == 0.3  # config_overrides reach the config
    stored = torch.load(maskrcnn_pth, weights_only=True)["model"]["roi_heads.box_predictor.cls_score.bias"]
    torch.testing.assert_close(detector.model.roi_heads.box_predictor.cls_score.bias, stored)
    (found,) = detector(frame())
    assert_people_in_frame_coordinates(found, FRAME_HEIGHT, FRAME_WIDTH, network_side=320)


def test_torchvision_maskrcnn_loads_a_state_dict_and_finds_people(compose_cfg, torchvision_pth):
    cfg = compose_cfg("predict", ["video=x.mp4", "detector=torchvision_maskrcnn", f"detector.weights={torchvision_pth}", *TORCHVISION_FAST])
    detector = hydra.utils.instantiate(cfg.detector)
    (found,) = detector(frame())
    assert_people_in_frame_coordinates(found, FRAME_HEIGHT, FRAME_WIDTH, network_side=544)


class NotWeights:
    """A class a weights file has no business pickling (unpickling it imports and builds it)."""


def test_detectron2_pickles_never_reach_a_code_running_unpickler(compose_cfg, maskrcnn_pth, tmp_path, monkeypatch, caplog):
    state = {name: value.numpy() for name, value in torch.load(maskrcnn_pth, weights_only=True)["model"].items()}
    safe = tmp_path / "model_final.pkl"
    with safe.open("wb") as handle:
        pickle.dump({"model": state, "__author__": "x"}, handle, protocol=4)
    unsafe = tmp_path / "model_final_unsafe.pkl"
    with unsafe.open("wb") as handle:
        pickle.dump({"model": state, "__author__": "x", "extra": NotWeights()}, handle, protocol=4)

    def refuse(*args, **kwargs):
        raise AssertionError("a code-running unpickler was called")

    with monkeypatch.context() as patch:
        for module in (pickle, torch.serialization.pickle):
            patch.setattr(module, "load", refuse)
            patch.setattr(module, "loads", refuse)
        cfg = compose_cfg("predict", ["video=x.mp4", "detector=maskrcnn", f"detector.weights={safe}", *MASKRCNN_FAST])
        hydra.utils.instantiate(cfg.detector)  # read by the restricted unpickler: arrays only
        cfg = compose_cfg("predict", ["video=x.mp4", "detector=maskrcnn", f"detector.weights={unsafe}", *MASKRCNN_FAST])
        message = one_line_error(lambda: hydra.utils.instantiate(cfg.detector))
    assert "test_detectors_real.NotWeights" in message and "ckpt_trusted=true" in message
    cfg = compose_cfg("predict", ["video=x.mp4", "detector=maskrcnn", f"detector.weights={unsafe}", "ckpt_trusted=true", *MASKRCNN_FAST])
    with caplog.at_level("WARNING"):
        hydra.utils.instantiate(cfg.detector)
    assert any("UNSAFE LOAD" in record.getMessage() for record in caplog.records)


# --------------------------------------------------------------------------------------------------
# predict.py end to end with each backend.


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["vitdet", "maskrcnn", "torchvision_maskrcnn"])
def test_predict_tracks_renders_and_writes_results_with_each_backend(backend, request, compose_cfg, tmp_path, monkeypatch):
    from phalp_lightning.pipelines.predict import run

    if backend == "vitdet":
        assets = request.getfixturevalue("vitdet_assets")
        detector = [f"paths.assets_dir={assets}", *VITDET_FAST]
    else:
        from phalp_lightning.datamodules.synthetic.mannequin import write_synthetic_assets

        weights = request.getfixturevalue("maskrcnn_pth" if backend == "maskrcnn" else "torchvision_pth")
        assets = tmp_path / "assets"
        write_synthetic_assets(assets)
        detector = [f"detector.weights={weights}", *(MASKRCNN_FAST if backend == "maskrcnn" else TORCHVISION_FAST)]
    monkeypatch.setenv("PHALP_ASSETS", str(assets))
    video = write_video(tmp_path / "clip.mp4")
    # More proposals and people than the detection tests: random weights' top few can all be tiny boxes.
    more = ["detector.num_proposals=100", "detector.max_detections=20"]
    cfg = compose_cfg("predict", [f"video={video}", f"detector={backend}", *detector, *more, "render=boxes", *PREDICT_FAST])
    (report,) = run(cfg)
    assert report.error is None and report.frames == 3
    out = Path(cfg.output_dir)
    mot = np.loadtxt(out / "mot" / "clip.txt", delimiter=",", ndmin=2)
    assert len(mot) > 0 and set(mot[:, 0].astype(int)) <= {1, 2, 3}
    assert (out / "results" / "demo_clip.pkl").stat().st_size > 0 and (out / "results" / "demo_clip.npz").stat().st_size > 0
    rendered = list(out.glob("PHALP_clip.*"))
    assert len(rendered) == 1 and rendered[0].stat().st_size > 0


# --------------------------------------------------------------------------------------------------
# What a user meets when something is missing or wrong: one line each.


def one_line_error(build) -> str:
    with pytest.raises(Exception) as info:
        build()
    error = find_user_error(info.value)
    assert isinstance(error, UserError), info.value
    assert "\n" not in str(error)
    return str(error)


def test_missing_timm_is_one_line_saying_what_to_install(compose_cfg, monkeypatch, tmp_path):
    require("detectron2")
    weights = tmp_path / "model_final_f05665.pkl"
    weights.write_bytes(b"never read: the build fails first")
    for name in [name for name in sys.modules if name == "timm" or name.startswith("timm.")]:
        monkeypatch.delitem(sys.modules, name)  # a cached submodule would be found without its parent
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm...` raises ModuleNotFoundError
    cfg = compose_cfg("predict", ["video=x.mp4", "detector=vitdet", f"detector.weights={weights}", *VITDET_FAST])
    message = one_line_error(lambda: hydra.utils.instantiate(cfg.detector))
    assert "'timm' is not installed" in message and "pip install timm" in message


def test_missing_pkg_resources_is_one_line_saying_what_to_install(compose_cfg, monkeypatch, maskrcnn_pth):
    require("detectron2")
    monkeypatch.setitem(sys.modules, "pkg_resources", None)
    for name in [name for name in sys.modules if name.startswith("detectron2.model_zoo")]:
        monkeypatch.delitem(sys.modules, name)  # re-imported, so it meets the missing module
    cfg = compose_cfg("predict", ["video=x.mp4", "detector=maskrcnn", f"detector.weights={maskrcnn_pth}"])
    message = one_line_error(lambda: hydra.utils.instantiate(cfg.detector))
    assert "'pkg_resources' is not installed" in message and "setuptools<81" in message


def test_a_missing_config_is_one_line_naming_it(compose_cfg, tmp_path):
    require("detectron2")
    cfg = compose_cfg("predict", ["video=x.mp4", "detector=vitdet", "detector.config_file=nowhere/vitdet_h.py", f"paths.assets_dir={tmp_path}"])
    message = one_line_error(lambda: hydra.utils.instantiate(cfg.detector))
    assert message.startswith("detector.config_file=nowhere/vitdet_h.py: neither a file") and "cascade_mask_rcnn_vitdet_h.py" in message


def test_wrong_weights_files_are_one_line_saying_they_do_not_fit(compose_cfg, maskrcnn_pth, torchvision_pth):
    require("detectron2", "torchvision")
    cfg = compose_cfg("predict", ["video=x.mp4", "detector=maskrcnn", f"detector.weights={torchvision_pth}"])
    message = one_line_error(lambda: hydra.utils.instantiate(cfg.detector))
    assert f"detector.weights={torchvision_pth} does not fit detector.config_file=mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ.py" in message
    cfg = compose_cfg("predict", ["video=x.mp4", "detector=torchvision_maskrcnn", f"detector.weights={maskrcnn_pth}"])
    message = one_line_error(lambda: hydra.utils.instantiate(cfg.detector))
    assert "does not fit torchvision's maskrcnn_resnet50_fpn" in message


def test_vitdet_without_downloaded_weights_names_the_download_command(compose_cfg, tmp_path):
    require("detectron2")
    cfg = compose_cfg("predict", ["video=x.mp4", "detector=vitdet", f"paths.assets_dir={tmp_path}"])
    message = one_line_error(lambda: hydra.utils.instantiate(cfg.detector))
    assert "model_final_f05665.pkl" in message and "python -m phalp_lightning.assets download detector" in message
