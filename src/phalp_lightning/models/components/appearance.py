"""HMAR's appearance autoencoder over UV texture maps ('4c': RGB + visibility channel).

Facts: docs/hmar.md, Architecture. The encoder output (16, S/16, S/16), flattened in C, H, W order, is the
appearance code: 4096-d for S = 256. The decoder exists in the official weights and is trained here
as the reconstruction branch; the tracker only uses the encoder.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

CODE_CHANNELS = 16


def appearance_dim(uv_size: int) -> int:
    """Length of the appearance code for a UV map of side ``uv_size`` (4096 at 256)."""
    return CODE_CHANNELS * (uv_size // 16) ** 2


class EncodingHead(nn.Module):
    """Convolutional autoencoder; attribute names match the official '4c' EncodingHead."""

    def __init__(self) -> None:
        super().__init__()
        # Encoder: 3x3 convs with ReLU, 2x2 max-pool after the first four.
        self.conv1x = nn.Conv2d(4, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.conv4 = nn.Conv2d(128, 256, 3, padding=1)
        self.conv5 = nn.Conv2d(256, 256, 3, padding=1)
        self.conv5_1 = nn.Conv2d(256, CODE_CHANNELS, 3, padding=1)
        # Decoder: conv -> BN -> ReLU, 2x upsampling after t_conv4, t_conv3, t_conv2, t_conv1x.
        self.t_conv5_1 = nn.Conv2d(CODE_CHANNELS, 256, 3, padding=1)
        self.t_bn_5_1 = nn.BatchNorm2d(256)
        self.t_conv5 = nn.Conv2d(256, 256, 3, padding=1)
        self.t_bn_5 = nn.BatchNorm2d(256)
        self.t_conv4 = nn.Conv2d(256, 128, 3, padding=1)
        self.t_bn_4 = nn.BatchNorm2d(128)
        self.t_conv3 = nn.Conv2d(128, 64, 3, padding=1)
        self.t_bn_3 = nn.BatchNorm2d(64)
        self.t_conv2 = nn.Conv2d(64, 16, 3, padding=1)
        self.t_bn_2 = nn.BatchNorm2d(16)
        self.t_conv1x = nn.Conv2d(16, 4, 3, padding=1)
        self.t_bn_1x = nn.BatchNorm2d(4)
        self.t_conv1_1x = nn.Conv2d(4, 4, 3, padding=1)

    def encode(self, uv_vector: Tensor) -> Tensor:
        """(B, 4, S, S) processed UV map -> (B, 16, S/16, S/16) non-negative code map."""
        x = F.max_pool2d(F.relu(self.conv1x(uv_vector)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        x = F.max_pool2d(F.relu(self.conv4(x)), 2)
        x = F.relu(self.conv5(x))
        return F.relu(self.conv5_1(x))

    def decode(self, code: Tensor) -> Tensor:
        """(B, 16, S/16, S/16) code map -> (B, 4, S, S) reconstruction in [-1, 1]."""
        x = F.relu(self.t_bn_5_1(self.t_conv5_1(code)))
        x = F.relu(self.t_bn_5(self.t_conv5(x)))
        x = _upsample(F.relu(self.t_bn_4(self.t_conv4(x))))
        x = _upsample(F.relu(self.t_bn_3(self.t_conv3(x))))
        x = _upsample(F.relu(self.t_bn_2(self.t_conv2(x))))
        x = _upsample(F.relu(self.t_bn_1x(self.t_conv1x(x))))
        return self.t_conv1_1x(x).tanh()

    def forward(self, uv_vector: Tensor) -> Tensor:
        """Encode then decode: (B, 4, S, S) -> (B, 4, S, S)."""
        return self.decode(self.encode(uv_vector))


def _upsample(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
