"""Discriminators for adversarial KD: they learn teacher features = real, student features = fake.

Two kinds, as in the adversarial-KD literature: an MLP on (L2-normalised) embeddings, and a small conv net on
the last feature maps (`model.forward_features`), where spatial structure the embedding pools away is compared.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLPDiscriminator(nn.Module):
    """3-layer MLP on unit-length embeddings: only the direction matters for cosine verification."""

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.net(F.normalize(emb.float(), dim=1)).squeeze(1)


class ConvDiscriminator(nn.Module):
    """Two 3x3 convs + global pooling on (N, C, h, w) feature maps; no BatchNorm (its batch statistics would let
    D separate an all-real batch from an all-fake one trivially)."""

    def __init__(self, channels: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(hidden, 1),
        )

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.net(fmap.float()).squeeze(1)
