"""ResNet-50 backbone of HMAR with its two stems and the mask-channel handling.

Layout (docs/hmar.md, Architecture): torchvision-style ResNet-50 v1.5 (Bottleneck, blocks 3-4-6-3, stride on
the 3x3 conv), no average pool and no fc. ``conv1`` is the RGB stem and ``conv1m`` the 4-channel
(RGB + mask) stem; both always exist so the state dict always has both keys. Nothing here loads
ImageNet weights: the network starts from a random (Kaiming) initialisation or from HMAR weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASK_TYPES = ("feat", "rgb", "rgbm")


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 -> 3x3 (strided) -> 1x1 with 4x expansion."""

    expansion = 4

    def __init__(
        self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """ResNet-50 trunk returning the (optionally mask-gated) last feature map and the four skips.

    Args:
        mask_type: ``"feat"`` (PHALP default: RGB stem, layer4 output multiplied by the binarised,
            area-downsampled mask), ``"rgb"`` (RGB stem, no masking) or ``"rgbm"`` (4-channel stem).
        layers: blocks per stage (ResNet-50: 3, 4, 6, 3).
    """

    def __init__(self, mask_type: str = "feat", layers: tuple[int, int, int, int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        if mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
        self.mask_type = mask_type
        self._in_channels = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.conv1m = nn.Conv2d(4, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.out_channels = 512 * Bottleneck.expansion
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        out_channels = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self._in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self._in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        modules = [Bottleneck(self._in_channels, planes, stride, downsample)]
        self._in_channels = out_channels
        modules += [Bottleneck(out_channels, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Zero-init the last BN of each residual branch so a randomly initialised 50-layer trunk
        # starts close to identity and trains from scratch on small CPU runs.
        for module in self.modules():
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)

    def forward(self, image: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Run the trunk.

        Args:
            image: (B, 4, S, S): normalised RGB and a mask channel in [0, 255]; S divisible by 32.

        Returns:
            features (B, 2048, S/32, S/32) (mask-gated for ``"feat"``) and the unmasked skips
            [x1 (B,256,S/4,S/4), x2 (B,512,S/8,S/8), x3 (B,1024,S/16,S/16), x4 (B,2048,S/32,S/32)].
        """
        if image.ndim != 4 or image.shape[1] != 4:
            raise ValueError(f"backbone input must be (B, 4, S, S) RGB + mask, got {tuple(image.shape)}")
        if self.mask_type == "rgbm":
            x = self.conv1m(image)
        else:
            x = self.conv1(image[:, :3])
        x = self.maxpool(self.relu(self.bn1(x)))
        x1 = self.layer1(x)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        features = x4
        if self.mask_type == "feat":
            mask = F.interpolate(image[:, 3:4], size=x4.shape[-2:], mode="area")
            features = x4 * (mask > 0).to(x4.dtype)
        return features, [x1, x2, x3, x4]


def pose_embedding(features: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C): max over H then over W (PHALP's ``pose_emb``)."""
    return torch.amax(features, dim=(2, 3))
