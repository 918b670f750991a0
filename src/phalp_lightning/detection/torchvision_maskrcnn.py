"""torchvision's Mask R-CNN (ResNet-50 FPN) as an optional detector, from a local weights file.

torchvision is never a dependency of this package (its ops do not load beside the CPU-only torch
wheel, docs/predict.md "Installing the detector backends"); it is imported only when a
:class:`TorchvisionMaskRCNNDetector` is built. The weights are read by
:func:`phalp_lightning.detection.weights.read_weights` (weights-only) and checked before loading.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from phalp_lightning.detection.base import score_filter, sort_by_score
from phalp_lightning.detection.weights import DetectorWeightsError, as_tensors, layout_mismatch, read_weights
from phalp_lightning.errors import UserError
from phalp_lightning.structures import Detections

# torchvision's COCO label of "person" (index 0 is the background).
PERSON_LABEL = 1


class TorchvisionSetupError(UserError, ImportError):
    """torchvision is missing or its weights file is not given/found (says how to fix it)."""


class TorchvisionMaskRCNNDetector(torch.nn.Module):
    """``torchvision.models.detection.maskrcnn_resnet50_fpn`` (v1 or v2) filtered to people.

    Args:
        weights: local state-dict file, e.g. ``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``.
        version: "v1" or "v2" (``maskrcnn_resnet50_fpn_v2``), matching the weights.
        score_threshold: keep persons with score strictly above this.
        mask_threshold: soft-mask probability above which a pixel belongs to the person.
        min_size, max_size: the network's input resize (torchvision's 800 and 1333 by default).
        num_proposals: region proposals per image at test time (torchvision's 1000); fewer is faster.
        max_detections: detections per image after NMS (torchvision's 100).
        trusted: read a weights file the weights-only reader refuses with the full unpickler (``ckpt_trusted``).
    """

    def __init__(
        self,
        weights: str,
        version: str = "v1",
        score_threshold: float = 0.8,
        mask_threshold: float = 0.5,
        min_size: int = 800,
        max_size: int = 1333,
        num_proposals: int = 1000,
        max_detections: int = 100,
        trusted: bool = False,
    ) -> None:
        super().__init__()
        try:
            from torchvision.models import detection
        except (ImportError, RuntimeError) as error:
            # RuntimeError: torchvision installed beside a torch build its compiled ops do not match.
            raise TorchvisionSetupError(
                f"detector=torchvision_maskrcnn: torchvision cannot be imported ({type(error).__name__})",
                "install the torchvision that matches your torch (docs/predict.md \"Installing the detector backends\") or use detector=hog",
            ) from error
        builders = {"v1": detection.maskrcnn_resnet50_fpn, "v2": detection.maskrcnn_resnet50_fpn_v2}
        if version not in builders:
            raise UserError(f"detector.version={version}: expected v1 or v2")
        if not weights or not Path(weights).expanduser().is_file():
            raise TorchvisionSetupError(
                f"detector.weights={weights}: no such file",
                "download torchvision's COCO weights once (e.g. maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth) and pass detector.weights=<file>",
            )
        self.model = builders[version](
            weights=None,
            weights_backbone=None,
            min_size=min_size,
            max_size=max_size,
            rpn_post_nms_top_n_test=num_proposals,
            box_detections_per_img=max_detections,
        )
        state = read_weights(weights, trusted=trusted)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]  # a training checkpoint around the state dict
        if not isinstance(state, dict):
            raise DetectorWeightsError(f"detector.weights={weights}: holds a {type(state).__name__}, not a state dict", "pass torchvision's Mask R-CNN weights")
        state = as_tensors(state)
        expected = {name: tuple(value.shape) for name, value in self.model.state_dict().items()}
        problem = layout_mismatch(state, expected)
        if problem is not None:
            raise DetectorWeightsError(
                f"detector.weights={weights} does not fit torchvision's maskrcnn_resnet50_fpn{'_v2' if version == 'v2' else ''}: {problem}",
                "pass the weights of that model (detector.version=v1|v2 picks it)",
            )
        self.model.load_state_dict({name: state[name] for name in expected})
        self.model.eval().requires_grad_(False)
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold

    @torch.no_grad()
    def forward(self, images: Tensor) -> list[Detections]:
        """(B, H, W, 3) uint8 RGB -> one :class:`Detections` per frame (boxes in frame pixels, masks included)."""
        device = next(self.model.parameters()).device
        batch = [frame.permute(2, 0, 1).to(device).float() / 255.0 for frame in images]
        results = []
        for output in self.model(batch):
            people = output["labels"] == PERSON_LABEL
            detections = Detections(
                boxes=output["boxes"][people].float().cpu(),
                scores=output["scores"][people].float().cpu(),
                masks=(output["masks"][people, 0] > self.mask_threshold).cpu(),
            )
            results.append(score_filter(sort_by_score(detections), self.score_threshold))
        return results
