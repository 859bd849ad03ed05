"""Tiny registered face models for the distillation tests: 112x112 input like real data, but a stride-8 stem so a
CPU step takes milliseconds. `stride` changes the feature-map size (for the conv-discriminator mismatch case)."""

import torch
from torch import nn

from edgekd.models import list_models, register_model
from edgekd.models.base import FaceEmbedder

NAME = "distill_tiny"


class DistillTiny(FaceEmbedder):
    def __init__(self, embedding_size: int = 16, channels: int = 8, stride: int = 2):
        super().__init__()
        self.embedding_size = embedding_size
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 8, stride=8), nn.BatchNorm2d(channels), nn.PReLU(channels))
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, stride=stride, padding=1), nn.BatchNorm2d(channels))
        size = 14 // stride if stride > 1 else 14
        self.fc = nn.Linear(channels * size * size, embedding_size)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(fmap.flatten(1))


if NAME not in list_models():
    register_model(NAME)(lambda embedding_size=16, channels=8, stride=2: DistillTiny(embedding_size, channels, stride))
