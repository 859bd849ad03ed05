"""The surface every edgekd model offers, so train/distill/export/eval never special-case an architecture."""

from __future__ import annotations

import torch
from torch import nn

from edgekd.preprocess import ARCFACE, Preprocess


class FaceEmbedder(nn.Module):
    """forward = forward_head(forward_features(x)); subclasses define the two halves.

    The split exists for adversarial KD (a conv discriminator reads the last feature map). `fp16` keeps
    arcface_torch's semantics: the convolutional body runs under CUDA autocast, the head in float32.
    """

    preprocess: Preprocess = ARCFACE
    embedding_size: int = 512
    fp16: bool = False

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, h, w)
        raise NotImplementedError

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:  # (N, D), un-normalised
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", enabled=self.fp16 and x.is_cuda):
            fmap = self.forward_features(x)
        return self.forward_head(fmap.float() if self.fp16 else fmap)
