"""IResNet as insightface arcface_torch defines it (backbones/iresnet.py), module for module, so an official
arcface_torch `backbone.pth` loads with strict=True and no key conversion. Written from its key names and
shapes; r101 is the paper's ResNet101 teacher ([3, 4, 23, 3] blocks) with the same 512-d head."""

from __future__ import annotations

import re

import torch
from torch import nn

from edgekd.models.base import FaceEmbedder
from edgekd.models.registry import register_model

LAYOUTS = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
    "r101": (3, 4, 23, 3),
}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation-style block: BN-conv-BN-PReLU-conv(stride)-BN, plus identity / 1x1-conv shortcut."""

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3x3(cin, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(FaceEmbedder):
    """112x112 input -> 7x7x512 map (layer4) -> BN, flatten, dropout, FC, BatchNorm1d -> embedding."""

    def __init__(self, layers: tuple[int, ...], embedding_size: int = 512, dropout: float = 0.0, fp16: bool = False):
        super().__init__()
        self.embedding_size, self.fp16 = embedding_size, fp16
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            down = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=2, bias=False), nn.BatchNorm2d(planes, eps=1e-5))
            blocks = [IBasicBlock(cin, planes, 2, down)] + [IBasicBlock(planes, planes) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            cin = planes
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(512 * 7 * 7, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        # arcface_torch's initialisation, including the frozen scale of the output BatchNorm1d.
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, fmap: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.bn2(fmap), 1))
        return self.features(self.fc(x))


_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.conv1\.weight$")


def _detector(layout: tuple[int, ...]):
    """Recognise arcface_torch IResNet weights by their blocks per layer and FC shape."""

    def detect(sd: dict) -> dict | None:
        fc = sd.get("fc.weight")
        if fc is None or fc.ndim != 2 or fc.shape[1] != 512 * 7 * 7 or "features.running_mean" not in sd:
            return None
        counts = [0, 0, 0, 0]
        for k in sd:
            m = _BLOCK_KEY.match(k)
            if m:
                counts[int(m[1]) - 1] = max(counts[int(m[1]) - 1], int(m[2]) + 1)
        return {"embedding_size": int(fc.shape[0])} if tuple(counts) == layout else None

    return detect


def _register(name: str, layout: tuple[int, ...]) -> None:
    def build(embedding_size: int = 512, dropout: float = 0.0, fp16: bool = False) -> IResNet:
        return IResNet(layout, embedding_size=embedding_size, dropout=dropout, fp16=fp16)

    build.__doc__ = f"IResNet {name}: blocks per stage {layout}."
    register_model(name, detect=_detector(layout))(build)


for _name, _layout in LAYOUTS.items():
    _register(_name, _layout)
