"""torchvision's Mask R-CNN (ResNet-50 FPN) as an optional detector, from a local weights file.

torchvision is never a dependency of this package (its CPU wheels conflict with lightning here); it
is imported only when a :class:`TorchvisionMaskRCNNDetector` is built.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from phalp_lightning.detection.base import score_filter, sort_by_score
from phalp_lightning.structures import Detections

# torchvision's COCO label of "person" (index 0 is the background).
PERSON_LABEL = 1


class TorchvisionMaskRCNNDetector(torch.nn.Module):
    """``torchvision.models.detection.maskrcnn_resnet50_fpn`` (v1 or v2) filtered to people.

    Args:
        weights: local state-dict file, e.g. ``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``.
        version: "v1" or "v2" (``maskrcnn_resnet50_fpn_v2``), matching the weights.
        score_threshold: keep persons with score strictly above this.
        mask_threshold: soft-mask probability above which a pixel belongs to the person.
    """

    def __init__(self, weights: str, version: str = "v1", score_threshold: float = 0.8, mask_threshold: float = 0.5) -> None:
        super().__init__()
        try:
            from torchvision.models import detection
        except ImportError as error:
            raise ImportError("torchvision is not installed; install a torchvision matching your torch, or use detector=hog") from error
        if not Path(weights).is_file():
            raise FileNotFoundError(
                f"Mask R-CNN weights {weights!r} not found; download torchvision's COCO weights once "
                "(e.g. maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth) and pass detector.weights=<file>"
            )
        builder = {"v1": detection.maskrcnn_resnet50_fpn, "v2": detection.maskrcnn_resnet50_fpn_v2}[version]
        self.model = builder(weights=None, weights_backbone=None)
        self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.model.eval().requires_grad_(False)
        self.score_threshold = score_threshold
        self.mask_threshold = mask_threshold

    @torch.no_grad()
    def forward(self, images: Tensor) -> list[Detections]:
        """(B, H, W, 3) uint8 RGB -> one :class:`Detections` per frame (masks included)."""
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
