"""MobileFaceNet as insightface arcface_torch's `get_mbf` builds it (backbones/mobilefacenet.py): same module
tree and state_dict keys (layers.*, conv_sep.*, features.* = GDC head), so arcface_torch mbf weights load
strict. Written from its key names and shapes."""

from __future__ import annotations

import torch
from torch import nn

from edgekd.models.base import FaceEmbedder
from edgekd.models.registry import register_model


class ConvBlock(nn.Module):
    """conv-BN-PReLU (`linear=True`: conv-BN), keys layers.0/1/2 as in arcface_torch."""

    def __init__(self, cin: int, cout: int, kernel=1, stride=1, padding=0, groups=1, linear: bool = False):
        super().__init__()
        mods = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        self.layers = nn.Sequential(*mods if linear else [*mods, nn.PReLU(cout)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """1x1 expand to `groups` channels, 3x3 depthwise (stride), 1x1 linear projection; optional residual."""

    def __init__(self, cin: int, cout: int, groups: int, stride: int = 2, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(cin, groups),
            ConvBlock(groups, groups, 3, stride, 1, groups=groups),
            ConvBlock(groups, cout, linear=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


class Residual(nn.Module):
    def __init__(self, c: int, num_block: int, groups: int):
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(c, c, groups, stride=1, residual=True) for _ in range(num_block)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv over the 7x7 map, then a bias-free linear and BatchNorm1d to the embedding."""

    def __init__(self, embedding_size: int, channels: int = 512, kernel=(7, 7)):
        super().__init__()
        self.layers = nn.Sequential(
            ConvBlock(channels, channels, kernel, groups=channels, linear=True),
            nn.Flatten(),
            nn.Linear(channels, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(FaceEmbedder):
    """arcface_torch mbf: blocks (1, 4, 6, 2), width scale 2; 112x112 -> 7x7x512 -> GDC -> embedding."""

    def __init__(self, embedding_size: int = 512, fp16: bool = False):
        super().__init__()
        self.embedding_size, self.fp16 = embedding_size, fp16
        self.layers = nn.Sequential(
            ConvBlock(3, 128, 3, 2, 1),
            ConvBlock(128, 128, 3, 1, 1, groups=64),  # groups=64 (not depthwise) is arcface_torch's choice
            DepthWise(128, 128, groups=128),
            Residual(128, 4, groups=128),
            DepthWise(128, 256, groups=256),
            Residual(256, 6, groups=256),
            DepthWise(256, 256, groups=512),
            Residual(256, 2, groups=256),
        )
        self.conv_sep = ConvBlock(256, 512)
        self.features = GDC(embedding_size)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_sep(self.layers(x))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.features(fmap)


def _detect(sd: dict) -> dict | None:
    w = sd.get("features.layers.2.weight")
    if w is None or "conv_sep.layers.0.weight" not in sd or "layers.0.layers.0.weight" not in sd:
        return None
    return {"embedding_size": int(w.shape[0])}


@register_model(detect=_detect)
def mobilefacenet(embedding_size: int = 512, fp16: bool = False) -> MobileFaceNet:
    """arcface_torch MobileFaceNet (get_mbf), ~1 M parameters at 512-d."""
    return MobileFaceNet(embedding_size=embedding_size, fp16=fp16)
