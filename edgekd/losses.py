"""Margin-based softmax heads for face recognition, in the spirit of insightface arcface_torch.

CombinedMarginLoss turns cosine logits into margin logits: target cos(theta) -> cos(m1*theta + m2) - m3,
times s. ArcFace is (1, 0.5, 0), CosFace (1, 0, 0.35), the combined form any mix. PartialFC holds the class
centres and, for large class counts, trains each step only the centres of the classes present in the
(global) batch plus a random sample of negatives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.errors import EdgekdError

MARGINS = {"arcface": (1.0, 0.5, 0.0), "cosface": (1.0, 0.0, 0.35)}


def margin_preset(name: str) -> tuple[float, float, float]:
    """(m1, m2, m3) of a named head; 'combined' has no preset (give m1, m2, m3 explicitly)."""
    if name not in MARGINS:
        raise EdgekdError(f"unknown margin head '{name}' (known: {', '.join(sorted(MARGINS))}, combined)")
    return MARGINS[name]


class CombinedMarginLoss(nn.Module):
    """Cosine logits (N, C) in [-1, 1] -> scaled margin logits. Labels of -1 get no margin (not a local class).

    Where theta + m2 would pass pi the margin target stops decreasing monotonically, so (as in ArcFace) past the
    threshold cos(theta) > th fails and the target falls back to cos(theta) - mm; `easy_margin` instead only
    applies the margin where cos(theta) > 0.
    """

    def __init__(self, s: float = 64.0, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0, easy_margin: bool = False):
        super().__init__()
        if s <= 0 or m1 <= 0 or m2 < 0 or m3 < 0 or m2 >= math.pi:
            raise EdgekdError(f"invalid margin parameters s={s} m1={m1} m2={m2} m3={m3} (need s>0, m1>0, 0<=m2<pi, m3>=0)")
        self.s, self.m1, self.m2, self.m3, self.easy_margin = s, m1, m2, m3, easy_margin
        self.th = math.cos(min(math.pi, (math.pi - m2) / m1))  # m1*theta + m2 stays below pi: no fallback
        self.mm = math.sin(math.pi - m2) * m2

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pos = torch.where(labels != -1)[0]
        target = logits[pos, labels[pos]]
        if self.m1 == 1.0 and self.m2 == 0.0:
            final = target - self.m3
        else:
            if self.m1 == 1.0:  # cos(theta + m2) without acos: its gradient is finite at cos = +-1
                sin = torch.sqrt((1.0 - target * target).clamp_min(1e-7))
                margin = target * math.cos(self.m2) - sin * math.sin(self.m2)
            else:
                margin = torch.cos(self.m1 * torch.acos(target.clamp(-1 + 1e-7, 1 - 1e-7)) + self.m2)
            margin = margin - self.m3
            if self.easy_margin:
                final = torch.where(target > 0, margin, target)
            else:
                final = torch.where(target > self.th, margin, target - self.mm - self.m3)
        logits = logits.index_put((pos, labels[pos]), final)
        return logits * self.s

    def extra_repr(self) -> str:
        return f"s={self.s}, m1={self.m1}, m2={self.m2}, m3={self.m3}, easy_margin={self.easy_margin}"


class PartialFC(nn.Module):
    """Class centres + margin softmax cross-entropy, optionally over a sampled subset of centres (Partial FC).

    sample_rate=1 is the plain full FC. With sample_rate<1 each step uses the centres of every class in the batch
    (gathered over all processes under torch.distributed, so all ranks pick the same subset and the replicated
    centres' gradients stay consistent when averaged) plus random negatives up to rate*C. The sampling RNG is
    seeded from (seed, step counter) and the counter is a buffer, so a resumed run samples exactly as the
    uninterrupted one. Unlike arcface_torch the centres are replicated, not sharded across GPUs.
    """

    def __init__(self, margin_loss: CombinedMarginLoss, embedding_size: int, num_classes: int,
                 sample_rate: float = 1.0, seed: int = 0):
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise EdgekdError(f"partial-fc sample rate {sample_rate} is outside (0, 1]")
        if num_classes < 2:
            raise EdgekdError(f"a margin head needs at least 2 classes, got {num_classes}")
        self.margin_loss = margin_loss
        self.embedding_size, self.num_classes = embedding_size, num_classes
        self.sample_rate, self.seed = sample_rate, seed
        self.num_sample = max(2, int(sample_rate * num_classes))
        self.weight = nn.Parameter(torch.normal(0, 0.01, (num_classes, embedding_size)))
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def sample(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the centres used this step and the labels remapped into them."""
        if self.num_sample >= self.num_classes:
            return torch.arange(self.num_classes, device=labels.device), labels
        all_labels = labels
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [torch.empty_like(labels) for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather(parts, labels.contiguous())
            all_labels = torch.cat(parts)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.steps))
        score = torch.rand(self.num_classes, generator=gen).to(labels.device)
        score[all_labels.unique()] = 2.0  # positives always kept
        index = torch.topk(score, max(self.num_sample, int((score > 1.0).sum())))[1].sort()[0]
        return index, torch.searchsorted(index, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise EdgekdError(f"label {int(labels.max())} outside the head's {self.num_classes} classes")
        with torch.autocast(embeddings.device.type, enabled=False):  # margins in fp32: cos near 1 needs it
            index, local = self.sample(labels)
            if self.training:
                self.steps += 1
            weight = self.weight if index.numel() == self.num_classes else self.weight[index]
            logits = F.linear(F.normalize(embeddings.float()), F.normalize(weight.float())).clamp(-1, 1)
            return F.cross_entropy(self.margin_loss(logits, local), local)

    def extra_repr(self) -> str:
        return f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, sample_rate={self.sample_rate}"
