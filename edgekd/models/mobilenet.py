"""MobileNetV2 student: torchvision's MobileNetV2 feature extractor (keys features.*, so ImageNet weights could be
loaded into it) with a face-embedding head, for comparing a generic edge backbone against MobileFaceNet."""

from __future__ import annotations

import math

import torch
from torch import nn

from edgekd.models.base import FaceEmbedder
from edgekd.models.registry import register_model


class MobileNetV2Face(FaceEmbedder):
    """112x112 -> torchvision features (1280 x 4 x 4) -> global depthwise conv + BN -> linear -> BatchNorm1d."""

    def __init__(self, embedding_size: int = 512, dropout: float = 0.0, fp16: bool = False):
        super().__init__()
        from torchvision.models import mobilenet_v2

        self.embedding_size, self.fp16 = embedding_size, fp16
        self.features = mobilenet_v2(weights=None).features
        side = tuple(math.ceil(s / 32) for s in self.preprocess.input_size)  # five stride-2 stages
        self.head = nn.Sequential(
            nn.Conv2d(1280, 1280, side, groups=1280, bias=False),
            nn.BatchNorm2d(1280),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(1280, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.head(fmap)


def _detect(sd: dict) -> dict | None:
    w = sd.get("head.4.weight")
    if w is None or "features.18.0.weight" not in sd:
        return None
    return {"embedding_size": int(w.shape[0])}


@register_model(detect=_detect)
def mobilenetv2(embedding_size: int = 512, dropout: float = 0.0, fp16: bool = False) -> MobileNetV2Face:
    """torchvision MobileNetV2 body with a GDC embedding head."""
    return MobileNetV2Face(embedding_size=embedding_size, dropout=dropout, fp16=fp16)
