"""detectron2 detectors (ViTDet cascade Mask R-CNN, PHALP's default; Mask R-CNN): optional backend.

detectron2 is not on PyPI and is imported only when a :class:`Detectron2Detector` is built. Weights
are read from a local file; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from phalp_lightning.detection.base import score_filter, sort_by_score
from phalp_lightning.errors import UserError
from phalp_lightning.structures import Detections

_INSTALL_HINT = (
    "detectron2 is not installed; it is not on PyPI: install it from source "
    "(pip install 'git+https://github.com/facebookresearch/detectron2.git') or use detector=hog"
)
# COCO class index of "person" in detectron2's contiguous ids.
PERSON_CLASS = 0


class Detectron2Detector(torch.nn.Module):
    """A detectron2 instance-segmentation model filtered to people (docs/predict.md, Detectors).

    Args:
        config_file: a LazyConfig ``.py`` (e.g. ViTDet's ``cascade_mask_rcnn_vitdet_h_75ep.py``) or a
            yacs ``.yaml`` file, or a name inside detectron2's model zoo (``COCO-InstanceSegmentation/...``).
        weights: local path of the matching weights (``model_final_f05665.pkl`` for ViTDet-H); for a
            model-zoo config the error when it is missing gives the zoo's URL of its weights.
        score_threshold: keep persons with score strictly above this (PHALP: 0.8).
        model_score_threshold: the model's own ``test_score_thresh`` (PHALP: 0.5).
        nms_threshold: override of the box-head NMS IoU (None keeps the config's).
        input_format: channel order the model was trained on ("RGB" for ViTDet, "BGR" for the zoo models).
    """

    def __init__(
        self,
        config_file: str,
        weights: str,
        score_threshold: float = 0.8,
        model_score_threshold: float = 0.5,
        nms_threshold: float | None = None,
        input_format: str = "RGB",
    ) -> None:
        super().__init__()
        try:
            import detectron2  # noqa: F401
        except ImportError as error:
            raise DetectorSetupError("detector: detectron2 is not installed", _INSTALL_HINT.split("; ", 1)[1]) from error
        config_file = resolve_config_file(config_file)
        if not weights or not Path(weights).is_file():
            what = "detector.weights is not set" if not weights else f"detector.weights={weights}: no such file"
            raise DetectorSetupError(what, weights_hint(config_file))
        self.score_threshold = score_threshold
        self.input_format = input_format
        self.model = _build_model(config_file, weights, model_score_threshold, nms_threshold)
        self.model.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> list[Detections]:
        """(B, H, W, 3) uint8 RGB -> one :class:`Detections` per frame (masks included)."""
        from detectron2.data import transforms as T

        resize = T.ResizeShortestEdge(short_edge_length=1024, max_size=1024)
        inputs = []
        for frame in images.cpu().numpy():
            height, width = frame.shape[:2]
            if self.input_format == "BGR":
                frame = frame[..., ::-1]
            resized = resize.get_transform(frame).apply_image(frame)
            tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
            inputs.append({"image": tensor.to(next(self.model.parameters()).device), "height": height, "width": width})
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


class DetectorSetupError(UserError, ImportError):
    """The detector cannot be built: backend missing, config or weights not found (says how to fix it)."""


def resolve_config_file(config_file: str) -> str:
    """A local config file as is, else the file of that name in detectron2's model zoo (shipped with it)."""
    if not config_file:
        raise DetectorSetupError("detector.config_file is not set", "pass a detectron2 config file or a model-zoo name")
    if Path(config_file).is_file():
        return config_file
    from detectron2 import model_zoo

    try:
        return model_zoo.get_config_file(config_file)
    except RuntimeError as error:
        raise DetectorSetupError(
            f"detector.config_file={config_file}: neither a file nor a config in detectron2's model zoo",
            "pass the path of a detectron2 config (.py LazyConfig or .yaml) or a model-zoo name such as "
            "new_baselines/mask_rcnn_regnety_4gf_dds_FPN_400ep_LSJ.py",
        ) from error


def weights_hint(config_file: str) -> str:
    """How to get the weights of ``config_file`` (nothing is downloaded here)."""
    hint = "download the matching weights once and pass detector.weights=<local file>"
    marker = "model_zoo/configs/"
    if marker in config_file.replace("\\", "/"):
        from detectron2 import model_zoo

        name = config_file.replace("\\", "/").split(marker, 1)[1]
        try:
            return f"{hint} (for {name}: {model_zoo.get_checkpoint_url(name)})"
        except RuntimeError:
            pass
    return hint


def _build_model(config_file: str, weights: str, score_threshold: float, nms_threshold: float | None) -> torch.nn.Module:
    from detectron2.checkpoint import DetectionCheckpointer

    if config_file.endswith(".py"):
        from detectron2.config import LazyConfig, instantiate

        config = LazyConfig.load(config_file)
        predictors = config.model.roi_heads.box_predictors if "box_predictors" in config.model.roi_heads else [config.model.roi_heads.box_predictor]
        for predictor in predictors:
            predictor.test_score_thresh = score_threshold
            if nms_threshold is not None:
                predictor.test_nms_thresh = nms_threshold
        model = instantiate(config.model)
    else:
        from detectron2.config import get_cfg
        from detectron2.modeling import build_model

        config = get_cfg()
        config.merge_from_file(config_file)
        config.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
        if nms_threshold is not None:
            config.MODEL.ROI_HEADS.NMS_THRESH_TEST = nms_threshold
        config.MODEL.DEVICE = "cpu"
        model = build_model(config)
    DetectionCheckpointer(model).load(weights)
    return model
