"""The two real pretrained 128-d MobileFaceNets of the shared data, rebuilt from their state_dict keys/shapes
and their authors' forward passes, so they load strict and serve as real teachers/baselines.

- mobilefacenet_ms1m_foamliu (foamliu/MobileFaceNet, MS1M): 112x112, ImageNet mean/std on 0..1,
  ReLU6 in the conv blocks, plain ReLU in the first depthwise-separable conv, 7x7 GDConv, biased 1x1 conv + BN.
- mobilefacenet_casia_xiaoccer (Xiaoccer/MobileFaceNet_Pytorch, CASIA-WebFace): 112x96 (SphereFace crop),
  (x - 127.5) / 128, PReLU throughout, 7x6 linear GDConv, 1x1 linear conv + BN.
"""

from __future__ import annotations

import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.models.base import FaceEmbedder
from edgekd.models.cfgs import CFGS
from edgekd.models.registry import register_model
from edgekd.paths import shared_path

# Both repositories use MobileFaceNet's bottleneck table: (expansion t, channels c, repeats n, first stride s).
_SETTING = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))

FOAMLIU_WEIGHTS = ("weights", "mobilefacenet_ms1m_foamliu", "mobilefacenet.pt")
XIAOCCER_WEIGHTS = ("weights", "mobilefacenet_casia_xiaoccer", "068.ckpt")


def _bottlenecks(make) -> nn.Sequential:
    blocks, cin = [], 64
    for t, c, n, s in _SETTING:
        for i in range(n):
            blocks.append(make(cin, c, s if i == 0 else 1, t))
            cin = c
    return nn.Sequential(*blocks)


def _cbr(cin, cout, k=3, s=1, groups=1) -> nn.Sequential:
    """foamliu's ConvBNReLU: conv-BN-ReLU6."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())


class _FoamliuInverted(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hid = cin * t
        self.res = stride == 1 and cin == cout
        self.conv = nn.Sequential(_cbr(cin, hid, 1), _cbr(hid, hid, 3, stride, groups=hid),
                                  nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


class _FoamliuDWSep(nn.Module):
    def __init__(self, c: int = 64):
        super().__init__()
        self.depthwise = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.pointwise = nn.Conv2d(c, c, 1, bias=False)
        self.bn1, self.bn2, self.relu = nn.BatchNorm2d(c), nn.BatchNorm2d(c), nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn2(self.pointwise(self.relu(self.bn1(self.depthwise(x))))))


class _FoamliuGDConv(nn.Module):
    def __init__(self, c: int = 512):
        super().__init__()
        self.depthwise = nn.Conv2d(c, c, 7, groups=c, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(self.depthwise(x))


class FoamliuMobileFaceNet(FaceEmbedder):
    preprocess = CFGS["mobilefacenet_ms1m_foamliu"].preprocess
    embedding_size = CFGS["mobilefacenet_ms1m_foamliu"].embedding_size

    def __init__(self):
        super().__init__()
        self.conv1 = _cbr(3, 64, 3, 2)
        self.dw_conv = _FoamliuDWSep(64)
        self.features = _bottlenecks(_FoamliuInverted)
        self.conv2 = _cbr(128, 512, 1)
        self.gdconv = _FoamliuGDConv(512)
        self.conv3 = nn.Conv2d(512, 128, 1)
        self.bn = nn.BatchNorm2d(128)

    def forward_features(self, x):
        return self.conv2(self.features(self.dw_conv(self.conv1(x))))

    def forward_head(self, fmap):
        return torch.flatten(self.bn(self.conv3(self.gdconv(fmap))), 1)


class _XConvBlock(nn.Module):
    """Xiaoccer's ConvBlock: conv(-depthwise)-BN(-PReLU)."""

    def __init__(self, cin, cout, k, s, p, dw=False, linear=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, p, groups=cin if dw else 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = None if linear else nn.PReLU(cout)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class _XBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hid = cin * t
        self.res = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.PReLU(hid),
            nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False), nn.BatchNorm2d(hid), nn.PReLU(hid),
            nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


class XiaoccerMobileFaceNet(FaceEmbedder):
    preprocess = CFGS["mobilefacenet_casia_xiaoccer"].preprocess
    embedding_size = CFGS["mobilefacenet_casia_xiaoccer"].embedding_size

    def __init__(self):
        super().__init__()
        self.conv1 = _XConvBlock(3, 64, 3, 2, 1)
        self.dw_conv1 = _XConvBlock(64, 64, 3, 1, 1, dw=True)
        self.blocks = _bottlenecks(_XBottleneck)
        self.conv2 = _XConvBlock(128, 512, 1, 1, 0)
        self.linear7 = _XConvBlock(512, 512, (7, 6), 1, 0, dw=True, linear=True)
        self.linear1 = _XConvBlock(512, 128, 1, 1, 0, linear=True)

    def forward_features(self, x):
        return self.conv2(self.blocks(self.dw_conv1(self.conv1(x))))

    def forward_head(self, fmap):
        return torch.flatten(self.linear1(self.linear7(fmap)), 1)


def _load_shared(model: nn.Module, rel: tuple[str, ...]) -> nn.Module:
    from edgekd.models.loading import read_weights

    path = shared_path(*rel)
    if path is None:
        raise EdgekdError(f"{'/'.join(rel)}: pretrained file not found in the shared data (set EDGEKD_SHARED_DATA)")
    model.load_state_dict(read_weights(path)[0], strict=True)
    return model.eval()


def _has(*keys):
    return lambda sd: {} if all(k in sd for k in keys) else None


@register_model(detect=_has("dw_conv.pointwise.weight", "gdconv.depthwise.weight", "conv3.bias"),
                default_weights=FOAMLIU_WEIGHTS)
def mobilefacenet_ms1m_foamliu(pretrained: bool = False) -> FoamliuMobileFaceNet:
    """foamliu MobileFaceNet (MS1M, 128-d); pretrained=True loads the shared weights."""
    model = FoamliuMobileFaceNet()
    return _load_shared(model, FOAMLIU_WEIGHTS) if pretrained else model


@register_model(detect=_has("dw_conv1.conv.weight", "linear7.conv.weight", "linear1.bn.running_mean"),
                default_weights=XIAOCCER_WEIGHTS)
def mobilefacenet_casia_xiaoccer(pretrained: bool = False) -> XiaoccerMobileFaceNet:
    """Xiaoccer MobileFaceNet (CASIA-WebFace, 112x96, 128-d); pretrained=True loads the shared weights."""
    model = XiaoccerMobileFaceNet()
    return _load_shared(model, XIAOCCER_WEIGHTS) if pretrained else model
