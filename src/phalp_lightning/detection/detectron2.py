"""detectron2 detectors (ViTDet-H cascade Mask R-CNN, PHALP's default; Mask R-CNN): optional backend.

detectron2 is not on PyPI and is imported only when a :class:`Detectron2Detector` is built. The
ViTDet-H config ships with this package (``detection/configs/cascade_mask_rcnn_vitdet_h.py``); its
weights are the released ``model_final_f05665.pkl`` under the assets folder. Weights are read by
:mod:`phalp_lightning.detection.weights` (never by detectron2's code-running unpickler) and checked
against the built network before they are loaded. Nothing is downloaded here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from phalp_lightning.detection.base import score_filter, sort_by_score
from phalp_lightning.detection.weights import DetectorWeightsError, as_tensors, layout_mismatch, read_weights
from phalp_lightning.errors import UserError
from phalp_lightning.structures import Detections

_INSTALL_HINT = (
    "it is not on PyPI: install it from source (pip install --no-build-isolation "
    "'git+https://github.com/facebookresearch/detectron2.git', docs/predict.md \"Installing the detector backends\") "
    "or use detector=hog"
)
# COCO class index of "person" in detectron2's contiguous ids.
PERSON_CLASS = 0
# LazyConfigs shipped with this package, looked up by file name.
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"
# Buffers a weights file may lack: the pixel statistics come from the config (older files lack them),
# BatchNorm's step counter is never used at inference (model-zoo pickles may lack it).
_CONFIG_BUFFERS = ("pixel_mean", "pixel_std", "num_batches_tracked")
# What to install when detectron2 or a config imports a module that is missing.
_MISSING_MODULE_HINTS = {
    "timm": "ViTDet's backbone imports timm: pip install timm (in the environment that has detectron2)",
    "pkg_resources": "detectron2's model zoo imports pkg_resources, which setuptools 81+ no longer ships: pip install 'setuptools<81'",
}


class DetectorSetupError(UserError, ImportError):
    """The detector cannot be built: backend missing, config or weights not found (says how to fix it)."""


class Detectron2Detector(torch.nn.Module):
    """A detectron2 instance-segmentation model filtered to people (docs/predict.md, Detectors).

    Args:
        config_file: a LazyConfig ``.py`` or yacs ``.yaml`` file; or the name of a config shipped with
            this package (``cascade_mask_rcnn_vitdet_h.py``); or a name in detectron2's model zoo
            (``new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ.py``). Looked up in that order.
        weights: local path of the matching weights (``.pkl`` model-zoo pickle or ``.pth``); None: the
            asset ``weights_asset`` under the assets folder.
        weights_asset: asset name used when ``weights`` is None (``vitdet_weights``).
        assets_dir: the assets folder (None: ``$PHALP_ASSETS``, else the cache).
        score_threshold: keep persons with score strictly above this (PHALP: 0.8).
        model_score_threshold: the model's own ``test_score_thresh`` for every box predictor (PHALP: 0.5).
        nms_threshold: override of the box-head NMS IoU (None keeps the config's).
        input_format: channel order the model was trained on ("RGB" for ViTDet, "BGR" for the zoo models).
        input_size: frames are resized so that their longer side is this (shorter side at most this);
            the ViT backbone pads to this square. 1024 is what the released weights were trained at;
            smaller is faster and less accurate.
        trusted: read a weights file the safe readers refuse with the full unpickler (``ckpt_trusted``).
        num_proposals: region proposals per image at test time (None keeps the config's, 1000 for
            ViTDet-H and the zoo's Mask R-CNN); fewer is faster.
        max_detections: detections per image after NMS (None keeps the config's, 100).
        config_overrides: ``key=value`` edits of the config before the network is built (a LazyConfig's
            ``model.proposal_generator.post_nms_topk=[1000,100]``, a yacs config's ``MODEL.RPN.POST_NMS_TOPK_TEST=100``).
    """

    def __init__(
        self,
        config_file: str,
        weights: str | None = None,
        weights_asset: str | None = None,
        assets_dir: str | None = None,
        score_threshold: float = 0.8,
        model_score_threshold: float = 0.5,
        nms_threshold: float | None = None,
        input_format: str = "RGB",
        input_size: int = 1024,
        trusted: bool = False,
        num_proposals: int | None = None,
        max_detections: int | None = None,
        config_overrides: list[str] | tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        try:
            import detectron2  # noqa: F401
        except ImportError as error:
            raise DetectorSetupError("detector: detectron2 is not installed", _INSTALL_HINT) from error
        if input_format not in ("RGB", "BGR"):
            raise UserError(f"detector.input_format={input_format}: expected RGB or BGR")
        if input_size < 32:
            raise UserError(f"detector.input_size={input_size}: expected at least 32 (1024 for the released weights)")
        config_file = resolve_config_file(config_file)
        weights_path = resolve_weights(weights, weights_asset, assets_dir, config_file)
        self.score_threshold = score_threshold
        self.input_format = input_format
        self.input_size = input_size
        # Built without random initial values: load_weights refuses a file that lacks any parameter.
        self.model = build_model(
            config_file, model_score_threshold, nms_threshold, input_size, list(config_overrides), num_proposals, max_detections, initialise=False
        )
        load_weights(self.model, weights_path, Path(config_file).name, trusted=trusted)
        self.model.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> list[Detections]:
        """(B, H, W, 3) uint8 RGB -> one :class:`Detections` per frame (boxes in frame pixels, masks included)."""
        from detectron2.data import transforms as T

        resize = T.ResizeShortestEdge(short_edge_length=self.input_size, max_size=self.input_size)
        device = next(self.model.parameters()).device
        inputs = []
        for frame in images.cpu().numpy():
            height, width = frame.shape[:2]
            if self.input_format == "BGR":
                frame = frame[..., ::-1]
            resized = resize.get_transform(frame).apply_image(frame)
            tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
            # height/width: detectron2 scales boxes and pastes masks back at the frame's own size.
            inputs.append({"image": tensor.to(device), "height": height, "width": width})
        results = []
        for output in self.model(inputs):
            instances = output["instances"].to("cpu")
            people = instances[instances.pred_classes == PERSON_CLASS]
            detections = Detections(
                boxes=people.pred_boxes.tensor.float(),
                scores=people.scores.float(),
                masks=people.pred_masks.bool() if people.has("pred_masks") else None,
            )
            results.append(score_filter(sort_by_score(detections), self.score_threshold))
        return results


def shipped_layout(config_name: str = "cascade_mask_rcnn_vitdet_h.py") -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of a shipped config's network, from its ``.layout.tsv`` (no detectron2 needed).

    The table lets ``python -m phalp_lightning.assets verify`` check that downloaded weights fit the
    network without building it; the real-backend tests check the table against the built network.
    """
    table = SHIPPED_CONFIGS / f"{Path(config_name).stem}.layout.tsv"
    layout = {}
    for line in table.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, shape = line.split("\t")
            layout[name] = tuple(int(size) for size in shape.split(",") if size)
    return layout


def _missing_module(error: ModuleNotFoundError, what: str) -> DetectorSetupError | None:
    """A one-line error for a known missing dependency of detectron2, else None (a real bug)."""
    name = (error.name or "").split(".")[0]
    if name not in _MISSING_MODULE_HINTS:
        return None
    return DetectorSetupError(f"{what}: the Python module '{name}' is not installed", _MISSING_MODULE_HINTS[name])


def resolve_config_file(config_file: str | None) -> str:
    """A local config file as is, else a config shipped here, else the file of that name in detectron2's model zoo."""
    if not config_file:
        raise DetectorSetupError("detector.config_file is not set", "pass a detectron2 config file or a model-zoo name")
    if Path(config_file).is_file():
        return config_file
    shipped = SHIPPED_CONFIGS / config_file
    if shipped.is_file():
        return str(shipped)
    try:
        from detectron2 import model_zoo

        return model_zoo.get_config_file(config_file)
    except ModuleNotFoundError as error:
        if (setup_error := _missing_module(error, f"detector.config_file={config_file}")) is None:
            raise
        raise setup_error from error
    except RuntimeError as error:
        shipped_names = ", ".join(sorted(path.name for path in SHIPPED_CONFIGS.glob("*.py")))
        raise DetectorSetupError(
            f"detector.config_file={config_file}: neither a file, nor a config shipped here ({shipped_names}), "
            "nor a config in detectron2's model zoo",
            "pass the path of a detectron2 config (.py LazyConfig or .yaml) or a model-zoo name such as "
            "new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ.py",
        ) from error


def resolve_weights(weights: str | None, weights_asset: str | None, assets_dir: str | None, config_file: str) -> Path:
    """The weights file to read: ``weights``, else the asset ``weights_asset``; one line when it is missing."""
    if not weights and weights_asset:
        from phalp_lightning.assets import resolve

        return resolve(weights_asset, assets_dir)  # AssetMissingError names the download command
    if not weights or not Path(weights).expanduser().is_file():
        what = "detector.weights is not set" if not weights else f"detector.weights={weights}: no such file"
        raise DetectorSetupError(what, weights_hint(config_file))
    return Path(weights).expanduser()


def weights_hint(config_file: str) -> str:
    """How to get the weights of ``config_file`` (nothing is downloaded here)."""
    hint = "download the matching weights once and pass detector.weights=<local file>"
    marker = "model_zoo/configs/"
    if marker in config_file.replace("\\", "/"):
        name = config_file.replace("\\", "/").split(marker, 1)[1]
        try:
            from detectron2 import model_zoo

            return f"{hint} (for {name}: {model_zoo.get_checkpoint_url(name)})"
        except (RuntimeError, ModuleNotFoundError):
            pass
    return hint


def build_model(
    config_file: str,
    score_threshold: float,
    nms_threshold: float | None,
    input_size: int = 1024,
    overrides: list[str] | None = None,
    num_proposals: int | None = None,
    max_detections: int | None = None,
    initialise: bool = True,
) -> torch.nn.Module:
    """The network of ``config_file`` with its test-time thresholds set, on the CPU, weights not loaded.

    ``initialise=False`` allocates the parameters without drawing their random initial values (ViT-H:
    0.3 s instead of ~40 s on a CPU); only for a network whose every parameter is loaded next, which
    :func:`load_weights` makes sure of.
    """
    overrides = list(overrides or [])
    malformed = [item for item in overrides if "=" not in item]
    if malformed:
        raise UserError(f"detector.config_overrides: {malformed[0]!r} is not key=value", "e.g. model.proposal_generator.post_nms_topk=[1000,100]")
    try:
        if config_file.endswith(".py"):
            from detectron2.config import LazyConfig, instantiate

            config = LazyConfig.load(config_file)
            heads = config.model.roi_heads
            predictors = heads.box_predictors if "box_predictors" in heads else [heads.box_predictor]
            for predictor in predictors:
                predictor.test_score_thresh = score_threshold
                if nms_threshold is not None:
                    predictor.test_nms_thresh = nms_threshold
                if max_detections is not None:
                    predictor.test_topk_per_image = max_detections
            if num_proposals is not None:
                train_topk = config.model.proposal_generator.post_nms_topk[0]
                config.model.proposal_generator.post_nms_topk = (train_topk, num_proposals)
            if "square_pad" in config.model.backbone:
                config.model.backbone.square_pad = input_size
            try:  # last, so that an explicit edit wins over the settings above
                config = LazyConfig.apply_overrides(config, overrides)
            except Exception as error:  # noqa: BLE001 - hydra's override parser raises several kinds
                raise UserError(f"detector.config_overrides={overrides}: {type(error).__name__}: {error}", "use key=value with keys of the config") from error
            with _parameter_init(initialise):
                return instantiate(config.model)
        from detectron2.config import get_cfg
        from detectron2.modeling import build_model as build_from_yacs

        config = get_cfg()
        config.merge_from_file(config_file)
        config.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
        if nms_threshold is not None:
            config.MODEL.ROI_HEADS.NMS_THRESH_TEST = nms_threshold
        if num_proposals is not None:
            config.MODEL.RPN.POST_NMS_TOPK_TEST = num_proposals
        if max_detections is not None:
            config.TEST.DETECTIONS_PER_IMAGE = max_detections
        config.MODEL.DEVICE = "cpu"
        config.merge_from_list([part for item in overrides for part in item.split("=", 1)])
        with _parameter_init(initialise):
            return build_from_yacs(config)
    except ModuleNotFoundError as error:
        if (setup_error := _missing_module(error, f"detector.config_file={config_file}")) is None:
            raise
        raise setup_error from error


@contextmanager
def _parameter_init(enabled: bool) -> Iterator[None]:
    """``torch.nn.init``'s in-place initialisers as no-ops while a network is built (``enabled=False``).

    Modules call them through the ``torch.nn.init`` module (detectron2 and fvcore too), so replacing
    the module's functions for the duration of the build skips every random draw; they are restored
    afterwards. Not for use while another thread builds a network that must be initialised.
    """
    if enabled:
        yield
        return
    names = [name for name in vars(torch.nn.init) if name.endswith("_") and not name.startswith("_")]
    originals = {name: getattr(torch.nn.init, name) for name in names}

    def keep(tensor: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return tensor

    try:
        for name in names:
            setattr(torch.nn.init, name, keep)
        yield
    finally:
        for name, function in originals.items():
            setattr(torch.nn.init, name, function)


def detectron2_checkpoint(content: Any) -> dict[str, Any]:
    """A weights file's content in detectron2's checkpoint form ``{'model': state, ...}`` (as its checkpointer reads them)."""
    if not isinstance(content, Mapping):
        return {"model": content}
    if "model" in content:
        return dict(content)
    if "blobs" in content:  # Caffe2 / Detectron1 model-zoo pickle: names are matched by heuristics
        state = {name: value for name, value in content["blobs"].items() if not name.endswith("_momentum")}
        return {"model": state, "__author__": "Caffe2", "matching_heuristics": True}
    return {"model": dict(content)}


def load_weights(model: torch.nn.Module, path: Path, config_name: str, trusted: bool = False) -> None:
    """Read ``path`` safely, check every parameter of ``model`` is there with its shape, then load it."""
    checkpoint = detectron2_checkpoint(read_weights(path, trusted=trusted))
    state = checkpoint["model"]
    if not isinstance(state, Mapping) or not state:
        raise DetectorWeightsError(f"detector.weights={path}: holds no state dict under 'model'", "pass a detectron2 weights file")
    state = as_tensors(state)
    if checkpoint.get("matching_heuristics", False):
        from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts

        state = align_and_update_state_dicts(model.state_dict(), state, c2_conversion=checkpoint.get("__author__") == "Caffe2")
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    problem = layout_mismatch(state, expected, ignore_missing=_CONFIG_BUFFERS)
    if problem is not None:
        raise DetectorWeightsError(
            f"detector.weights={path} does not fit detector.config_file={config_name}: {problem}",
            "pass the weights released with that config (ViTDet-H: `python -m phalp_lightning.assets download detector`)",
        )
    model.load_state_dict({name: state[name] for name in expected if name in state}, strict=False)
